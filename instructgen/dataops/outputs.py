"""Where `split`, `mix`, `export` and `stats` may write: never over what they read.

`split train.jsonl -o .` used to replace the 40-row input with its own train split, `export
data.jsonl --to trl -o .` rewrote the input, and `mix a.jsonl:10 b.jsonl:10 -o a.jsonl` replaced a
source (its manifest then recorded the hash of a file that no longer existed). Every command plans
its outputs first (each file, and each folder a `save_to_disk` writes into) and refuses the run,
before anything is written, when one of them is an input, would replace a file inside an input
folder, or is a folder holding an input; or when two outputs are the same file.

Paths are compared resolved (`.`, `..` and symlinks followed) and, where both exist, with
`os.path.samefile` (a hard link is the same file under another name).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _inside(child: Path, folder: Path) -> bool:
    return child != folder and folder in child.parents


def guard_outputs(
    inputs: Iterable[str | Path],
    files: Iterable[str | Path] = (),
    folders: Iterable[str | Path] = (),
) -> None:
    """Raise ConfigError naming both paths when writing `files` or into `folders` would touch an input.

    `files` are the files a run will create or replace; `folders` the folders a `save_to_disk`
    writes into (it replaces the dataset files there). An input may be a file or a folder.
    """
    ins = [(str(p), _resolved(p)) for p in inputs if str(p) != "-"]
    outs: list[tuple[str, Path]] = []
    for shown in files:
        if str(shown) == "-":
            continue
        out = _resolved(shown)
        for given, inp in ins:
            if _same(out, inp):
                raise ConfigError(f"output {shown} is the input {given}; write to another path (-o)")
            if inp.is_dir() and _inside(out, inp):
                raise ConfigError(
                    f"output {shown} is inside the input folder {given}; write outside it (-o)"
                )
        for earlier_shown, earlier in outs:
            if _same(out, earlier):
                raise ConfigError(f"two outputs are one file: {earlier_shown} and {shown}; give them different paths")
        outs.append((str(shown), out))
    for shown in folders:
        folder = _resolved(shown)
        for given, inp in ins:
            if _same(folder, inp) or _inside(inp, folder) or _inside(folder, inp):
                raise ConfigError(
                    f"output folder {shown} holds the input {given} (writing the dataset there would "
                    "replace it); write to another folder (-o)"
                    if not _inside(folder, inp)
                    else f"output folder {shown} is inside the input folder {given}; write outside it (-o)"
                )
