"""Writers for records: Alpaca (JSONL or JSON array), ShareGPT, OpenAI messages, custom columns.

Files are written through the one atomic-file helper (`atomic.py`: a temporary file beside the
target, renamed into place at the end, a killed run's leftover removed by the next run) and rows
are laid out by the layout registry (`layouts.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from ..schema import Record
from .atomic import STALE_AFTER_S, close_atomic, open_atomic, remove_stale_temps
from .layouts import LAYOUTS, get_layout, record_to_row

__all__ = [
    "FORMATS",
    "STALE_AFTER_S",
    "JsonlSink",
    "RecordWriter",
    "close_atomic",
    "open_atomic",
    "record_to_row",
    "remove_stale_temps",
    "write_records",
]

FORMATS = tuple(LAYOUTS)  # alpaca, alpaca-json, sharegpt, messages, query-response, columns


# One encoder for every line: json.dumps(..., ensure_ascii=False) builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


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
        get_layout(fmt)  # an unknown layout is a ConfigError before the file is opened
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
            self._fh, self._tmp = open_atomic(self.path)
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
        assert self._tmp is not None
        close_atomic(self._fh, self._tmp, self.path, exc_type is None)


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
        self._fh, self._tmp = open_atomic(self.path)
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(_dumps(row) + "\n")
            self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fh is None or self._fh is sys.stderr:
            return
        assert self._tmp is not None
        close_atomic(self._fh, self._tmp, self.path, exc_type is None)


def write_records(records, path: str | Path, fmt: str = "alpaca", **kwargs: Any) -> int:
    with RecordWriter(path, fmt, **kwargs) as w:
        for r in records:
            w.write(r)
    return w.count
