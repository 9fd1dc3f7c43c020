"""The layout registry: how a `Record` is laid out as a JSON row, both ways.

Each layout (alpaca, alpaca-json, sharegpt, messages, query-response, columns) has `to_row`
(used by the writers through `record_to_row`) and `from_row` (used by `read_records` through
`row_to_record`, and so by `tokenize` and the data commands). A layout that can be recognised
from a row's keys says how (`detect`), checked in `rank` order. Adding a layout is one
`register_layout(Layout(...))` in any module.

References for the row shapes: Alpaca (tatsu-lab/stanford_alpaca, alpaca_data.json), ShareGPT
and its `system` / Alpaca `history` (hiyouga/LLaMA-Factory, data/README.md), OpenAI chat
`messages`, ms-swift's query/response/tag self-cognition rows (modelscope/ms-swift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, InputError
from ..schema import Record, Turn
from .readers import json_type, not_an_object

ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


ToRow = Callable[[Record, "list[str] | None"], dict[str, Any]]
FromRow = Callable[[dict[str, Any], dict[str, Any], "str | None", "int | None", "list[str] | None"], Record]


@dataclass(frozen=True)
class Layout:
    """`to_row(record, columns)` and `from_row(row, meta, path, line, columns)`; `detect(row)`
    says whether a row is in this layout (None: never guessed, e.g. custom columns)."""

    name: str
    to_row: ToRow
    from_row: FromRow
    detect: Callable[[dict[str, Any]], bool] | None = None
    rank: int = 100  # detection order: messages before sharegpt before alpaca before query-response


LAYOUTS: dict[str, Layout] = {}


_DETECTING: list[Layout] = []


def register_layout(layout: Layout) -> Layout:
    """Add a layout (by name; a second registration replaces the first)."""
    LAYOUTS[layout.name] = layout
    _DETECTING[:] = sorted(
        (lay for lay in LAYOUTS.values() if lay.detect is not None), key=lambda lay: lay.rank
    )
    return layout


def get_layout(name: str) -> Layout:
    """The layout by name, or the ConfigError the writers have always given."""
    layout = LAYOUTS.get(name)
    if layout is None:
        raise ConfigError(f"unknown output format '{name}' (choose {', '.join(LAYOUTS)})")
    return layout


def detect_layout(row: dict[str, Any]) -> str | None:
    """The name of the first layout (by rank) that recognises the row's keys, or None."""
    for layout in _DETECTING:
        if layout.detect(row):  # type: ignore[misc]
            return layout.name
    return None


def record_to_row(
    record: Record, fmt: str = "alpaca", *, columns: list[str] | None = None, with_meta: bool = False
) -> dict[str, Any]:
    """The JSON object one record becomes in a given layout."""
    row = get_layout(fmt).to_row(record, columns)
    if with_meta and record.meta:
        row["meta"] = record.meta
    return row


def row_to_record(
    row: Any,
    *,
    path: str | None = None,
    line: int | None = None,
    layout: str | None = None,
    columns: list[str] | None = None,
) -> Record:
    """One row in any known layout (detected, or the one named) as a Record; every field checked,
    so no value is written as the text of its Python repr and no odd shape surfaces later as a
    traceback."""
    if not isinstance(row, dict):
        raise not_an_object(row, path, line)
    name = layout or detect_layout(row)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    if name is None:
        have = ", ".join(sorted(map(str, row)))[:200]
        raise InputError(
            f"not an Alpaca, ShareGPT, messages or query/response row (it has: {have})",
            path=path,
            line=line,
            reason="unknown_layout",
        )
    return get_layout(name).from_row(row, meta, path, line, columns)


# --- reading: field checks ---------------------------------------------------------------------


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


def _pairs(history: list[Turn]) -> list[list[str]]:
    return [[t.user, t.assistant] for t in history]


# --- the layouts ---------------------------------------------------------------------------------


def _alpaca_to_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"instruction": record.instruction, "input": record.input, "output": record.output}
    if record.system:
        row["system"] = record.system
    if record.history:
        row["history"] = _pairs(record.history)
    return row


