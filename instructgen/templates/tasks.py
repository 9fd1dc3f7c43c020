"""Each task's placeholder contract: which variables a template may use and which it must keep.

Validation against the contract is what lets a pool come from an LLM or a user and still be
trusted: a template that drops the source sentence, or asks for `{{ tgt_langg }}`, fails on
load instead of producing a corpus of wrong records.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


@dataclass(frozen=True)
class Requirement:
    """At least one of `variables` must appear in at least one of `fields`."""

    variables: tuple[str, ...]
    fields: tuple[str, ...]
    why: str
    kinds: tuple[str, ...] = ()  # template kinds it applies to; () = all


@dataclass(frozen=True)
class LLMContract:
    """How `templates generate` shows a task to an LLM (llm/template_gen.py reads only this).

    Models write `[input]` far more reliably than `{{ source }}`, so the prompt names bracket
    placeholders, each mapped to one of the task's Jinja variables; accepted templates are turned
    back into Jinja and validated against the task's `requirements` like a hand-written pool.
    """

    placeholders: dict[str, str]  # bracket name shown to the model -> Jinja variable, in prompt order
    required: tuple[str, ...]  # bracket names every generated template must contain
    output: str  # the output field of every generated template: the answer expression


@dataclass(frozen=True)
class PoolTable:
    """A per-language table a task's pool files may carry as a top-level key.

    How a language writes an answer (NER's "type: entity; ..." separators, the header of an options
    list) is data of that language, so it lives in the pool file beside the templates written in
    it, and a user's pool for a new language can bring its own. `type` is checked strictly
    (pydantic, no coercion) on load; `PoolSet.table` looks a value up for the pool's language,
    then its base language, then (when `english_fallback`) English, else None.
    """

    type: Any  # the value's type, e.g. dict[str, str] or a frozen pydantic model
    doc: str  # what the table holds (a load error quotes it)
    english_fallback: bool = True  # False: a language without the table gets None, not English

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.type)


NonEmpty = Annotated[str, Field(min_length=1)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NerAnswerStyle(_Table):
    """How a list or per-type NER answer is written: "person: John; location: Paris", or `empty`."""

    type_separator: NonEmpty  # between a type's words and its entity
    entity_separator: NonEmpty  # between entities
    empty: NonEmpty  # the answer when there is no entity


class NerLabelForms(_Table):
    """The words for one entity type in a question about it (see converters/ner.py `type_phrase`)."""

    plural: NonEmpty  # a per-type question: "List all {{ entity_type }}" -> "person names"
    singular: NonEmpty  # an inverted template, with its article: "an organization"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    variables: dict[str, str]  # variable -> what it holds (shown by `templates show` and to LLMs)
    requirements: tuple[Requirement, ...] = ()
    sample: dict[str, str] = field(default_factory=dict)  # values for the trial render on load
    llm: LLMContract | None = None  # None: `templates generate` does not offer the task
    tables: dict[str, PoolTable] = field(default_factory=dict)  # top-level pool keys beside `labels`


_TASKS: dict[str, TaskSpec] = {}
_NAMES: list[frozenset[str]] = []  # contract_names() cache; register_task empties it


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add (or replace) a task: pool validation, `templates generate` and the placeholder check see it."""
    _TASKS[spec.name] = spec
    _NAMES.clear()
    return spec


def unregister_task(name: str) -> None:
    """Remove a task registered with `register_task` (a plugin unloading, a test's toy task)."""
    _TASKS.pop(name, None)
    _NAMES.clear()


def get_task(name: str) -> TaskSpec:
    from ..errors import ConfigError

    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (known: {', '.join(sorted(_TASKS))})") from None


def known_tasks() -> list[str]:
    return sorted(_TASKS)


def generatable_tasks() -> list[str]:
    """Tasks with an LLM contract, in registration order (the order `templates generate --task` lists)."""
    return [name for name, spec in _TASKS.items() if spec.llm is not None]


def contract_names() -> frozenset[str]:
    """Every variable and bracket name of every registered task: what a leftover placeholder may be
    called (quality/filters.py). The same frozenset object until the registry changes."""
    if not _NAMES:
        names = {v for spec in _TASKS.values() for v in spec.variables}
        names.update(b for spec in _TASKS.values() if spec.llm for b in spec.llm.placeholders)
        _NAMES.append(frozenset(names))
    return _NAMES[0]


