"""Existing instruction data as a registered task: read records pass through the shared checks.

`instructgen convert` is the proof that a source and its checks plug into the core without special
cases: the convert step only wraps a record the reader already made (`io/records.py`, layout
recognised per row) into an `Outcome`; what rejects it is the shared `EmptyFields`, optionally
`Placeholders(data_free=True)` (every text is data here, so any placeholder counts), and the shared
sequential `ExactDedup` keyed on `record_digest` (first occurrence kept, in input order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import InputError
from ..io.layouts import row_to_record
from ..io.readers import dump_row, rejected_from
from ..io.records import read_records
from ..pipeline.outcome import Outcome
from ..pipeline.registry import Task, register
from ..pipeline.run import Pipeline
from ..pipeline.steps import Check, EmptyFields, ExactDedup, Placeholders, record_digest
from ..schema import Record, Rejected

NAME = "convert"


@dataclass(frozen=True)
class ConvertOptions:
    """What `convert` checks: exact dedup (on by default) and leftover placeholders (off by default:
    answers about Jinja or prompt templates contain them legitimately)."""

    dedup: bool = True
    placeholders: bool = False


class ReadRecord(NamedTuple):
    """A record as the reader made it, with where it was read (the rejects file names both)."""

    line: int | None
    record: Record
    source_file: str | None = None


class PassThrough:
    """The convert step: the record is already made; it only gains its dedup key and its example.

    The example (the record without its default fields) is what the rejects file shows when a
    check or dedup drops the record.
    """

    name = "convert"

    def __init__(self, dedup: bool = True) -> None:
        self.dedup = dedup

    def __call__(self, item: ReadRecord) -> list[Outcome]:
        record = item.record
        return [
            Outcome(
                record,
                dedup_key=record_digest(record) if self.dedup else b"",
                source_file=item.source_file,
                line=item.line,
                example=record.model_dump(mode="json", exclude_defaults=True),
            )
        ]


def _duplicate(first: int | None) -> str:
    return f"same conversation as line {first}"


def build(options: ConvertOptions, plan: Any = None) -> Pipeline:
    checks: tuple[Check, ...] = (EmptyFields(),)
    if options.placeholders:
        checks += (Placeholders(data_free=True),)
    return Pipeline(
        NAME,
        PassThrough(options.dedup),
        checks=checks,
        sequential=(ExactDedup("duplicate_record", _duplicate),) if options.dedup else (),
    )


def items_of(read: Any, source_file: str | None = None) -> Iterator[ReadRecord | Rejected]:
    """`read_records`' `(line, Record | Rejected)` pairs as the task's items (a reader's Rejected
    passes as itself: the run loop counts it as the read step's rejection)."""
    for line, item in read:
        yield item if isinstance(item, Rejected) else ReadRecord(line, item, source_file)


def read_items(path: str | Path, *, on_error: str = "raise") -> Iterator[ReadRecord | Rejected]:
    """The task's input: an instruction-data file (JSON array or JSON lines, layout recognised per
    row) read afresh, as items citing `path` as given. Module-level, so `functools.partial(read_items,
    path, on_error=...)` is the picklable opener `--engine ray`'s workers read their shards with."""
    return items_of(read_records(path, on_error=on_error), str(path))


def from_row(options: ConvertOptions, row: dict[str, Any], line: int | None) -> ReadRecord | Rejected:
    """A dataset row in any known layout -> the task's item, or the row's rejection (reason, field)."""
    try:
        return ReadRecord(line, row_to_record(row, line=line))
    except InputError as exc:
        return rejected_from(exc, dump_row(row))


TASK = register(Task(NAME, build, from_row=from_row))
