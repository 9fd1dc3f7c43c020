"""Issue 13 items 8 (NER) and 9 (classification): records a careful practitioner would train on.

Measured over the shared CoNLL-2003, MSRA, SST-2 and ChnSentiCorp files (skipped without them):
- per-type NER asks mostly about types the sentence has; 15% of its records answer "None"/"无"
  (a uniformly drawn type answered "None" in 68% of CoNLL and 75% of MSRA records);
- label words fit the slot they fill: type lists only after "types:" (never "Identify every
  location, miscellaneous, ..."), no "a organization" (90 of 733 inverted CoNLL records before),
  MISC described as CoNLL-2003 defines it (Tjong Kim Sang & De Meulder 2003: names of
  nationalities, events, works of art and products that are not persons, locations or
  organizations), and the inline target worded as marking, not extraction;
- every classification prompt shows its label set (16% did not), as FLAN's classification
  templates always do (google-research/FLAN, flan/templates.py: every sst2/imdb template ends in
  {options_}); integer labels without names are an error, not the answers "0"/"1".
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

import instructgen
from instructgen.converters.classification import iter_rows
from instructgen.converters.ner import NerConverter, NerOptions, sentence_entities
from instructgen.errors import ConfigError
from instructgen.io.tagged import read_tagged

CONLL = "conll2003_en/eng.testa"
MSRA = "msra_ner_zh/test_data"
SST2 = ("sst2/glue_sst2_dev.tsv", dict(text_col="sentence", label_names=("negative", "positive")))
CHNSENTI = (
    "chnsenticorp_htl/ChnSentiCorp_htl_all.head2556pos_all2444neg.csv",
    dict(text_col="review", label_names=("负面", "正面"), instruction_lang="zh"),
)
SMALL = (
    "German NNP I-MISC\nofficials NNS O\nmet VBD O\nAcme NNP I-ORG\nin IN O\nParis NNP I-LOC\n. . O\n\n"
    "It PRP O\nrained VBD O\n. . O\n"
)


def _texts(path) -> dict[int, str]:
    """Each sentence's text by its first line, to take the sentence out of a rendered prompt."""
    return {s.line: sentence_entities(s, "iob1" if "conll" in str(path) else "bio", Counter())[0]
            for s in read_tagged(path)}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "lang", "empty", "written", "surplus"),
    [(CONLL, "en", 459, 3064, 186), (MSRA, "zh", 443, 2957, 1674)],
)
def test_per_type_holds_its_empty_share(shared_data, path, lang, empty, written, surplus):
    # dedup=False: the quota's own figures, unchanged since issue 13 (dedup is checked below)
    run = instructgen.ner(
        shared_data / path, target="per-type", instruction_lang=lang, meta=True, dedup=False
    )
    none = "None" if lang == "en" else "无"
    assert sum(r.output == none for r in run.records) == empty
    assert len(run.records) == written
    assert abs(empty / written - 0.15) <= 0.01  # the documented target (NerOptions.empty_share)
    # sentences without entities over the share are the only ones left out, and counted
    assert run.report.rejected == {"too_many_empty": surplus}
    assert run.report.notes == [
        f"empty answers: {empty} of {written} ({empty / written:.1%}), per-type target 15%"
    ]
    # a sentence with entities is asked about a type it has, except at the rate that makes up the share
    with_entities = [r for r in run.records if r.meta["entities"]]
    asked_present = sum(
        any(r.meta["asked_type"] == lab for _, lab in r.meta["entities"]) for r in with_entities
    )
    assert asked_present == len(with_entities) - (empty - (written - len(with_entities)))
    # with exact dedup (the default, issue 12) the same records less the repeats of an earlier one,
    # counted as duplicate_record; the quota still drops the same sentences (it runs first)
    deduped = instructgen.ner(shared_data / path, target="per-type", instruction_lang=lang, meta=True)
    firsts = list({(r.instruction, r.input, r.output): r for r in reversed(run.records)}.values())[::-1]
    assert deduped.records == sorted(firsts, key=lambda r: r.meta["line"])
    assert deduped.report.rejected == {"too_many_empty": surplus, "duplicate_record": written - len(firsts)}
    assert written - len(firsts) > 0


def test_uniform_type_draw_is_what_empty_share_none_gives(shared_data):
    """The old behaviour, kept behind empty_share=None: two thirds of the answers were "None"."""
    run = instructgen.ner(shared_data / CONLL, target="per-type", empty_share=None, dedup=False)
    assert (sum(r.output == "None" for r in run.records), len(run.records)) == (2218, 3250)