TRANSLATION = register_task(
    TaskSpec(
        name="translation",
        variables={
            "source": "the sentence to translate",
            "target": "its translation (the answer)",
            "src_lang": "source language name, written in the pool's language",
            "tgt_lang": "target language name, written in the pool's language",
            "src_code": "source language code (BCP-47)",
            "tgt_code": "target language code (BCP-47)",
        },
        requirements=(
            Requirement(("source",), ("instruction", "input"), "the prompt must contain the source text"),
            Requirement(("target",), ("output",), "the answer must contain the translation"),
            Requirement(("tgt_lang",), ("instruction",), "the instruction must name the target language"),
        ),
        sample={
            "source": "SAMPLE-SOURCE",
            "target": "SAMPLE-TARGET",
            "src_lang": "SRC-LANG",
            "tgt_lang": "TGT-LANG",
            "src_code": "xx",
            "tgt_code": "yy",
        },
        llm=LLMContract(
            placeholders={"input": "source", "src_lang": "src_lang", "tgt_lang": "tgt_lang"},
            required=("input", "tgt_lang"),
            output="{{ target }}",
        ),
    )
)


NER = register_task(
    TaskSpec(
        name="ner",
        variables={
            "text": "the sentence",
            "entities": "the linearised answer (list, JSON, inline or one type's entities)",
            "entity_types": "the entity types of the data set, verbalised in the pool's language",
            "entity_type": "one verbalised type (per-type questions; inverted templates)",
            "entity": "one entity (inverted templates)",
            "format_hint": "how to write the answer for the chosen --target, in the pool's language",
        },
        requirements=(
            Requirement(
                ("text",), ("instruction", "input"), "the prompt must contain the sentence", ("original",)
            ),
            Requirement(("entities",), ("output",), "the answer must contain the entities", ("original",)),
            Requirement(
                ("entity",),
                ("instruction", "input"),
                "an inverted prompt must name the entity",
                ("inverted",),
            ),
            Requirement(("text",), ("output",), "an inverted answer must be the sentence", ("inverted",)),
        ),
        sample={
            "text": "SAMPLE-TEXT",
            "entities": "SAMPLE-ENTITIES",
            "entity_types": "TYPES",
            "entity_type": "TYPE",
            "entity": "ENTITY",
            "format_hint": "HINT",
        },
        llm=LLMContract(
            placeholders={"input": "text", "entity_types": "entity_types", "format_hint": "format_hint"},
            required=("input", "entity_types"),
            output="{{ entities }}",
        ),
        tables={
            "answer_style": PoolTable(
                NerAnswerStyle, "separators and the empty answer of list and per-type answers"
            ),
            "format_hints": PoolTable(
                dict[str, str], "--target -> how to write the answer ({{ format_hint }})"
            ),
            "label_forms": PoolTable(
                dict[str, NerLabelForms],
                "entity type -> its words in a per-type question (plural) and an inverted one (singular)",
                english_fallback=False,
            ),
            "type_notes": PoolTable(
                dict[str, str],
                "entity type -> what it covers, shown in the type list",
                english_fallback=False,
            ),
        },
    )
)

CLASSIFICATION = register_task(
    TaskSpec(
        name="classification",
        variables={
            "text": "the text to classify",
            "text2": "the second text of a pair (NLI, paraphrase); empty otherwise",
            "label": "the answer: the verbalised label, with its option marker when options are lettered",
            "options": "the answer options, formatted in a seeded style (header, markers)",
            "label_names": "all verbalised labels, as an inline list",
        },
        requirements=(
            Requirement(
                ("text",), ("instruction", "input"), "the prompt must contain the text", ("original",)
            ),
            Requirement(("label",), ("output",), "the answer must contain the label", ("original",)),
            Requirement(
                ("label",), ("instruction", "input"), "an inverted prompt must name the label", ("inverted",)
            ),
            Requirement(("text",), ("output",), "an inverted answer must be the text", ("inverted",)),
        ),
        sample={
            "text": "SAMPLE-TEXT",
            "text2": "",
            "label": "LABEL",
            "options": "OPTIONS",
            "label_names": "A, B",
        },
        llm=LLMContract(
            placeholders={"input": "text", "options": "options"}, required=("input",), output="{{ label }}"
        ),
        tables={
            "option_headers": PoolTable(
                Annotated[list[NonEmpty], Field(min_length=1)], "the headers an options list starts with"
            ),
            "list_separator": PoolTable(NonEmpty, "between labels in an inline list (options, label_names)"),
        },
    )
)
