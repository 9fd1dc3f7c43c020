"""Reading instruction data a user already has: Alpaca, ShareGPT, OpenAI messages, query/response.

The layout is recognised per row (so a file can be checked without flags) by the layout registry
(`layouts.py`, which also writes them), and every row becomes a `Record`; a row that fits no
layout is an error naming file, line and what it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..schema import Record, Rejected
from .layouts import ROLE_ALIASES, detect_layout, row_to_record
from .readers import (
    check_text,
    guard_lines,
    iter_jsonl,
    load_json_rows,
    numbered_rows,
    require_file,
)
from .registry import Kind, open_input, register_kind, register_reader


def read_records(path: str | Path, *, on_error: str = "raise") -> Iterator[tuple[int, Record | Rejected]]:
    """(line or array position, Record) from a JSONL file or a JSON array.

    With `on_error="skip"` a bad row comes back as a `Rejected` (reason, field, line) in the
    Record's place, so a caller can count it; the default stops with the InputError.
    """
    yield from open_input("records", path, on_error=on_error)


__all__ = ["ROLE_ALIASES", "detect_layout", "read_records", "row_to_record"]

register_kind(Kind("records", fallback="jsonl"))


@register_reader("records", "json", extensions=(".json",))
def read_records_array(path: str | Path, *, on_error: str = "raise") -> Iterator[tuple[int, Record | Rejected]]:
    """(array position, Record) from a JSON array of records (`{"data": [...]}` too)."""
    shown = str(path)
    rows, escapes = load_json_rows(require_file(path), "records")

    def parse(line: int, row: Any) -> Record:
        if escapes:
            check_text(row, path=shown, line=line)
        return row_to_record(row, path=shown, line=line)

    return guard_lines(numbered_rows(rows), parse, on_error)


@register_reader("records", "jsonl", extensions=(".jsonl", ".ndjson"))
def read_records_jsonl(path: str | Path, *, on_error: str = "raise") -> Iterator[tuple[int, Record | Rejected]]:
    """(line, Record) from JSON lines; any extension but `.json` is read as JSON lines."""
    shown = str(path)
    # iter_jsonl checks each line for lone-surrogate escapes itself
    return guard_lines(iter_jsonl(require_file(path)), lambda line, row: row_to_record(row, path=shown, line=line), on_error)
