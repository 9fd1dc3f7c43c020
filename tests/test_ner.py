"""NER: schemes, repairs, readers' errors, and round trips on the shared CoNLL and MSRA sets."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instructgen
from instructgen.converters.ner import Entity, NerConverter, NerOptions, NerRun, parse_target
from instructgen.converters.ner_tags import Span, decode, detect_scheme, encode
from instructgen.errors import ConfigError, InputError
from instructgen.io.tagged import read_tagged
from instructgen.schema import Record

TARGETS = ["list", "json", "inline", "per-type"]


@pytest.mark.parametrize(
    ("tags", "scheme", "spans"),
    [
        (["I-PER", "I-PER", "O", "I-LOC"], "iob1", [Span(0, 2, "PER"), Span(3, 4, "LOC")]),
        (["I-PER", "B-PER", "O"], "iob1", [Span(0, 1, "PER"), Span(1, 2, "PER")]),
        (["B-PER", "I-PER", "O", "B-LOC"], "bio", [Span(0, 2, "PER"), Span(3, 4, "LOC")]),
        (["B-PER", "B-PER"], "bio", [Span(0, 1, "PER"), Span(1, 2, "PER")]),
        (["B-ORG", "I-ORG", "E-ORG", "S-LOC", "O"], "bioes", [Span(0, 3, "ORG"), Span(3, 4, "LOC")]),
    ],
)
def test_decode_well_formed(tags, scheme, spans):
    repairs = Counter()
    assert decode(tags, scheme, repairs) == spans
    assert not repairs
    assert encode(spans, len(tags), scheme) == tags


@pytest.mark.parametrize(
    ("tags", "scheme", "spans", "repairs"),
    [
        (["O", "I-PER", "I-PER"], "bio", [Span(1, 3, "PER")], {"i_starts_entity": 1}),
        (["I-PER"], "bio", [Span(0, 1, "PER")], {"i_starts_entity": 1}),
        (["B-PER", "I-LOC"], "bio", [Span(0, 1, "PER"), Span(1, 2, "LOC")], {"i_starts_entity": 1}),
        (["B-PER", "O"], "bioes", [Span(0, 1, "PER")], {"unclosed_entity": 1}),
        (["B-PER", "I-PER"], "bioes", [Span(0, 2, "PER")], {"unclosed_entity": 1}),
        (["O", "E-LOC"], "bioes", [Span(1, 2, "LOC")], {"e_starts_entity": 1}),
        (["B-PER", "S-LOC"], "bioes", [Span(0, 1, "PER"), Span(1, 2, "LOC")], {"unclosed_entity": 1}),
    ],
    ids=[
        "i-after-o",
        "i-at-start",
        "i-after-other-type",
        "dangling-b",
        "b-i-no-e",
        "e-without-b",
        "b-then-s",
    ],
)
def test_each_repair_case(tags, scheme, spans, repairs):
    counted = Counter()
    assert decode(tags, scheme, counted) == spans
    assert counted == repairs


def test_scheme_detection_by_majority():
    assert detect_scheme([["I-PER", "O", "I-LOC", "B-LOC"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER", "O"], ["I-LOC"], ["B-ORG"]]) == "bio"  # a chunked BIO file
    assert detect_scheme([["S-PER"]]) == "bioes"
    assert detect_scheme([["B-PER", "VERB", "I-PER"]]) == "bio"  # an unknown tag is rejected later, not here


def test_unknown_tag_is_a_counted_rejection(tmp_path):
    p = tmp_path / "x.conll"
    p.write_text("John\tB-PER\nruns\tVERB\n", encoding="utf-8")
    run = instructgen.ner(p, scheme="bio")
    assert run.report.rejected == {"bad_tag": 1}
    assert run.rejected[0].detail == "unknown tag 'VERB' (expected O, or B-/I-/E-/S- followed by a type)"
    assert (run.rejected[0].source_file, run.rejected[0].line) == (str(p), 1)


@given(
    st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["PER", "LOC"]), st.integers(0, 2)), max_size=6),
    st.sampled_from(["iob1", "bio", "bioes"]),
)
def test_encode_decode_round_trip(parts, scheme):
    spans, pos = [], 0
    for length, label, gap in parts:
        pos += gap
        spans.append(Span(pos, pos + length, label))
        pos += length
    assert decode(encode(spans, pos, scheme), scheme) == spans


_ALPHABET = {
    "iob1": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "bio": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "bioes": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
}


@given(st.data(), st.sampled_from(["iob1", "bio", "bioes"]))
def test_decode_keeps_every_entity_token_of_any_sequence(data, scheme):
    """Malformed sequences included: repairs may split or start entities, but every tagged token
    ends up in exactly one span of its own type, and no O token in any."""
    tags = data.draw(st.lists(st.sampled_from(_ALPHABET[scheme]), max_size=12))
    spans = decode(tags, scheme)
    covered = {}
    prev_end = 0
    for sp in spans:
        assert prev_end <= sp.start < sp.end <= len(tags)
        prev_end = sp.end
        for i in range(sp.start, sp.end):
            covered[i] = sp.label
    assert covered == {i: t[2:] for i, t in enumerate(tags) if t != "O"}


def test_reader_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.conll"
    p.write_text("John B-PER\nonlyonecolumn\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(read_tagged(p))
    assert str(info.value) == f"{p}:2: expected at least 2 columns (token and tag), found 1"
    j = tmp_path / "t.jsonl"
    j.write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n{"tokens": ["a"], "tags": [1]}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"t\.jsonl:1, field 'tags': 2 tokens but 1 tags"):
        list(read_tagged(j))
    items = list(read_tagged(j, on_error="skip"))
    assert [getattr(i, "reason", None) for i in items] == ["misaligned_tags", "missing_tag_names"]
    s = tmp_path / "s.jsonl"
    s.write_text(
        '{"text": "Hi Bob", "entities": [{"start": 3, "end": 9, "label": "PER"}]}\n', encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"s\.jsonl:1, field 'entities\[0\]': span 3-9 is outside the text"):
        list(read_tagged(s))


def test_integer_tags_span_jsonl_and_dataset(tmp_path):
    import datasets

    j = tmp_path / "t.jsonl"
    j.write_text(
        '{"tokens": ["John", "lives", "in", "Paris"], "tags": [1, 0, 0, 3]}\n'
        '{"text": "Ann met Bob", "entities": [{"start": 0, "end": 3, "label": "PER"}, '
        '{"start": 8, "end": 11, "label": "PER"}]}\n',
        encoding="utf-8",
    )
    run = instructgen.ner(
        j, tag_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], scheme="bio", target="json", meta=True
    )
    assert [r.meta["entities"] for r in run.records] == [
        [["John", "PER"], ["Paris", "LOC"]],
        [["Ann", "PER"], ["Bob", "PER"]],
    ]
    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-ORG", "I-ORG"])),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"tokens": [["Acme", "Corp", "wins"]], "ner_tags": [[1, 2, 0]]}, features=feats
    )
    run = instructgen.ner(ds, scheme="bio", meta=True)
    assert run.records[0].meta["entities"] == [["Acme Corp", "ORG"]]
    assert run.records[0].output == "organization: Acme Corp"


def test_label_override_and_empty_answers(tmp_path):
    p = tmp_path / "z.txt"
    p.write_text("张\tB-PER\n三\tI-PER\n来\tO\n\n好\tO\n", encoding="utf-8")
    run = instructgen.ner(p, instruction_lang="zh", labels=[("PER", "人物")], meta=True)
    assert [r.output for r in run.records] == ["人物：张三", "无"]
    run = instructgen.ner(p, max_empty_ratio=0.0)
    assert [r.output for r in run.records] == ["person: 张三"]
    assert run.report.rejected == {"too_many_empty": 1}


def test_batch_fn_matches_the_converter():
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "tokens": [["John", "runs"], ["Bob", "and", "Ann"]],
            "tags": [["B-PER", "O"], ["B-PER", "O", "B-PER"]],
        }
    )
    fn = instructgen.NerBatchFn(NerOptions(scheme="bio", seed=4), label_set=["PER"])
    mapped = ds.map(fn, batched=True, remove_columns=ds.column_names, num_proc=2)
    direct = instructgen.ner(
        [{"tokens": t, "tags": g} for t, g in zip(ds["tokens"], ds["tags"])], scheme="bio", seed=4
    )
    assert (
        mapped["output"] == [r.output for r in direct.records] == ["person: John", "person: Bob; person: Ann"]
    )
    with pytest.raises(ConfigError, match="needs an explicit scheme"):
        instructgen.NerBatchFn(NerOptions(), label_set=[])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("path", "lang", "scheme"),
    [("conll2003_en/eng.testa", "en", "iob1"), ("msra_ner_zh/test_data", "zh", "bio")],
)
def test_shared_sets_round_trip_to_gold_spans(shared_data, path, lang, scheme, target):
    conv = NerConverter(NerOptions(target=target, instruction_lang=lang, meta=True))
    run = conv.run(read_tagged(shared_data / path))
    assert run.scheme == scheme
    # per-type holds its empty share (15%) by leaving out the surplus sentences without entities;
    # records that repeat an earlier one exactly are dropped (issue 12: 179 of CoNLL testa's 3,250)
    dups = run.report.rejected["duplicate_record"]
    kept = run.report.read - run.report.rejected["too_many_empty"] - dups
    assert len(run.records) == kept > 2700
    assert target == "per-type" or kept == run.report.read - dups
    assert set(run.report.rejected) <= {"too_many_empty", "duplicate_record"}
    for r in run.records:
        gold = [Entity(t, label) for t, label in r.meta["entities"]]
        if target == "per-type":
            gold = [e for e in gold if e.label == r.meta["asked_type"]]
        assert parse_target(r.output, target, lang, conv.verb, only=r.meta["asked_type"]) == gold, r.output
    if path.startswith("msra"):
        assert run.repairs == {"i_starts_entity": 11}  # the 11 chunks that start inside an entity


def test_iob1_file_gives_the_same_spans_as_its_bio_conversion(shared_data, tmp_path):
    from instructgen.converters.ner_tags import decode as dec

    src = shared_data / "conll2003_en" / "eng.testb"
    sentences = [s for s in read_tagged(src)]
    bio_file = tmp_path / "testb.bio"
    with open(bio_file, "w", encoding="utf-8") as f:
        for s in sentences:
            for tok, tag in zip(s.tokens, encode(dec(s.tags, "iob1"), len(s.tags), "bio")):
                f.write(f"{tok} {tag}\n")
            f.write("\n")
    a = instructgen.ner(src, meta=True)
    b = instructgen.ner(bio_file, meta=True)
    assert (a.scheme, b.scheme) == ("iob1", "bio")
    assert [r.meta["entities"] for r in a.records] == [r.meta["entities"] for r in b.records]
    assert sum(len(r.meta["entities"]) for r in a.records) > 5000


def test_cli_ner(tmp_path, run_cli, shared_data):
    out = tmp_path / "o.jsonl"
    res = run_cli(
        "ner",
        shared_data / "conll2003_en" / "eng.train.head5000",
        "--target",
        "json",
        "--meta",
        "--inverted-ratio",
        "0.2",
        "-o",
        out,
    )
    assert res.exit_code == 0, res.stderr
    assert "note: scheme: iob1" in res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inverted = [r for r in rows if r["meta"]["target"] == "inverted"]
    assert inverted and all(r["output"] for r in inverted)
    assert (
        len({r["meta"]["template_id"] for r in rows}) == 10
    )  # 8 generic + 2 inverted (per-type ones unused)


def test_stream_knows_the_total_first_and_holds_no_records(tmp_path):
    p = tmp_path / "mixed.conll"
    p.write_text("John B-PER\nruns O\n\nbroken\n\nAnn I-PER\n\nParis B-LOC\n", encoding="utf-8")
    conv = NerConverter(NerOptions(scheme="bio"))
    run = NerRun()
    outcomes = conv.stream(lambda: read_tagged(p, on_error="skip"), run)
    assert (run.report.read, run.report.written, run.records) == (4, 0, [])  # read, nothing converted yet
    items = list(outcomes)
    # input order: a second read streams the reader's rejections where they occur (issue 11 item 16:
    # holding them, or the sentences, until the end made memory grow with the input)
    assert [type(x).__name__ for x in items] == ["Record", "Rejected", "Record", "Record"]
    assert (items[1].reason, items[1].line) == ("malformed_row", 4)
    assert [x.output for x in items if isinstance(x, Record)] == [
        "person: John",
        "person: Ann",
        "location: Paris",
    ]
    assert run.repairs == {"i_starts_entity": 1}
    assert (run.report.written, run.records, run.rejected) == (3, [], [])
    again = conv.run(read_tagged(p, on_error="skip"))
    assert [r.output for r in again.records] == [x.output for x in items if isinstance(x, Record)]


def test_only_per_type_records_name_an_asked_type(tmp_path):
    p = tmp_path / "t.conll"
    p.write_text("John B-PER\nin O\nParis B-LOC\n", encoding="utf-8")
    assert instructgen.ner(p, target="list").records[0].meta["asked_type"] is None
    asked = instructgen.ner(p, target="per-type").records[0].meta["asked_type"]
    assert asked in ("PER", "LOC")


def test_cli_ner_streams_rejects_and_summary(tmp_path, run_cli):
    src = tmp_path / "in.conll"
    src.write_text("John B-PER\nruns VERB\n\nbroken\n\nAnn B-PER\n", encoding="utf-8")
    out, rej = tmp_path / "o.jsonl", tmp_path / "rej.jsonl"
    # 2 of 3 rejected is over the default --max-reject-ratio 0.5 (exit 3, see test_exit_codes.py)
    res = run_cli("ner", src, "--on-error", "skip", "--rejects", rej, "--max-reject-ratio", "1", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert [json.loads(x)["output"] for x in out.read_text().splitlines()] == ["person: Ann"]
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert [(r["reason"], r["line"]) for r in rejected] == [
        ("bad_tag", 1),
        ("malformed_row", 4),
    ]  # input order
    assert res.stderr.splitlines()[:3] == [
        "ner: read 3, wrote 1, rejected 2",
        "  rejected bad_tag: 1",
        "  rejected malformed_row: 1",
    ]


def _spans_file(tmp_path, rows):
    p = tmp_path / "spans.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


def test_an_answer_that_would_not_read_back_is_rejected_not_written(tmp_path):
    p = _spans_file(
        tmp_path,
        [
            {"text": "Tom; Jerry live here", "entities": [{"start": 0, "end": 10, "label": "PER"}]},
            {"text": "Read [docs](person) by Ann", "entities": [{"start": 23, "end": 26, "label": "PER"}]},
            {"text": "Ann [smiles]", "entities": [{"start": 0, "end": 3, "label": "PER"}]},
        ],
    )
    listed = instructgen.ner(p, target="list")
    assert [r.output for r in listed.records] == ["person: Ann", "person: Ann"]
    assert listed.report.rejected == {"ambiguous_target": 1}
    assert listed.rejected[0].line == 1
    assert listed.rejected[0].detail == (
        "the list answer 'person: Tom; Jerry' does not read back as the sentence's entities (an entity "
        "or the text contains the answer's separators); --target json has no such limit"
    )
    inline = instructgen.ner(p, target="inline")
    assert [r.output for r in inline.records] == ["[Tom; Jerry](person) live here", "[Ann](person) [smiles]"]
    assert [(r.reason, r.line) for r in inline.rejected] == [("ambiguous_target", 2)]
    as_json = instructgen.ner(p, target="json")
    assert len(as_json.records) == 3 and not as_json.rejected


def test_label_words_must_not_contain_the_answer_syntax():
    with pytest.raises(ConfigError) as info:
        NerConverter(NerOptions(target="list", labels=(("PER", "person; human"),)))
    assert str(info.value) == (
        "label words 'person; human' (for PER) contain '; ', which --target list uses as syntax; "
        "choose other words (--label PER=...)"
    )
    NerConverter(NerOptions(target="json", labels=(("PER", "person; human"),)))  # json has no such syntax


def test_batch_fn_reports_bad_rows_in_a_column_instead_of_stopping():
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "tokens": [["John", "runs"], ["Bob", "x"], ["Ann"]],
            "tags": [["B-PER", "O"], ["B-PER", "VERB"], ["B-PER"]],
        }
    )
    fn = instructgen.NerBatchFn(NerOptions(scheme="bio"), label_set=["PER"])
    mapped = ds.map(fn, batched=True, remove_columns=ds.column_names)
    assert mapped["rejected"] == [
        None,
        "bad_tag: unknown tag 'VERB' (expected O, or B-/I-/E-/S- followed by a type)",
        None,
    ]
    assert mapped["output"] == ["person: John", "", "person: Ann"]


# --- issue 11 item 6: inline marks the tagged tokens ---------------------------------------------

_MARK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])+?)\]\(([^()]+)\)")


def _unmark(answer: str) -> tuple[str, list[tuple[int, str, str]]]:
    """An inline answer's plain text and its marks as (offset in that text, entity, words)."""
    plain, marks, pos = [], [], 0
    for m in _MARK.finditer(answer):
        plain.append(answer[pos : m.start()])
        at = sum(len(p) for p in plain)
        marks.append((at, m.group(1), m.group(2)))
        plain.append(m.group(1))
        pos = m.end()
    plain.append(answer[pos:])
    return "".join(plain), marks


