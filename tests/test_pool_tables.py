"""Per-language tables in pool files (issue 12 item 2): how a language writes NER answers and
classification options is data of that language's pool, declared per task in `TaskSpec.tables`.

Checked here: the shipped values (they were ner.py's STYLE/FORMAT_HINTS/LABEL_FORMS/TYPE_NOTES/
DEFAULT_LABELS and classification.py's HEADERS/INLINE_SEP, moved byte for byte), strict validation
with file, line and key in the error, the fallback a pool language without the tables gets (base
language, then English; none for label_forms/type_notes), and a user pool that brings its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from instructgen.converters.classification import classify
from instructgen.converters.ner import Entity, NerConverter, NerOptions, Verbaliser, ner, parse_target
from instructgen.errors import ConfigError, TemplateError
from instructgen.templates.pool import PoolSet, load_pool

NER_KNOWN = (
    "answer_style, description, format_hints, label_forms, labels, language, task, templates, "
    "type_notes, version"
)

NER_DE = """\
task: ner
language: {lang}
{extra}templates:
  - id: ner-{lang}-001
    targets: [list, json, inline]
    instruction: "Finde alle Entitäten. Typen: {{{{ entity_types }}}}. {{{{ format_hint }}}}"
    input: "{{{{ text }}}}"
    output: "{{{{ entities }}}}"
  - id: ner-{lang}-002
    instruction: "Nenne alle {{{{ entity_type }}}}."
    input: "{{{{ text }}}}"
    output: "{{{{ entities }}}}"
  - id: ner-{lang}-003
    kind: inverted
    instruction: "Schreibe einen Satz, in dem \\"{{{{ entity }}}}\\" als {{{{ entity_type }}}} vorkommt."
    output: "{{{{ text }}}}"
"""

CLS_DE = """\
task: classification
language: de
{extra}templates:
  - id: cls-de-001
    instruction: "Ordne den Text ein.\\n{{{{ options }}}}"
    input: "{{{{ text }}}}"
    output: "{{{{ label }}}}"
  - id: cls-de-002
    instruction: "Welche Kategorie ({{{{ label_names }}}})?"
    input: "{{{{ text }}}}"
    output: "{{{{ label }}}}"