def test_max_empty_ratio_1_keeps_every_sentence_and_asks_types_the_sentence_has(tmp_path):
    p = tmp_path / "s.conll"
    p.write_text(SMALL, encoding="utf-8")
    run = instructgen.ner(p, target="per-type", seed=1, max_empty_ratio=1, meta=True)
    assert [(r.instruction, r.input, r.output) for r in run.records] == [
        (
            "Which other named entities (nationalities, events, works, products) appear in this text? "
            "Separate them with semicolons, or say None.",
            "German officials met Acme in Paris .",
            "German",
        ),
        (
            "Text: It rained .\nQuestion: which location names does the text mention? (Answer None if there "
            "are none.)",
            "",
            "None",
        ),
    ]
    # without --max-empty-ratio the empty share (15% of 2 records: none) leaves the second out
    run = instructgen.ner(p, target="per-type", seed=1)
    assert [r.output for r in run.records] == ["German"]
    assert run.report.rejected == {"too_many_empty": 1}
    with pytest.raises(ConfigError, match=r"empty_share must be in \[0, 1\), not 1.5"):
        instructgen.ner(p, target="per-type", empty_share=1.5)


@pytest.mark.parametrize("target", ["list", "json", "inline", "per-type"])
def test_english_label_words_fit_their_slots(shared_data, target):
    path = shared_data / CONLL
    texts = _texts(path)
    conv = NerConverter(NerOptions(target=target, inverted_ratio=0.3, meta=True, dedup=False))
    run = conv.run(read_tagged(path))
    types = conv.types_text(["LOC", "MISC", "ORG", "PER"])
    assert types == (
        "location, miscellaneous (other named entities: nationalities, events, works, products), "
        "organization, person"
    )
    article = re.compile(r"\ba [aeiouAEIOU]")
    inverted = 0
    for r in run.records:
        prompt = (r.instruction + "\n" + r.input).replace(texts[r.meta["line"]], "")
        assert not article.search(prompt), r.instruction  # "appears as a organization" was 90 of 733
        # the type list is a list, not a noun: only ever after "types:" ("Identify every location, ...")
        for m in re.finditer(re.escape(types), prompt):
            assert prompt[: m.start()].endswith(
                ("types: ", "Types: ", "to look for: ", "of these types: ")
            ), prompt
        inverted += r.meta["target"] == "inverted"
    assert inverted == 733


def test_inverted_and_per_type_phrases(tmp_path):
    p = tmp_path / "s.conll"
    p.write_text(SMALL, encoding="utf-8")
    run = instructgen.ner(p, inverted_ratio=1.0, seed=0, meta=True)
    assert (
        run.records[0].instruction == 'Give an example sentence in which "Acme" appears as an organization.'
    )
    conv = NerConverter(NerOptions())
    assert [conv.type_phrase(t, inverted=True) for t in ("PER", "LOC", "ORG", "MISC", "EVENT")] == [
        "a person",
        "a location",
        "an organization",
        "a named entity of another kind (a nationality, event, work or product)",
        'an entity of type "event"',
    ]
    assert [conv.type_phrase(t) for t in ("PER", "ORG", "EVENT")] == [
        "person names",
        "organization names",
        'entities of type "event"',
    ]


def test_chinese_label_words_fit_their_slots(shared_data, tmp_path):
    run = instructgen.ner(shared_data / MSRA, target="per-type", instruction_lang="zh", meta=True)
    assert not [r for r in run.records if "的其他" in r.instruction]  # "列出下面句子中所有的其他"
    assert {r.meta["asked_type"] for r in run.records} == {"LOC", "ORG", "PER"}
    p = tmp_path / "z.txt"
    p.write_text("中\tB-MISC\n国\tI-MISC\n人\tI-MISC\n在\tO\n北\tB-LOC\n京\tI-LOC\n", encoding="utf-8")
    got = instructgen.ner(p, target="per-type", instruction_lang="zh", seed=2).records[0]
    assert (got.instruction, got.output) == (
        "只抽取句子中的其他专有名词（民族、事件、作品、产品等），多个之间用“；”分隔，没有则回答“无”。",
        "中国人",
    )
    got = instructgen.ner(p, instruction_lang="zh", seed=0).records[0]
    assert (got.instruction, got.output) == (
        "对下面的文本做命名实体识别，需要识别的类型：地名、其他（民族、事件、作品、产品等其他专有名词）。"
        "请按“类型：实体；类型：实体”的格式回答，没有则回答“无”。",
        "其他：中国人；地名：北京",
    )
    got = instructgen.ner(p, instruction_lang="zh", seed=0, inverted_ratio=1).records[0]
    assert got.instruction == "写一个包含“中国人”的句子，其中它是其他专有名词（民族、事件、作品、产品等）。"