def test_inline_marks_the_tagged_tokens_not_an_earlier_occurrence():
    rows = [{"tokens": ["Parisian", "food", "in", "Paris"], "tags": ["O", "O", "O", "B-LOC"]}]
    run = instructgen.ner(rows, target="inline", scheme="bio")
    assert (
        run.records[0].output == "Parisian food in [Paris](location)"
    )  # was "[Paris](location)ian food in Paris"
    spans = [{"text": "北京人在北京", "entities": [{"start": 4, "end": 6, "label": "LOC"}]}]
    assert instructgen.ner(spans, target="inline").records[0].output == "北京人在[北京](location)"


@pytest.mark.parametrize(
    ("path", "lang", "moved"),
    [("conll2003_en/eng.testa", "en", 2), ("msra_ner_zh/test_data", "zh", 6)],
)
def test_shared_inline_marks_sit_at_the_gold_token_offsets(shared_data, path, lang, moved):
    """Every mark of every inline record sits at the character offset of its tagged tokens; the
    issue counted 2 CoNLL testa and 6 MSRA records that marked an earlier occurrence instead."""
    from instructgen.converters.ner import token_separator
    from instructgen.converters.ner_tags import decode as dec

    sentences = {s.line: s for s in read_tagged(shared_data / path)}
    run = instructgen.ner(shared_data / path, target="inline", instruction_lang=lang, meta=True)
    first_occurrence_differs = 0
    for r in run.records:
        sent = sentences[r.meta["line"]]
        sep = token_separator(sent.tokens)
        offsets = [sum(len(t) + len(sep) for t in sent.tokens[:i]) for i in range(len(sent.tokens))]
        gold = [
            (offsets[s.start], sep.join(sent.tokens[s.start : s.end])) for s in dec(sent.tags, run.scheme)
        ]
        plain, marks = _unmark(r.output)
        assert plain == sep.join(sent.tokens)
        assert [(at, text) for at, text, _ in marks] == gold, r.output
        first_occurrence_differs += any(plain.find(text) != at for at, text in gold)
    assert first_occurrence_differs >= moved  # these are the records the text search got wrong


