"""Rows as the user's file holds them: read once, checked as records, written back in their layout.

`split` and `mix` must not change what a row says: a custom column, a `tag`, the `meta` object
all travel unchanged, so they work on the parsed JSON objects, not on `Record`s. Each row is
still checked by `io.records.row_to_record`, so a row that is no instruction record stops the
run with its file and line, as every other reader does.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..io.atomic import atomic_path, write_text_atomic
from ..io.readers import iter_jsonl, load_json_array
from ..io.records import detect_layout, row_to_record
from ..io.writers import JsonlSink
from ..schema import Record

KINDS = ("jsonl", "json", "parquet", "hf")
_MISSING = object()


@dataclass
class RowSet:
    """The rows of one input, where each came from, and what the file was."""

    path: str
    kind: str
    rows: list[dict[str, Any]]
    lines: list[int]
    sha256: str
    layouts: Counter = field(default_factory=Counter)

    @property
    def layout(self) -> str:
        """The most common row layout (alpaca, sharegpt, messages, query-response)."""
        return self.layouts.most_common(1)[0][0] if self.layouts else "alpaca"

    def records(self) -> Iterator[Record]:
        for row, line in zip(self.rows, self.lines):
            yield row_to_record(row, path=self.path, line=line)

    @property
    def suffix(self) -> str:
        return {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "hf": ""}[self.kind]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (`tokenize.pipeline.file_hash`, the one file hash of the project), or of
    a folder: sha256 over each file's name and file_hash, in name order."""
    from ..tokenize.pipeline import file_hash

    p = Path(path)
    if not p.is_dir():
        return file_hash(p)
    h = hashlib.sha256()
    for q in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(q.relative_to(p)).encode() + b"\0" + file_hash(q).encode() + b"\n")
    return h.hexdigest()


def input_kind(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        return "hf"
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".parquet":
        return "parquet"
    raise ConfigError(f"{p}: records must be .jsonl, .json, .parquet or a save_to_disk folder, not '{suffix}'")


def _hf_rows(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: a folder that is not a dataset saved with save_to_disk") from None
    except Exception as exc:  # a damaged state.json or Arrow shard
        raise ConfigError(f"{path}: a damaged save_to_disk folder ({type(exc).__name__}: {exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise ConfigError(f"{path}: a DatasetDict; give one split's folder, e.g. {path / next(iter(ds))}")
    return ds.to_list()


def load_rows(path: str | Path, *, check: bool = True) -> RowSet:
    """Read every row of a records file; `check` validates each as a record (file and line on error)."""
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise InputError("file not found", path=shown)
    kind = input_kind(p)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    if kind == "jsonl":
        for line, _text, row in iter_jsonl(p):
            if isinstance(row, InputError):
                raise row
            rows.append(row)
            lines.append(line)
    else:
        if kind == "json":
            data = load_json_array(p, "records")
        elif kind == "parquet":
            import pyarrow.parquet as pq

            try:
                data = pq.read_table(p).to_pylist()
            except Exception as exc:  # ArrowInvalid on a damaged or non-parquet file, OSError
                raise InputError(f"not a readable parquet file ({exc})", path=shown) from None
        else:
            data = _hf_rows(p)
        rows = list(data)
        lines = list(range(1, len(rows) + 1))
    if not rows:  # an empty split, mix or export is a mistake upstream, not a result
        raise InputError("no records in it", path=shown)
    layouts: Counter = Counter()
    for row, line in zip(rows, lines):
        if check:
            row_to_record(row, path=shown, line=line)
        layouts[detect_layout(row) if isinstance(row, dict) else None] += 1
    return RowSet(shown, kind, rows, lines, file_sha256(p), layouts)


def field_value(row: dict[str, Any], name: str) -> Any:
    """A dotted field (`meta.key`); a bare name not in the row is looked up in `meta` too."""
    cur: Any = row
    for part in name.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            cur = _MISSING
            break
    if cur is _MISSING and "." not in name and isinstance(row.get("meta"), dict):
        cur = row["meta"].get(name, _MISSING)
    return None if cur is _MISSING else cur


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def write_rows(rows: list[dict[str, Any]], path: str | Path, kind: str) -> None:
    """Rows to a JSONL file (the writers' JsonlSink), a JSON array, parquet, or a save_to_disk folder."""
    p = Path(path)
    if kind == "jsonl":
        with JsonlSink(p) as sink:
            for row in rows:
                sink.write(row)
    elif kind == "json":
        # the layout of RecordWriter's alpaca-json: one row per line inside the array
        body = ",\n  ".join(_dumps(r) for r in rows)
        write_text_atomic(p, "[\n  " + body + "\n]\n" if rows else "[]\n")
    elif kind in ("parquet", "hf"):
        import datasets

        try:
            ds = datasets.Dataset.from_list(rows)
        except Exception as exc:  # pyarrow cannot unify a field's types across rows
            raise ConfigError(f"{p}: these rows do not fit one Arrow schema ({exc}); write JSONL instead") from None
        try:
            if kind == "parquet":
                with atomic_path(p) as tmp:
                    ds.to_parquet(tmp)
            else:
                ds.save_to_disk(str(p))
        except ConfigError:
            raise
        except Exception as exc:  # OSError, or Arrow refusing a type parquet cannot hold
            raise ConfigError(f"cannot write {p}: {exc}") from None
    else:
        raise ConfigError(f"unknown output kind '{kind}' (choose {', '.join(KINDS)})")