"""

SENTENCE = {
    "tokens": ["Angela", "Merkel", "besucht", "Paris", "."],
    "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"],
}
EMPTY = {"tokens": ["Es", "regnet", "."], "tags": ["O", "O", "O"]}


def _pool(tmp_path: Path, text: str, name: str = "pool.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_shipped_ner_tables():
    pools = PoolSet.load("ner")
    en, zh = pools.table("answer_style", "en"), pools.table("answer_style", "zh")
    assert (en.type_separator, en.entity_separator, en.empty) == (": ", "; ", "None")
    assert (zh.type_separator, zh.entity_separator, zh.empty) == ("：", "；", "无")
    assert pools.table("format_hints", "en") == {
        "list": 'Answer as "type: entity; type: entity", or "None".',
        "json": 'Answer with a JSON list of {"entity": ..., "type": ...} objects, or [].',
        "inline": "Copy the sentence and mark each entity as [entity](type).",
    }
    assert (
        pools.table("format_hints", "zh")["list"]
        == "请按“类型：实体；类型：实体”的格式回答，没有则回答“无”。"
    )
    forms = pools.table("label_forms", "en")
    assert list(forms) == ["PER", "LOC", "ORG", "MISC", "GPE", "DATE", "TIME", "NORP"]
    assert (forms["ORG"].plural, forms["ORG"].singular) == ("organization names", "an organization")
    assert pools.table("label_forms", "zh")["GPE"].plural == "地缘政治实体（国家、城市、州省等）"
    assert pools.table("type_notes", "en") == {
        "MISC": "other named entities: nationalities, events, works, products"
    }
    assert pools.labels_for("en") == {
        "PER": "person",
        "LOC": "location",
        "ORG": "organization",
        "MISC": "miscellaneous",
        "GPE": "geopolitical entity",
        "DATE": "date",
        "TIME": "time",
        "NORP": "group",
    }
    assert pools.labels_for("zh")["NORP"] == "群体"


def test_shipped_classification_tables():
    pools = PoolSet.load("classification")
    assert pools.table("option_headers", "en") == ["Options:", "OPTIONS:", "Choices:", "Possible answers:"]
    assert pools.table("option_headers", "zh") == ["选项：", "可选答案：", "候选项："]
    assert (pools.table("list_separator", "en"), pools.table("list_separator", "zh")) == (", ", "、")


def test_fallback_base_language_then_english_or_none(tmp_path):
    de = _pool(tmp_path, NER_DE.format(lang="de", extra=""))
    tw = _pool(tmp_path, NER_DE.format(lang="zh-TW", extra=""), "tw.yaml")
    pools = PoolSet.load("ner", [de, tw])
    assert pools.table("answer_style", "de").empty == "None"  # no table: English
    assert pools.table("answer_style", "zh-TW").empty == "无"  # no table: its base language
    assert pools.table("label_forms", "de") is None  # English words would not fit a German question
    assert pools.table("type_notes", "de") is None
    assert pools.table("label_forms", "zh-TW")["PER"].plural == "人名"
    with pytest.raises(ConfigError, match=r"^task 'ner' declares no pool table 'option_headers'$"):
        pools.table("option_headers", "en")


def test_labels_layer_english_base_and_own(tmp_path):
    extra = "labels:\n  PER: Person\n"
    pools = PoolSet.load("ner", [_pool(tmp_path, NER_DE.format(lang="de", extra=extra))])
    words = pools.labels_for("de")
    assert (words["PER"], words["LOC"], words["NORP"]) == ("Person", "location", "group")


def test_unknown_key_names_the_known_ones(tmp_path):
    path = _pool(tmp_path, NER_DE.format(lang="de", extra="colour: blue\n"))
    with pytest.raises(TemplateError) as exc:
        load_pool(path)
    assert str(exc.value) == f"{path}: unknown top-level key(s): colour (known: {NER_KNOWN})"


def test_a_table_of_another_task_is_refused(tmp_path):
    path = _pool(tmp_path, NER_DE.format(lang="de", extra='list_separator: ", "\n'))
    with pytest.raises(TemplateError) as exc:
        load_pool(path)
    assert str(exc.value) == f"{path}: unknown top-level key(s): list_separator (known: {NER_KNOWN})"


def test_table_types_are_checked_strictly_with_file_line_and_key(tmp_path):
    extra = 'answer_style:\n  type_separator: 1\n  entity_separator: "; "\n  empty: ""\n  colour: red\n'
    path = _pool(tmp_path, NER_DE.format(lang="de", extra=extra))
    with pytest.raises(TemplateError) as exc:
        load_pool(path)
    assert str(exc.value) == (
        f"{path}:3: 'answer_style' (separators and the empty answer of list and per-type answers): "
        "answer_style.type_separator: Input should be a valid string; "
        "answer_style.empty: String should have at least 1 character; "
        "answer_style.colour: Extra inputs are not permitted"
    )
    path = _pool(tmp_path, CLS_DE.format(extra="option_headers: []\n"), "cls.yaml")
    with pytest.raises(TemplateError) as exc:
        load_pool(path)
    assert str(exc.value) == (
        f"{path}:3: 'option_headers' (the headers an options list starts with): "
        "option_headers: List should have at least 1 item after validation, not 0"
    )
    path = _pool(tmp_path, NER_DE.format(lang="de", extra="format_hints:\n  list: [a]\n"), "hints.yaml")
    with pytest.raises(
        TemplateError, match=r"hints\.yaml:3: .*format_hints\.list: Input should be a valid string$"
    ):
        load_pool(path)


def test_ner_pool_in_a_new_language_without_tables_writes_like_english(tmp_path):
    """A user pool for German with no tables: English separators, empty answer and hints; type words
    from `labels` over English's; no English noun phrases in a per-type question."""
    path = _pool(tmp_path, NER_DE.format(lang="de", extra="labels:\n  PER: Person\n"))
    common = {"instruction_lang": "de", "templates": [path], "meta": True}
    run = ner([SENTENCE, EMPTY], target="list", **common)
    assert [r.output for r in run.records] == ["Person: Angela Merkel; location: Paris", "None"]
    assert run.records[0].instruction == (
        'Finde alle Entitäten. Typen: location, Person. Answer as "type: entity; type: entity", or "None".'
    )
    conv = NerConverter(NerOptions(target="per-type", instruction_lang="de", templates=(path,)))
    assert conv.type_phrase("LOC") == "location"  # no label_forms in German: the type words themselves
    # the same, with the shipped templates left out: the shipped tables stay underneath
    alone = ner([SENTENCE, EMPTY], target="list", builtin_templates=False, **common)
    assert [r.output for r in alone.records] == [r.output for r in run.records]


