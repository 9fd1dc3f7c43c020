"""Instruction data people already have (Alpaca, ShareGPT, OpenAI messages, query-response) into any layout.

The records go through the same checks as generated ones: empty fields, leftover template placeholders
(off by default: answers about Jinja or prompt templates contain them legitimately) and exact dedup,
counted by reason in the same `Report`, with the same rejects file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from .io.records import read_records
from .quality.filters import find_placeholders
from .quality.report import Report
from .schema import Record, Rejected

TASK = "convert"


def record_digest(record: Record) -> bytes:
    """A fixed-size key for exact dedup: every text of the conversation, length-prefixed (unambiguous)."""
    h = hashlib.blake2b(digest_size=16)
    texts = [record.system or "", record.instruction, record.input, record.output]
    for turn in record.history:
        texts += [turn.user, turn.assistant]
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def check_record(record: Record, *, placeholders: bool = False) -> tuple[str, str] | None:
    """(reason, detail) when a record should not be trained on, else None."""
    if not (record.instruction.strip() or record.input.strip()):
        return "empty_prompt", "the user turn is empty"
    if not record.output.strip():
        return "empty_output", "the assistant answer is empty"
    for i, turn in enumerate(record.history, start=1):
        if not turn.user.strip() or not turn.assistant.strip():
            return "empty_turn", f"history turn {i} has an empty side"
    if placeholders:
        found = [p for t in (record.instruction, record.input, record.output) for p in find_placeholders(t)]
        if found:
            return "unrendered_placeholder", f"placeholder {found[0]!r} left in the text"
    return None


def convert_items(
    items: Iterable[tuple[int, Record | Rejected]],
    report: Report,
    *,
    source_file: str | None = None,
    dedup: bool = True,
    placeholders: bool = False,
) -> Iterator[Record | Rejected]:
    """Check and de-duplicate read records in order; every item read is counted once in `report`."""
    seen: dict[bytes, int] = {}
    for line, item in items:
        report.read += 1
        if isinstance(item, Rejected):
            report.reject(item)
            yield item
            continue
        problem = check_record(item, placeholders=placeholders)
        if problem is None and dedup:
            digest = record_digest(item)
            first = seen.setdefault(digest, line)
            if first != line:
                problem = ("duplicate_record", f"same conversation as line {first}")
        if problem is not None:
            rejected = Rejected(
                reason=problem[0],
                detail=problem[1],
                source_file=source_file,
                line=line,
                example=item.model_dump(mode="json", exclude_defaults=True),
            )
            report.reject(rejected)
            yield rejected
            continue
        report.written += 1
        yield item


def convert(
    path: str | Path, *, on_error: str = "raise", dedup: bool = True, placeholders: bool = False
) -> tuple[Iterator[Record | Rejected], Report]:
    """Read an instruction-data file (layout recognised per row) and check it; records stream lazily."""
    report = Report(task=TASK)
    items = read_records(path, on_error=on_error)
    return convert_items(items, report, source_file=str(path), dedup=dedup, placeholders=placeholders), report
