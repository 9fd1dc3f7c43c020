"""The built wheel works on its own: pools ship as package data, not only in a checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow


def _see_running_site_packages(py: Path) -> None:
    """Let the new venv import the dependencies of the interpreter running the suite, with no network.

    `system_site_packages=True` points at the *base* interpreter, which has none of them when the suite itself
    runs in a virtual environment (what a newcomer and CI do). A `.pth` line appends the running interpreter's
    site-packages instead; it is appended after the venv's own site-packages, so the installed wheel wins over
    an editable checkout, and `.pth` files inside the appended folder (the editable hook) are not executed.
    """
    inner = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(inner) / "_running_suite.pth").write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")


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
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    _see_running_site_packages(py)
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
