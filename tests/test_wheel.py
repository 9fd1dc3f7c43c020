"""The built wheel works on its own: pools ship as package data, not only in a checkout."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow


def test_wheel_installs_and_lists_pools(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("instructgen-*.whl")

    env_dir = tmp_path / "venv"
    # system site-packages give the dependencies without a network; the wheel itself goes in the venv
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import instructgen; print(instructgen.__file__)"],
        cwd=outside,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout + where.stderr

    listed = subprocess.run(
        [str(env_dir / "bin" / "instructgen"), "templates", "list"],
        cwd=outside,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert "builtin:translation/en.yaml\ttask=translation\tlanguage=en\ttemplates=24" in listed.stdout
    assert "builtin:translation/zh.yaml\ttask=translation\tlanguage=zh\ttemplates=24" in listed.stdout
