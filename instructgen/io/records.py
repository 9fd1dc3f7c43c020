"""Reading instruction data a user already has: Alpaca, ShareGPT, OpenAI messages, query/response.

The layout is recognised per row (so a file can be checked without flags), and every row
becomes a `Record`; a row that fits no layout is an error naming file, line and what it has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..schema import Record, Turn
from .readers import iter_jsonl, load_json_array

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


def row_to_record(row: Any, *, path: str | None = None, line: int | None = None) -> Record:
    if not isinstance(row, dict):
        raise InputError(
            f"expected a JSON object, found {type(row).__name__}",
            path=path,
            line=line,
            reason="malformed_json",
        )
    layout = detect_layout(row)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if layout == "alpaca":
        history = [Turn(user=str(u), assistant=str(a)) for u, a in row.get("history") or []]
        return Record(
            instruction=str(row["instruction"]),
            input=str(row.get("input") or ""),
            output=str(row["output"]),
            system=row.get("system") or None,
            history=history,
            meta=meta,
        )
    if layout == "query-response":
        history = [Turn(user=str(u), assistant=str(a)) for u, a in row.get("history") or []]
        meta = {**meta, **({"lang": row["tag"]} if row.get("tag") else {})}
        return Record(
            instruction=str(row["query"]),
            output=str(row["response"]),
            system=row.get("system") or None,
            history=history,
            meta=meta,
        )
    if layout in ("messages", "sharegpt"):
        turns = row["messages"] if layout == "messages" else row["conversations"]
        role_key, text_key = ("role", "content") if layout == "messages" else ("from", "value")
        system = row.get("system") or None
        pairs: list[tuple[str, str]] = []
        pending: str | None = None
        for i, turn in enumerate(turns):
            field = f"{'messages' if layout == 'messages' else 'conversations'}[{i}]"
            if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
                raise InputError(
                    f"a turn needs '{role_key}' and '{text_key}'",
                    path=path,
                    line=line,
                    field=field,
                    reason="malformed_row",
                )
            role = ROLE_ALIASES.get(str(turn[role_key]).lower())
            text = (
                turn[text_key]
                if isinstance(turn[text_key], str)
                else json.dumps(turn[text_key], ensure_ascii=False)
            )
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
        return Record(
            instruction=pairs[-1][0], output=pairs[-1][1], system=system, history=history, meta=meta
        )
    have = ", ".join(sorted(map(str, row)))[:200]
    raise InputError(
        f"not an Alpaca, ShareGPT, messages or query/response row (it has: {have})",
        path=path,
        line=line,
        reason="unknown_layout",
    )


def read_records(path: str | Path) -> Iterator[tuple[int, Record]]:
    """(line or array position, Record) from a JSONL file or a JSON array."""
    shown = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", path=shown)
    if p.suffix.lower() == ".json":
        data = load_json_array(p, "records")
        for i, row in enumerate(data):
            yield i + 1, row_to_record(row, path=shown, line=i + 1)
        return
    for line, _text, row in iter_jsonl(p):
        if isinstance(row, InputError):
            raise row
        yield line, row_to_record(row, path=shown, line=line)
