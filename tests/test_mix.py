"""mix: N sources by share, count or all; exact counts, no repeats, manifest, same bytes (issue 14 item 2)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from helpers import EXAMPLES, read_jsonl

from instructgen.dataops.mixing import parse_source
from instructgen.errors import ConfigError


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _source(tmp_path, name, n):
    rows = [
        {"instruction": f"{name} task {i}", "input": "", "output": f"{name} answer {i}", "meta": {"src": name, "i": i}}
        for i in range(n)
    ]
    return _write(tmp_path / f"{name}.jsonl", rows)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_three_sources_exact_counts_no_repeats_manifest_and_same_bytes(tmp_path, run_cli):
    a, b, c = _source(tmp_path, "a", 400), _source(tmp_path, "b", 3000), _source(tmp_path, "c", 800)
    out = tmp_path / "out" / "mixed.jsonl"
    res = run_cli("mix", f"{a}:0.1", f"{b}:1000", c, "-o", out, "--seed", "7")
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(out)
    # 1000 + 800 fixed rows are 90% of the output: 2000 rows, 200 of them from a
    assert Counter(r["meta"]["src"] for r in rows) == {"a": 200, "b": 1000, "c": 800}
    assert len({(r["meta"]["src"], r["meta"]["i"]) for r in rows}) == 2000  # no row twice
    assert {r["meta"]["i"] for r in rows if r["meta"]["src"] == "c"} == set(range(800))
    # interleaved, not concatenated
    assert {r["meta"]["src"] for r in rows[:100]} == {"a", "b", "c"}
    manifest = json.loads((tmp_path / "out" / "mix_manifest.json").read_text(encoding="utf-8"))
    assert manifest["output"] == {"path": str(out), "sha256": _sha(out), "rows": 2000, "format": "alpaca"}
    assert manifest["seed"] == 7 and manifest["repeated"] == 0
    assert [
        (s["path"], s["sha256"], s["spec"], s["rows_available"], s["rows_taken"]) for s in manifest["sources"]
    ] == [
        (f"{a}", _sha(a), "0.1", 400, 200),
        (f"{b}", _sha(b), "1000", 3000, 1000),
        (f"{c}", _sha(c), "all", 800, 800),
    ]
    assert res.stderr.splitlines()[0] == "mix: wrote 2000 rows from 3 sources, seed 7"
    first = out.read_bytes(), (tmp_path / "out" / "mix_manifest.json").read_bytes()
    assert run_cli("mix", f"{a}:0.1", f"{b}:1000", c, "-o", out, "--seed", "7").exit_code == 0
    assert (out.read_bytes(), (tmp_path / "out" / "mix_manifest.json").read_bytes()) == first
    # the order of the arguments does not change the rows or their order
    out2 = tmp_path / "out2" / "mixed.jsonl"
    assert run_cli("mix", c, f"{b}:1000", f"{a}:0.1", "-o", out2, "--seed", "7").exit_code == 0
    assert out2.read_bytes() == first[0]
    out3 = tmp_path / "out3" / "mixed.jsonl"
    assert run_cli("mix", f"{a}:0.1", f"{b}:1000", c, "-o", out3, "--seed", "8").exit_code == 0
    assert out3.read_bytes() != first[0]


def test_total_with_a_source_taking_the_rest(tmp_path, run_cli):
    a, b, c = _source(tmp_path, "a", 400), _source(tmp_path, "b", 3000), _source(tmp_path, "c", 800)
    out = tmp_path / "m.jsonl"
    res = run_cli("mix", f"{a}:25%", f"{b}", f"{c}:300", "--total", "1000", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert Counter(r["meta"]["src"] for r in read_jsonl(out)) == {"a": 250, "b": 450, "c": 300}
    res = run_cli("mix", f"{a}:0.5", f"{c}:0.5", "--total", "600", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert Counter(r["meta"]["src"] for r in read_jsonl(out)) == {"a": 300, "c": 300}
    res = run_cli("mix", f"{a}:0.3", f"{c}:100", "--total", "1000", "-o", out)
    assert res.exit_code == 2
    assert res.stderr == (
        "error: counts and shares make 400 rows, not --total 1000; leave one source without a spec "
        "(or mark it ':rest') to take the remaining rows\n"
    )


def test_too_few_rows_is_an_error_unless_repeats_are_allowed(tmp_path, run_cli):
    a, b = _source(tmp_path, "a", 50), _source(tmp_path, "b", 900)
    out = tmp_path / "m.jsonl"
    res = run_cli("mix", f"{a}:0.1", b, "-o", out)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {a}: 100 rows asked (0.1 of 1000 output rows), it has 50; lower the share or count, "
        "or pass --allow-repeat to repeat rows\n"
    )
    assert not out.exists()
    res = run_cli("mix", f"{a}:0.1", b, "-o", out, "--allow-repeat")
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(out)
    per_row = Counter(r["meta"]["i"] for r in rows if r["meta"]["src"] == "a")
    assert set(per_row.values()) == {2} and len(per_row) == 50  # two whole passes
    assert res.stderr.splitlines()[1].endswith("took 100 of 50 (10.0% of the output, 50 repeated)")
    assert res.stderr.splitlines()[-2] == "  repeated rows: 50"
    manifest = json.loads((tmp_path / "mix_manifest.json").read_text(encoding="utf-8"))
    assert manifest["repeated"] == 50 and manifest["sources"][0]["rows_repeated"] == 50


def test_layouts_meta_and_formats(tmp_path, run_cli):
    tr = tmp_path / "tr.jsonl"
    res = run_cli(
        "translate", EXAMPLES / "data" / "zh_en.tsv", "--src-lang", "zh", "--tgt-lang", "en", "--meta", "-o", tr
    )
    assert res.exit_code == 0, res.stderr
    chat = tmp_path / "chat.jsonl"
    res = run_cli("identity", "--name", "雁栖-7B", "--developer", "助教", "-n", "40", "--format", "sharegpt",
                  "-o", chat)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "m.jsonl"
    res = run_cli("mix", tr, f"{chat}:20", "-o", out)
    assert res.exit_code == 2
    assert res.stderr == "error: the sources have different layouts (alpaca, sharegpt); choose one with --format\n"
    res = run_cli("mix", tr, f"{chat}:20", "-o", out, "--format", "sharegpt")
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(out)
    assert len(rows) == 45 and all("conversations" in r for r in rows)
    # meta written by translate travels with its rows
    original = {r["output"]: r["meta"] for r in read_jsonl(tr)}
    kept = [r for r in rows if "meta" in r]
    assert len(kept) == 25 and all(original[r["conversations"][-1]["value"]] == r["meta"] for r in kept)
    res = run_cli("mix", tr, "-o", tmp_path / "m.json", "--total", "10")
    assert res.exit_code == 0, res.stderr
    arr = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert len(arr) == 10 and all(r["meta"]["key"] for r in arr)
    res = run_cli("mix", tr, "-o", tmp_path / "m2.jsonl", "--total", "10", "--drop-meta")
    assert all("meta" not in r for r in read_jsonl(tmp_path / "m2.jsonl"))


def test_two_file_ratio_form_still_works(tmp_path, run_cli):
    a, b = _source(tmp_path, "a", 20), _source(tmp_path, "b", 90)
    out = tmp_path / "m.jsonl"
    res = run_cli("mix", a, b, "--ratio", "0.1", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "mix: mixed 10 of 20 special rows with 90 of 90 general rows (10.0% special)\n"
    assert len(read_jsonl(out)) == 100


def test_source_specs():
    assert (parse_source("a.jsonl:0.1").kind, parse_source("a.jsonl:0.1").value) == ("share", 0.1)
    assert (parse_source("a.jsonl:5000").kind, parse_source("a.jsonl:5000").value) == ("count", 5000)
    assert (parse_source("a.jsonl:10%").kind, parse_source("a.jsonl:10%").value) == ("share", 0.1)
    assert parse_source("a.jsonl").kind == "all" and parse_source("a.jsonl:all").kind == "all"
    assert parse_source("dir/a.jsonl:rest").kind == "rest"
    with pytest.raises(ConfigError, match="a share must be between 0 and 1"):
        parse_source("a.jsonl:1.5")
    with pytest.raises(ConfigError, match="after ':' give a share of the output"):
        parse_source("a.jsonl:lots")


def test_the_same_file_twice_needs_allow_repeat(tmp_path, run_cli):
    a = _source(tmp_path, "a", 30)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(a.read_bytes())
    res = run_cli("mix", a, copy, "-o", tmp_path / "m.jsonl")
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {a} and {copy} are the same file: their rows would repeat; pass --allow-repeat "
        "to oversample on purpose\n"
    )
    res = run_cli("mix", a, copy, "-o", tmp_path / "m.jsonl", "--allow-repeat")
    assert res.exit_code == 0, res.stderr
    assert len(read_jsonl(tmp_path / "m.jsonl")) == 60
    assert res.stderr.splitlines()[-2] == "  repeated rows: 30"
