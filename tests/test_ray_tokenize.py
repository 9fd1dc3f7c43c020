"""tokenize --engine ray (issue 15): shards of records tokenized on a local Ray (2 CPUs) give the
in-process dataset, resumably.

What is pinned, against the in-process `tokenize` of the same command as the reference: the Ray
folder loads with `datasets.load_from_disk` and its rows, in order, equal the in-process rows (every
column: input_ids, attention_mask, labels, row, truncated; with --pack input_ids, attention_mask,
labels, position_ids, seq_lens); the summary counts (rows, rejected by reason, tokens, trained share,
boundary audit, packing) and the stored rejections are the in-process ones; the metadata file
checks out (`verify_output`) and `inspect --audit` passes. The shard files are named as datasets
names its own Arrow shards (`arrow_dataset.py` save_to_disk: `data-{index:05d}-of-{num_shards:05d}.arrow`)
and `state.json` lists them in order. `--max-shards 1` stops after one shard; the re-run tokenizes only
the missing ones (markers, the untouched first file and the report say so). A changed option is
refused, naming it.

One Ray session serves every Ray test (conftest.py `ray_local`); the engine joins it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLES

pytestmark = pytest.mark.ray

EXAMPLE_PAIRS = EXAMPLES / "data" / "zh_en.tsv"


@pytest.fixture
def ray_local(ray_local):
    """conftest.py's session Ray; these tests also load the output with `datasets`."""
    pytest.importorskip("datasets")
    return ray_local


