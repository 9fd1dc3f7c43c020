"""How `instructgen tokenize` writes, caches and describes its output folder (issues 10 and 11).

The output folder must never cost a user a file: `-o DIR` creates DIR, replaces it only when it
holds a previous tokenize output and nothing else (--overwrite included: it rebuilds our own output,
never a folder of other files), and never leaves a temporary folder behind.
A cache hit must verify what it reuses, and the cache key must cover every tokenizer file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

ROWS = [
    {"instruction": "Translate to English:", "input": "你好，世界", "output": "Hello, world!"},
    {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    {"instruction": "Count.", "input": "1 2", "output": "3"},
]


def _write(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _tree(folder: Path) -> dict[str, str]:
    """Every file under a folder with the sha256 of its bytes (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tok(tiny_dir, run_cli, tmp_path):
    """Run `tokenize` with the tiny test tokenizer; extra args after the output."""

    def run(src, out, *extra):
        return run_cli("tokenize", src, "--tokenizer", tiny_dir, "--format", "alpaca", "-o", out, *extra)

    return run


def _ids(out: Path) -> list[list[int]]:
    """The input_ids of an output folder as plain lists (not a lazy view of a file we change)."""
    import datasets

    return [list(r) for r in datasets.load_from_disk(str(out))["input_ids"]]


def _leftovers(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if ".instructgen-" in n or n.endswith(".tmp"))


# --- item 1: never remove what we did not write ----------------------------------------------------------


def test_dot_is_refused_and_the_folder_survives(tmp_path, tok, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    src = _write(work / "data.jsonl")
    (work / "thesis.tex").write_text("chapter 1\n")
    (work / "figures").mkdir()
    (work / "figures" / "plot.pdf").write_bytes(b"%PDF-1.4 \x00\x01")
    before = _tree(work)
    monkeypatch.chdir(work)
    for out in (".", "./", str(work)):
        res = tok("data.jsonl", out)
        assert res.exit_code == 2, res.stderr
        assert res.stderr.startswith(f"error: -o {out}: refusing to replace a folder that holds ")
        assert "Traceback" not in res.stderr
    # --overwrite does not make the current directory (or the input's folder) fair game either
    res = tok(src, ".", "--overwrite")
    assert res.exit_code == 2 and "refusing to replace a folder that holds" in res.stderr
    assert _tree(work) == before
    assert _leftovers(tmp_path) == [] and _leftovers(work) == []


def _refused(out, listed: str) -> str:
    """The refusal tokenize prints for a folder holding files it did not write (with or without
    --overwrite: `OutputFolder.refuse_foreign`)."""
    return (
        f"error: -o {out}: the folder holds files instructgen did not write ({listed}); "
        "--overwrite replaces only instructgen's own output and never deletes them: "
        "name a new folder, or move those files out of it\n"
    )


def test_a_folder_with_other_files_is_refused_byte_identical(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "results"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.pdf").write_bytes(b"%PDF thesis \x00" * 100)
    (out / "sub" / "notes.txt").write_text("keep me\n")
    before = _tree(out)
    for extra in ((), ("--overwrite",)):
        res = tok(src, out, *extra)
        assert res.exit_code == 2
        assert res.stderr == _refused(out, "sub, thesis.pdf")
        assert _tree(out) == before and sorted(os.listdir(out)) == ["sub", "thesis.pdf"]
        assert _leftovers(tmp_path) == []


def test_our_own_output_with_a_foreign_file_added_is_refused(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    assert tok(src, out).exit_code == 0
    (out / "my_notes.md").write_text("mine\n")
    src2 = _write(tmp_path / "d2.jsonl", ROWS[:2])
    res = tok(src2, out)
    assert res.exit_code == 2 and "holds files instructgen did not write (my_notes.md)" in res.stderr
    assert (out / "my_notes.md").read_text() == "mine\n"


def test_trailing_slash_new_and_nested_folders(tmp_path, tok):
    import datasets

    src = _write(tmp_path / "d.jsonl")
    for out in (f"{tmp_path}/tok/", f"{tmp_path}/a/b/c/"):
        res = tok(src, out)
        assert res.exit_code == 0, res.stderr
        ds = datasets.load_from_disk(out)
        assert ds["row"] == [0, 1, 2]
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a" / "b") == []
    assert sorted(os.listdir(tmp_path / "tok")) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "instructgen_meta.json",
        "state.json",
    ]


def test_existing_file_as_output_is_refused_and_leaves_nothing(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    target = tmp_path / "existing_file"
    target.write_text("precious\n")
    res = tok(src, target)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: -o {target}: exists and is not a folder; name a new folder for the dataset\n"
    )
    assert target.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl", "existing_file"]


def test_rerun_over_our_own_output_replaces_it(tmp_path, tok):
    import datasets

    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    assert tok(src, out).exit_code == 0
    assert len(datasets.load_from_disk(str(out))) == 3
    src2 = _write(tmp_path / "d2.jsonl", ROWS[:2])
    res = tok(src2, out)
    assert res.exit_code == 0, res.stderr
    assert "cache: miss" in res.stderr
    assert len(datasets.load_from_disk(str(out))) == 2
    assert _leftovers(tmp_path) == []


def test_overwrite_refuses_a_foreign_folder_and_keeps_its_bytes(tmp_path, tok):
    """The project's first trust bug was `tokenize -o` deleting a user's folder: --overwrite must
    not bring it back. Refused before any work, the file's bytes and the folder's listing equal."""
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "old"
    out.mkdir()
    (out / "junk.txt").write_bytes(b"x\x00\xff precious")
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 2
    assert res.stderr == _refused(out, "junk.txt")
    assert os.listdir(out) == ["junk.txt"] and (out / "junk.txt").read_bytes() == b"x\x00\xff precious"
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl", "old"]  # no temporary folder, nothing moved aside


def test_overwrite_replaces_our_own_output(tmp_path, tok):
    import datasets

    long = {"instruction": "Long.", "input": "", "output": "word " * 300}
    src = _write(tmp_path / "d.jsonl", [*ROWS, long])
    out = tmp_path / "tok"
    args = ("--rejects", tmp_path / "r.jsonl", "--max-length", "200")
    assert tok(src, out, *args).exit_code == 0
    files = ["data-00000-of-00001.arrow", "dataset_info.json", "instructgen_meta.json", "state.json"]
    assert sorted(os.listdir(out)) == sorted([*files, "instructgen_rejects.jsonl"])
    first = (out / "data-00000-of-00001.arrow").stat().st_ino
    # the same command hits the cache; --overwrite rebuilds it and swaps the new folder in
    assert "cache: hit" in tok(src, out, *args).stderr
    res = tok(src, out, *args, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert "cache: miss" in res.stderr
    assert (out / "data-00000-of-00001.arrow").stat().st_ino != first
    assert datasets.load_from_disk(str(out))["row"] == [0, 1, 2]
    # another input: the old rejects file goes with the old output
    res = tok(_write(tmp_path / "d2.jsonl", ROWS[:2]), out, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(out)) == files
    assert datasets.load_from_disk(str(out))["row"] == [0, 1]
    assert _leftovers(tmp_path) == []


def _own_name_as_link(out: Path) -> None:
    (out / "state.json").rename(out.parent / "moved.json")
    (out / "state.json").symlink_to(out.parent / "elsewhere.txt")


@pytest.mark.parametrize(
    "make, listed",
    [
        (lambda out: (out / ".keep").write_bytes(b""), ".keep"),  # hidden: still someone's file
        (lambda out: (out / "cache-1234.arrow").write_bytes(b"ARROW1"), "cache-1234.arrow"),  # Dataset.map
        (lambda out: (out / "data-mine.arrow").write_bytes(b"x"), "data-mine.arrow"),  # not a shard name
        (lambda out: (out / "plots").mkdir() or (out / "plots" / "a.png").write_bytes(b"\x89PNG"), "plots"),
        (lambda out: (out / "_work").mkdir() or (out / "_work" / "n.txt").write_text("n"), "_work"),
        (lambda out: (out / "link").symlink_to(out.parent / "elsewhere.txt"), "link"),
        # a link named as one of our files is still not ours: removing it is not our call
        (_own_name_as_link, "state.json"),
    ],
    ids=[
        "hidden",
        "datasets-cache",
        "data-name",
        "subfolder",
        "work-in-process",
        "symlink",
        "symlink-own-name",
    ],
)
def test_our_output_with_anything_else_is_refused_even_with_overwrite(tmp_path, tok, make, listed):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    assert tok(src, out).exit_code == 0
    (tmp_path / "elsewhere.txt").write_text("the link's target\n")
    make(out)
    before, names = _tree(out), sorted(os.listdir(out))
    links = {n: os.readlink(out / n) for n in names if (out / n).is_symlink()}
    for extra in ((), ("--overwrite",)):
        res = tok(_write(tmp_path / "d2.jsonl", ROWS[:2]), out, *extra)
        assert res.exit_code == 2
        assert res.stderr == _refused(out, listed)
        assert sorted(os.listdir(out)) == names and _tree(out) == before
        assert {n: os.readlink(out / n) for n in names if (out / n).is_symlink()} == links
    assert (tmp_path / "elsewhere.txt").read_text() == "the link's target\n"
    assert _leftovers(tmp_path) == []


def test_the_refusal_names_five_entries_and_counts_the_rest(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "many"
    out.mkdir()
    for i in range(8):
        (out / f"f{i}.txt").write_text(str(i))
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 2
    assert res.stderr == _refused(out, "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 3 more")
    assert sorted(os.listdir(out)) == [f"f{i}.txt" for i in range(8)]


def test_a_plain_save_to_disk_folder_is_refused_even_with_overwrite(tmp_path, tok):
    """The same file names as ours, but no instructgen_meta.json (nor a tokenize manifest): a
    user's `datasets.save_to_disk` folder, never replaced."""
    import datasets

    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "theirs"
    datasets.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(out))
    before = _tree(out)
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 2
    assert res.stderr == _refused(out, "data-00000-of-00001.arrow, dataset_info.json, state.json")
    assert _tree(out) == before


def _ray_layout(out: Path, work: list[str]) -> None:
    """A folder as `tokenize --engine ray --max-shards 1` leaves it (tests/test_ray_tokenize.py
    pins the real one): the manifest, the first Arrow shard, markers and spools under `_work/`."""
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"task": "tokenize", "config_digest": "x"}))
    (out / "data-00000-of-00004.arrow").write_bytes(b"\x00" * 64)
    (out / "_work").mkdir()
    for name in work:
        (out / "_work" / name).write_bytes(b"{}")


def test_a_part_way_ray_output_is_ours_and_replaced_with_overwrite(tmp_path, tok):
    import datasets

    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    own = [
        "data-00000-of-00004.done",
        "data-00000-of-00004.rejects.jsonl",
        "tokens-00000-of-00004.ids.bin",
        "tokens-00000-of-00004.lengths.bin",
        "pack.plan.npz",
        "state.json",  # parked by sharded.placed when a run was killed before renaming it up
        f".state.json.ig-host1-{os.getpid()}-0a1b2c3d.tmp",  # an atomic writer's temporary
    ]
    _ray_layout(out, own)
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(out)) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "instructgen_meta.json",
        "state.json",
    ]
    assert datasets.load_from_disk(str(out))["row"] == [0, 1, 2]
    assert _leftovers(tmp_path) == []