# --- issue 11 item 9: every written answer reads back ----------------------------------------------

_PIECES = [
    "a",
    "Bob",
    "x y",
    "; ",
    ": ",
    ";",
    ":",
    "；",
    "：",
    "[",
    "]",
    "(",
    ")",
    "](",
    "None",
    "无",
    "北京",
    " ",
    "",
]


@st.composite
def _tagged_rows(draw):
    rows = []
    labels = draw(st.lists(st.sampled_from(["PER", "LOC", "Per", "a: b", "x; y", "q)", "[t]", "per"]), min_size=1,
                           max_size=3))  # fmt: skip
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        tokens = draw(st.lists(st.sampled_from(_PIECES), min_size=n, max_size=n))
        tags = [draw(st.sampled_from(["O", *(f"{p}-{lab}" for lab in labels for p in "BI")])) for _ in tokens]
        rows.append({"tokens": tokens, "tags": tags})
    return rows


_CONVERTERS: dict[tuple[str, str], NerConverter] = {}


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=150, deadline=None)
@given(rows=_tagged_rows(), zh=st.booleans())
def test_every_written_answer_reads_back_to_the_gold_spans(target, rows, zh):
    """Random sentences whose tokens and labels hold the answer syntax ("; ", ": ", brackets, the
    empty answer): the run is refused with a ConfigError naming the label, or each written answer
    parses back to exactly the tagged spans (issue 11 item 9: 1,161 of 2,000 fuzz cases did not)."""
    from instructgen.converters.ner import iter_rows

    lang = "zh" if zh else "en"
    key = (target, lang)
    if key not in _CONVERTERS:  # loading the pools is most of the cost of a converter
        _CONVERTERS[key] = NerConverter(
            NerOptions(target=target, scheme="bio", instruction_lang=lang, meta=True)
        )
    conv = _CONVERTERS[key]
    try:
        run = conv.run(lambda: iter_rows(rows, None))
    except ConfigError as exc:
        assert "label" in str(exc)
        return
    labels = sorted({lab for r in rows for t in r["tags"] if t != "O" for lab in [t[2:]]})
    assert run.report.read == len(rows) == len(run.records) + len(run.rejected)
    for r in run.records:
        if r.meta["target"] == "inverted":
            continue
        gold = [Entity(t, label) for t, label in r.meta["entities"]]
        if target == "per-type":
            gold = [e for e in gold if e.label == r.meta["asked_type"]]
        answer = r.output
        back = parse_target(answer, target, lang, conv.verb, only=r.meta["asked_type"], labels=labels)
        assert back == gold, answer