@pytest.fixture(scope="module")
def example_records(tmp_path_factory) -> Path:
    """The project's example pairs as 50 Alpaca records (translate, both directions)."""
    from click.testing import CliRunner

    from instructgen.cli.main import cli

    out = tmp_path_factory.mktemp("example") / "zh_en.jsonl"
    args = ["translate", str(EXAMPLE_PAIRS), "--src-lang", "zh", "--tgt-lang", "en", "--direction", "both"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


def summary(stderr: str) -> list[str]:
    """The report's count lines: without the cache/seconds line and the shard line (they differ)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("tokenize (", "  "))]
    return [ln for ln in lines if not ln.startswith(("  cache:", "  ray:", "  stopped after"))]


def rows(folder: Path) -> dict[str, list]:
    import datasets

    return datasets.load_from_disk(str(folder)).to_dict()


def local_and_ray(run_cli, tmp_path: Path, args: list, *extra: str):
    local = run_cli("tokenize", *args, "-o", tmp_path / "local")
    assert local.exit_code == 0, local.stderr
    on_ray = run_cli("tokenize", *args, "-o", tmp_path / "ray", "--engine", "ray", *extra)
    assert on_ray.exit_code == 0, on_ray.stderr
    return local, on_ray, tmp_path / "local", tmp_path / "ray"


def check_folder(run_cli, folder: Path, local: Path, n_files: int) -> None:
    """A finished dataset: its files named and listed in order, the metadata verified, the audit clean."""
    from instructgen.tokenize.pipeline import read_meta, verify_output

    names = [f"data-{i:05d}-of-{n_files:05d}.arrow" for i in range(n_files)]
    assert sorted(p.name for p in folder.glob("data-*.arrow")) == names
    state = json.loads((folder / "state.json").read_text())
    assert [f["filename"] for f in state["_data_files"]] == names
    assert (folder / "dataset_info.json").read_bytes() == (local / "dataset_info.json").read_bytes()
    meta, local_meta = read_meta(folder), read_meta(local)
    assert verify_output(folder, meta) == ""
    assert meta["cache_key"] == local_meta["cache_key"] and meta["trainer"] == local_meta["trainer"]
    audit = run_cli("inspect", folder, "-n", "0", "--audit")
    assert audit.exit_code == 0, audit.stdout
    assert re.search(r"audit: \d+ rows, 0 violations", audit.stdout)


def test_example_rows_counts_and_rejections_equal_in_process(
    ray_local, run_cli, qwen_dir, example_records, tmp_path
):
    # 50 records, shards of 15 -> 4 files; 10 records over 64 tokens are dropped; the audit of the
    # first 20 records spans shards 0 and 1: 16 kept (lines 1, 2, 5, 6 too long), audited in the driver as
    # the in-process run counts them (actors auditing their own first 20 would count more)
    args = [
        example_records,
        "--tokenizer",
        qwen_dir,
        "--format",
        "qwen",
        "--max-length",
        "64",
        "--audit-sample",
        "20",
    ]
    local, on_ray, lf, rf = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "15")
    assert rows(rf) == rows(lf)
    assert summary(on_ray.stderr) == summary(local.stderr)
    assert "rejected too_long: 10" in on_ray.stderr and "boundary audit: 0 of 16 audited" in on_ray.stderr
    assert (
        "ray: 4 shard(s) of up to 15 records" in on_ray.stderr
        and "4 tokenized now, 0 complete" in on_ray.stderr
    )
    assert (rf / "instructgen_rejects.jsonl").read_bytes() == (lf / "instructgen_rejects.jsonl").read_bytes()
    check_folder(run_cli, rf, lf, 4)
    manifest = json.loads((rf / "manifest.json").read_text())
    assert manifest["task"] == "tokenize" and manifest["items"] == 50 and manifest["shards"] == 4
    assert [m["rows_in"] for m in manifest["per_shard"]] == [15, 15, 15, 5]
    assert sum(m["rows_out"] for m in manifest["per_shard"]) == 40


@pytest.mark.shared
def test_alpaca_demo_rows_equal_in_process(ray_local, run_cli, qwen_dir, shared_data, tmp_path):
    src = shared_data / "alpaca_en_demo.json"  # a JSON array: shards are ranges of its records
    args = [src, "--tokenizer", qwen_dir, "--format", "qwen", "--max-length", "512"]
    local, on_ray, lf, rf = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "300")
    assert rows(rf) == rows(lf)
    assert summary(on_ray.stderr) == summary(local.stderr)
    assert "tokenize (qwen): 999 rows in, 982 out, 184724 tokens" in on_ray.stderr
    assert "rejected too_long: 17" in on_ray.stderr
    check_folder(run_cli, rf, lf, 4)


def test_resume_after_max_shards_tokenizes_only_the_missing_shards(
    ray_local, run_cli, qwen_dir, example_records, tmp_path
):
    args = [example_records, "--tokenizer", qwen_dir, "--format", "qwen", "--max-length", "64"]
    local = run_cli("tokenize", *args, "-o", tmp_path / "local")
    folder = tmp_path / "ray"
    ray_args = ["-o", folder, "--engine", "ray", "--shard-rows", "15"]
    first = run_cli("tokenize", *args, *ray_args, "--max-shards", "1")
    assert first.exit_code == 0, first.stderr
    assert "1 tokenized now, 0 complete from an earlier run" in first.stderr
    assert "stopped after --max-shards: 3 shard(s) left" in first.stderr
    work = folder / "_work"
    assert sorted(p.name for p in work.glob("*.done")) == ["data-00000-of-00004.done"]
    assert sorted(p.name for p in folder.glob("data-*")) == ["data-00000-of-00004.arrow"]
    assert not (folder / "instructgen_meta.json").exists()  # not a dataset until every shard is done
    kept = (folder / "data-00000-of-00004.arrow").stat()
    marker = (work / "data-00000-of-00004.done").read_bytes()

    second = run_cli("tokenize", *args, *ray_args)
    assert second.exit_code == 0, second.stderr
    assert "3 tokenized now, 1 complete from an earlier run" in second.stderr
    assert sorted(p.name for p in work.glob("*.done")) == [f"data-0000{i}-of-00004.done" for i in range(4)]
    again = (folder / "data-00000-of-00004.arrow").stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # not written again
    assert (work / "data-00000-of-00004.done").read_bytes() == marker
    assert rows(folder) == rows(tmp_path / "local")
    assert summary(second.stderr) == summary(local.stderr)
    check_folder(run_cli, folder, tmp_path / "local", 4)

    # a changed option is refused, naming it; the finished dataset is left as it was
    changed = run_cli("tokenize", *[a if a != "64" else "96" for a in args], *ray_args)
    assert changed.exit_code == 2
    assert "holds shards of another configuration (changed: options.max_length)" in changed.stderr
    assert rows(folder) == rows(tmp_path / "local")
    # a re-run of the same command: nothing tokenized, the same dataset
    same = run_cli("tokenize", *args, *ray_args)
    assert same.exit_code == 0 and "0 tokenized now, 4 complete from an earlier run" in same.stderr
    assert summary(same.stderr) == summary(local.stderr)


def test_pack_equals_in_process_pack(ray_local, run_cli, qwen_dir, example_records, tmp_path):
    args = [example_records, "--tokenizer", qwen_dir, "--format", "qwen", "--max-length", "256", "--pack"]
    local, on_ray, lf, rf = local_and_ray(run_cli, tmp_path, args, "--shard-rows", "15")
    packed = rows(rf)
    assert packed == rows(lf)
    assert set(packed) == {"input_ids", "attention_mask", "labels", "position_ids", "seq_lens"}
    assert sum(len(s) for s in packed["seq_lens"]) == 50  # every record in some bin
    assert summary(on_ray.stderr) == summary(local.stderr)
    assert re.search(r"packed into \d+ rows, efficiency", on_ray.stderr)
    n = len(list(rf.glob("data-*.arrow")))
    assert 1 <= n <= 4 and f"packed into {n} file(s), {n} written now" in on_ray.stderr
    check_folder(run_cli, rf, lf, n)


def test_without_ray_says_how_to_install(run_cli, qwen_dir, example_records, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = run_cli(
        "tokenize",
        example_records,
        "--tokenizer",
        qwen_dir,
        "--format",
        "qwen",
        "-o",
        tmp_path / "o",
        "--engine",
        "ray",
    )
    assert result.exit_code == 2
    assert "pip install 'instructgen[ray]'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_shard_records_are_the_readers_records(tmp_path):
    """Skipping earlier lines unparsed gives `islice(read_records)`: records, line numbers and errors
    (blank lines, CRLF and CR-only line ends, a JSON array)."""
    from itertools import islice

    from instructgen.errors import InputError
    from instructgen.io.records import read_records
    from instructgen.tokenize.sharded import shard_records

    rows = [json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) for i in range(12)]
    text = "\r\n".join(rows[:4]) + "\n\n  \n" + "\r".join(rows[4:8]) + "\r\n\n" + "\n".join(rows[8:]) + "\n"
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(text.encode())
    array = tmp_path / "r.json"
    array.write_text("[" + ",".join(rows) + "]")
    for path in (jsonl, array):
        whole = list(read_records(path))
        assert len(whole) == 12
        for start, stop in [(0, 5), (3, 9), (7, 12), (11, 12), (12, 12)]:
            assert list(shard_records(path, start, stop)) == whole[start:stop]
    assert [line for line, _ in shard_records(jsonl, 3, 9)] == [4, 7, 8, 9, 10, 12]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*rows[:5], '{"instruction": "x", "output": ', *rows[5:]]) + "\n")
    with pytest.raises(InputError) as ours:
        list(shard_records(bad, 4, 8))
    with pytest.raises(InputError) as theirs:
        list(islice(read_records(bad), 4, 8))
    assert str(ours.value) == str(theirs.value) and "bad.jsonl:6: invalid JSON" in str(ours.value)


def test_a_malformed_record_stops_the_run_with_the_in_process_error(
    ray_local, run_cli, qwen_dir, example_records, tmp_path
):
    # the driver counts lines without parsing them: the actors of shards 2 and 3 (of 15 records) meet
    # the bad lines, and the run stops with the first one in input order, as the in-process run does
    lines = example_records.read_text(encoding="utf-8").splitlines()
    lines[34] = '{"instruction": "no output field"}'
    lines[46] = '{"instruction": "cut short",'
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [src, "--tokenizer", qwen_dir, "--format", "qwen", "--max-length", "64"]
    local = run_cli("tokenize", *args, "-o", tmp_path / "local")
    on_ray = run_cli("tokenize", *args, "-o", tmp_path / "ray", "--engine", "ray", "--shard-rows", "15")
    assert local.exit_code == on_ray.exit_code == 2
    error = [ln for ln in local.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "bad.jsonl:35" in error[0]
    assert [ln for ln in on_ray.stderr.splitlines() if ln.startswith("error:")] == error
    assert not (tmp_path / "ray" / "instructgen_meta.json").exists()


# --- --overwrite replaces our own output only (the in-process rule: pipeline.OutputFolder) ---------


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_on_ray_refuses_a_folder_of_other_files(run_cli, qwen_dir, example_records, tmp_path):
    """Refused before Ray starts, with the in-process message; nothing deleted, moved or renamed."""
    out = tmp_path / "results"
    (out / "sub").mkdir(parents=True)
    (out / ".keep").write_bytes(b"")
    (out / "thesis.pdf").write_bytes(b"%PDF thesis \x00" * 100)
    (out / "sub" / "notes.txt").write_text("keep me\n")
    before = _tree(out)
    args = [example_records, "--tokenizer", qwen_dir, "--format", "qwen", "-o", out, "--engine", "ray"]
    res = run_cli("tokenize", *args, "--overwrite")
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: -o {out}: the folder holds files instructgen did not write (.keep, sub, thesis.pdf); "
        "--overwrite replaces only instructgen's own output and never deletes them: "
        "name a new folder, or move those files out of it\n"
    )
    assert _tree(out) == before and sorted(p.name for p in out.iterdir()) == [".keep", "sub", "thesis.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_overwrite_on_ray_replaces_its_own_output_and_nothing_else(
    ray_local, run_cli, qwen_dir, example_records, tmp_path
):
    args = [example_records, "--tokenizer", qwen_dir, "--format", "qwen", "--max-length", "256", "--pack"]
    folder = tmp_path / "ray"
    ray_args = ["-o", folder, "--engine", "ray", "--shard-rows", "15"]
    first = run_cli("tokenize", *args, *ray_args, "--max-shards", "1")
    assert first.exit_code == 0, first.stderr
    work = folder / "_work"
    spooled = sorted(p.name for p in work.iterdir())
    assert "tokens-00000-of-00004.ids.bin" in spooled
    # a file of the user's among the run's own, even under _work/: refused, --overwrite or not
    (work / "notes.txt").write_text("mine\n")
    before = _tree(folder)
    for extra in ((), ("--overwrite",)):
        res = run_cli("tokenize", *args, *ray_args, *extra)
        assert res.exit_code == 2
        assert res.stderr.startswith(
            f"error: -o {folder}: the folder holds files instructgen did not write (_work/notes.txt); "
        )
        assert _tree(folder) == before
    (work / "notes.txt").unlink()
    # our own part-way output: --overwrite starts over (all 4 shards tokenized now)
    again = run_cli("tokenize", *args, *ray_args, "--overwrite")
    assert again.exit_code == 0, again.stderr
    assert "4 tokenized now, 0 complete from an earlier run" in again.stderr
    local = run_cli("tokenize", *args, "-o", tmp_path / "local")
    assert local.exit_code == 0, local.stderr
    assert rows(folder) == rows(tmp_path / "local")
    # the finished Ray folder (its _work/ with markers, spools and the plan) is ours to the
    # in-process run too: --overwrite replaces it whole with the in-process layout
    res = run_cli("tokenize", *args, "-o", folder, "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())
    assert rows(folder) == rows(tmp_path / "local")
