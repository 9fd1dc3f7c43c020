"""split / mix / export / stats never write over their inputs, respect the umask, leave no temp
files, stop with `error:` lines, and read tokenized folders batch by batch (the dataops review:
issue 14's commands held to issue 11 items 15, 16 and 21)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from instructgen.dataops.outputs import guard_outputs
from instructgen.errors import ConfigError


def _rows(n: int, tag: str = "a") -> list[dict]:
    return [
        {"instruction": f"{tag} task {i}", "input": "", "output": f"{tag} answer {i}", "meta": {"key": f"{tag}{i}"}}
        for i in range(n)
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error_line(res) -> str:
    """The run stopped with exit 2 and exactly one `error:` line (no traceback)."""
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# --- 1. outputs never replace inputs -------------------------------------------------------------


def test_split_into_the_inputs_folder_refuses_to_replace_it(tmp_path, run_cli, monkeypatch):
    """The reviewer's reproducer: `split train.jsonl -o .` replaced the 40-row input."""
    monkeypatch.chdir(tmp_path)
    data = _jsonl(tmp_path / "train.jsonl", _rows(40))
    before = _sha(data)
    line = _error_line(run_cli("split", "train.jsonl", "-o", "."))
    assert line == "error: output train.jsonl is the input train.jsonl; write to another path (-o)"
    assert _sha(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # nothing half-written


def test_split_elsewhere_in_the_same_folder_still_works(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _jsonl(tmp_path / "all.jsonl", _rows(40))
    res = run_cli("split", "all.jsonl", "-o", ".", "--ratios", "50,50")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "train.jsonl", "validation.jsonl"]


def test_split_save_to_disk_over_an_input_dataset_folder_is_refused(tmp_path, run_cli):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds" / "train"
    datasets.Dataset.from_list(_rows(20)).save_to_disk(str(folder))
    before = _sha(folder / "data-00000-of-00001.arrow")
    line = _error_line(run_cli("split", folder, "-o", tmp_path / "ds", "--save-to-disk"))
    assert line.startswith(f"error: output folder {tmp_path / 'ds'} holds the input {folder}")
    assert _sha(folder / "data-00000-of-00001.arrow") == before


def test_export_into_the_inputs_folder_refuses_to_rewrite_it(tmp_path, run_cli, monkeypatch):
    """`export data.jsonl --to trl -o .` rewrote the input as TRL messages."""
    monkeypatch.chdir(tmp_path)
    data = _jsonl(tmp_path / "data.jsonl", _rows(10))
    before = _sha(data)
    line = _error_line(run_cli("export", "data.jsonl", "--to", "trl", "-o", "."))
    assert line == f"error: output {Path('.') / 'data.jsonl'} is the input data.jsonl; write to another path (-o)"
    assert _sha(data) == before


def test_export_through_a_symlink_is_the_same_file(tmp_path, run_cli):
    data = _jsonl(tmp_path / "data.jsonl", _rows(10))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.jsonl").symlink_to(data)
    before = _sha(data)
    line = _error_line(run_cli("export", data, "--to", "llamafactory", "-o", tmp_path / "out"))
    assert line.startswith(f"error: output {tmp_path / 'out' / 'data.jsonl'} is the input {data}")
    assert _sha(data) == before
    assert not (tmp_path / "out" / "dataset_info.json").exists()


def test_mix_onto_a_source_is_refused_and_writes_no_manifest(tmp_path, run_cli):
    """`mix a.jsonl:10 b.jsonl:10 -o a.jsonl` replaced a and recorded a's old hash."""
    a = _jsonl(tmp_path / "a.jsonl", _rows(20, "a"))
    b = _jsonl(tmp_path / "b.jsonl", _rows(20, "b"))
    before = _sha(a)
    line = _error_line(run_cli("mix", f"{a}:10", f"{b}:10", "-o", a))
    assert line == f"error: output {a} is the input {a}; write to another path (-o)"
    assert _sha(a) == before
    assert not (tmp_path / "mix_manifest.json").exists()


def test_mix_manifest_onto_a_source_or_the_output_is_refused(tmp_path, run_cli):
    a = _jsonl(tmp_path / "a.jsonl", _rows(20, "a"))
    b = _jsonl(tmp_path / "b.jsonl", _rows(20, "b"))
    before = _sha(b)
    out = tmp_path / "m.jsonl"
    line = _error_line(run_cli("mix", f"{a}:10", f"{b}:10", "-o", out, "--manifest", b))
    assert line == f"error: output {b} is the input {b}; write to another path (-o)"
    assert _sha(b) == before and not out.exists()
    line = _error_line(run_cli("mix", f"{a}:10", f"{b}:10", "-o", out, "--manifest", out))
    assert line == f"error: two outputs are one file: {out} and {out}; give them different paths"
    assert not out.exists()


def test_stats_json_onto_its_input_is_refused(tmp_path, run_cli):
    data = _jsonl(tmp_path / "data.jsonl", _rows(5))
    before = _sha(data)
    line = _error_line(run_cli("stats", data, "--no-langid", "--json", data))
    assert line == f"error: output {data} is the input {data}; write to another path (-o)"
    assert _sha(data) == before


def test_guard_outputs_hard_link_and_inside_an_input_folder(tmp_path):
    data = _jsonl(tmp_path / "data.jsonl", _rows(1))
    os.link(data, tmp_path / "other.jsonl")
    with pytest.raises(ConfigError, match="is the input"):
        guard_outputs([data], [tmp_path / "other.jsonl"])
    (tmp_path / "ds").mkdir()
    with pytest.raises(ConfigError, match="inside the input folder"):
        guard_outputs([tmp_path / "ds"], [tmp_path / "ds" / "state.json"])
    with pytest.raises(ConfigError, match="inside the input folder"):
        guard_outputs([tmp_path / "ds"], folders=[tmp_path / "ds" / "sub"])
    guard_outputs([data], [tmp_path / "new.jsonl"], [tmp_path / "dd"])  # unrelated paths pass


# --- 2. file modes follow the umask; no temp file is left behind -------------------------------


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, run_cli, mask):
    """JSON arrays (mkstemp made them 0600), parquet and dataset_info.json get 0666 less the umask,
    as `open()` would create them (issue 11 item 21)."""
    pytest.importorskip("datasets")
    src = tmp_path / "src.json"
    src.write_text(json.dumps(_rows(40)), encoding="utf-8")
    pq = tmp_path / "src.parquet"
    a = _jsonl(tmp_path / "a.jsonl", _rows(20, "a"))
    old = os.umask(mask)
    try:
        assert run_cli("split", src, "-o", tmp_path / "sj").exit_code == 0
        assert run_cli("export", src, "--to", "parquet", "-o", tmp_path).exit_code == 0
        assert run_cli("split", pq, "-o", tmp_path / "sp").exit_code == 0
        res = run_cli("export", src, "--to", "llamafactory", "--file-format", "json", "-o", tmp_path / "lf")
        assert res.exit_code == 0, res.stderr
        res = run_cli("mix", f"{a}:10", src, "--total", "30", "-o", tmp_path / "mx" / "m.parquet")
        assert res.exit_code == 0, res.stderr
        res = run_cli("stats", src, "--no-langid", "--json", tmp_path / "st" / "s.json")
        assert res.exit_code == 0, res.stderr
    finally:
        os.umask(old)
    written = [
        pq,
        *(tmp_path / "sj" / f"{n}.json" for n in ("train", "validation", "test")),
        *(tmp_path / "sp" / f"{n}.parquet" for n in ("train", "validation", "test")),
        tmp_path / "lf" / "src.json",
        tmp_path / "lf" / "dataset_info.json",
        tmp_path / "mx" / "m.parquet",
        tmp_path / "mx" / "mix_manifest.json",
        tmp_path / "st" / "s.json",
    ]
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in written} == {
        str(p): oct(0o666 & ~mask) for p in written
    }
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_plots_follow_the_umask(tmp_path, run_cli, mask):
    pytest.importorskip("matplotlib")
    src = _jsonl(tmp_path / "src.jsonl", _rows(10))
    old = os.umask(mask)
    try:
        res = run_cli("stats", src, "--no-langid", "--plots", tmp_path / "p")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.stderr
    pngs = sorted((tmp_path / "p").iterdir())
    assert [p.name for p in pngs] == ["lengths.png"]
    assert [oct(p.stat().st_mode & 0o777) for p in pngs] == [oct(0o666 & ~mask)]


