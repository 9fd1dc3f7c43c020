"""Classification on the pipeline core (issue 12): exact duplicates and leftover placeholders
rejected with counts, -v step lines, --num-proc byte-identical, the batched adapter and collect.

Exact dedup keeps the first record of those equal in every text (instructgen/pipeline/steps.py
ExactDedup, as the translation task); a record with the same text but another label is another
record and stays.
"""

from __future__ import annotations

import json
import re

import pytest

import instructgen
from instructgen.converters.classification import ClassifyOptions
from instructgen.pipeline import registry

TSV = "text\tlabel\ngood film\tpos\nbad film\tneg\ngood film\tpos\n\tneg\ngood film\tneg\n"
STEP = re.compile(r", \d+\.\d\d s")


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tsv(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text(TSV, encoding="utf-8")
    return p


def test_exact_duplicates_are_rejected_and_counted(tsv):
    run = instructgen.classify(tsv, seed=1, meta=True)
    assert [r.meta["line"] for r in run.records] == [2, 3, 6]  # line 6: the same text, another label
    assert run.report.rejected == {"duplicate_record": 1, "empty_text": 1}
    dup = next(x for x in run.rejected if x.reason == "duplicate_record")
    assert (dup.line, dup.detail, dup.example["text"], dup.example["label"]) == (
        4,
        "same conversation as line 2",
        "good film",
        "pos",
    )
    assert run.labels_in == {"pos": 2, "neg": 2} and run.labels_out == {"pos": 1, "neg": 2}
    assert run.report.notes == ["labels written: neg 2, pos 1"]
    kept = instructgen.classify(tsv, seed=1, meta=True, dedup=False)
    assert [r.meta["line"] for r in kept.records] == [2, 3, 4, 6]
    assert kept.records[0].output == kept.records[2].output


def test_cli_verbose_step_lines_and_no_dedup(tsv, tmp_path, run_cli):
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    res = run_cli("classify", tsv, "--seed", "1", "-v", "--rejects", rej, "-o", out)
    assert res.exit_code == 0, res.stderr
    assert [(r["reason"], r["line"]) for r in _rows(rej)] == [("duplicate_record", 4), ("empty_text", 5)]
    assert STEP.sub("", res.stderr).splitlines() == [
        "classification: read 5, wrote 3, rejected 2",
        "  rejected duplicate_record: 1",
        "  rejected empty_text: 1",
        "  templates used: 3",
        "  note: labels written: neg 2, pos 1",
        "  step read (read): in 5, kept 5, rejected 0",
        "  step convert (convert): in 5, kept 4, rejected 1 (empty_text 1)",
        "  step empty_fields (check): in 4, kept 4, rejected 0",
        "  step placeholders (check): in 4, kept 4, rejected 0",
        "  step dedup (sequential): in 4, kept 3, rejected 1 (duplicate_record 1)",
    ]
    res = run_cli("classify", tsv, "--seed", "1", "--no-dedup", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines()[:2] == [
        "classification: read 5, wrote 4, rejected 1",
        "  rejected empty_text: 1",
    ]
    assert "step" not in res.stderr


def test_a_placeholder_the_user_pool_leaves_is_rejected(tsv, tmp_path):
    pool = tmp_path / "p.yaml"
    pool.write_text(
        "task: classification\nlanguage: en\ntemplates:\n  - id: my-c1\n"
        '    instruction: "Classify the <text>. {{ options }}"\n    input: "{{ text }}"\n'
        '    output: "{{ label }}"\n',
        encoding="utf-8",
    )
    run = instructgen.classify(tsv, templates=[str(pool)], builtin_templates=False)
    assert run.records == []
    assert run.report.rejected == {"unrendered_placeholder": 4, "empty_text": 1}
    first = run.rejected[0]
    assert (first.detail, first.line) == ("template my-c1 left <text>", 2)
    # a text that says "<text>" itself is data, not a leftover of the template
    (tmp_path / "t.tsv").write_text("text\tlabel\nwrite <text> here\tpos\n", encoding="utf-8")
    run = instructgen.classify(tmp_path / "t.tsv", label_names=["neg", "pos"], option_order="fixed", seed=0)
    assert len(run.records) == 1 and "write <text> here" in run.records[0].input + run.records[0].instruction


@pytest.mark.shared
def test_num_proc_2_is_byte_identical(shared_data, tmp_path, run_cli):
    src = shared_data / "sst2" / "glue_sst2_dev.tsv"
    got = []
    for n in ("1", "2"):
        out, rej = tmp_path / f"o{n}.jsonl", tmp_path / f"r{n}.jsonl"
        res = run_cli(
            "classify", src, "--text-col", "sentence", "--label-names", "negative,positive",
            "--inverted-ratio", "0.2", "--meta", "-q", "--num-proc", n, "--rejects", rej, "-o", out,
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        got.append((out.read_bytes(), rej.read_bytes(), res.stderr))
    assert got[0] == got[1]
    assert got[0][0].count(b"\n") == 872


def test_batch_fn_and_collect_equal_the_run():
    """The one batched adapter over a Dataset with 2 processes, then `registry.collect` (dedup),
    equals the run; the old `ClassifyBatchFn` columns come from the same record steps."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["good", "bad", "good", " ", "fine"], "label": [1, 0, 1, 0, 1]})
    options = ClassifyOptions(seed=4, label_names=("neg", "pos"))
    direct = registry.run_task("classification", options, ds)
    fn = registry.batch_fn("classification", options, direct.plan)
    mapped = ds.map(
        fn, batched=True, batch_size=2, with_indices=True, num_proc=2, remove_columns=ds.column_names
    )
    collected = registry.collect("classification", options, mapped, direct.plan)
    assert collected.records == direct.records
    assert [(x.reason, x.line) for x in collected.rejected] == [("duplicate_record", 3), ("empty_text", 4)]
    assert [(x.reason, x.line) for x in direct.rejected] == [("duplicate_record", 3), ("empty_text", 4)]
    old = ds.map(instructgen.ClassifyBatchFn(options), batched=True, remove_columns=ds.column_names)
    assert old["rejected"] == [None, None, None, "empty_text: empty text", None]  # no dedup in a map
    first, second, fifth = (r.output for r in direct.records)
    assert [o for o in old["output"] if o] == [first, second, first, fifth]


@pytest.mark.shared
@pytest.mark.parametrize(
    ("rel", "args", "want"),
    [
        (
            "sst2/glue_sst2_dev.tsv",
            ("--text-col", "sentence", "--label-names", "negative,positive", "--inverted-ratio", "0.1"),
            ("4a4ec4fc31614520", "e3b0c44298fc1c14", "classification: read 872, wrote 872, rejected 0\n"
             "  templates used: 14\n  note: labels written: negative 428, positive 444\n"),
        ),
        (
            "chnsenticorp_htl/ChnSentiCorp_htl_all.head2556pos_all2444neg.csv",
            ("--text-col", "review", "--label-names", "负面,正面", "--instruction-lang", "zh"),
            ("80ec0af5e96cd2be", "84294cbd3ba5dad3", "classification: read 5000, wrote 4999, rejected 1\n"
             "  rejected empty_text: 1\n  templates used: 12\n  note: labels written: 正面 2556, 负面 2443\n"),
        ),
    ],
    ids=["sst2", "chnsenticorp"],
)  # fmt: skip
def test_golden_output_and_summary(shared_data, tmp_path, run_cli, rel, args, want):
    """Output and rejects digests and the summary: those of c4f1698, before classify ran on the
    pipeline core (neither set has an exact duplicate record, so dedup changes nothing here)."""
    import hashlib

    src = shared_data / rel
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    res = run_cli("classify", src, *args, "-q", "--meta", "--rejects", rej, "-o", out)
    assert res.exit_code == 0, res.stderr

    def digest(path) -> str:  # the input's path replaced: the figure holds wherever ../shared lives
        return hashlib.sha256(path.read_bytes().replace(str(src).encode(), b"SRC")).hexdigest()[:16]

    assert (digest(out), digest(rej), res.stderr) == want
