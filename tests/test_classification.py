"""classification: label names, options and letters, every template used, distributions kept."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

import instructgen
from instructgen.converters.classification import ClassifyOptions
from instructgen.errors import InputError

SETS = [
    ("sst2/glue_sst2_dev.tsv", dict(text_col="sentence", label_names=("negative", "positive"))),
    (
        "chnsenticorp_htl/ChnSentiCorp_htl_all.head2556pos_all2444neg.csv",
        dict(text_col="review", label_names=("负面", "正面"), instruction_lang="zh"),
    ),
    (
        "raft_twitter_complaints/twitter_complaints_input_output.jsonl",
        dict(text_col="input", label_col="output"),
    ),
]


@pytest.mark.parametrize(("path", "kw"), SETS, ids=["sst2", "chnsenticorp", "raft"])
def test_targets_templates_and_distribution(shared_data, path, kw):
    run = instructgen.classify(shared_data / path, inverted_ratio=0.15, seed=1, **kw)
    names = list(kw.get("label_names") or sorted(run.labels_in))
    marker = re.compile(r"^(?:[A-Z]\. |\([A-Z]\) |\d+\. )?(.+)$")
    for r in run.records:
        if r.meta["inverted"]:
            assert r.meta["label"] in r.instruction
            continue
        answer = r.output
        assert marker.match(answer).group(1) in names, answer
        if answer != r.meta["label"]:  # lettered or numbered: the option line says the same
            assert answer in r.instruction, (answer, r.instruction)
    assert run.labels_out == run.labels_in
    used = {r.meta["template_id"] for r in run.records}
    pool = instructgen.PoolSet.load("classification").by_language[kw.get("instruction_lang", "en")]
    assert used == {t.id for t in pool}
    assert run.report.written + run.report.rejected_total == run.report.read


def test_chnsenticorp_empty_review_is_counted(shared_data):
    run = instructgen.classify(shared_data / SETS[1][0], **SETS[1][1])
    assert run.report.rejected == {"empty_text": 1}
    assert run.labels_in == {"正面": 2556, "负面": 2443}


def test_label_errors_name_file_line_and_field(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\ngood,1\nbad,7\nmeh,\n", encoding="utf-8")
    run = instructgen.classify(p, label_names=("neg", "pos"))
    assert [(r.reason, r.line, r.detail) for r in run.rejected] == [
        ("unknown_label", 3, "label 7 is outside the 2 label names"),
        ("missing_label", 4, "empty label"),
    ]
    q = tmp_path / "e.csv"
    q.write_text("review,label\ngood,1\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        instructgen.classify(q, label_names=("neg", "pos"))
    assert str(info.value) == f"{q}:2, field 'text': no text column 'text' (the row has review, label)"
    r = tmp_path / "f.csv"
    r.write_text("text,label\na,b,c\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"f\.csv:2: 3 fields, the header has 2 \(a tab or delimiter inside a text\?\)"
    ):
        instructgen.classify(r)


def test_integer_labels_need_names(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "fine", "label": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"integer labels need their names \(--label-names neg,pos\)"):
        instructgen.classify(p)


def test_verbaliser_and_text_pairs():
    rows = [{"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2}]
    run = instructgen.classify(
        rows,
        text_col="premise",
        text2_col="hypothesis",
        label_names=("entailment", "neutral", "contradiction"),
        verbalise={"contradiction": "no"},
        seed=3,
        meta=True,
    )
    (rec,) = run.records
    assert rec.output.endswith("no") and "A man sleeps.\nA man is awake." in rec.instruction + rec.input


def test_dataset_classlabel_and_batch_fn():
    import datasets

    feats = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    ds = datasets.Dataset.from_dict(
        {"text": ["great movie", "awful plot", "loved it"], "label": [1, 0, 1]}, features=feats
    )
    run = instructgen.classify(ds, seed=2)
    assert run.labels_out == {"positive": 2, "negative": 1}
    fn = instructgen.ClassifyBatchFn(ClassifyOptions(seed=2, label_names=("negative", "positive")))
    mapped = ds.map(fn, batched=True, remove_columns=ds.column_names, num_proc=2)
    assert mapped["output"] == [r.output for r in run.records]


def test_cli_classify(tmp_path, run_cli, shared_data):
    out = tmp_path / "o.jsonl"
    res = run_cli(
        "classify",
        shared_data / "sst2" / "glue_sst2_dev.tsv",
        "--text-col",
        "sentence",
        "--label-names",
        "negative,positive",
        "--meta",
        "-o",
        out,
    )
    assert res.exit_code == 0, res.stderr
    assert "note: labels written: negative 428, positive 444" in res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(r["meta"]["label"] for r in rows) == {"positive": 444, "negative": 428}
    styles = Counter(r["meta"]["options_style"] for r in rows)
    assert {"dash", "letter_dot", "letter_paren", "number_dot", "inline"} <= set(styles)


def test_json_file_must_be_an_array_and_bad_json_names_the_line(tmp_path):
    obj = tmp_path / "obj.json"
    obj.write_text('{"text": "fine", "label": "pos"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"obj\.json: expected a JSON array of rows"):
        instructgen.classify(obj)
    bad = tmp_path / "bad.json"
    bad.write_text(
        '[\n  {"text": "a", "label": "pos"},\n  {"text": "b" "label": "neg"}\n]\n', encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"bad\.json:3: invalid JSON: Expecting ',' delimiter"):
        instructgen.classify(bad)
    good = tmp_path / "good.json"
    good.write_text('[{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]', encoding="utf-8")
    assert instructgen.classify(good).labels_out == {"pos": 1, "neg": 1}


def test_stream_checks_every_row_first_then_converts_lazily(tmp_path):
    from instructgen.converters.classification import ClassificationConverter, ClassifyRun, iter_rows

    p = tmp_path / "r.tsv"
    p.write_text("text\tlabel\ngood film\tpos\n\tneg\nbad film\tneg\n", encoding="utf-8")
    conv = ClassificationConverter(ClassifyOptions(seed=1))
    run = ClassifyRun()
    outcomes = conv.stream(lambda: iter_rows(p), run, str(p))
    assert (run.report.read, run.report.written, dict(run.labels_in)) == (3, 0, {"pos": 1, "neg": 1})
    items = list(outcomes)
    # input order: the second read streams rejections where they occur (issue 11 item 16)
    assert [getattr(x, "reason", None) for x in items] == [None, "empty_text", None]
    assert items[1].line == 3
    assert [x.meta["label"] for x in items if not getattr(x, "reason", None)] == ["pos", "neg"]
    assert (run.report.written, dict(run.labels_out), run.records) == (2, {"pos": 1, "neg": 1}, [])


def test_option_order_is_seeded_per_record_so_letters_do_not_stand_for_labels(shared_data):
    src = shared_data / SETS[0][0]
    kw = dict(SETS[0][1], seed=5, meta=True)
    letters = Counter()
    for r in instructgen.classify(src, **kw).records:
        if r.meta["options_style"] == "letter_dot":
            assert r.output == f"{chr(65 + r.meta['options'].index(r.meta['label']))}. {r.meta['label']}"
            assert f"\n{r.output}\n" in f"\n{r.instruction}\n{r.input}\n"
            letters[r.meta["label"], r.output[0]] += 1
    assert set(letters) == {("negative", "A"), ("negative", "B"), ("positive", "A"), ("positive", "B")}
    fixed = instructgen.classify(src, option_order="fixed", **kw).records
    assert {r.output for r in fixed if r.meta["options_style"] == "letter_dot"} == {
        "A. negative",
        "B. positive",
    }
    with pytest.raises(
        instructgen.ConfigError, match="option_order must be 'shuffled' or 'fixed', not 'abc'"
    ):
        instructgen.classify(src, option_order="abc", **kw)


def test_batch_fn_reports_bad_rows_in_a_column_instead_of_stopping():
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["great", "  ", "fine"], "label": ["pos", "neg", "meh"]})
    fn = instructgen.ClassifyBatchFn(ClassifyOptions(label_names=("neg", "pos")))
    mapped = ds.map(fn, batched=True, remove_columns=ds.column_names)
    assert mapped["rejected"] == [
        None,
        "empty_text: empty text",
        "unknown_label: label 'meh' is not one of neg, pos",
    ]
    assert [bool(o) for o in mapped["output"]] == [True, False, False]
