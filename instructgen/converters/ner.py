"""NER sentences -> instruction records, with targets that parse back to the gold spans.

Linearisations (`--target`):
- `list`:     "person: John Smith; location: Paris"   (zh: "人名：张三；地名：北京")
- `json`:     [{"entity": "John Smith", "type": "person"}, ...]
- `inline`:   "[John Smith](person) lives in [Paris](location)"
- `per-type`: one entity type per record ("List all organization names ..."), answers "A; B"
Sentences without entities answer "None" / "无"; `max_empty_ratio` keeps them from dominating.

Per-type records ask mostly about a type the sentence has: `empty_share` (default 15%) is the
share of per-type records whose answer is empty, held file-wide from the planning pass (a
sentence with entities is asked about an absent type at the rate that makes up the share; when
sentences without entities alone are over it, the surplus is rejected as `too_many_empty`). Asking
a uniformly drawn type answered "None" in 68% (CoNLL) / 75% (MSRA) of records: a model trained on
that learns to answer "None". The summary notes the share written.
Every linearisation has a parser (`parse_target`) and the tests assert parse(target) == gold.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Any

from ..determinism import choose_index, content_key, stable_hash
from ..errors import ConfigError
from ..io.tagged import TaggedSentence, row_to_sentence
from ..pipeline.run import Result
from ..quality.report import Report
from ..schema import Record, Rejected
from ..templates.pool import PoolSet
from ..templates.tasks import NerAnswerStyle, NerLabelForms
from .ner_tags import Span, decode
from .twopass import Source

TASK = "ner"
TARGETS = ("list", "json", "inline", "per-type")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")

# How each language writes NER answers and type words is pool data, in the tables of
# task_templates/ner/<lang>.yaml (declared in templates/tasks.py): `labels` (the answer's type words;
# users override them with --label PER=人物), `answer_style` (separators and the empty answer),
# `format_hints`, `label_forms` (a type's words in a per-type or inverted question: issue 13 item 8)
# and `type_notes` (what a vague type covers). A pool language without them falls back to its base
# language, then English (label_forms and type_notes: to none), as the Python tables did.
DEFAULT_EMPTY_SHARE = 0.15


def token_separator(tokens: list[str]) -> str:
    """No space between tokens of a CJK sentence (character-per-line files split even Latin words
    into letters: "N", "B", "A"), a space otherwise."""
    return "" if _CJK.search("".join(tokens)) else " "


@dataclass(frozen=True)
class Entity:
    text: str
    label: str  # the dataset's type (PER)
    # where the entity sits in the sentence's text (characters); -1 when unknown (an Entity made by
    # hand or parsed from an answer). Not part of equality: a parsed answer has no offsets.
    start: int = field(default=-1, compare=False)


def sentence_entities(sent: TaggedSentence, scheme: str, repairs: Counter) -> tuple[str, list[Entity]]:
    """The sentence's text and its entities, each with its character offset in that text: the
    inline target marks the tagged tokens, never an earlier occurrence of the same words."""
    if sent.char_spans is not None:
        text = sent.text or ""
        return text, [Entity(text[a:b], lab, a) for a, b, lab in sent.char_spans]
    tokens = sent.tokens
    spans = decode(sent.tags, scheme, repairs)
    sep = token_separator(tokens)
    text = sep.join(tokens)
    if not spans:
        return text, []
    chars = list(accumulate(map(len, tokens), initial=0))  # characters before token i, separators aside
    step = len(sep)
    return text, [
        Entity(sep.join(tokens[s.start : s.end]), s.label, chars[s.start] + s.start * step) for s in spans
    ]


@dataclass
class Verbaliser:
    names: dict[str, str]
    language: str
    style: NerAnswerStyle | None = None  # the pools' answer_style; None: the shipped one for the language

    def __call__(self, label: str) -> str:
        words = self.names.get(label)
        if words is None:
            return label.lower() if self.language == "en" else label
        return words

    def reverse(self, labels: Iterable[str] = ()) -> dict[str, str]:
        """Words -> type: the input's own `labels` first (an unknown "Foo" is written "foo" and must
        read back as "Foo"), then every configured name."""
        rev = {v: k for k, v in self.names.items()}
        rev.update((self(lab), lab) for lab in labels)
        return rev


def linearise(
    entities: list[Entity], target: str, lang: str, verb: Verbaliser, text: str, only: str | None = None
) -> str:
    return _linearise(entities, target, answer_style(lang, verb), verb, text, only)


def _linearise(
    entities: list[Entity], target: str, style: NerAnswerStyle, verb: Verbaliser, text: str, only: str | None
) -> str:
    sep_type, sep_ent, empty = style.type_separator, style.entity_separator, style.empty
    if target == "json":
        return _json([{"entity": e.text, "type": verb(e.label)} for e in entities])
    if target == "per-type":
        picked = [e.text for e in entities if e.label == only]
        return sep_ent.join(picked) if picked else empty
    if target == "inline":
        out, pos = [], 0
        for e in entities:
            k = e.start if e.start >= 0 else text.find(e.text, pos)
            if k < pos or text[k : k + len(e.text)] != e.text:
                raise AmbiguousTarget(f"entity {e.text!r} overlaps another or is not where the text has it")
            out.append(text[pos:k])
            out.append(f"[{e.text}]({verb(e.label)})")
            pos = k + len(e.text)
        out.append(text[pos:])
        return "".join(out)
    if not entities:
        return empty
    return sep_ent.join(f"{verb(e.label)}{sep_type}{e.text}" for e in entities)


_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps builds an encoder per call


def answer_style(lang: str, verb: Verbaliser) -> NerAnswerStyle:
    """How answers are written: the converter's pools' style (it travels with `verb`), else, for a
    Verbaliser made by hand, the shipped pools' style for `lang`."""
    if verb.style is not None:
        return verb.style
    return _shipped_pools().table("answer_style", lang)


