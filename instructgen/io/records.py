"""Reading instruction data a user already has: Alpaca, ShareGPT, OpenAI messages, query/response.

The layout is recognised per row (so a file can be checked without flags), and every row
becomes a `Record`; a row that fits no layout is an error naming file, line and what it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..schema import Record, Rejected, Turn
from .readers import (
    check_text,
    guard_lines,
    iter_jsonl,
    json_type,
    load_json_rows,
    numbered_rows,
    require_file,
)
from .registry import Kind, open_input, register_kind, register_reader

ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


def detect_layout(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "query" in row and "response" in row:
        return "query-response"
    return None


def _text(value: Any, field: str, path: str | None, line: int | None, *, optional: bool = False) -> str:
    """A text field as it is: str(None) would train the model to answer "None", and
    str({'a': 1}) a Python repr, so anything but a string (or null where allowed) is refused."""
    if isinstance(value, str):
        return value
    if value is None and optional:
        return ""
    raise InputError(
        f"expected text, found {json_type(value)}", path=path, line=line, field=field, reason="bad_field"
    )


def _content(value: Any, field: str, path: str | None, line: int | None) -> str:
    """A message's content: a string, or OpenAI content parts that are all text, joined with no
    separator (as chat templates render consecutive text parts, e.g. transformers' Llama 3.2
    vision template). An image or other part is not text this pipeline can train on."""
    if isinstance(value, list) and value:
        texts = []
        for k, part in enumerate(value):
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else json_type(part)
                raise InputError(
                    f"a content part of type '{kind}' is not text; only text parts can be joined",
                    path=path,
                    line=line,
                    field=f"{field}[{k}]",
                    reason="bad_field",
                )
            texts.append(part["text"])
        return "".join(texts)
    return _text(value, field, path, line)


def _history(value: Any, path: str | None, line: int | None) -> list[Turn]:
    """Alpaca `history`: a list of [user, assistant] string pairs (null or absent: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(
            f"expected a list of [user, assistant] pairs, found {json_type(value)}",
            path=path,
            line=line,
            field="history",
            reason="bad_field",
        )
    turns = []
    for k, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise InputError(
                "expected a [user, assistant] pair",
                path=path,
                line=line,
                field=f"history[{k}]",
                reason="bad_field",
            )
        user = _text(pair[0], f"history[{k}][0]", path, line)
        turns.append(Turn(user=user, assistant=_text(pair[1], f"history[{k}][1]", path, line)))
    return turns


def _system(row: dict[str, Any], path: str | None, line: int | None) -> str | None:
    return _text(row.get("system"), "system", path, line, optional=True) or None


def row_to_record(row: Any, *, path: str | None = None, line: int | None = None) -> Record:
    """One row in any known layout as a Record; every field checked, so no value is written as
    the text of its Python repr and no odd shape surfaces later as a traceback."""
    if not isinstance(row, dict):
        raise InputError(
            f"expected a JSON object, found {json_type(row)}",
            path=path,
            line=line,
            reason="malformed_json",
        )
    layout = detect_layout(row)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if layout == "alpaca":
        return Record(
            instruction=_text(row["instruction"], "instruction", path, line),
            input=_text(row.get("input"), "input", path, line, optional=True),
            output=_text(row["output"], "output", path, line),
            system=_system(row, path, line),
            history=_history(row.get("history"), path, line),
            meta=meta,
        )
    if layout == "query-response":
        meta = {**meta, **({"lang": row["tag"]} if row.get("tag") else {})}
        return Record(
            instruction=_text(row["query"], "query", path, line),
            output=_text(row["response"], "response", path, line),
            system=_system(row, path, line),
            history=_history(row.get("history"), path, line),
            meta=meta,
        )
    if layout in ("messages", "sharegpt"):
        return _conversation(row, layout, meta, path, line)
    have = ", ".join(sorted(map(str, row)))[:200]
    raise InputError(
        f"not an Alpaca, ShareGPT, messages or query/response row (it has: {have})",
        path=path,
        line=line,
        reason="unknown_layout",
    )


def _conversation(
    row: dict[str, Any], layout: str, meta: dict[str, Any], path: str | None, line: int | None
) -> Record:
    name = "messages" if layout == "messages" else "conversations"
    turns = row[name]
    role_key, text_key = ("role", "content") if layout == "messages" else ("from", "value")
    if not isinstance(turns, list):
        raise InputError(
            f"expected a list of turns, found {json_type(turns)}",
            path=path,
            line=line,
            field=name,
            reason="malformed_row",
        )
    system = _system(row, path, line)
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for i, turn in enumerate(turns):
        field = f"{name}[{i}]"
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise InputError(
                f"a turn needs '{role_key}' and '{text_key}'",
                path=path,
                line=line,
                field=field,
                reason="malformed_row",
            )
        role = ROLE_ALIASES.get(str(turn[role_key]).lower())
        text = _content(turn[text_key], f"{field}.{text_key}", path, line)
        if role == "system" and i == 0:
            system = text
        elif role == "user" and pending is None:
            pending = text
        elif role == "assistant" and pending is not None:
            pairs.append((pending, text))
            pending = None
        else:
            raise InputError(
                f"unexpected '{turn[role_key]}' turn: turns must alternate user, assistant",
                path=path,
                line=line,
                field=field,
                reason="malformed_row",
            )
    if not pairs or pending is not None:
        raise InputError(
            "a conversation must end with an assistant turn", path=path, line=line, reason="malformed_row"
        )
    history = [Turn(user=u, assistant=a) for u, a in pairs[:-1]]
    return Record(instruction=pairs[-1][0], output=pairs[-1][1], system=system, history=history, meta=meta)


def read_records(path: str | Path, *, on_error: str = "raise") -> Iterator[tuple[int, Record | Rejected]]:
    """(line or array position, Record) from a JSONL file or a JSON array.

    With `on_error="skip"` a bad row comes back as a `Rejected` (reason, field, line) in the
    Record's place, so a caller can count it; the default stops with the InputError.
    """
    yield from open_input("records", path, on_error=on_error)


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
