"""Shared fixtures: the shared corpora (skipped when absent) and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import SHARED_DATA

from instructgen.cli.main import cli


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns the click Result (stdout, stderr and exit code apart)."""

    def run(*args: str):
        runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run
