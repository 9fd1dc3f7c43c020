"""Translation as a registered task: parallel pairs -> records, checked, exact duplicates dropped.

The convert step is `TranslationConverter.convert` (empty sides, length ratio, language check,
template choice and rendering); `Placeholders` and `EmptyFields` are the shared checks every task
runs; exact dedup keys on (direction, source, target) and keeps the first pair in input order.
"""

from __future__ import annotations

from typing import Any

from ..converters.translation import TranslationConverter, TranslationOptions
from ..errors import InputError
from ..io.readers import extract_pair
from ..pipeline.outcome import Outcome, rejection
from ..pipeline.registry import Task, register
from ..pipeline.run import Pipeline
from ..pipeline.steps import EmptyFields, ExactDedup, Placeholders
from ..schema import Example, Rejected

NAME = "translation"


class ConvertPairs:
    """The convert step (picklable through its options: workers rebuild pools and the language model)."""

    name = "convert"

    def __init__(self, options: TranslationOptions) -> None:
        self.converter = TranslationConverter(options)

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.converter.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])

    def __call__(self, item: Example) -> list[Outcome]:
        return self.converter.convert(item)


def _duplicate(first: int | None) -> str:
    return "exact duplicate of an earlier pair" + (f" (line {first})" if first else "")


def dedup_step() -> ExactDedup:
    return ExactDedup("duplicate_pair", _duplicate)


def build(options: TranslationOptions, plan: Any = None) -> Pipeline:
    return Pipeline(
        NAME,
        ConvertPairs(options),
        checks=(EmptyFields(), Placeholders()),
        sequential=(dedup_step(),) if options.dedup else (),
    )


def from_row(options: TranslationOptions, row: dict[str, Any], line: int | None) -> Example | Rejected:
    """A dataset row -> the pair the convert step takes, or the row's rejection (no such column...)."""
    import json

    spec = _spec(options)
    try:
        src, tgt = extract_pair(row, spec, path=None, line=line)
    except InputError as exc:
        return rejection(
            exc.reason,
            exc.message,
            step="read",
            line=line,
            example={"raw": json.dumps(row, ensure_ascii=False, default=str)},
        ).item  # type: ignore[return-value]
    return Example(key="", fields={"source": src, "target": tgt}, line=line)


def _spec(options: TranslationOptions):
    from ..io.readers import FieldSpec

    return FieldSpec.for_languages(options.src_lang, options.tgt_lang, options.src_col, options.tgt_col)


TASK = register(Task(NAME, build, from_row=from_row))
