"""Writers for records: Alpaca (JSONL or JSON array), ShareGPT, OpenAI messages, custom columns.

Files are written to a temporary file beside the target and renamed into place at the end,
so an interrupted run never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..schema import Record

FORMATS = ("alpaca", "alpaca-json", "sharegpt", "messages", "query-response", "columns")


# One encoder for every line: json.dumps(..., ensure_ascii=False) builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


def record_to_row(
    record: Record, fmt: str = "alpaca", *, columns: list[str] | None = None, with_meta: bool = False
) -> dict[str, Any]:
    """The JSON object one record becomes in a given layout."""
    if fmt in ("alpaca", "alpaca-json"):
        row: dict[str, Any] = {
            "instruction": record.instruction,
            "input": record.input,
            "output": record.output,
        }
        if record.system:
            row["system"] = record.system
        if record.history:
            row["history"] = [[t.user, t.assistant] for t in record.history]
    elif fmt == "columns":
        if not columns or len(columns) < 3:
            raise ConfigError(
                "--columns needs three names: instruction,input,output (a 4th names the system column)"
            )
        row = {columns[0]: record.instruction, columns[1]: record.input, columns[2]: record.output}
        if len(columns) > 3 and record.system:
            row[columns[3]] = record.system
    elif fmt == "query-response":
        # the layout of ms-swift's self-cognition data: tag is the record's language
        row = {"query": record.prompt_text(), "response": record.output, "tag": record.meta.get("lang", "")}
        if record.history:
            row["history"] = [[t.user, t.assistant] for t in record.history]
        if record.system:
            row["system"] = record.system
    elif fmt == "sharegpt":
        turns = []
        for t in record.history:
            turns += [{"from": "human", "value": t.user}, {"from": "gpt", "value": t.assistant}]
        turns += [{"from": "human", "value": record.prompt_text()}, {"from": "gpt", "value": record.output}]
        row = {"conversations": turns}
        if record.system:
            row["system"] = record.system
    elif fmt == "messages":
        msgs = [{"role": "system", "content": record.system}] if record.system else []
        for t in record.history:
            msgs += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.assistant}]
        msgs += [
            {"role": "user", "content": record.prompt_text()},
            {"role": "assistant", "content": record.output},
        ]
        row = {"messages": msgs}
    else:
        raise ConfigError(f"unknown output format '{fmt}' (choose {', '.join(FORMATS)})")
    if with_meta and record.meta:
        row["meta"] = record.meta
    return row


class RecordWriter:
    """Streams records to a file (atomically) or to stdout (`-`)."""

    def __init__(
        self,
        path: str | Path,
        fmt: str = "alpaca",
        *,
        columns: list[str] | None = None,
        with_meta: bool = False,
    ) -> None:
        if columns and fmt == "alpaca":
            fmt = "columns"
        if fmt not in FORMATS:
            raise ConfigError(f"unknown output format '{fmt}' (choose {', '.join(FORMATS)})")
        self.path = str(path)
        self.fmt = fmt
        self.columns = columns
        self.with_meta = with_meta
        self.count = 0
        self._fh: IO[str] | None = None
        self._tmp: str | None = None

    def __enter__(self) -> RecordWriter:
        if self.path == "-":
            self._fh = sys.stdout
        else:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        if self.fmt == "alpaca-json":
            self._fh.write("[")
        return self

    def write(self, record: Record) -> None:
        assert self._fh is not None, "use RecordWriter as a context manager"
        text = _dumps(record_to_row(record, self.fmt, columns=self.columns, with_meta=self.with_meta))
        if self.fmt == "alpaca-json":
            self._fh.write(("\n  " if self.count == 0 else ",\n  ") + text)
        else:
            self._fh.write(text + "\n")
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._fh is not None
        if self.fmt == "alpaca-json":
            self._fh.write("\n]\n" if self.count else "]\n")
        if self._fh is sys.stdout:
            self._fh.flush()
            return
        self._fh.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            Path(self._tmp).unlink(missing_ok=True)


class JsonlSink:
    """An atomic JSONL file of plain dicts (used for rejects files)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else str(path)
        self._fh: IO[str] | None = None
        self._tmp: str | None = None
        self.count = 0

    def __enter__(self) -> JsonlSink:
        if self.path is None:
            return self
        if self.path == "-":
            self._fh = sys.stderr
            return self
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(_dumps(row) + "\n")
            self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fh is None or self._fh is sys.stderr:
            return
        self._fh.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            Path(self._tmp).unlink(missing_ok=True)


def write_records(records, path: str | Path, fmt: str = "alpaca", **kwargs: Any) -> int:
    with RecordWriter(path, fmt, **kwargs) as w:
        for r in records:
            w.write(r)
    return w.count