@functools.lru_cache(maxsize=1)
def _shipped_pools() -> PoolSet:
    return PoolSet.load(TASK)


_INLINE = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])+?)\]\(([^()]+)\)")


def parse_target(
    answer: str,
    target: str,
    lang: str,
    verb: Verbaliser,
    only: str | None = None,
    labels: Iterable[str] = (),
) -> list[Entity]:
    """Read a linearisation back into entities (labels mapped back to the dataset's types; give
    the input's label set as `labels` so that types without configured words map back too)."""
    rev = verb.reverse(labels)
    style = answer_style(lang, verb)
    sep_type, sep_ent, empty = style.type_separator, style.entity_separator, style.empty
    if target == "json":
        return [Entity(d["entity"], rev.get(d["type"], d["type"])) for d in json.loads(answer)]
    if target == "per-type":
        return [] if answer == empty else [Entity(t, only or "") for t in answer.split(sep_ent)]
    if target == "inline":
        return [Entity(m.group(1), rev.get(m.group(2), m.group(2))) for m in _INLINE.finditer(answer)]
    if answer == empty:
        return []
    out = []
    for part in answer.split(sep_ent):
        label, _, text = part.partition(sep_type)
        out.append(Entity(text, rev.get(label, label)))
    return out


@dataclass(frozen=True)
class NerOptions:
    seed: int = 0
    target: str = "list"
    scheme: str = "auto"
    instruction_lang: str = "en"
    labels: tuple[tuple[str, str], ...] = ()  # user overrides: (("PER", "人物"),)
    templates: tuple[str, ...] = ()
    builtin_templates: bool = True
    max_empty_ratio: float | None = None  # e.g. 0.2: at most 20% of records without entities
    inverted_ratio: float = 0.0  # share of records from inverted templates ("write a sentence with ...")
    # per-type: the share of records whose answer is empty (None: ask uniformly drawn types)
    empty_share: float | None = DEFAULT_EMPTY_SHARE
    meta: bool = False
    dedup: bool = True  # drop records that repeat an earlier one exactly (duplicate_record)
    tag_names: tuple[str, ...] | None = None  # names of integer tags, for dataset rows (from_row)


