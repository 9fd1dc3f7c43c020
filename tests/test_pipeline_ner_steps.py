"""NER on the pipeline core (issue 12): the shared checks and exact dedup with counted rejections,
the empty quota as a sequential step, per-step lines (-v), --num-proc, and the one batched adapter.

Exact dedup keeps the first of records that repeat an earlier one in every text (as datatrove's
exact dedup and the translation task do: instructgen/pipeline/steps.py ExactDedup); the rejects
file is the same JSONL every converting command writes (reason, detail, source_file, line, example).
"""

from __future__ import annotations

import json
import re

import pytest

import instructgen
from instructgen.converters.ner import NerOptions
from instructgen.pipeline import registry

# line 1 and line 4 are the same sentence; line 7 has a tag that is no tag; lines 9 and 12 have no entity
CONLL = "John B-PER\nruns O\n\nJohn B-PER\nruns O\n\nbad VERB\n\nIt O\nrains O\n\nSnow O\n\nAnn B-PER\n"
STEP = re.compile(r", \d+\.\d\d s")


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def conll(tmp_path):
    p = tmp_path / "d.conll"
    p.write_text(CONLL, encoding="utf-8")
    return p


def test_exact_duplicates_are_rejected_and_counted(conll):
    run = instructgen.ner(conll, meta=True)
    assert [r.meta["line"] for r in run.records] == [1, 9, 12, 14]
    assert run.report.rejected == {"duplicate_record": 1, "bad_tag": 1}
    dup = [x for x in run.rejected if x.reason == "duplicate_record"]
    assert [(x.line, x.detail, x.example["text"]) for x in dup] == [
        (4, "same conversation as line 1", "John runs")
    ]
    kept = instructgen.ner(conll, meta=True, dedup=False)
    assert [r.meta["line"] for r in kept.records] == [1, 4, 9, 12, 14]
    assert kept.records[0].output == kept.records[1].output == "person: John"
    assert kept.report.rejected == {"bad_tag": 1}


