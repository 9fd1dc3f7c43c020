"""split: grouped (no source item on two sides), ratios, strata, determinism, layouts (issue 14 item 1)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from helpers import EXAMPLES, read_jsonl

from instructgen.dataops.split import parse_ratios, split_rows
from instructgen.errors import ConfigError

NAMES = ("train", "validation", "test")


def _split_files(out: Path, suffix: str = ".jsonl") -> dict[str, list[dict]]:
    if suffix == ".json":
        return {n: json.loads((out / f"{n}{suffix}").read_text(encoding="utf-8")) for n in NAMES}
    return {n: read_jsonl(out / f"{n}{suffix}") for n in NAMES}


def _check_groups(parts: dict[str, list[dict]], key) -> dict[object, set[str]]:
    """Every group (all of them, not a sample) sits in exactly one split; returns group -> splits."""
    where: dict[object, set[str]] = defaultdict(set)
    for name, rows in parts.items():
        for row in rows:
            where[key(row)].add(name)
    straddling = [g for g, s in where.items() if len(s) > 1]
    assert straddling == []
    return where


def _check_ratios(parts: dict[str, list[dict]], ratios, key) -> None:
    """Each split holds its target count to within the largest group's size."""
    sizes = Counter(key(r) for rows in parts.values() for r in rows)
    total = sum(sizes.values())
    biggest = max(sizes.values())
    for (name, rows), ratio in zip(parts.items(), ratios):
        assert abs(len(rows) - ratio * total) <= biggest, (name, len(rows), ratio * total, biggest)


def _direction_key(row):
    return row["meta"]["key"]


def test_both_directions_of_the_shipped_pairs_stay_together(tmp_path, run_cli):
    data = tmp_path / "tr.jsonl"
    res = run_cli(
        "translate", EXAMPLES / "data" / "zh_en.tsv", "--src-lang", "zh", "--tgt-lang", "en",
        "--direction", "both", "--meta", "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    res = run_cli("split", data, "-o", tmp_path / "out", "--ratios", "60,20,20", "--seed", "3")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "out")
    assert [len(parts[n]) for n in NAMES] == [30, 10, 10]
    where = _check_groups(parts, _direction_key)
    assert len(where) == 25
    # each group is the two directions of one pair
    for rows in parts.values():
        by_key = Counter(r["meta"]["key"] for r in rows)
        assert set(by_key.values()) == {2}
    assert res.stderr.splitlines()[:4] == [
        "split: 50 records, 25 groups (meta.key 50), seed 3",
        "  train            30 records ( 60.0%, target 60.0%)      15 groups",
        "  validation       10 records ( 20.0%, target 20.0%)       5 groups",
        "  test             10 records ( 20.0%, target 20.0%)       5 groups",
    ]


@pytest.mark.shared
def test_tatoeba_both_directions_no_leak_and_same_bytes(shared_data, tmp_path, run_cli):
    # the issue's case: a random split put 323 of 380 validation rows' reverse pairs in train
    src = tmp_path / "tat.tsv"
    lines = (shared_data / "tatoeba_cmn_eng" / "cmn.head5000.txt").read_text(encoding="utf-8").splitlines()
    src.write_text("\n".join(lines[:800]) + "\n", encoding="utf-8")
    data = tmp_path / "tr.jsonl"
    res = run_cli(
        "translate", src, "--src-col", "1", "--tgt-col", "0", "--src-lang", "zh", "--tgt-lang", "en",
        "--direction", "both", "--meta", "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(data)
    for seed in ("0", "1"):
        out = tmp_path / f"out{seed}"
        assert run_cli("split", data, "-o", out, "--seed", seed).exit_code == 0
        parts = _split_files(out)
        assert sum(len(p) for p in parts.values()) == len(rows)
        _check_groups(parts, _direction_key)
        _check_ratios(parts, (0.85, 0.10, 0.05), _direction_key)
        # every row is written once, unchanged
        assert sorted(json.dumps(r, sort_keys=True) for p in parts.values() for r in p) == sorted(
            json.dumps(r, sort_keys=True) for r in rows
        )
    again = tmp_path / "again"
    assert run_cli("split", data, "-o", again, "--seed", "0").exit_code == 0
    for n in NAMES:
        assert (again / f"{n}.jsonl").read_bytes() == (tmp_path / "out0" / f"{n}.jsonl").read_bytes()
    assert (tmp_path / "out1" / "test.jsonl").read_bytes() != (tmp_path / "out0" / "test.jsonl").read_bytes()
    # Tatoeba translates one sentence several times ("Hi." -> 嗨。, 你好。): pairs differ, a sentence is shared.
    # Both directions are written, so the outputs of a pair's rows are its two sentences.
    seen_in_train = {r["output"] for r in read_jsonl(tmp_path / "out0" / "train.jsonl")}
    held_out = read_jsonl(tmp_path / "out0" / "validation.jsonl") + read_jsonl(tmp_path / "out0" / "test.jsonl")
    assert sum(r["output"] in seen_in_train for r in held_out) > 20
    res = run_cli("split", data, "-o", tmp_path / "conn", "--connect", "output")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "conn")
    _check_groups(parts, _direction_key)
    seen_in_train = {r["output"] for r in parts["train"]}
    assert [r for r in parts["validation"] + parts["test"] if r["output"] in seen_in_train] == []
    assert "  connected by output: " in res.stderr


def test_identity_question_families_stay_together(tmp_path, run_cli):
    data = tmp_path / "id.jsonl"
    res = run_cli(
        "identity", "--name", "雁栖-7B", "--developer", "助教", "--languages", "zh,en", "-n", "300",
        "--meta", "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(data)
    assert len({r["meta"]["question_id"] for r in rows}) < len(rows)  # families of several answers
    res = run_cli("split", data, "-o", tmp_path / "out", "--seed", "5")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "out")

    def family(r):
        return r["meta"]["question_id"]

    _check_groups(parts, family)
    _check_ratios(parts, (0.85, 0.10, 0.05), family)
    assert f"({'meta.question_id'} {len(rows)})" in res.stderr.splitlines()[0]


@pytest.mark.shared
def test_ner_original_and_inverted_records_of_a_sentence_stay_together(shared_data, tmp_path, run_cli):
    conll = tmp_path / "ner.conll"
    conll.write_text(
        "\n".join((shared_data / "conll2003_en" / "eng.testa").read_text(encoding="utf-8").splitlines()[:3000])
        + "\n",
        encoding="utf-8",
    )
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out, extra in ((a, ["--inverted-ratio", "0.5", "--seed", "1"]), (b, ["--target", "json", "--seed", "2"])):
        res = run_cli("ner", conll, "--meta", "-o", out, *extra)
        assert res.exit_code == 0, res.stderr
    data = tmp_path / "both.jsonl"
    data.write_text(a.read_text(encoding="utf-8") + b.read_text(encoding="utf-8"), encoding="utf-8")
    rows = read_jsonl(data)
    targets = Counter(r["meta"]["target"] for r in rows)
    assert targets["inverted"] > 20 and targets["json"] > 100

    def sentence(r):
        return (r["meta"]["source_file"], r["meta"]["line"])

    assert set(Counter(sentence(r) for r in rows).values()) == {2}  # two records per sentence
    res = run_cli("split", data, "-o", tmp_path / "out", "--ratios", "0.8,0.1,0.1")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "out")
    _check_groups(parts, sentence)
    _check_ratios(parts, (0.8, 0.1, 0.1), sentence)
    assert "(meta.source_file+line " in res.stderr.splitlines()[0]