def test_ner_pool_brings_its_own_tables(tmp_path):
    extra = (
        'answer_style: {type_separator: " = ", entity_separator: " | ", empty: "keine"}\n'
        'format_hints: {list: "Antworte als Typ = Entität."}\n'
        "label_forms:\n  PER: {plural: Personennamen, singular: eine Person}\n"
    )
    path = _pool(tmp_path, NER_DE.format(lang="de", extra=extra))
    run = ner([SENTENCE, EMPTY], target="list", instruction_lang="de", templates=[path], seed=1)
    assert [r.output for r in run.records] == ["person = Angela Merkel | location = Paris", "keine"]
    assert run.records[0].instruction.endswith("Antworte als Typ = Entität.")
    conv = NerConverter(NerOptions(instruction_lang="de", templates=(path,)))
    assert (conv.type_phrase("PER"), conv.type_phrase("PER", inverted=True)) == (
        "Personennamen",
        "eine Person",
    )
    # the answer reads back with the pool's style (it travels with the converter's Verbaliser)
    gold = [Entity("Angela Merkel", "PER"), Entity("Paris", "LOC")]
    assert parse_target(run.records[0].output, "list", "de", conv.verb) == gold


def test_hand_made_verbaliser_gets_the_shipped_style():
    verb = Verbaliser({"PER": "人名"}, "zh")
    assert parse_target("人名：张三；人名：李四", "list", "zh", verb) == [
        Entity("张三", "PER"),
        Entity("李四", "PER"),
    ]
    assert parse_target("无", "list", "zh", verb) == []


def test_classification_pool_with_and_without_tables(tmp_path):
    """A German pool without tables shows English headers and ", " (as HEADERS/INLINE_SEP did for a
    language they lacked); one with `option_headers` and `list_separator` shows its own."""
    rows = [{"text": "gut", "label": "pos"}, {"text": "schlecht", "label": "neg"}]
    plain = _pool(tmp_path, CLS_DE.format(extra=""))
    own = _pool(
        tmp_path, CLS_DE.format(extra='option_headers: ["Auswahl:"]\nlist_separator: " / "\n'), "own.yaml"
    )
    written = {}
    for name, path in (("plain", plain), ("own", own)):
        run = classify(rows, instruction_lang="de", templates=[path], option_order="fixed", seed=0)
        written[name] = [(r.instruction, r.output) for r in run.records]
    assert written["plain"] == [
        ("Welche Kategorie (neg, pos)?", "pos"),
        ("Ordne den Text ein.\nPossible answers:\n(A) neg\n(B) pos", "(A) neg"),
    ]
    assert written["own"] == [
        ("Welche Kategorie (neg / pos)?", "pos"),
        ("Ordne den Text ein.\nAuswahl:\n(A) neg\n(B) pos", "(A) neg"),
    ]
