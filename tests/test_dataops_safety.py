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