def test_a_ray_output_with_a_file_of_yours_in_work_is_refused(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    _ray_layout(out, ["data-00000-of-00004.done", "my-notes.txt"])
    (out / "_work" / "sub").mkdir()
    before = _tree(out)
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 2
    assert res.stderr == _refused(out, "_work/my-notes.txt, _work/sub")
    assert _tree(out) == before and (out / "_work" / "sub").is_dir()
    # a manifest of another task (convert --engine ray) does not make the folder ours
    (out / "_work" / "my-notes.txt").unlink()
    (out / "_work" / "sub").rmdir()
    (out / "manifest.json").write_text(json.dumps({"task": "convert"}))
    res = tok(src, out, "--overwrite")
    assert res.stderr == _refused(out, "_work, data-00000-of-00004.arrow, manifest.json")


def test_a_file_put_in_the_folder_during_the_run_is_not_deleted(tmp_path, monkeypatch):
    """The folder is checked again right before the swap (a long run gives a user time to drop a
    file in): a refusal, the file untouched; and should one land in the instant between that
    check and the swap, swap_folder_in keeps the old folder (hidden, beside) instead of removing it,
    and no later run removes it."""
    from instructgen.errors import ConfigError
    from instructgen.io.atomic import _host
    from instructgen.tokenize import pipeline
    from instructgen.tokenize.pipeline import TMP_TAG, OutputFolder

    out = tmp_path / "tok"
    out.mkdir()
    (out / "instructgen_meta.json").write_text("{}")
    folder = OutputFolder(out, overwrite=True)
    folder.check()
    assert folder.ours
    tmp = folder.stage()
    (tmp / "instructgen_meta.json").write_text('{"new": 1}')
    (out / "late.txt").write_bytes(b"late\n")
    with pytest.raises(ConfigError) as err:
        folder.commit(tmp)
    assert str(err.value) == _refused(out, "late.txt")[len("error: ") : -1]
    assert sorted(os.listdir(out)) == ["instructgen_meta.json", "late.txt"]
    assert (out / "late.txt").read_bytes() == b"late\n" and (
        out / "instructgen_meta.json"
    ).read_text() == "{}"

    # the instant after that check: the old folder is moved aside, found holding the file, and kept
    (out / "late.txt").unlink()
    real_swap = pipeline.swap_folder_in

    def racing(tmp, target, tag, **kw):
        (target / "later.txt").write_bytes(b"later\n")
        return real_swap(tmp, target, tag, **kw)

    monkeypatch.setattr(pipeline, "swap_folder_in", racing)
    with pytest.raises(ConfigError) as err:
        folder.commit(tmp)
    (kept,) = [
        p for p in tmp_path.iterdir() if p.name.startswith(f".tok{TMP_TAG}old-{_host()}-{os.getpid()}-")
    ]
    assert str(err.value) == (
        f"-o {out}: the dataset is in place, but what was there changed during the swap (later.txt); "
        f"it is kept, untouched, as {kept}"
    )
    assert sorted(os.listdir(kept)) == ["instructgen_meta.json", "later.txt"]
    assert (kept / "later.txt").read_bytes() == b"later\n"
    assert (out / "instructgen_meta.json").read_text() == '{"new": 1}'
    # once its run is gone (named as a dead process's: a pid above the kernel's pid_max) no later
    # run removes it; an old folder holding our own output alone, it would
    dead = kept.with_name(f".tok{TMP_TAG}old-{_host()}-99999999-x9grxouf")
    kept.rename(dead)
    assert OutputFolder(out).remove_stale() == []
    assert (dead / "later.txt").read_bytes() == b"later\n"
    (dead / "later.txt").unlink()
    assert OutputFolder(out).remove_stale() == [dead.name]
    assert not dead.exists()


def test_an_empty_existing_folder_is_used(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "empty"
    out.mkdir()
    assert tok(src, out).exit_code == 0
    assert (out / "instructgen_meta.json").is_file()


def test_stale_temporary_folders_of_ours_are_removed(tmp_path, tok):
    """A SIGKILLed run leaves its hidden temporary folder; the next run removes it (issue 11 item 21)."""
    from instructgen.io.atomic import _host

    src = _write(tmp_path / "d.jsonl")
    # a pid that cannot be alive: above the kernel's pid_max
    dead = tmp_path / f".tok.instructgen-tmp-{_host()}-99999999-abc123"
    dead.mkdir()
    (dead / "data-00000-of-00001.arrow").write_bytes(b"\x00" * 1000)
    legacy = tmp_path / "tok.tmp"  # what versions before this one left behind
    legacy.mkdir()
    for name in ("data-00000-of-00001.arrow", "dataset_info.json", "state.json", "instructgen_meta.json"):
        (legacy / name).write_text("{}")
    unrelated = tmp_path / "notes.tmp"
    unrelated.mkdir()
    (unrelated / "a.txt").write_text("mine")
    assert tok(src, tmp_path / "tok").exit_code == 0
    assert not dead.exists() and not legacy.exists()
    assert (unrelated / "a.txt").read_text() == "mine"


def test_a_live_run_on_another_host_keeps_its_temporary_folder(tmp_path, tok):
    """On a shared filesystem a pid means nothing on another host: such a folder is removed only
    once nothing in it changed for a day, as io.atomic.remove_stale_temps judges temp files."""
    from instructgen.io.atomic import STALE_AFTER_S

    src = _write(tmp_path / "d.jsonl")
    live = tmp_path / ".tok.instructgen-tmp-otherhost-99999999-abc123"  # dead pid here, alive there
    live.mkdir()
    (live / "data-00000-of-00001.arrow").write_bytes(b"\x00" * 10)
    nohost = tmp_path / ".tok.instructgen-tmp-99999999-1x_2y3z4"  # a name from before hosts were recorded
    nohost.mkdir()
    gone = tmp_path / ".tok.instructgen-old-otherhost-12-beef0001"  # a replaced output moved aside
    gone.mkdir()
    (gone / "state.json").write_text("{}")
    (gone / "instructgen_meta.json").write_text("{}")
    old = time.time() - STALE_AFTER_S - 60
    for p in (gone / "state.json", gone / "instructgen_meta.json", gone):
        os.utime(p, (old, old))
    assert tok(src, tmp_path / "tok").exit_code == 0
    assert (live / "data-00000-of-00001.arrow").is_file() and nohost.is_dir()
    assert not gone.exists()
    # a day later with a file still being written (a long packing spool): still live
    for p in (live, nohost):
        os.utime(p, (old, old))
    assert tok(src, tmp_path / "tok").exit_code == 0
    assert live.is_dir() and not nohost.exists()


def test_a_plain_save_to_disk_folder_named_like_a_leftover_is_kept(tmp_path, tok):
    """`OUT.tmp` holding only data-*.arrow / state.json / dataset_info.json is any `save_to_disk`
    folder: without our metadata file it is not ours to remove."""
    src = _write(tmp_path / "d.jsonl")
    theirs = tmp_path / "tok.tmp"
    theirs.mkdir()
    for name in ("data-00000-of-00001.arrow", "dataset_info.json", "state.json"):
        (theirs / name).write_text("{}")
    assert tok(src, tmp_path / "tok").exit_code == 0
    assert sorted(os.listdir(theirs)) == ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]


def test_a_failed_run_leaves_no_temporary_folder(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl", [{"instruction": "x", "input": "", "output": "y " * 5000}])
    res = tok(src, tmp_path / "tok", "--max-length", "16")
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "no record survived" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_output_files_respect_umask(tmp_path, tok, mask, monkeypatch):
    """Folder 0777 and files 0666 less the umask, as mkdir() and open() make them (issue 11
    item 21), with the umask never set by us: os.umask sets the whole process's mask, so reading
    it that way races with threads creating files."""
    src = _write(tmp_path / "d.jsonl", [*ROWS, {"instruction": "x", "input": "", "output": "y " * 5000}])
    old = os.umask(mask)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real_umask(m))
    try:
        res = tok(src, tmp_path / "tok", "--rejects", tmp_path / "rej.jsonl", "--max-length", "64")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert res.exit_code == 0, res.stderr
    assert calls == []
    out = tmp_path / "tok"
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    files = [*out.iterdir(), tmp_path / "rej.jsonl"]
    assert "instructgen_rejects.jsonl" in {p.name for p in files}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_output_location(tmp_path, tok):
    src = _write(tmp_path / "d.jsonl")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        res = tok(src, locked / "tok")
    finally:
        locked.chmod(0o755)
    assert res.exit_code == 2
    assert res.stderr == f"error: -o {locked / 'tok'}: cannot write in {locked}: Permission denied\n"
    assert os.listdir(locked) == []


# --- item 15: inputs that are not a readable file ----------------------------------------------------------


def test_missing_input_directory_and_stdin(tmp_path, tok):
    out = tmp_path / "tok"
    res = tok(tmp_path / "nope.jsonl", out)
    assert (res.exit_code, res.stderr) == (2, f"error: {tmp_path / 'nope.jsonl'}: file not found\n")
    res = tok(tmp_path, out)
    assert res.exit_code == 2
    assert res.stderr == f"error: {tmp_path}: is a folder; give a .jsonl or .json file of records\n"
    res = tok("-", out)
    assert res.exit_code == 2
    assert res.stderr == (
        "error: -: tokenize reads a file, not standard input (the input's hash keys the cache); "
        "save the records to a .jsonl or .json file and pass its path\n"
    )
    assert not out.exists()


def test_damaged_metadata_is_a_clear_error(tmp_path, tok, run_cli):
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    assert tok(src, out).exit_code == 0
    meta = out / "instructgen_meta.json"
    meta.write_bytes(meta.read_bytes()[:50])
    res = tok(src, out)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: -o {out}: instructgen_meta.json is damaged; pass --overwrite to rebuild the folder "
        "(it holds nothing but instructgen's own output)\n"
    )
    res = run_cli("inspect", out)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {meta}: damaged (not valid JSON at line ")
    assert res.stderr.endswith("tokenize again with --overwrite to rebuild the folder\n")
    assert "Traceback" not in res.stderr
    # a damaged metadata file is ours by name, but only with nothing else beside it
    (out / "mine.txt").write_text("mine\n")
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 2 and res.stderr == _refused(out, "mine.txt")
    assert len(meta.read_bytes()) == 50
    (out / "mine.txt").unlink()
    res = tok(src, out, "--overwrite")
    assert res.exit_code == 0, res.stderr
    json.loads(meta.read_text())


def test_temporary_folder_is_hidden_beside_the_output(tmp_path):
    """The temporary name is hidden and tied to the output's name, our host and pid (cleanup is targeted)."""
    from instructgen.io.atomic import _host
    from instructgen.tokenize.pipeline import OutputFolder

    f = OutputFolder(tmp_path / "tok")
    f.check()
    tmp = f.stage()
    assert tmp.parent == tmp_path and tmp.name.startswith(f".tok.instructgen-tmp-{_host()}-{os.getpid()}-")
    shutil.rmtree(tmp)


def test_output_under_a_file_is_a_clear_error(tmp_path, tok):
    """Runs as root too (where permissions do not stop a write): a file where a folder must be."""
    src = _write(tmp_path / "d.jsonl")
    res = tok(src, tmp_path / "d.jsonl" / "tok")
    assert res.exit_code == 2
    assert res.stderr == f"error: -o {tmp_path / 'd.jsonl' / 'tok'}: {src} is a file, not a folder\n"
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl"]


# --- issue 11 items 1, 2, 20: a cache hit verifies what it reuses --------------------------------------------


def test_a_truncated_arrow_file_is_not_a_cache_hit(tmp_path, tok):

    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    assert tok(src, out).exit_code == 0
    expected = _ids(out)
    assert "cache: hit (" in tok(src, out).stderr
    arrow = out / "data-00000-of-00001.arrow"
    size = arrow.stat().st_size
    os.truncate(arrow, 1000)  # `truncate -s 1000 out/data-00000-of-00001.arrow`
    res = tok(src, out)
    assert res.exit_code == 0, res.stderr
    assert (
        "cache: miss (the cached output was damaged: data-00000-of-00001.arrow is 1000 bytes, "
        f"instructgen_meta.json says {size}; rebuilt)"
    ) in res.stderr
    assert _ids(out) == expected
    # same size, different bytes: the hash catches it
    data = bytearray(arrow.read_bytes())
    data[-100] ^= 0xFF
    arrow.write_bytes(bytes(data))
    res = tok(src, out)
    assert "data-00000-of-00001.arrow differs from its sha256 in instructgen_meta.json; rebuilt" in res.stderr
    assert _ids(out) == expected


def test_rejects_are_written_on_a_cache_hit(tmp_path, tok):
    rows = [*ROWS, {"instruction": "Long.", "input": "", "output": "word " * 300}]
    src = _write(tmp_path / "d.jsonl", rows)
    out, rej = tmp_path / "tok", tmp_path / "rej.jsonl"
    res = tok(src, out, "--max-length", "200", "--rejects", rej)
    assert res.exit_code == 0 and "rejected too_long: 1" in res.stderr
    first = rej.read_text(encoding="utf-8")
    assert [json.loads(x)["line"] for x in first.splitlines()] == [4]
    rej.unlink()
    res = tok(src, out, "--max-length", "200", "--rejects", rej)
    assert "cache: hit" in res.stderr
    assert rej.read_text(encoding="utf-8") == first
    # the same bytes under another name hit the cache too, and the rejects name that file
    copy = tmp_path / "same.jsonl"
    shutil.copy(src, copy)
    rej2 = tmp_path / "rej2.jsonl"
    res = tok(copy, out, "--max-length", "200", "--rejects", rej2)
    assert "cache: hit" in res.stderr
    assert json.loads(rej2.read_text(encoding="utf-8"))["source_file"] == str(copy)


def _wordpiece_dir(folder: Path) -> Path:
    """A BERT-style WordPiece tokenizer defined by vocab.txt alone (no tokenizer.json), as
    `bert-base-uncased` ships it: AutoTokenizer builds the fast tokenizer from vocab.txt."""
    words = "below is an instruction that describes a task write response appropriately completes the request"
    words += " paired with input provides further context say hi count translate to english hello world"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789#:,.!?-") | set("你好世界"))
    vocab = specials + sorted(set(words.split())) + chars + ["##" + c for c in chars if c.isalnum()]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "eos_token": "[SEP]",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def test_every_tokenizer_file_is_in_the_cache_key(tmp_path, run_cli):
    """Swapping two lines of vocab.txt changes the ids: it must be a cache miss (issue 11 item 2)."""
    pytest.importorskip("transformers")

    wp = _wordpiece_dir(tmp_path / "bert")
    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    args = ("tokenize", src, "--tokenizer", wp, "--format", "alpaca", "-o", out)
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    before = _ids(out)
    assert "cache: hit" in run_cli(*args).stderr
    lines = (wp / "vocab.txt").read_text(encoding="utf-8").splitlines()
    a, b = lines.index("hello"), lines.index("world")
    lines[a], lines[b] = lines[b], lines[a]
    (wp / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    assert "cache: miss" in res.stderr
    after = _ids(out)
    assert after != before
    swap = {a: b, b: a}
    assert after == [[swap.get(i, i) for i in row] for row in before]
    # a new chat template file counts too; model weights do not
    (wp / "chat_template.jinja").write_text("{{ messages }}")
    assert "cache: miss" in run_cli(*args).stderr
    (wp / "model.safetensors").write_bytes(b"\x00" * 64)
    assert "cache: hit" in run_cli(*args).stderr


# --- issue 10: what a trainer needs, in the metadata -----------------------------------------------------


def test_metadata_says_what_a_trainer_needs(tmp_path, qwen_dir, run_cli):
    """The test Qwen tokenizer is set up as Qwen2.5-Instruct's tokenizer_config.json: pad
    <|endoftext|> (151643), eos <|im_end|> (151645), no BOS; 151,643 ranks + 3 specials."""
    from instructgen.tokenize.tokenizers import tokenizer_fingerprint

    src = _write(tmp_path / "d.jsonl")
    out = tmp_path / "tok"
    res = run_cli("tokenize", src, "--tokenizer", qwen_dir, "--format", "chatml", "-o", out)
    assert res.exit_code == 0, res.stderr
    trainer = json.loads((out / "instructgen_meta.json").read_text())["trainer"]
    assert trainer == {
        "pad": {"id": 151643, "text": "<|endoftext|>"},
        "eos": {"id": 151645, "text": "<|im_end|>"},
        "bos": None,
        "end_of_turn": {"id": 151645, "text": "<|im_end|>"},
        "vocab_size": 151646,
        "tokenizer_sha256": tokenizer_fingerprint(qwen_dir),
        "format": "chatml",
        "max_length": 2048,
        "packed": False,
        "label_ignore_index": -100,
        "columns": ["input_ids", "attention_mask", "labels", "row", "truncated"],
    }


# --- issue 11 item 16: streaming in windows gives the same dataset ---------------------------------------


def test_small_windows_and_processes_give_the_same_dataset(tmp_path, tiny_dir, monkeypatch):
    """Windows of 4 records in chunks of 2, with 1 and 2 processes, equal one window of everything:
    rows, ids, labels, rejects (with their source lines) and packing."""
    import datasets

    from instructgen.tokenize import pipeline
    from instructgen.tokenize.encode import EncodeOptions

    long = {"instruction": "Long.", "input": "", "output": "word " * 300}
    rows = [ROWS[i % 3] | {"output": f"answer {i}"} if i % 5 else long for i in range(23)]
    src = _write(tmp_path / "d.jsonl", rows)
    opts = EncodeOptions(max_length=200)

    def run(name, num_proc, pack):
        out = tmp_path / name
        rej = tmp_path / f"{name}.rej.jsonl"
        report = pipeline.tokenize_file(
            src, tiny_dir, out, options=opts, num_proc=num_proc, pack=pack, rejects=str(rej)
        )
        ds = datasets.load_from_disk(str(out))
        return {c: ds[c][:] for c in ds.column_names}, rej.read_text(), report

    whole = run("whole", 1, False)
    packed = run("packed", 1, True)
    assert whole[2].rejected == {"too_long": 5} and whole[0]["row"] == [i for i in range(23) if i % 5]
    assert [json.loads(x)["line"] for x in whole[1].splitlines()] == [1, 6, 11, 16, 21]
    monkeypatch.setattr(pipeline, "CHUNK", 2)
    monkeypatch.setattr(pipeline, "window_size", lambda num_proc: 4)
    for procs in (1, 2):
        got = run(f"small{procs}", procs, False)
        assert got[:2] == whole[:2]
        assert (got[2].rows_in, got[2].rows_out, got[2].tokens) == (23, 18, whole[2].tokens)
        got = run(f"packed{procs}", procs, True)
        assert got[:2] == packed[:2] and got[2].packed_rows == packed[2].packed_rows


def test_missing_tokenizer_and_unwritable_rejects(tmp_path, tok, run_cli):
    src = _write(tmp_path / "d.jsonl", [*ROWS, {"instruction": "L", "input": "", "output": "w " * 400}])
    res = run_cli("tokenize", src, "--tokenizer", tmp_path / "no-tok", "-o", tmp_path / "tok")
    assert (res.exit_code, res.stderr) == (
        2,
        f"error: --tokenizer {tmp_path / 'no-tok'}: not found (a tokenizer folder or a .tiktoken file)\n",
    )
    res = tok(src, tmp_path / "tok", "--max-length", "200", "--rejects", src / "rej.jsonl")
    # one error line naming the rejects file (the atomic writer or tokenize words it), no traceback
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: ") and str(src / "rej.jsonl") in res.stderr


def test_shards_roll_over_and_load_back_in_order(tmp_path, tiny_dir, monkeypatch):
    """Shards are named and listed as datasets' save_to_disk names them (data-XXXXX-of-NNNNN)."""
    import datasets

    from instructgen.tokenize import pipeline

    rows = [ROWS[i % 3] | {"output": f"answer {i}"} for i in range(9)]
    src = _write(tmp_path / "d.jsonl", rows)
    whole = tmp_path / "whole"
    pipeline.tokenize_file(src, tiny_dir, whole)
    monkeypatch.setattr(pipeline, "CHUNK", 2)
    monkeypatch.setattr(pipeline, "SHARD_BYTES", 1)  # every table starts a new shard
    out = tmp_path / "sharded"
    pipeline.tokenize_file(src, tiny_dir, out)
    shards = sorted(p.name for p in out.glob("data-*.arrow"))
    assert shards == [f"data-{i:05d}-of-00005.arrow" for i in range(5)]
    state = json.loads((out / "state.json").read_text())
    assert [f["filename"] for f in state["_data_files"]] == shards
    a, b = datasets.load_from_disk(str(whole)), datasets.load_from_disk(str(out))
    assert a.features == b.features
    assert {c: a[c][:] for c in a.column_names} == {c: b[c][:] for c in b.column_names}
    assert b["row"][:] == list(range(9))


# --- loading without transformers (issue 11 item 16: `import transformers` imports torch) ------

LLAMA2_DIR = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "llama2"


def _tokenizer_dirs(request) -> list[Path]:
    dirs = [request.getfixturevalue(name) for name in ("qwen_dir", "tiny_dir", "sp_dir")]
    return dirs + ([LLAMA2_DIR] if LLAMA2_DIR.is_dir() else [])


def test_tokenizer_loads_from_its_files_with_autotokenizers_special_ids(request):
    """tokenizer.json + tokenizer_config.json give the ids AutoTokenizer resolves (bos, eos,
    pad, vocabulary length, chat template) without loading it; `.hf` still loads it on use."""
    from instructgen.tokenize.tokenizers import HFTokenizer

    for path in _tokenizer_dirs(request):
        tok = HFTokenizer(path)
        assert tok._hf is None and tok.file_backed, path  # nothing loaded through transformers
        light = (tok.bos_id, tok.eos_id, tok.pad_id, tok.chat_template, tok.vocab_len())
        hf = tok.hf
        assert light == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.chat_template, len(hf)), path
    if LLAMA2_DIR.is_dir():  # Meta's: bos 1, eos 2, no pad (tokenizer_config.json "pad_token": null)
        assert HFTokenizer(LLAMA2_DIR).bos_id == 1 and HFTokenizer(LLAMA2_DIR).pad_id is None


def test_tokenizer_falls_back_to_autotokenizer_when_a_class_default_applies(sp_dir, tmp_path):
    """A model class (LlamaTokenizer) has default special tokens: with bos_token left out of the
    config only AutoTokenizer knows it, so the folder loads through AutoTokenizer."""
    from instructgen.tokenize.tokenizers import HFTokenizer

    d = tmp_path / "sp"
    shutil.copytree(sp_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text("utf-8"))
    del cfg["bos_token"]
    cfg["tokenizer_class"] = "LlamaTokenizer"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), "utf-8")
    tok = HFTokenizer(d)
    assert tok._hf is not None
    assert tok.bos_id == tok.hf.bos_token_id == 0  # LlamaTokenizer's default "<s>"