def test_a_failed_parquet_write_leaves_no_temp_file(tmp_path):
    """Arrow cannot write a struct without fields to parquet: the run stops with the path named and
    neither the target nor a temp file stays (the fixed `.{name}.tmp` was left, 0 bytes)."""
    pytest.importorskip("datasets")
    from instructgen.dataops.rows import write_rows

    target = tmp_path / "out.parquet"
    with pytest.raises(ConfigError, match=f"cannot write {target}: Cannot write struct type 'a' with no child"):
        write_rows([{"a": {}}], target, "parquet")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_json_array_leaves_no_temp_file(tmp_path):
    from instructgen.dataops.rows import write_rows

    (tmp_path / "out.json").mkdir()  # the target is a folder: the rename fails
    with pytest.raises(ConfigError, match=f"cannot write {tmp_path / 'out.json'}"):
        write_rows(_rows(2), tmp_path / "out.json", "json")
    assert _hidden(tmp_path) == []


# --- 3. error lines, not tracebacks ---------------------------------------------------------------


def test_stats_json_under_a_file_is_an_error_line(tmp_path, run_cli):
    data = _jsonl(tmp_path / "data.jsonl", _rows(3))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    line = _error_line(run_cli("stats", data, "--no-langid", "--json", tmp_path / "afile" / "x.json"))
    assert line.startswith(f"error: cannot write {tmp_path / 'afile' / 'x.json'}: ")


