"""The one atomic-file helper: outputs appear whole or not at all, with the user's umask.

A file is written to a temporary file beside the target and renamed onto it at the end
(`open_atomic` / `close_atomic`, `write_text_atomic`, `atomic_path` for writers that take a file
name), so an interrupted run never leaves a half-written file that looks finished. A folder
(tokenize's Arrow dataset) is built in a temporary folder beside it and swapped in
(`stage_folder` / `swap_folder_in`). A run killed outright (SIGKILL, OOM) cannot remove its
temporaries; the next run writing to the same target removes them (`remove_stale_temps`,
`remove_stale_folders`), recognising ours by name, host and a dead process. Files are created
0666 and folders 0777 less the umask, as `open()` and `mkdir()` would create the target itself.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..errors import ConfigError

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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a whole text file through `open_atomic`: a temp file beside it, created 0666 less the
    umask, renamed in, removed on failure; an unwritable path is a ConfigError."""
    fh, tmp = open_atomic(path)
    ok = False
    try:
        fh.write(text)
        ok = True
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        close_atomic(fh, tmp, str(path), ok)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """The name of a fresh temp file beside `path`, for writers that take a file name (parquet).

    The file is made by `open_atomic` (a unique name later runs recognise and clean up after a
    kill, mode 0666 less the umask, which a writer truncating it keeps), renamed onto `path` when
    the block ends well and removed when it raises.
    """
    fh, tmp = open_atomic(path)
    fh.close()
    ok = False
    try:
        yield tmp
        ok = True
    finally:
        close_atomic(fh, tmp, str(path), ok)


# --- folders ---------------------------------------------------------------------------------------


def umask() -> int:
    """The process umask (reading it means setting it: set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one owned by another user counts)."""
    return _pid_alive(pid)


def stage_folder(target: Path, tag: str) -> Path:
    """A new empty folder `.{target name}{tag}tmp-{pid}-{random}` beside `target`, mode 0777 less
    the umask (mkdtemp makes it 0700). OSError when the parent cannot be made or written."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{tag}tmp-{os.getpid()}-", dir=parent))
    tmp.chmod(0o777 & ~umask())
    return tmp


def swap_folder_in(tmp: Path, target: Path, tag: str) -> None:
    """Move the finished folder `tmp` onto `target`: an existing target is moved aside first
    (`.{name}{tag}old-{pid}-...`), put back if the swap fails, removed once it succeeded.
    OSError when the swap fails (the old target is then where it was)."""
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{tag}old-{os.getpid()}-", dir=target.parent))
            os.replace(target, old)  # a directory replaces an empty directory
        os.replace(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_folders(target: Path, tag: str) -> list[str]:
    """Remove folders `.{target name}{tag}...-{pid}-{random}` whose process is gone; their names."""
    prefix = f".{target.name}{tag}"
    parent = target.parent
    try:
        siblings = [parent / n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return []
    removed = []
    for q in siblings:
        try:
            pid = int(q.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _pid_alive(pid) and q.is_dir() and not q.is_symlink():
            shutil.rmtree(q, ignore_errors=True)
            removed.append(q.name)
    return removed