def _alpaca_from_row(
    row: dict[str, Any], meta: dict[str, Any], path: str | None, line: int | None, _c=None
) -> Record:
    return Record(
        instruction=_text(row["instruction"], "instruction", path, line),
        input=_text(row.get("input"), "input", path, line, optional=True),
        output=_text(row["output"], "output", path, line),
        system=_system(row, path, line),
        history=_history(row.get("history"), path, line),
        meta=meta,
    )


def _sharegpt_to_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    turns = []
    for t in record.history:
        turns += [{"from": "human", "value": t.user}, {"from": "gpt", "value": t.assistant}]
    turns += [{"from": "human", "value": record.prompt_text()}, {"from": "gpt", "value": record.output}]
    row: dict[str, Any] = {"conversations": turns}
    if record.system:
        row["system"] = record.system
    return row


def _messages_to_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    msgs = [{"role": "system", "content": record.system}] if record.system else []
    for t in record.history:
        msgs += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.assistant}]
    msgs += [
        {"role": "user", "content": record.prompt_text()},
        {"role": "assistant", "content": record.output},
    ]
    return {"messages": msgs}


def _query_response_to_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    # the layout of ms-swift's self-cognition data: tag is the record's language
    row: dict[str, Any] = {
        "query": record.prompt_text(),
        "response": record.output,
        "tag": record.meta.get("lang", ""),
    }
    if record.history:
        row["history"] = _pairs(record.history)
    if record.system:
        row["system"] = record.system
    return row


def _query_response_from_row(
    row: dict[str, Any], meta: dict[str, Any], path: str | None, line: int | None, _c=None
) -> Record:
    meta = {**meta, **({"lang": row["tag"]} if row.get("tag") else {})}
    return Record(
        instruction=_text(row["query"], "query", path, line),
        output=_text(row["response"], "response", path, line),
        system=_system(row, path, line),
        history=_history(row.get("history"), path, line),
        meta=meta,
    )


def _columns(columns: list[str] | None) -> list[str]:
    if not columns or len(columns) < 3:
        raise ConfigError(
            "--columns needs three names: instruction,input,output (a 4th names the system column)"
        )
    return columns


def _columns_to_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    columns = _columns(columns)
    row = {columns[0]: record.instruction, columns[1]: record.input, columns[2]: record.output}
    if len(columns) > 3 and record.system:
        row[columns[3]] = record.system
    return row


def _columns_from_row(
    row: dict[str, Any], meta: dict[str, Any], path: str | None, line: int | None, columns: list[str] | None
) -> Record:
    columns = _columns(columns)
    for name in columns[::2][:2]:  # instruction and output must be there; input and system may not
        if name not in row:
            raise InputError(f"no '{name}' column", path=path, line=line, field=name, reason="missing_field")
    return Record(
        instruction=_text(row[columns[0]], columns[0], path, line),
        input=_text(row.get(columns[1]), columns[1], path, line, optional=True),
        output=_text(row[columns[2]], columns[2], path, line),
        system=(_text(row.get(columns[3]), columns[3], path, line, optional=True) or None)
        if len(columns) > 3
        else None,
        meta=meta,
    )


def _conversation_from(layout: str) -> FromRow:
    def from_row(
        row: dict[str, Any], meta: dict[str, Any], path: str | None, line: int | None, _c=None
    ) -> Record:
        return _conversation(row, layout, meta, path, line)

    return from_row


# Registration order is the order writers list them in (`FORMATS`); `rank` is the detection order.
register_layout(
    Layout("alpaca", _alpaca_to_row, _alpaca_from_row, lambda r: "instruction" in r and "output" in r, 3)
)
register_layout(Layout("alpaca-json", _alpaca_to_row, _alpaca_from_row))  # alpaca rows in one JSON array
register_layout(
    Layout("sharegpt", _sharegpt_to_row, _conversation_from("sharegpt"), lambda r: "conversations" in r, 2)
)
register_layout(
    Layout("messages", _messages_to_row, _conversation_from("messages"), lambda r: "messages" in r, 1)
)
register_layout(
    Layout(
        "query-response",
        _query_response_to_row,
        _query_response_from_row,
        lambda r: "query" in r and "response" in r,
        4,
    )
)
register_layout(Layout("columns", _columns_to_row, _columns_from_row))
