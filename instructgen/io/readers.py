"""Readers that turn files and datasets into `Example`s, naming file, line and field on errors.

Every reader yields `Example | Rejected`: with `on_error="raise"` a bad row stops the run
with an `InputError`; with `on_error="skip"` it becomes a `Rejected` that the report counts
and the rejects file keeps. UTF-8 BOMs and CRLF line ends are accepted everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, MisalignedFilesError
from ..schema import Example, Rejected

Item = Example | Rejected

TABULAR = {".tsv": "tsv", ".txt": "tsv", ".tab": "tsv", ".csv": "csv"}
JSONISH = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def detect_format(path: str | Path) -> str:
    """tsv | csv | jsonl | json | hf (a `save_to_disk` folder), from the name or folder contents."""
    p = Path(path)
    if p.is_dir():
        if (
            (p / "dataset_info.json").exists()
            or (p / "state.json").exists()
            or (p / "dataset_dict.json").exists()
        ):
            return "hf"
        raise ConfigError(f"{p}: a folder that is not a dataset saved with save_to_disk")
    suffix = p.suffix.lower()
    if suffix in TABULAR:
        return TABULAR[suffix]
    if suffix in JSONISH:
        return JSONISH[suffix]
    raise ConfigError(
        f"{p}: cannot tell the format from the extension '{suffix}'; pass --input-format tsv|csv|jsonl|json|hf"
    )


def count_rows(path: str | Path) -> int | None:
    """A cheap row estimate for progress bars (newlines in a file); None for folders."""
    p = Path(path)
    if not p.is_file():
        return None
    n = 0
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) with BOM and CR removed; undecodable bytes name the line.

    Lines are split on LF only: a stray CR inside a Moses line must not shift the alignment.
    """
    shown = str(path)
    if not Path(path).is_file():
        raise InputError("file not found", path=shown)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)",
                    path=shown,
                    line=number,
                    reason="encoding_error",
                ) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, str, Any]]:
    """(line, text, value) for each non-blank line; value is the parsed JSON, or the InputError that
    names the line when it is not JSON (callers raise it or count it, per --on-error)."""
    shown = str(path)
    for line, text in iter_text_lines(path):
        if not text.strip():
            continue
        try:
            yield line, text, json.loads(text)
        except json.JSONDecodeError as exc:
            yield (
                line,
                text,
                InputError(
                    f"invalid JSON: {exc.msg} (column {exc.colno})",
                    path=shown,
                    line=line,
                    reason="malformed_json",
                ),
            )


@dataclass(frozen=True)
class FieldSpec:
    """Where the source and target text live in a row: names, dotted paths or column indexes."""

    source: Sequence[str | int]  # candidates, the first one present wins
    target: Sequence[str | int]
    explicit: bool = False  # the user named the columns: missing ones are errors, not guesses

    @classmethod
    def for_languages(
        cls, src_lang: str, tgt_lang: str, src_col: str | None = None, tgt_col: str | None = None
    ) -> FieldSpec:
        if src_col is not None or tgt_col is not None:
            if src_col is None or tgt_col is None:
                raise ConfigError("give both --src-col and --tgt-col, or neither")
            return cls((_col(src_col),), (_col(tgt_col),), explicit=True)
        return cls(
            (f"translation.{src_lang}", src_lang, "source", "src", "src_text", 0),
            (f"translation.{tgt_lang}", tgt_lang, "target", "tgt", "tgt_text", 1),
        )


def _col(value: str | int) -> str | int:
    if isinstance(value, int):
        return value
    return int(value) if value.isdigit() else value


def _lookup(obj: Any, path: str | int) -> tuple[bool, Any]:
    if isinstance(path, int):
        if isinstance(obj, (list, tuple)) and -len(obj) <= path < len(obj):
            return True, obj[path]
        return False, None
    if isinstance(obj, dict) and path in obj:
        return True, obj[path]
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def extract_pair(
    row: Any, spec: FieldSpec, *, path: str | None, line: int | None, where_field: str = ""
) -> tuple[str, str]:
    """The (source, target) texts of a row, or an InputError naming the missing field."""
    out = []
    for side, candidates in (("source", spec.source), ("target", spec.target)):
        # dict rows are addressed by name or dotted path, list rows (no header) by index
        kind = str if isinstance(row, dict) else int
        usable = [c for c in candidates if isinstance(c, kind)]
        for cand in usable:
            found, value = _lookup(row, cand)
            if found:
                if value is None:
                    value = ""
                if not isinstance(value, str):
                    raise InputError(
                        f"expected text for the {side} side, found {type(value).__name__}",
                        path=path,
                        line=line,
                        field=f"{where_field}{cand}",
                        reason="bad_field",
                    )
                out.append(value)
                break
        else:
            tried = ", ".join(str(c) for c in usable) or "nothing usable"
            if isinstance(row, dict):
                have = ", ".join(sorted(map(str, row)))[:200]
                msg = f"no {side} text: tried {tried}; the row has {have}"
            else:
                msg = f"no {side} text: the row has {len(row)} column(s), tried {tried}"
            raise InputError(
                msg, path=path, line=line, field=str(usable[0]) if usable else side, reason="missing_field"
            )
    return out[0], out[1]