class NerRun(Result):
    """The pipeline's one `Result`, with NER's report name by default (kept for older callers).

    NER's facts read as attributes from `info`: `scheme`, `labels` (the input's entity types; none:
    not NER data), `sentences_with_entities` (from the planning pass) and `repairs` (tag repairs
    by kind, counted as outcomes arrive)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("report", Report(task=TASK))
        super().__init__(*args, **kwargs)


class NerConverter:
    def __init__(self, options: NerOptions) -> None:
        if options.target not in TARGETS:
            raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, not '{options.target}'")
        self.options = options
        self.pools = PoolSet.load(TASK, options.templates, include_builtin=options.builtin_templates)
        self.lang = self.pools.resolve_language(options.instruction_lang)
        names = self.pools.labels_for(self.lang)
        names.update(dict(options.labels))
        self.verb = Verbaliser(names, self.lang.split("-")[0], self.pools.table("answer_style", self.lang))
        self.format_hints: dict[str, str] = self.pools.table("format_hints", self.lang)
        self.label_forms: dict[str, NerLabelForms] = self.pools.table("label_forms", self.lang) or {}
        self.type_notes: dict[str, str] = self.pools.table("type_notes", self.lang) or {}
        templates = self.pools.by_language[self.lang]
        if options.empty_share is not None and not 0 <= options.empty_share < 1:
            raise ConfigError(f"empty_share must be in [0, 1), not {options.empty_share}")
        for t in templates:
            wrong = [x for x in t.spec.targets if x not in TARGETS]
            if wrong:
                where = f"{t.path}:{t.line}" if t.line else t.path
                raise ConfigError(
                    f"{where}: template {t.id}: unknown target '{wrong[0]}' in targets "
                    f"(known: {', '.join(TARGETS)})"
                )
        self.originals = [t for t in templates if t.spec.kind == "original" and self._fits(t)]
        self.inverted = [t for t in templates if t.spec.kind == "inverted"]
        if not self.originals:
            raise ConfigError(f"no '{options.target}' NER templates in the '{self.lang}' pools")
        self._types_text: dict[tuple[str, ...], str] = {}
        self.style = answer_style(self.lang.split("-")[0], self.verb)  # looked up once, not per record
        # per-type: the chance that a sentence with entities is asked about a type it lacks; the
        # planning pass sets it from the file's counts, so that the empty share is held
        self.absent_rate = options.empty_share or 0.0
        self._check_label_words()

    def _fits(self, template: Any) -> bool:
        """Whether an original template suits the chosen target: its `targets` when the pool says,
        else per-type questions are the templates that use `entity_type`."""
        target = self.options.target
        if template.spec.targets:
            return target in template.spec.targets
        return ("entity_type" in template.variables()) == (target == "per-type")

    def type_phrase(self, label: str, inverted: bool = False) -> str:
        """The words for one type in a question about it: a plural noun phrase for a per-type
        question, a singular one with its article for an inverted template (pool `label_forms`)."""
        forms = self.label_forms.get(label)
        if forms is not None:
            return forms.singular if inverted else forms.plural
        words = self.verb(label)
        if self.verb.language == "en":
            return f'an entity of type "{words}"' if inverted else f'entities of type "{words}"'
        if self.verb.language == "zh":
            return f"“{words}”类实体"
        return words

    def types_text(self, label_set: list[str]) -> str:
        """The type list of the instructions: the answer's type words, each followed by what it
        covers where the word alone is vague ("miscellaneous (other named entities: ...)")."""
        text = self._types_text.get(tuple(label_set))
        if text is None:  # one label set per file: join it once, not per sentence
            lang = self.verb.language
            notes = self.type_notes
            open_, close = ("（", "）") if lang in ("zh", "ja") else (" (", ")")
            parts = [
                self.verb(lab) + (f"{open_}{notes[lab]}{close}" if lab in notes else "") for lab in label_set
            ]
            text = ("、" if lang in ("zh", "ja") else ", ").join(parts)
            self._types_text[tuple(label_set)] = text
        return text

    def _check_label_words(self, labels: Iterable[str] | None = None) -> None:
        """A label's words must not contain the syntax of the answer, and two labels of one input
        must not share words, or answers do not read back. Checked for the configured names up
        front, and for the input's own label set (types without configured words are written as
        their names, which may hold "; " or ")") once the planning pass has it."""
        target = self.options.target
        style = answer_style(self.verb.language, self.verb)
        separators = (style.type_separator, style.entity_separator)
        reserved = {"list": separators, "inline": ("[", "]", "(", ")")}.get(target, ())
        pairs = (
            sorted(self.verb.names.items()) if labels is None else [(lab, self.verb(lab)) for lab in labels]
        )
        for label, words in pairs:
            bad = [r for r in reserved if r in words]
            if bad:
                raise ConfigError(
                    f"label words '{words}' (for {label}) contain {bad[0]!r}, which --target "
                    f"{target} uses as syntax; choose other words (--label {label}=...)"
                )
            if target == "inline" and not words.strip():
                raise ConfigError(
                    f"label {label!r} has no words for --target inline; give some (--label ...)"
                )
        if labels is None or target == "per-type":  # a per-type answer names no type
            return
        seen: dict[str, str] = {}
        for label, words in pairs:
            if words in seen:
                raise ConfigError(
                    f"labels '{seen[words]}' and '{label}' are both written '{words}', so an answer "
                    f"cannot tell them apart; give one other words (--label {label}=...)"
                )
            seen[words] = label

    def run(self, items: Source[TaggedSentence | Rejected]) -> NerRun:
        """Every record and rejection in memory: the Python API's form (see `stream`)."""
        return run_ner(self.options, items)

    def stream(self, items: Source[TaggedSentence | Rejected], run: NerRun) -> Iterator[Record | Rejected]:
        """Plan on a first read (the scheme, the label set and the empty quota are file-wide),
        then return an iterator that reads again and converts sentence by sentence, yielding
        records and rejections in input order, so memory does not grow with the input. Both go
        through the pipeline core: the `ner` task (tasks/ner.py) on `registry.start`.

        `items` is best a function that opens the input afresh (see `TwoPass`). `run` gets the
        counts, scheme and repairs; after this call `run.report.read` is the number of items the
        iterator will account for, and `run.sentences_with_entities` how many have an entity.
        """
        return stream_ner(self.options, items, run)

    def asked_type(self, entities: list[Entity], label_set: list[str], key: str) -> str:
        """The type a per-type record asks about: one the sentence has, or, at `absent_rate`
        (and always for a sentence without entities), one it lacks, so the answer is empty."""
        seed = self.options.seed
        if self.options.empty_share is None:  # uniform over the label set, as before the share
            return label_set[choose_index(len(label_set), seed, TASK, key, "type")]
        present = sorted({e.label for e in entities})
        absent = [lab for lab in label_set if lab not in present]
        if absent and (not present or stable_hash(seed, TASK, key, "absent") / 2**64 < self.absent_rate):
            return absent[choose_index(len(absent), seed, TASK, key, "type")]
        return present[choose_index(len(present), seed, TASK, key, "type")]

    def convert(
        self, text: str, entities: list[Entity], label_set: list[str], sent: TaggedSentence
    ) -> Record:
        return self.render(text, entities, label_set, sent)[0]

    def render(
        self, text: str, entities: list[Entity], label_set: list[str], sent: TaggedSentence
    ) -> tuple[Record, tuple[str, ...]]:
        """The sentence's record, and every value rendered into its template (the sentence, the
        answer, the type list, the format hint...): the data, for the placeholder check, which
        must tell a variable the template left from an "[entity](type)" the values bring in."""
        opts = self.options
        key = content_key(text, *(f"{e.label}\x1e{e.text}" for e in entities))
        lang = self.lang.split("-")[0]
        verb = self.verb
        types_text = self.types_text(label_set)
        inverted = (
            self.inverted
            and entities
            and opts.inverted_ratio > 0
            and stable_hash(opts.seed, TASK, key, "inverted") / 2**64 < opts.inverted_ratio
        )
        if inverted:
            ent = entities[choose_index(len(entities), opts.seed, TASK, key, "entity")]
            template = self.inverted[choose_index(len(self.inverted), opts.seed, TASK, key, "template")]
            values = {
                "text": text,
                "entity": ent.text,
                "entity_type": self.type_phrase(ent.label, inverted=True),
                "entities": "",
                "entity_types": types_text,
                "format_hint": "",
            }
            only = ent.label
            target_text = text
        else:
            template = self.originals[choose_index(len(self.originals), opts.seed, TASK, key, "template")]
            only = ""  # the type a per-type record asks about; the other targets ask for all
            if opts.target == "per-type" and label_set:
                only = self.asked_type(entities, label_set, key)
            style = self.style
            target_text = _linearise(entities, opts.target, style, verb, text, only)
            if opts.target != "json" and _may_be_ambiguous(opts.target, style, text, entities):
                wanted = [e for e in entities if e.label == only] if opts.target == "per-type" else entities
                back = parse_target(target_text, opts.target, lang, verb, only=only or None, labels=label_set)
                if back != wanted:
                    raise AmbiguousTarget(
                        f"the {opts.target} answer {target_text!r} does not read back as the sentence's "
                        "entities (an entity or the text contains the answer's separators); --target json "
                        "has no such limit"
                    )
            hints = self.format_hints
            values = {
                "text": text,
                "entities": target_text,
                "entity_types": types_text,
                "format_hint": hints.get(opts.target, ""),
                "entity_type": self.type_phrase(only) if only else "",
                "entity": "",
            }
        rendered = template.render(values)
        meta = {
            "template_id": template.id,
            "target": "inverted" if inverted else opts.target,
            "lang": self.lang,
            "entities": [[e.text, e.label] for e in entities],
            "asked_type": only or None,
            "source_file": sent.source_file,
            "line": sent.line,
        }
        record = Record(
            instruction=rendered["instruction"], input=rendered["input"], output=rendered["output"], meta=meta
        )
        return record, tuple(values.values())


