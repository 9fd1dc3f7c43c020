"""Writers for records: Alpaca (JSONL or JSON array), ShareGPT, OpenAI messages, custom columns.

Files are written to a temporary file beside the target and renamed into place at the end,
so an interrupted run never leaves a half-written file that looks finished. A run killed
outright (SIGKILL, OOM) cannot remove its temporary file; the next run writing to the same
target removes it (`remove_stale_temps`), recognising ours by name, host and a dead process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..schema import Record
from .layouts import LAYOUTS, get_layout, record_to_row

FORMATS = tuple(LAYOUTS)  # alpaca, alpaca-json, sharegpt, messages, query-response, columns


# One encoder for every line: json.dumps(..., ensure_ascii=False) builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


# `.{target name}.ig-{host}-{pid}-{random}.tmp`: hidden, beside the target, and telling which
# process wrote it, so a later run can tell a dead writer's leftover from a live one's file.
_TMP_TAG = "ig"
STALE_AFTER_S = 24 * 3600  # a live writer touches its file all the time; a day untouched is dead


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{_TMP_TAG}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: Path, *, now: float | None = None) -> list[Path]:
    """Remove temporary files an earlier, killed writer left beside `target`; return them.

    Only our own names count (`.{target}.ig-{host}-{pid}-{hex}.tmp`). One is stale when its
    process no longer runs on this host, or, whatever the host (a shared folder), when it has
    not been written to for `STALE_AFTER_S`. A file of a live writer is never touched.
    """
    pattern = re.compile(
        re.escape(f".{target.name}.{_TMP_TAG}-") + r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+\.tmp"
    )
    now = time.time() if now is None else now
    host, me = _host(), os.getpid()
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        pid = int(m["pid"])
        try:
            idle = now - entry.stat(follow_symlinks=False).st_mtime
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        dead = m["host"] == host and pid != me and not _pid_alive(pid)
        if dead or idle > STALE_AFTER_S:
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def open_atomic(path: str | Path) -> tuple[IO[str], str]:
    """A text file beside `path` to write and later `os.replace` onto it, and its name.

    Created with mode 0666 less the umask, as `open()` would create `path` itself (mkstemp's
    0600 made every output private whatever the user's umask). An output folder that cannot be
    made or written to is a ConfigError naming it, not a traceback.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        tmp = _temp_name(target)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write {target}: {reason} ({exc.filename or target.parent})") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n"), str(tmp)


def close_atomic(fh: IO[str], tmp: str, path: str, ok: bool) -> None:
    """Close a file from `open_atomic`: rename it onto `path` if the run went well, else remove it."""
    try:
        fh.close()
        if ok:
            os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if ok:
            raise ConfigError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
        return
    if not ok:
        Path(tmp).unlink(missing_ok=True)


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
