"""The record tasks' `--engine ray` output folder never costs a user a file (`shards.ShardFolder`).

The rule `tokenize -o` follows (`tokenize.pipeline.OutputFolder`, tests/test_tokenize_output.py),
applied to the folder `convert`, `translate`, `ner` and `classify` write with `--engine ray`: it may
hold only what a sharded run writes (the manifest, `part-NNNNN-of-NNNNN.jsonl`, `_work/` of per-shard
files with our exact names, an atomic writer's temporary of one of those). Anything else refuses the
run, `--overwrite` or not, before any work, naming up to 5 entries; `--overwrite` removes our names
and nothing else. Before this, `ShardFolder.clear()` unlinked every `part-*-of-*` at the top and every
`*-*-of-*` under `_work/`: a user's `part-1-of-2.txt` and `_work/draft-v2-of-thesis.md` went.

The own files here are made by the class's own writers (`output`, `write_outcome_rows`, `mark_done`,
`write_keys`), so their names are the names a real run gives them; the CLI tests run no Ray (the
refusal comes first) but for one end-to-end run on a local Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructgen.errors import ConfigError
from instructgen.io.atomic import _host
from instructgen.pipeline.shards import (
    ShardFolder,
    configuration,
    plan_shards,
    write_keys,
    write_outcome_rows,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "zh_en.tsv"


def refusal(folder: Path, listed: str) -> str:
    """The words of the refusal (as tokenize's `OutputFolder.refuse_foreign` puts them)."""
    return (
        f"-o {folder}: the folder holds files instructgen did not write ({listed}); --overwrite replaces "
        "only instructgen's own output and never deletes them: name a new folder, or move those files out of it"
    )


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder`: a file's bytes, a link's target, a folder as 'dir'."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = p.read_bytes()
    return out


def config(seed: int = 0) -> dict:
    """A record task's configuration (25 items in shards of 10: three shards)."""
    return configuration(
        "convert", {"dedup": True, "seed": seed}, [], [], {"format": "alpaca"}, 10, [25], pools=False
    )


def own_part_way(root: Path, done: int = 2) -> tuple[ShardFolder, list]:
    """A run's folder after `done` of its 3 shards: shards, markers, outcomes and keys, as written
    by a run (the class's own writers give every name)."""
    folder = ShardFolder(root)
    folder.prepare(config(), overwrite=False)
    shards = plan_shards([25], 10)
    row = {"kind": ["record"], "payload": ['{"instruction": "x"}'], "dedup_key": [""]}
    for s in shards[:done]:
        folder.output(s).write_text('{"instruction": "x", "input": "", "output": "y"}\n')
        write_outcome_rows(folder.outcomes(s), [row])
        write_keys(folder.keys(s), [(0, "ab" * 8, s.start + 1)])
        folder.mark_done(s, config()["config_digest"], {"items": s.items, "outcomes": 1})
    return folder, shards


def test_the_reported_files_survive_and_the_run_is_refused(tmp_path):
    """The report's case: no manifest, a user's `part-1-of-2.txt` and `_work/draft-v2-of-thesis.md`."""
    root = tmp_path / "owdemo"
    (root / "_work").mkdir(parents=True)
    (root / "part-1-of-2.txt").write_text("chapter one\n")
    (root / "_work" / "draft-v2-of-thesis.md").write_text("# thesis\n")
    before = tree(root)
    folder = ShardFolder(root)
    folder.clear()
    assert tree(root) == before
    for overwrite in (False, True):
        with pytest.raises(ConfigError) as err:
            folder.prepare(config(), overwrite=overwrite)
        assert str(err.value) == refusal(root, "_work/draft-v2-of-thesis.md, part-1-of-2.txt")
        assert tree(root) == before


def test_own_part_way_output_resumes_and_overwrite_clears_it(tmp_path):
    folder, shards = own_part_way(tmp_path / "o")
    digest = config()["config_digest"]
    names = sorted(p.name for p in folder.root.iterdir())
    assert names == ["_work", "manifest.json", "part-00000-of-00003.jsonl", "part-00001-of-00003.jsonl"]
    assert sorted(p.name for p in folder.work.iterdir()) == [
        f"part-0000{i}-of-00003{x}" for i in (0, 1) for x in (".done", ".keys", ".outcomes.jsonl.gz")
    ]
    assert folder.foreign() == []
    # resume: the same configuration finds shards 0 and 1 complete, and keeps their files
    before = tree(folder.root)
    folder.prepare(config(), overwrite=False)
    assert [folder.complete(s, digest) is not None for s in shards] == [True, True, False]
    assert {k: v for k, v in tree(folder.root).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    # another configuration is refused (our own output: the message of a mismatch, not of foreign files)
    with pytest.raises(ConfigError, match=r"holds shards of another configuration \(changed: options.seed\)"):
        folder.prepare(config(seed=7), overwrite=False)
    # --overwrite: our files go, the folder starts over under the new configuration
    folder.prepare(config(seed=7), overwrite=True)
    assert sorted(tree(folder.root)) == ["_work", "manifest.json"]
    assert json.loads((folder.root / "manifest.json").read_text())["options"]["seed"] == 7
    assert [folder.complete(s, config(seed=7)["config_digest"]) for s in shards] == [None] * 3


def test_a_users_file_among_our_own_is_refused_and_never_deleted(tmp_path):
    """Anything not named as we name it, a sub-folder, a link (even named as our shard), a hidden
    file: refused with or without --overwrite, up to 5 named; `clear` leaves them all."""
    folder, _ = own_part_way(tmp_path / "o")
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my own data\n")
    root = folder.root
    (root / "part-00002-of-00003.jsonl").symlink_to(mine)  # a link where our third shard will go
    (root / "part-00000-of-00003.jsonl.bak").write_text("backup\n")
    (root / "part-1-of-2.txt").write_text("chapter one\n")
    (root / ".keep").write_text("")
    (root / "sub").mkdir()
    (root / "sub" / "part-00000-of-00003.jsonl").write_text("a copy\n")
    (root / "_work" / "draft-v2-of-thesis.md").write_text("# thesis\n")
    (root / "_work" / "part-00000-of-00003.done.orig").write_text("{}\n")
    before = tree(root)
    listed = (
        ".keep, _work/draft-v2-of-thesis.md, _work/part-00000-of-00003.done.orig, "
        "part-00000-of-00003.jsonl.bak, part-00002-of-00003.jsonl and 2 more"
    )
    for overwrite in (False, True):
        with pytest.raises(ConfigError) as err:
            folder.prepare(config(), overwrite=overwrite)
        assert str(err.value) == refusal(root, listed)
        assert tree(root) == before
    assert folder.foreign()[-2:] == ["part-1-of-2.txt", "sub"]
    # clear() on its own (what --overwrite ran before the check existed) removes our names only
    folder.clear()
    left = tree(root)
    assert sorted(left) == [
        ".keep",
        "_work",
        "_work/draft-v2-of-thesis.md",
        "_work/part-00000-of-00003.done.orig",
        "part-00000-of-00003.jsonl.bak",
        "part-00002-of-00003.jsonl",
        "part-1-of-2.txt",
        "sub",
        "sub/part-00000-of-00003.jsonl",
    ]
    assert {k: left[k] for k in left} == {k: before[k] for k in left}
    assert mine.read_text() == "my own data\n"


def test_a_manifest_that_is_not_ours_makes_the_folder_foreign(tmp_path):
    """`manifest.json` is a common name: only a sharded run's manifest (shard format and
    configuration digest) makes the folder ours; a user's, or an unreadable one, does not."""
    root = tmp_path / "o"
    root.mkdir()
    (root / "part-00000-of-00001.jsonl").write_text('{"instruction": "x"}\n')
    for text in ('{"name": "my dataset", "files": 1}\n', "{not json\n"):
        (root / "manifest.json").write_text(text)
        with pytest.raises(ConfigError) as err:
            ShardFolder(root).prepare(config(), overwrite=True)
        assert str(err.value) == refusal(root, "manifest.json, part-00000-of-00001.jsonl")
        assert (root / "manifest.json").read_text() == text
        assert (root / "part-00000-of-00001.jsonl").exists()


def test_temporaries_of_our_names_are_ours_and_go_only_when_their_writer_is_gone(tmp_path):
    folder, _ = own_part_way(tmp_path / "o")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead, live = int(gone.stdout), os.getpid()
    stale = folder.root / f".part-00002-of-00003.jsonl.ig-{_host()}-{dead}-0a1b2c3d.tmp"
    running = folder.work / f".part-00002-of-00003.done.ig-{_host()}-{live}-0a1b2c3d.tmp"
    other = folder.root / f".thesis.md.ig-{_host()}-{dead}-0a1b2c3d.tmp"  # a temp, but not of our name
    for p in (stale, running, other):
        p.write_text("half\n")
    assert folder.foreign() == [other.name]
    other.unlink()
    folder.prepare(config(), overwrite=True)
    assert not stale.exists() and running.read_text() == "half\n"


def test_tokenize_layout_clears_its_spools_and_nothing_else(tmp_path):
    """Tokenize's folder (`outcomes=False`: not the folder's only layout, checked by tokenize
    itself) clears its Arrow shards and any layout's shard files under `_work/` (markers, the
    `tokens-…` spool), as before, but no other name."""
    root = tmp_path / "tok"
    (root / "_work").mkdir(parents=True)
    ours = ["data-00000-of-00004.arrow", "manifest.json"]
    ours_work = ["data-00000-of-00004.done", "tokens-00000-of-00004.ids.bin", "tokens-00000-of-00004.done"]
    kept = ["dataset_info.json", "notes-1-of-2.txt", "data-1-of-2.arrow"]
    kept_work = ["pack.plan.npz", "draft-v2-of-thesis.md"]
    for name in ours + kept:
        (root / name).write_text("x")
    for name in ours_work + kept_work:
        (root / "_work" / name).write_text("x")
    ShardFolder(root, prefix="data", suffix=".arrow", outcomes=False).clear()
    assert sorted(p.name for p in root.iterdir()) == sorted(["_work", *kept])
    assert sorted(p.name for p in (root / "_work").iterdir()) == sorted(kept_work)


# --- the commands: the refusal comes before any work (input read, Ray imported or started) -------


def _user_folder(root: Path) -> dict:
    (root / "_work").mkdir(parents=True)
    (root / "part-1-of-2.txt").write_text("chapter one\n")
    (root / "_work" / "draft-v2-of-thesis.md").write_text("# thesis\n")
    return tree(root)


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "{missing}"],
        ["translate", "{missing}", "--src-lang", "zh", "--tgt-lang", "en"],
        ["ner", "{missing}"],
        ["classify", "{missing}"],
    ],
)
def test_record_commands_refuse_a_users_folder_before_any_work(command, run_cli, tmp_path, monkeypatch):
    """An input that does not exist and no Ray: the folder's refusal is the answer, so neither the
    input was read nor Ray imported; with and without --overwrite, nothing moved."""
    monkeypatch.setitem(sys.modules, "ray", None)
    root = tmp_path / "out"
    before = _user_folder(root)
    args = [a.format(missing=tmp_path / "no-such-input.jsonl") for a in command]
    for extra in ((), ("--overwrite",)):
        res = run_cli(*args, "--engine", "ray", "-o", root, *extra)
        assert res.exit_code == 2
        assert res.stderr == "error: " + refusal(root, "_work/draft-v2-of-thesis.md, part-1-of-2.txt") + "\n"
        assert tree(root) == before


def test_rejects_inside_the_folder_is_refused(run_cli, tmp_path, monkeypatch):
    """The folder holds the run's own files alone: a --rejects file inside it would be a file the
    next run must refuse, so it is refused up front (nothing written)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    root = tmp_path / "out"
    args = ["convert", tmp_path / "no-such-input.jsonl", "--engine", "ray", "-o", root]
    res = run_cli(*args, "--rejects", root / "rejects.jsonl")
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: --rejects {root / 'rejects.jsonl'}: inside the -o folder {root}, which holds only the "
        "run's shards (--engine ray); name a file outside it\n"
    )
    assert not root.exists()


@pytest.mark.ray
def test_translate_on_ray_refuses_a_users_file_then_overwrites_its_own(ray_local, run_cli, tmp_path):
    """End to end on a local Ray, with the files a real run leaves: part-way own output with a
    user's file put in it is refused (--overwrite or not, nothing moved); once the file is gone,
    --overwrite finds nothing foreign in what Ray wrote and starts over (3 converted, 0 complete),
    ending with the in-process bytes. (Resume of own output: the unit tests above, and
    tests/test_ray_engine.py's resume test.)"""
    common = [EXAMPLE, "--src-lang", "zh", "--tgt-lang", "en"]
    root = tmp_path / "o"
    args = [*common, "--engine", "ray", "--shard-rows", "10", "-o", root]
    first = run_cli("translate", *args, "--max-shards", "1")
    assert first.exit_code == 0 and "1 converted now, 0 complete" in first.stderr
    (root / "part-1-of-2.txt").write_text("chapter one\n")
    (root / "_work" / "draft-v2-of-thesis.md").write_text("# thesis\n")
    before = tree(root)
    for extra in ((), ("--overwrite",)):
        res = run_cli("translate", *args, *extra)
        assert res.exit_code == 2
        assert res.stderr == "error: " + refusal(root, "_work/draft-v2-of-thesis.md, part-1-of-2.txt") + "\n"
        assert tree(root) == before
    (root / "part-1-of-2.txt").unlink()
    (root / "_work" / "draft-v2-of-thesis.md").unlink()
    again = run_cli("translate", *args, "--overwrite")
    assert again.exit_code == 0 and "3 converted now, 0 complete from an earlier run" in again.stderr
    assert run_cli("translate", *common, "-o", tmp_path / "local.jsonl").exit_code == 0
    shards = sorted(root.glob("part-*.jsonl"))
    assert [p.name for p in shards] == [f"part-0000{i}-of-00003.jsonl" for i in range(3)]
    assert b"".join(p.read_bytes() for p in shards) == (tmp_path / "local.jsonl").read_bytes()


def test_run_sharded_refuses_a_users_folder_before_reading_the_input(tmp_path):
    """The library entry (what the CLI calls after its own check) refuses too, before the opener
    is called: with several input files the counting pass would otherwise read them, or start Ray."""
    pytest.importorskip("ray")
    from instructgen.pipeline.ray_engine import run_sharded

    root = tmp_path / "out"
    before = _user_folder(root)
    read: list[int] = []

    def opener():
        read.append(1)
        return iter(())

    with pytest.raises(ConfigError) as err:
        run_sharded("convert", None, opener, root, overwrite=True)
    assert str(err.value) == refusal(root, "_work/draft-v2-of-thesis.md, part-1-of-2.txt")
    assert read == [] and tree(root) == before