def rejected_from(exc: InputError, raw: Any = None) -> Rejected:
    """The Rejected an --on-error skip run keeps for a bad input row: reason, field, file, line."""
    example = {} if raw is None else {"raw": raw if not isinstance(raw, str) else raw[:2000]}
    return Rejected(
        reason=exc.reason,
        detail=exc.message if exc.field is None else f"field '{exc.field}': {exc.message}",
        source_file=exc.path,
        line=exc.line,
        example=example,
    )


def _pair_example(src: str, tgt: str, path: str | None, line: int | None, key: str = "") -> Example:
    return Example(key=key, fields={"source": src, "target": tgt}, source_file=path, line=line)


def read_line_aligned(src_file: str | Path, tgt_file: str | Path) -> Iterator[Item]:
    """Moses/OPUS style: line i of one file translates line i of the other.

    Line counts are compared here, before the iterator is returned, so a misaligned pair of
    files fails before any output is opened instead of giving a corpus shifted by one line.
    """
    n_src, n_tgt = count_rows(src_file), count_rows(tgt_file)
    if n_src is None or n_tgt is None:
        missing = src_file if n_src is None else tgt_file
        raise InputError("file not found", path=str(missing))
    n_src += _no_final_newline(src_file)
    n_tgt += _no_final_newline(tgt_file)
    if n_src != n_tgt:
        raise MisalignedFilesError(
            f"line-aligned files differ in length: {src_file} has {n_src} lines, {tgt_file} has {n_tgt} lines; nothing was written",
            reason="misaligned",
        )
    shown = str(src_file)
    return (
        _pair_example(src, tgt, shown, line)
        for (line, src), (_, tgt) in zip(iter_text_lines(src_file), iter_text_lines(tgt_file), strict=True)
    )


def _no_final_newline(path: str | Path) -> int:
    p = Path(path)
    if p.stat().st_size == 0:
        return 0
    with open(p, "rb") as f:
        f.seek(-1, io.SEEK_END)
        return 0 if f.read(1) == b"\n" else 1


def read_tabular(
    path: str | Path, spec: FieldSpec, *, delimiter: str, header: str = "auto", on_error: str = "raise"
) -> Iterator[Item]:
    """TSV (no quoting: text may contain quotes) or CSV (RFC 4180 quoting, multi-line fields)."""
    shown = str(path)
    lines = (text + "\n" for _, text in iter_text_lines(path))  # csv needs the ends for quoted newlines
    if delimiter == "\t":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, delimiter=delimiter)
    names: list[str] | None = None
    start = 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if not row or (len(row) == 1 and row[0] == ""):
                continue
            if names is None and line == 1:
                names = _header(row, spec, header, shown)
                if names:
                    continue
            record: Any = dict(zip(names, row)) if names else row
            try:
                src, tgt = extract_pair(record, spec, path=shown, line=line)
            except InputError as exc:
                if on_error != "skip":
                    raise
                yield rejected_from(exc, delimiter.join(row))
                continue
            yield _pair_example(src, tgt, shown, line)
    except csv.Error as exc:
        raise InputError(
            f"malformed {('TSV' if delimiter == chr(9) else 'CSV')}: {exc}",
            path=shown,
            line=reader.line_num,
            reason="malformed_row",
        ) from None


def _header(row: list[str], spec: FieldSpec, mode: str, path: str) -> list[str]:
    named = [c for c in (*spec.source, *spec.target) if isinstance(c, str)]
    if mode == "no":
        if spec.explicit and named:
            raise ConfigError(f"{path}: columns named by --src-col/--tgt-col need a header row")
        return []
    cells = [c.strip() for c in row]
    if mode == "yes":
        return cells
    # auto: a header is a first row that names both sides
    if spec.explicit:
        if all(isinstance(c, int) for c in (*spec.source, *spec.target)):
            return []
        return cells
    lowered = {c.lower() for c in cells}
    has_src = any(isinstance(c, str) and c.lower() in lowered for c in spec.source)
    has_tgt = any(isinstance(c, str) and c.lower() in lowered for c in spec.target)
    return cells if has_src and has_tgt else []


def read_jsonl(path: str | Path, spec: FieldSpec, *, on_error: str = "raise") -> Iterator[Item]:
    shown = str(path)
    for line, text, row in iter_jsonl(path):
        try:
            if isinstance(row, InputError):
                raise row
            if not isinstance(row, dict):
                raise InputError(
                    f"expected a JSON object, found {type(row).__name__}",
                    path=shown,
                    line=line,
                    reason="malformed_json",
                )
            src, tgt = extract_pair(row, spec, path=shown, line=line)
        except InputError as exc:
            if on_error != "skip":
                raise
            yield rejected_from(exc, text)
            continue
        yield _pair_example(src, tgt, shown, line)


