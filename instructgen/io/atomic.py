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
from collections.abc import Callable, Iterator
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


def host_name() -> str:
    """This machine's name as temporary names carry it (letters and digits, at most 32)."""
    return _host()


def stage_folder(target: Path, tag: str) -> Path:
    """A new empty folder `.{target name}{tag}tmp-{host}-{pid}-{random}` beside `target`, made
    0777 less the umask by mkdir itself (no chmod, no reading the umask: os.umask sets the whole
    process's mask for a moment, unsafe beside threads creating files). OSError when the parent
    cannot be made or written."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = parent / f".{target.name}{tag}tmp-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def swap_folder_in(
    tmp: Path, target: Path, tag: str, *, removable: Callable[[Path], bool] | None = None
) -> Path | None:
    """Move the finished folder `tmp` onto `target`: an existing target is moved aside first
    (`.{name}{tag}old-{host}-{pid}-...`), put back if the swap fails, removed once it succeeded.

    The whole old folder is removed, so the caller must have checked that it holds only files
    it may remove (tokenize: `OutputFolder.check`). `removable(old)` checks it once more after the
    move (a file put there in the meantime): when it says no, the old folder is kept and
    returned, never removed. OSError when the swap fails (the old target is then where it was)."""
    old = None
    try:
        if target.exists():
            prefix = f".{target.name}{tag}old-{_host()}-{os.getpid()}-"
            old = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
            os.replace(target, old)  # a directory replaces an empty directory
        os.replace(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        if removable is not None and not removable(old):
            return old
        shutil.rmtree(old, ignore_errors=True)
    return None


def _last_written(folder: Path) -> float:
    """When a folder or a file directly in it last changed (a live run keeps writing files in
    it, which does not touch the folder's own mtime)."""
    newest = folder.stat().st_mtime
    with os.scandir(folder) as entries:
        for e in entries:
            try:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def folder_is_stale(folder: Path, host: str | None, pid: int, now: float) -> bool:
    """Whether a temporary folder of ours belongs to a run that is gone, judged as
    `remove_stale_temps` judges temp files: a dead process on this host, or, whatever the host
    (a shared filesystem, where a pid means nothing), nothing written for STALE_AFTER_S. A name
    without a host (written before hosts were recorded) is judged by age alone."""
    if host == _host():
        if pid == os.getpid():
            return False
        if not _pid_alive(pid):
            return True
    return now - _last_written(folder) > STALE_AFTER_S


def remove_stale_folders(
    target: Path, tag: str, *, now: float | None = None, removable: Callable[[Path], bool] | None = None
) -> list[str]:
    """Remove the folders `.{target name}{tag}{tmp,old}-[HOST-]PID-RANDOM` of runs that are gone
    (`folder_is_stale`); their names. A live run's folder and anything else are never touched,
    nor an `old` folder (a replaced target moved aside) that `removable` says no to: one that
    `swap_folder_in` kept because it held files that are not ours."""
    now = time.time() if now is None else now
    pattern = re.compile(
        re.escape(f".{target.name}{tag}")
        + r"(?P<kind>tmp|old)-(?:(?P<host>[A-Za-z0-9]+)-)?(?P<pid>\d+)-[A-Za-z0-9_]+"
    )
    parent = target.parent
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed = []
    for n in names:
        m = pattern.fullmatch(n)
        q = parent / n
        try:
            if m is None or q.is_symlink() or not q.is_dir():
                continue
            if not folder_is_stale(q, m["host"], int(m["pid"]), now):
                continue
            if m["kind"] == "old" and removable is not None and not removable(q):
                continue
        except OSError:  # gone meanwhile, or unreadable: not ours to judge
            continue
        shutil.rmtree(q, ignore_errors=True)
        removed.append(n)
    return removed
