"""The built wheel works on its own: pools ship as package data, not only in a checkout.

The pools live in the repository's top-level `task_templates/` (the design card's layout) and the build
configuration (setup.py's package_dir, pyproject's package-data) installs them as package
`instructgen.task_templates`: these tests prove that the wheel carries exactly that folder and that
an editable install reads it in place.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

import instructgen
from instructgen.identity.seeds import builtin_seed_pools
from instructgen.templates.pool import builtin_pool_files, templates_root

SHIPPED_POOLS = sorted(
    p.relative_to(REPO / "task_templates").as_posix() for p in (REPO / "task_templates").glob("*/*.yaml")
)


def test_pools_live_at_the_top_level_only():
    """One copy: the checkout has `task_templates/` beside `instructgen/` and nothing left inside the package."""
    expected = {"classification/en.yaml", "ner/zh.yaml", "translation/en.yaml", "identity/ja.yaml"}
    assert expected <= set(SHIPPED_POOLS)
    assert not (REPO / "instructgen" / "task_templates").exists()


def test_editable_install_reads_the_top_level_folder():
    """The install the suite runs in (README's `pip install -e`) finds the pools where they are edited."""
    if Path(instructgen.__file__).resolve().parent != REPO / "instructgen":
        pytest.skip("instructgen is not imported from this checkout")
    assert templates_root().resolve() == REPO / "task_templates"
    assert [shown for shown, _ in builtin_pool_files()] == [
        f"builtin:{name}" for name in SHIPPED_POOLS if not name.startswith("identity/")
    ]
    assert sorted(builtin_seed_pools()) == ["de", "en", "es", "fr", "ja", "ko", "zh"]


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


@pytest.mark.slow
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
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.removeprefix("instructgen/task_templates/") for n in names if n.endswith(".yaml")) == (
        SHIPPED_POOLS
    )
    assert "instructgen/task_templates/__init__.py" in names
    assert not [n for n in names if n.startswith("task_templates/")]  # no stray top-level package

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
    for name in SHIPPED_POOLS:
        if not name.startswith("identity/"):
            assert f"builtin:{name}\t" in listed.stdout

    loaded = subprocess.run(
        [
            str(py),
            "-c",
            "from instructgen.templates.pool import PoolSet, templates_root;"
            "from instructgen.identity.seeds import builtin_seed_pools;"
            "print(templates_root());"
            "print(*(PoolSet.load(t).languages for t in ('translation', 'ner', 'classification')));"
            "print(sorted(builtin_seed_pools()))",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr
    root, languages, seeds = loaded.stdout.splitlines()
    assert Path(root).is_relative_to(env_dir), root
    assert languages == "['en', 'zh'] ['en', 'zh'] ['en', 'zh']"
    assert seeds == "['de', 'en', 'es', 'fr', 'ja', 'ko', 'zh']"