def load_json_array(path: str | Path, what: str = "objects") -> list[Any]:
    """A JSON array file ({"data": [...]} too), with the line of a syntax error in the message."""
    shown = str(path)
    text = "\n".join(t for _, t in iter_text_lines(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            path=shown,
            line=exc.lineno,
            reason="malformed_json",
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise InputError(f"expected a JSON array of {what}", path=shown, reason="malformed_json")
    return data


def read_json(path: str | Path, spec: FieldSpec, *, on_error: str = "raise") -> Iterator[Item]:
    """A JSON array of objects; `line` is the 1-based position in the array."""
    yield from _iter_rows(load_json_array(path), spec, str(path), on_error)


def _iter_rows(rows: Iterable[Any], spec: FieldSpec, shown: str | None, on_error: str) -> Iterator[Item]:
    for i, row in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise InputError(
                    f"expected an object, found {type(row).__name__}",
                    path=shown,
                    line=i + 1,
                    reason="malformed_json",
                )
            src, tgt = extract_pair(row, spec, path=shown, line=i + 1, where_field=f"[{i}].")
        except InputError as exc:
            if on_error != "skip":
                raise
            yield rejected_from(exc, json.dumps(row, ensure_ascii=False, default=str))
            continue
        yield _pair_example(src, tgt, shown, i + 1)


def read_hf_disk(
    path: str | Path, spec: FieldSpec, *, split: str | None = None, on_error: str = "raise"
) -> Iterator[Item]:
    """A dataset saved with `Dataset.save_to_disk` (or a DatasetDict with --split)."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise ConfigError(f"{path} holds splits {', '.join(ds)}; choose one with --split")
        ds = ds[split]
    yield from _iter_rows(ds, spec, str(path), on_error)


def read_parallel(
    input_path: str | Path | None = None,
    *,
    src_lang: str,
    tgt_lang: str,
    src_file: str | Path | None = None,
    tgt_file: str | Path | None = None,
    src_col: str | None = None,
    tgt_col: str | None = None,
    input_format: str | None = None,
    header: str = "auto",
    split: str | None = None,
    on_error: str = "raise",
) -> Iterator[Item]:
    """Pick the reader for the input and yield its examples (fields `source` and `target`)."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"--on-error must be raise or skip, not '{on_error}'")
    if src_file is not None or tgt_file is not None:
        if src_file is None or tgt_file is None or input_path is not None:
            raise ConfigError("line-aligned input needs both --src-file and --tgt-file, and no INPUT")
        return read_line_aligned(src_file, tgt_file)
    if input_path is None:
        raise ConfigError("give an INPUT file, or --src-file and --tgt-file")
    spec = FieldSpec.for_languages(src_lang, tgt_lang, src_col, tgt_col)
    fmt = input_format or detect_format(input_path)
    if not Path(input_path).exists():
        raise InputError("file not found", path=str(input_path))
    if fmt == "tsv":
        return read_tabular(input_path, spec, delimiter="\t", header=header, on_error=on_error)
    if fmt == "csv":
        return read_tabular(input_path, spec, delimiter=",", header=header, on_error=on_error)
    if fmt == "jsonl":
        return read_jsonl(input_path, spec, on_error=on_error)
    if fmt == "json":
        return read_json(input_path, spec, on_error=on_error)
    if fmt == "hf":
        return read_hf_disk(input_path, spec, split=split, on_error=on_error)
    raise ConfigError(f"unknown input format '{fmt}' (tsv, csv, jsonl, json, hf)")


def iter_pairs(
    pairs: Iterable[Any],
    *,
    src_lang: str,
    tgt_lang: str,
    src_col: str | None = None,
    tgt_col: str | None = None,
    on_error: str = "raise",
) -> Iterator[Item]:
    """Pairs given in Python: (src, tgt) tuples, dicts, or rows of a `datasets.Dataset`."""
    spec = FieldSpec.for_languages(src_lang, tgt_lang, src_col, tgt_col)
    for i, row in enumerate(pairs):
        if isinstance(row, (tuple, list)) and len(row) >= 2 and not spec.explicit:
            src, tgt = row[0], row[1]
            if not isinstance(src, str) or not isinstance(tgt, str):
                raise InputError("pairs must be two strings", line=i + 1, field="pair")
            yield _pair_example(src, tgt, None, i + 1)
            continue
        yield from _one_row(row, spec, i, on_error)


def _one_row(row: Any, spec: FieldSpec, i: int, on_error: str) -> Iterator[Item]:
    try:
        if not isinstance(row, (dict, list, tuple)):
            raise InputError(
                f"expected a pair or a mapping, found {type(row).__name__}",
                line=i + 1,
                reason="malformed_row",
            )
        src, tgt = extract_pair(row, spec, path=None, line=i + 1)
    except InputError as exc:
        if on_error != "skip":
            raise
        yield rejected_from(exc, json.dumps(row, ensure_ascii=False, default=str))
        return
    yield _pair_example(src, tgt, None, i + 1)