class AmbiguousTarget(ValueError):
    """A linearised answer that would not parse back to the gold entities."""


def _may_be_ambiguous(target: str, style: NerAnswerStyle, text: str, entities: list[Entity]) -> bool:
    """A cheap test for the rare answers worth parsing back: a separator or the empty answer inside
    an entity (list, per-type), brackets anywhere in the sentence (inline)."""
    if target == "inline":
        return "[" in text or "]" in text or any(not e.text for e in entities)
    return any(style.entity_separator in e.text or e.text == style.empty for e in entities)


def iter_rows(rows: Iterable[dict[str, Any]], tag_names: list[str] | None) -> Iterator[TaggedSentence]:
    for i, row in enumerate(rows):
        yield row_to_sentence(row, tag_names=tag_names, line=i + 1)


__all__ = ["TARGETS", "Entity", "NerConverter", "NerOptions", "Span", "linearise", "parse_target"]


def ner(
    data: Any,
    *,
    tag_names: list[str] | None = None,
    input_format: str | None = None,
    on_error: str = "raise",
    num_proc: int | None = None,
    **options: Any,
) -> NerRun:
    """NER records from a file path (CoNLL, char-per-line, JSONL), a list of dicts
    ({"tokens", "tags"} or {"text", "entities"}), or a datasets.Dataset (ClassLabel tag names).

    Other keyword arguments are `NerOptions` fields (`dedup=False` keeps exact duplicate records);
    `num_proc` runs the record steps in that many processes, with the same result."""
    from pathlib import Path

    from ..io.tagged import iter_dataset, read_tagged

    opts = NerOptions(
        **{k: tuple(v) if k in ("labels", "templates", "tag_names") and v is not None else v
           for k, v in options.items()}
    )  # fmt: skip
    source: Any
    if isinstance(data, (str, Path)):
        source = lambda: read_tagged(  # noqa: E731
            data, input_format=input_format, tag_names=tag_names, on_error=on_error
        )
    elif hasattr(data, "features") and hasattr(data, "column_names"):
        source = lambda: iter_dataset(data, tag_names=tag_names)  # noqa: E731
    elif iter(data) is not data:  # a list: it can be read twice
        source = lambda: iter_rows(data, tag_names)  # noqa: E731
    else:
        source = iter_rows(data, tag_names)
    return run_ner(opts, source, num_proc=num_proc)