def test_export_to_an_existing_file_is_an_error_line(tmp_path, run_cli):
    data = _jsonl(tmp_path / "data.jsonl", _rows(3))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    for to in ("trl", "llamafactory", "parquet"):
        line = _error_line(run_cli("export", data, "--to", to, "-o", tmp_path / "afile"))
        assert line.startswith(f"error: cannot write {tmp_path / 'afile' / 'data.'}"), line
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "x"


def test_stats_plots_onto_a_file_is_an_error_line(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    data = _jsonl(tmp_path / "data.jsonl", _rows(3))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    line = _error_line(run_cli("stats", data, "--no-langid", "--plots", tmp_path / "afile"))
    assert line == f"error: --plots {tmp_path / 'afile'}: cannot make the folder (File exists)"


def test_mix_unwritable_manifest_stops_before_the_output(tmp_path, run_cli):
    a = _jsonl(tmp_path / "a.jsonl", _rows(5, "a"))
    b = _jsonl(tmp_path / "b.jsonl", _rows(5, "b"))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    out = tmp_path / "m.jsonl"
    line = _error_line(run_cli("mix", a, b, "-o", out, "--manifest", tmp_path / "afile" / "m.json"))
    assert line.startswith(f"error: cannot write {tmp_path / 'afile' / 'm.json'}: ")
    assert not out.exists() and _hidden(tmp_path) == []


# --- tokenized folders: damaged metadata, streamed counting --------------------------------------


def _tokenized_folder(
    path: Path, rows: list[tuple[list[int], list[int]]], packed: list[list[int]] | None = None, max_length: int = 8
):
    """A folder laid out as `tokenize` writes it (Arrow rows + instructgen_meta.json with a cache key)."""
    datasets = pytest.importorskip("datasets")
    cols: dict[str, list] = {
        "input_ids": [ids for ids, _ in rows],
        "attention_mask": [[1] * len(ids) for ids, _ in rows],
        "labels": [labels for _, labels in rows],
        "truncated": [len(ids) >= max_length for ids, _ in rows],
    }
    if packed is not None:
        cols["seq_lens"] = packed
    datasets.Dataset.from_dict(cols).save_to_disk(str(path))
    meta = {"cache_key": "test", "format": {"name": "chatml"}, "options": {"max_length": max_length}, "report": {}}
    (path / "instructgen_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def test_stats_on_a_truncated_meta_file_is_an_error_line(tmp_path, run_cli):
    folder = _tokenized_folder(tmp_path / "tok", [([1, 2, 3], [-100, 2, 3])])
    meta = folder / "instructgen_meta.json"
    meta.write_bytes(meta.read_bytes()[:20])
    line = _error_line(run_cli("stats", folder))
    assert line.startswith(f"error: {meta}: damaged (not valid JSON at line 1, column ")
    assert line.endswith("tokenize again with --overwrite to rebuild the folder")


def test_stats_on_a_tokenized_folder_without_rows_is_an_error_line(tmp_path, run_cli):
    folder = _tokenized_folder(tmp_path / "tok", [([1, 2, 3], [-100, 2, 3])])
    (folder / "state.json").unlink()
    line = _error_line(run_cli("stats", folder))
    assert line.startswith(f"error: {folder}: cannot load the tokenized rows (FileNotFoundError: ")


def test_tokenized_counts_exact_across_batches(tmp_path, monkeypatch):
    """Per-row trained counts from flattened Arrow values, with rows split over several batches
    (batch size 2, five rows; token slices of 3) and a row with no trained token."""
    from instructgen.dataops import stats

    monkeypatch.setattr(stats, "TOKENIZED_BATCH", 2)
    monkeypatch.setattr(stats, "TOKEN_BUDGET", 3)  # slices of at most 3 labels; the 8-token row alone
    rows = [
        ([1, 2, 3], [-100, 2, 3]),
        ([4, 5, 6, 7, 8, 9, 10, 11], [-100] * 8),
        ([12], [12]),
        ([13, 14], [-100, 14]),
        ([15, 16, 17, 18], [15, -100, 17, -100]),
    ]
    st = stats.tokenized_stats(_tokenized_folder(tmp_path / "tok", rows))
    assert st.lengths["tokens per row"] == [3, 8, 1, 2, 4]
    assert st.lengths["trained per row"] == [2, 0, 1, 1, 2]
    t = st.tokenized
    assert (t["tokens"], t["trained_tokens"], t["no_trained"], t["truncated"]) == (18, 6, 1, 1)
    assert t["fill"] == 18 / (8 * 5)
    assert (t["pack_rows"], t["pack_efficiency"]) == (3, 18 / (8 * 3))  # [8] [4,3,1] [2]
    packed = stats.tokenized_stats(
        _tokenized_folder(tmp_path / "packed", rows[:3], packed=[[1, 2], [8], [1]])
    )
    p = packed.tokenized
    assert p["packed"] and (p["examples"], p["rows"]) == (4, 3)
    assert packed.lengths["tokens per example"] == [1, 2, 8, 1]
    assert p["fill"] == 12 / (8 * 3)


def test_tokenized_stats_keep_no_token_in_python(tmp_path):
    """Memory follows rows, not tokens: 64 rows of 8,192 tokens (524,288 input ids, as many labels).
    Python lists of them took over 30 MB of Python objects (to_pylist); the scan holds lengths only."""
    import tracemalloc

    from instructgen.dataops.stats import tokenized_stats

    n = 8192
    rows = [(list(range(n)), [-100] * (n // 2) + list(range(n // 2))) for _ in range(64)]
    folder = _tokenized_folder(tmp_path / "tok", rows, max_length=n)
    del rows
    tokenized_stats(_tokenized_folder(tmp_path / "warm", [([1], [1])]))  # imports are not what we measure
    tracemalloc.start()
    try:
        st = tokenized_stats(folder)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert st.tokenized["tokens"] == 64 * n and st.tokenized["trained_tokens"] == 64 * n // 2
    assert peak < 8_000_000, peak  # measured: 4.2 MB (41 MB with to_pylist)


# --- one file hash -------------------------------------------------------------------------------


def test_file_sha256_is_the_tokenize_file_hash(tmp_path, monkeypatch):
    """rows.file_sha256 repeated tokenize.pipeline.file_hash; it now calls it (one hash to fix)."""
    from instructgen.dataops import rows
    from instructgen.tokenize import pipeline

    data = _jsonl(tmp_path / "a.jsonl", _rows(3))
    assert rows.file_sha256(data) == pipeline.file_hash(data) == _sha(data)
    calls: list[Path] = []
    real = pipeline.file_hash
    monkeypatch.setattr(pipeline, "file_hash", lambda p: calls.append(Path(p)) or real(p))
    (tmp_path / "ds").mkdir()
    _jsonl(tmp_path / "ds" / "x.jsonl", _rows(2))
    first = rows.file_sha256(tmp_path / "ds")
    assert calls == [tmp_path / "ds" / "x.jsonl"]
    _jsonl(tmp_path / "ds" / "x.jsonl", _rows(3))
    assert rows.file_sha256(tmp_path / "ds") != first  # a folder's hash follows its files' bytes


def test_two_file_mix_onto_a_source_is_refused(tmp_path, run_cli):
    a = _jsonl(tmp_path / "a.jsonl", _rows(20, "a"))
    b = _jsonl(tmp_path / "b.jsonl", _rows(20, "b"))
    before = _sha(b)
    line = _error_line(run_cli("mix", a, b, "--ratio", "0.1", "-o", b))
    assert line == f"error: output {b} is the input {b}; write to another path (-o)"
    assert _sha(b) == before


def test_export_next_to_a_dataset_info_that_is_not_utf8_is_an_error_line(tmp_path, run_cli):
    data = _jsonl(tmp_path / "data.jsonl", _rows(3))
    (tmp_path / "lf").mkdir()
    (tmp_path / "lf" / "dataset_info.json").write_bytes(b'{"a": "\xff"}')
    line = _error_line(run_cli("export", data, "--to", "llamafactory", "-o", tmp_path / "lf"))
    assert line == f"error: {tmp_path / 'lf' / 'dataset_info.json'}: not UTF-8 text (byte 7); fix or remove it"
    assert (tmp_path / "lf" / "dataset_info.json").read_bytes() == b'{"a": "\xff"}'
    assert sorted(q.name for q in (tmp_path / "lf").iterdir()) == ["dataset_info.json"]  # no data file either


def test_damaged_parquet_and_dataset_folder_inputs_are_error_lines(tmp_path, run_cli):
    datasets = pytest.importorskip("datasets")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1garbage")
    line = _error_line(run_cli("split", bad, "-o", tmp_path / "out"))
    assert line.startswith(f"error: {bad}: not a readable parquet file (Could not open Parquet input source")
    folder = tmp_path / "ds"
    datasets.Dataset.from_list(_rows(3)).save_to_disk(str(folder))
    shard = folder / "data-00000-of-00001.arrow"
    shard.write_bytes(shard.read_bytes()[:100])
    line = _error_line(run_cli("stats", folder, "--no-langid"))
    assert line.startswith(f"error: {folder}: a damaged save_to_disk folder (ArrowInvalid: ")