@pytest.mark.shared
def test_stratified_label_shares_within_one_point(shared_data, tmp_path, run_cli):
    data = tmp_path / "cls.jsonl"
    res = run_cli(
        "classify", shared_data / "sst2" / "glue_sst2_dev.tsv", "--text-col", "sentence",
        "--label-names", "negative,positive", "--meta", "-o", data,
    )
    assert res.exit_code == 0, res.stderr
    res = run_cli("split", data, "-o", tmp_path / "out", "--stratify", "meta.label")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "out")
    rows = read_jsonl(data)
    overall = Counter(r["meta"]["label"] for r in rows)
    for name, part in parts.items():
        got = Counter(r["meta"]["label"] for r in part)
        for label, n in overall.items():
            assert abs(got[label] / len(part) - n / len(rows)) <= 0.01, (name, label)
    assert "  by meta.label:" in res.stderr


def test_stratify_keeps_rare_label_shares_in_python():
    rows = [{"instruction": f"q{i}", "output": "a", "meta": {"label": "rare" if i % 10 == 0 else "common"}}
            for i in range(2000)]
    result = split_rows(rows, [0.85, 0.1, 0.05], seed=4, stratify="label")
    assert result.counts == [1700, 200, 100]
    assert result.strata == {"rare": [170, 20, 10], "common": [1530, 180, 90]}
    assert result.rules == Counter({"no key": 2000})
    plain = split_rows(rows, [0.85, 0.1, 0.05], seed=4)
    assert plain.counts == [1700, 200, 100] and plain.assignment != result.assignment