def stream_ner(
    options: NerOptions, items: Source[TaggedSentence | Rejected], run: NerRun, *, num_proc: int | None = None
) -> Iterator[Record | Rejected]:
    """The `ner` task started on `items` (the plan pass happens here), counting into `run`; the
    returned iterator adds the task's notes once it is exhausted."""
    from ..pipeline import registry
    from ..tasks.ner import NAME, init_info

    return registry.stream(NAME, options, items, before=init_info, num_proc=num_proc, result=run)


def run_ner(
    options: NerOptions, items: Source[TaggedSentence | Rejected], *, num_proc: int | None = None
) -> NerRun:
    """Every record and rejection of a `ner` task run, in memory."""
    run = NerRun()
    for item in stream_ner(options, items, run, num_proc=num_proc):
        run.add(item)
    return run


class NerBatchFn:
    """A picklable `fn(batch) -> columns` for Dataset.map(batched=True): each row becomes one
    record (instruction, input, output, meta as JSON) and a `rejected` column, None for a record
    and "reason: detail" for a row that could not become one (empty texts then), so one bad row
    does not stop a long map and none is lost. The scheme must be explicit here: auto detection
    needs the whole file. Nor is there a planning pass for the per-type empty share: a sentence
    with entities is asked about a type it lacks at `empty_share`, and every sentence without
    entities is kept (filter the mapped rows for a share over the whole set).

    A thin alias kept for older callers: the record steps are the `ner` task's, run by the one
    batched adapter (`pipeline.registry.batch_fn("ner", options, plan)`, whose own columns are
    `kind`/`payload`/`dedup_key` for `registry.collect`); this only renames its outcomes."""

    def __init__(self, options: NerOptions, label_set: list[str], tag_names: list[str] | None = None) -> None:
        if options.scheme == "auto":
            raise ConfigError("the batched NER function needs an explicit scheme (iob1, bio or bioes)")
        self.options, self.label_set, self.tag_names = options, label_set, tag_names
        self._fn: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "label_set": self.label_set, "tag_names": self.tag_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"], state["label_set"], state["tag_names"])

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from ..tasks.common import record_columns

        if self._fn is None:
            from ..pipeline import registry
            from ..tasks.ner import NAME, batch_plan

            names = tuple(self.tag_names) if self.tag_names is not None else self.options.tag_names
            opts = replace(self.options, tag_names=names)
            self._fn = registry.batch_fn(NAME, opts, batch_plan(opts, self.label_set))
            self._fn.pipeline  # noqa: B018 - build now: a bad option or label word fails the first batch
        return record_columns(self._fn.outcomes(batch))
