"""The reader registry: every input format, for every kind of item, found in one table.

A *kind* is what the rows become: `pairs` (translation `Example`s), `tagged` (NER
`TaggedSentence`s), `rows` (`(line, dict)` for classification) and `records` (instruction
`Record`s). A *reader* is registered under a kind and a format name with the file extensions it
claims (or `folder=True` for a `save_to_disk` folder). Detection (`--input-format`, extension,
folder), the `--on-error` check and the "file not found" error happen here once; each reader
handles its own rows through `readers.guard`, the one skip-or-raise loop, and `save_to_disk`
folders with `--split` go through `readers.load_hf_dataset`.

Adding a reader is one module::

    from instructgen.io.registry import register_reader

    @register_reader("pairs", "parquet", extensions=(".parquet",))
    def read_parquet_pairs(path, *, spec, on_error, **_):
        ...  # yield Example | Rejected, rows through readers.guard
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError

Opener = Callable[..., Iterator[Any]]


@dataclass(frozen=True)
class Reader:
    """One registered reader: `open(path, on_error=..., **options)` yields items or Rejected."""

    kind: str
    name: str
    open: Opener
    extensions: tuple[str, ...] = ()
    folder: bool = False


@dataclass
class Kind:
    """How a kind picks a reader when `--input-format` is not given, and its own error wording
    (the messages tests and users already know: kept byte for byte)."""

    name: str
    fallback: str | None = None  # the reader for an extension no reader claims (NER: conll)
    detect: Callable[[Path], str] | None = None  # a kind's own detection, replacing the default
    cannot_tell: Callable[[Path, str], Exception] | None = None
    unknown: Callable[[Path, str], Exception] | None = None
    readers: dict[str, Reader] = field(default_factory=dict)


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    return KINDS.setdefault(kind.name, kind)


def register_reader(
    kind: str, name: str, *, extensions: tuple[str, ...] = (), folder: bool = False
) -> Callable[[Opener], Opener]:
    """Register `open` as the reader of format `name` for `kind` (decorator)."""

    def add(open_: Opener) -> Opener:
        k = KINDS.get(kind) or register_kind(Kind(kind))
        k.readers[name] = Reader(kind, name, open_, tuple(e.lower() for e in extensions), folder)
        return open_

    return add


def formats(kind: str) -> list[str]:
    """The format names registered for a kind, in registration order."""
    _load_builtin()
    return list(KINDS[kind].readers)


def detect(kind: str, path: str | Path, input_format: str | None = None) -> Reader:
    """The reader for `path`: the named format, else a folder reader for a folder, else by extension."""
    _load_builtin()
    k = KINDS[kind]
    p = Path(path)
    name = input_format
    if name is None and k.detect is not None:
        name = k.detect(p)
    elif name is None:
        if p.is_dir():
            name = next((r.name for r in k.readers.values() if r.folder), None)
        if name is None:  # a file, or a folder no reader takes (its reader names what it is)
            suffix = p.suffix.lower()
            name = next((r.name for r in k.readers.values() if suffix in r.extensions), k.fallback)
        if name is None:
            raise (k.cannot_tell or _cannot_tell)(p, p.suffix.lower())
    reader = k.readers.get(name)
    if reader is None:
        raise (k.unknown or _unknown)(p, name)
    return reader


def get_reader(kind: str, name: str) -> Reader:
    """A registered reader by kind and format name (a KeyError names what is registered)."""
    _load_builtin()
    return KINDS[kind].readers[name]


def open_input(
    kind: str, path: str | Path, *, input_format: str | None = None, on_error: str = "raise", **options: Any
) -> Iterator[Any]:
    """Items of `kind` from `path` through its reader (see `detect`); a missing path is an
    InputError naming it, before any reader runs."""
    if not Path(path).exists():
        raise InputError("file not found", path=str(path))
    return detect(kind, path, input_format).open(path, on_error=on_error, **options)


def _cannot_tell(p: Path, suffix: str) -> Exception:
    return ConfigError(f"{p}: cannot tell the format from the extension '{suffix}'; pass --input-format")


def _unknown(p: Path, name: str) -> Exception:
    return ConfigError(f"unknown input format '{name}'")


_LOADED = False


def _load_builtin() -> None:
    """Import the modules that register the shipped readers (they import this module)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import readers, records, tagged  # noqa: F401  (registration on import)