def test_encoding_with_a_tokenizer_folder_does_not_import_transformers(qwen_dir):
    import subprocess
    import sys

    code = (
        "import sys; from instructgen.tokenize.tokenizers import load_tokenizer\n"
        f"t = load_tokenizer({str(qwen_dir)!r})\n"
        "print(t.encode_texts(['hello <|im_end|>'], specials=True), 'transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("]]")[1].split() == ["False", "False"]


@pytest.mark.parametrize("before", [None, "3"])
def test_engine_thread_limit_does_not_outlive_the_run(tmp_path, qwen_dir, monkeypatch, before):
    """RAYON_NUM_THREADS=1 holds for the run (one engine thread per --num-proc worker) and the
    caller's process gets its own value back: a library user's later tokenizers keep their cores."""
    from instructgen.tokenize.pipeline import tokenize_file

    if before is None:
        monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("RAYON_NUM_THREADS", before)
    src = _write(tmp_path / "d.jsonl")
    report = tokenize_file(src, qwen_dir, tmp_path / "tok", fmt="chatml")
    assert report.fast_path.startswith("fast path on:")  # an engine was picked: the limit applied
    assert os.environ.get("RAYON_NUM_THREADS") == before


def test_tokenize_with_the_engine_does_not_import_transformers(tmp_path, qwen_dir):
    """The whole encode path (engine choice and proof included) runs without transformers and
    torch: they cost ~200 MB of a run's peak (issue 11 item 16)."""
    import subprocess
    import sys

    src = _write(tmp_path / "d.jsonl")
    code = (
        "import sys; from instructgen.tokenize.pipeline import tokenize_file\n"
        f"r = tokenize_file({str(src)!r}, {str(qwen_dir)!r}, {str(tmp_path / 'tok')!r}, fmt='chatml')\n"
        "print(r.fast_path.split(':')[0], 'transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["fast", "path", "on", "False", "False"]