def test_rows_without_a_key_are_split_one_by_one_and_duplicates_stay_together(tmp_path, run_cli):
    data = tmp_path / "plain.jsonl"
    rows = [{"instruction": f"task {i % 40}", "input": "", "output": f"done {i % 40}"} for i in range(80)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = run_cli("split", data, "-o", tmp_path / "out", "--ratios", "50,50", "--names", "train,test")
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines() == [
        "split: 80 records, 40 groups (no group key), seed 0",
        "  train       40 records ( 50.0%, target 50.0%)      20 groups",
        "  test        40 records ( 50.0%, target 50.0%)      20 groups",
        "  no group key: 80 records, split one by one (write them with --meta, "
        "or name the field that ties them together with --group-by)",
        f"  wrote {tmp_path / 'out' / 'train.jsonl'}, {tmp_path / 'out' / 'test.jsonl'}",
    ]
    train = {r["instruction"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")}
    test = {r["instruction"] for r in read_jsonl(tmp_path / "out" / "test.jsonl")}
    assert not train & test  # the exact duplicate of a row is never on the other side


def test_group_by_a_named_field(tmp_path, run_cli):
    data = tmp_path / "g.jsonl"
    rows = [{"instruction": f"t{i}", "output": "x", "doc": f"d{i // 7}"} for i in range(70)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = run_cli("split", data, "-o", tmp_path / "out", "--group-by", "doc", "--ratios", "80,20",
                  "--names", "train,test")
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines()[0] == "split: 70 records, 10 groups (doc 70), seed 0"
    parts = {n: read_jsonl(tmp_path / "out" / f"{n}.jsonl") for n in ("train", "test")}
    assert [len(p) for p in parts.values()] == [56, 14]
    _check_groups(parts, lambda r: r["doc"])


@pytest.mark.shared
def test_json_array_in_json_arrays_out_and_dataset_dict(shared_data, tmp_path, run_cli):
    src = shared_data / "alpaca_zh_demo.json"
    res = run_cli("split", src, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    parts = _split_files(tmp_path / "out", ".json")
    original = json.loads(src.read_text(encoding="utf-8"))
    assert sum(len(p) for p in parts.values()) == len(original) == 1000
    assert [len(parts[n]) for n in NAMES] == [850, 100, 50]
    assert parts["train"][0] in original
    datasets = pytest.importorskip("datasets")
    res = run_cli("split", src, "-o", tmp_path / "dd", "--save-to-disk")
    assert res.exit_code == 0, res.stderr
    dd = datasets.load_from_disk(str(tmp_path / "dd"))
    assert {k: len(v) for k, v in dd.items()} == {"train": 850, "validation": 100, "test": 50}
    assert dd["test"].to_list() == parts["test"]


def test_ratio_parsing_and_errors(tmp_path, run_cli):
    assert parse_ratios("85,10,5") == [0.85, 0.1, 0.05]
    assert parse_ratios("0.8,0.2") == [0.8, 0.2]
    with pytest.raises(ConfigError, match=r"--ratios: '85,10,10' adds up to 105; shares must add up to 100"):
        parse_ratios("85,10,10")
    with pytest.raises(ConfigError, match="is not a list of numbers"):
        parse_ratios("a,b")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"text": "no layout"}\n', encoding="utf-8")
    res = run_cli("split", bad, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {bad}:2: not an Alpaca, ShareGPT, messages or query/response row")
    good = tmp_path / "good.jsonl"
    good.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    res = run_cli("split", good, "-o", tmp_path / "out", "--ratios", "90,5,5", "--names", "a,b")
    assert res.exit_code == 2
    assert res.stderr == "error: --names gives 2 names for 3 ratios\n"


def test_connect_merges_groups_that_share_a_value():
    # three pairs; pair b shares its English side with a, c shares nothing
    rows = [
        {"instruction": "x", "output": "Hi.", "meta": {"key": "a"}},
        {"instruction": "x", "output": "嗨。", "meta": {"key": "a"}},
        {"instruction": "x", "output": "Hi.", "meta": {"key": "b"}},
        {"instruction": "x", "output": "你好。", "meta": {"key": "b"}},
        {"instruction": "x", "output": "Bye.", "meta": {"key": "c"}},
        {"instruction": "x", "output": "再见。", "meta": {"key": "c"}},
    ]
    for seed in range(20):
        result = split_rows(rows, [0.5, 0.5], names=["train", "test"], seed=seed, connect=["output"])
        assert len(set(result.assignment[:4])) == 1
        assert result.assignment[4] == result.assignment[5]
    assert result.notes == ["connected by output: 1 groups merged into others; largest group 4 records"]


def test_an_empty_input_is_an_error(tmp_path, run_cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    for args in (["split", empty, "-o", tmp_path / "o"], ["stats", empty], ["mix", empty, "-o", tmp_path / "m.jsonl"]):
        res = run_cli(*args)
        assert (res.exit_code, res.stderr) == (2, f"error: {empty}: no records in it\n")
    assert not (tmp_path / "o").exists()