def test_cli_rejects_file_and_verbose_step_lines(conll, tmp_path, run_cli):
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    res = run_cli("ner", conll, "--max-empty-ratio", "0.25", "-v", "--rejects", rej, "-o", out)
    assert res.exit_code == 0, res.stderr
    assert _rows(rej) == [
        {
            "reason": "duplicate_record",
            "detail": "same conversation as line 1",
            "source_file": str(conll),
            "line": 4,
            "example": {"text": "John runs", "template_id": "ner-en-007"},
        },
        {
            "reason": "bad_tag",
            "detail": "unknown tag 'VERB' (expected O, or B-/I-/E-/S- followed by a type)",
            "source_file": str(conll),
            "line": 7,
            "example": {},
        },
        {
            "reason": "too_many_empty",
            "detail": "sentence without entities over --max-empty-ratio",
            "source_file": str(conll),
            "line": 12,
            "example": {"text": "Snow"},
        },
    ]
    assert len(_rows(out)) == 3
    # 3 sentences with entities and a ratio of 0.25 allow int(3 * 0.25 / 0.75) = 1 without: line 9 is
    # kept, line 12 is over; the quota runs before dedup, so a repeated empty sentence still takes a place
    assert STEP.sub("", res.stderr).splitlines() == [
        "ner: read 6, wrote 3, rejected 3",
        "  rejected bad_tag: 1",
        "  rejected duplicate_record: 1",
        "  rejected too_many_empty: 1",
        "  templates used: 3",
        "  note: scheme: bio",
        "  note: empty answers: 1 of 3 (33.3%)",
        "  step read (read): in 6, kept 6, rejected 0",
        "  step convert (convert): in 6, kept 5, rejected 1 (bad_tag 1)",
        "  step empty_fields (check): in 5, kept 5, rejected 0",
        "  step placeholders (check): in 5, kept 5, rejected 0",
        "  step empty_quota (sequential): in 5, kept 4, rejected 1 (too_many_empty 1)",
        "  step dedup (sequential): in 4, kept 3, rejected 1 (duplicate_record 1)",
    ]
    # without -v the summary has no step lines; --no-dedup drops the step and keeps the repeat
    res = run_cli("ner", conll, "--max-empty-ratio", "0.25", "--no-dedup", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines()[0] == "ner: read 6, wrote 4, rejected 2"
    assert "step" not in res.stderr


def test_a_placeholder_the_user_pool_leaves_is_rejected(conll, tmp_path):
    pool = tmp_path / "p.yaml"
    pool.write_text(
        "task: ner\nlanguage: en\ntemplates:\n  - id: my-1\n"
        '    instruction: "Find the [entities] of these types: {{ entity_types }}. {{ format_hint }}"\n'
        '    input: "{{ text }}"\n    output: "{{ entities }}"\n',
        encoding="utf-8",
    )
    run = instructgen.ner(conll, templates=[str(pool)], builtin_templates=False)
    assert run.records == []
    assert run.report.rejected == {"unrendered_placeholder": 5, "bad_tag": 1}  # checks run before dedup
    first = run.rejected[0]
    assert (first.reason, first.detail, first.line) == (
        "unrendered_placeholder",
        "template my-1 left [entities]",
        1,
    )
    # the same brackets in the data are data: the inline format hint "[entity](type)" and a sentence
    # that says "[entities]" are not leftovers
    (tmp_path / "b.conll").write_text("[entities] O\nAnn B-PER\n", encoding="utf-8")
    run = instructgen.ner(tmp_path / "b.conll", target="inline")
    assert [r.output for r in run.records] == ["[entities] [Ann](person)"]


@pytest.mark.shared
@pytest.mark.parametrize("extra", [("--target", "json", "--inverted-ratio", "0.3"), ("--target", "per-type")])
def test_num_proc_2_is_byte_identical(shared_data, tmp_path, run_cli, extra):
    src = shared_data / "conll2003_en" / "eng.testa"
    got = []
    for n in ("1", "2"):
        out, rej = tmp_path / f"o{n}.jsonl", tmp_path / f"r{n}.jsonl"
        res = run_cli("ner", src, *extra, "--meta", "-q", "--num-proc", n, "--rejects", rej, "-o", out)
        assert res.exit_code == 0, res.stderr
        got.append((out.read_bytes(), rej.read_bytes(), res.stderr))
    assert got[0] == got[1]
    assert b"duplicate_record" in got[0][1]


def test_batch_fn_and_collect_equal_the_run(conll):
    """The one batched adapter (`registry.batch_fn`) through Dataset.map with 2 processes, then
    `registry.collect` for the sequential steps, gives the run's records and rejections."""
    import datasets

    from instructgen.io.tagged import read_tagged

    sentences = [s for s in read_tagged(conll, on_error="skip") if not isinstance(s, instructgen.Rejected)]
    ds = datasets.Dataset.from_list([{"tokens": s.tokens, "tags": s.tags} for s in sentences])
    options = NerOptions(seed=3, max_empty_ratio=0.25)
    direct = registry.run_task("ner", options, ds)  # a Dataset: its rows become items by from_row
    fn = registry.batch_fn("ner", options, direct.plan)
    mapped = ds.map(
        fn, batched=True, batch_size=2, with_indices=True, num_proc=2, remove_columns=ds.column_names
    )
    collected = registry.collect("ner", options, mapped, direct.plan)
    assert collected.records == direct.records
    assert [(x.reason, x.line) for x in collected.rejected] == [(x.reason, x.line) for x in direct.rejected]
    assert (
        collected.report.rejected
        == direct.report.rejected
        == {"duplicate_record": 1, "too_many_empty": 1, "bad_tag": 1}
    )
    assert collected.report.notes == direct.report.notes == ["empty answers: 1 of 3 (33.3%)"]


def _digest(path, src) -> str:
    """sha256 (16 hex) of a file with the input's path replaced, so the figure holds wherever
    ../shared lives (records' meta and rejects name the source file)."""
    import hashlib

    return hashlib.sha256(path.read_bytes().replace(str(src).encode(), b"SRC")).hexdigest()[:16]


# Golden figures: output and rejects digests and the stderr summary. The --no-dedup ones are those of
# c4f1698 (before ner ran on the pipeline core: byte-identical); the default drops exact repeats.
NER_GOLDEN = [
    (
        "conll2003_en/eng.testa",
        ("--target", "json", "--inverted-ratio", "0.2"),
        ("6f5e8d23e6f4dcd7", "e3b0c44298fc1c14", "ner: read 3250, wrote 3250, rejected 0\n  templates used: 10\n"
         "  note: scheme: iob1\n  note: empty answers: 645 of 3250 (19.8%)\n"),
        ("4a9ff754c947e856", "d0b7c9081ad4df3d", "ner: read 3250, wrote 3071, rejected 179\n"
         "  rejected duplicate_record: 179\n  templates used: 10\n  note: scheme: iob1\n"
         "  note: empty answers: 597 of 3071 (19.4%)\n"),
    ),
    (
        "msra_ner_zh/test_data",
        ("--target", "per-type", "--instruction-lang", "zh"),
        ("5ed12058dfcb0cc4", "eaab7fac72b84136", "ner: read 4631, wrote 2957, rejected 1674\n"
         "  rejected too_many_empty: 1674\n  templates used: 4\n  note: scheme: bio\n"
         "  note: empty answers: 443 of 2957 (15.0%), per-type target 15%\n  note: repaired i_starts_entity: 11\n"),
        ("d7062ace77f8da22", "33202ab6106c979b", "ner: read 4631, wrote 2928, rejected 1703\n"
         "  rejected too_many_empty: 1674\n  rejected duplicate_record: 29\n  templates used: 4\n"
         "  note: scheme: bio\n  note: empty answers: 429 of 2928 (14.7%), per-type target 15%\n"
         "  note: repaired i_starts_entity: 11\n"),
    ),
]  # fmt: skip


@pytest.mark.shared
@pytest.mark.parametrize(
    ("rel", "args", "before", "deduped"), NER_GOLDEN, ids=["conll-json", "msra-per-type"]
)
def test_golden_output_and_summary(shared_data, tmp_path, run_cli, rel, args, before, deduped):
    src = shared_data / rel
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    for extra, want in ((("--no-dedup",), before), ((), deduped)):
        res = run_cli("ner", src, *args, *extra, "-q", "--meta", "--rejects", rej, "-o", out)
        assert res.exit_code == 0, res.stderr
        assert (_digest(out, src), _digest(rej, src), res.stderr) == want


def test_a_repeated_empty_sentence_is_rejected_without_the_quota_marker(tmp_path, run_cli):
    """The empty quota's marker (`_no_entities` in the outcome's example) never reaches the rejects
    file: a duplicate of a sentence without entities shows the text and template only."""
    src, out, rej = tmp_path / "d.conll", tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    src.write_text("It O\nrains O\n\nAnn B-PER\n\nIt O\nrains O\n", encoding="utf-8")
    res = run_cli("ner", src, "--rejects", rej, "-o", out)
    assert res.exit_code == 0, res.stderr
    [row] = _rows(rej)
    assert row["reason"] == "duplicate_record" and row["line"] == 6
    assert set(row["example"]) == {"text", "template_id"} and row["example"]["text"] == "It rains"