@pytest.mark.parametrize(
    ("path", "lang", "ids"),
    [
        (CONLL, "en", {"ner-en-015", "ner-en-016", "ner-en-017", "ner-en-018"}),
        (MSRA, "zh", {"ner-zh-015", "ner-zh-016", "ner-zh-017"}),
    ],
)
def test_inline_target_uses_marking_templates_only(shared_data, path, lang, ids):
    run = instructgen.ner(shared_data / path, target="inline", instruction_lang=lang, meta=True)
    assert set(run.report.templates) == ids
    run = instructgen.ner(shared_data / path, target="list", instruction_lang=lang, meta=True)
    assert set(run.report.templates) == {f"ner-{lang}-00{i}" for i in range(1, 9)}


def test_inline_record_is_worded_as_marking(tmp_path):
    p = tmp_path / "s.conll"
    p.write_text(SMALL, encoding="utf-8")
    rec = instructgen.ner(p, target="inline", seed=0).records[0]
    assert (rec.instruction, rec.output) == (
        "Label the named entities of the input in place. Allowed types: location, miscellaneous (other named "
        "entities: nationalities, events, works, products), organization. Copy the sentence and mark each "
        "entity as [entity](type).",
        "[German](miscellaneous) officials met [Acme](organization) in [Paris](location) .",
    )


def test_a_pool_target_that_does_not_exist_is_refused(tmp_path):
    pool = tmp_path / "p.yaml"
    pool.write_text(
        "task: ner\nlanguage: en\ntemplates:\n  - id: my-1\n    targets: [inlined]\n"
        '    instruction: "Mark the entities."\n    input: "{{ text }}"\n    output: "{{ entities }}"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        NerConverter(NerOptions(templates=(str(pool),)))
    assert str(info.value) == (
        f"{pool}:4: template my-1: unknown target 'inlined' in targets (known: list, json, inline, per-type)"
    )


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "kw"), [SST2, CHNSENTI], ids=["sst2", "chnsenticorp"])
def test_every_classification_record_shows_the_label_set(shared_data, path, kw):
    run = instructgen.classify(shared_data / path, seed=0, inverted_ratio=0.15, meta=True, **kw)
    texts = {line: row[kw["text_col"]].strip() for line, row in iter_rows(shared_data / path)}
    hidden = []
    for r in run.records:
        if r.meta["inverted"]:
            continue  # the prompt names the one label to write a text for
        prompt = (r.instruction + "\n" + r.input).replace(texts[r.meta["line"]], "")
        if not all(name in prompt for name in kw["label_names"]):
            hidden.append(r.instruction)
    assert hidden == []  # 138 of 872 (sst2) and 802 of 4,999 (ChnSentiCorp) before
    assert sum(not r.meta["inverted"] for r in run.records) > 700
    assert not [
        r for r in run.records if "Is this negative" in r.instruction or "Is this positive" in r.instruction
    ]


def test_integer_labels_without_names_stop_the_run(shared_data, run_cli, tmp_path):
    out = tmp_path / "o.jsonl"
    src = shared_data / SST2[0]
    res = run_cli("classify", src, "--text-col", "sentence", "-o", out)
    assert res.exit_code == 2
    assert res.stderr == (
        f"error: {src}: the labels are integers (0, 1) with no names, so the answers would be numbers: "
        "give the names in id order with --label-names, or a dataset whose label column is a ClassLabel\n"
    )
    assert not out.exists()
    # words for each integer label give them a meaning (ratings: "5" -> "5 stars")
    res = run_cli("classify", src, "--text-col", "sentence", "--verbalise", "0=negative", "--verbalise",
                  "1=positive", "--seed", "3", "-o", out)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    answers = {json.loads(line)["output"].split(" ")[-1] for line in out.read_text().splitlines()}
    assert answers == {"negative", "positive"}


def test_a_template_that_hides_the_label_set_is_refused(shared_data, run_cli, tmp_path):
    pool = tmp_path / "p.yaml"
    pool.write_text(
        "task: classification\nlanguage: en\ntemplates:\n  - id: my-1\n"
        '    instruction: "Is this review positive or negative?"\n    input: "{{ text }}"\n'
        '    output: "{{ label }}"\n  - id: my-2\n    instruction: "Categorize this text."\n'
        '    input: "{{ text }}"\n    output: "{{ label }}"\n',
        encoding="utf-8",
    )
    out = tmp_path / "o.jsonl"
    res = run_cli("classify", shared_data / SST2[0], "--text-col", "sentence", "--label-names",
                  "negative,positive", "--templates", pool, "-o", out)  # fmt: skip
    assert res.exit_code == 2
    # my-1 names every label in its question and passes; my-2 shows none
    assert res.stderr == (
        f"error: {pool}:8: template my-2 does not show the label set (no 'negative' in its prompt): use "
        "{{ options }} or {{ label_names }}, or name every label\n"
    )
    assert not out.exists()
