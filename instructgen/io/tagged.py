"""Readers for NER data: CoNLL columns, character-per-line (MSRA), token/tag JSONL, span JSONL.

Each yields `TaggedSentence`s (tokens + tags, or text + character spans) or `Rejected` rows,
with the first line of the sentence for error messages and the rejects file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..schema import Rejected
from .readers import iter_jsonl, iter_text_lines, rejected_from


@dataclass(slots=True)
class TaggedSentence:
    tokens: list[str]
    tags: list[str] = field(default_factory=list)
    source_file: str | None = None
    line: int | None = None
    char_spans: list[tuple[int, int, str]] | None = None  # span JSONL: (start, end, label) over `text`
    text: str | None = None


def read_conll(
    path: str | Path, *, tag_col: int = -1, token_col: int = 0, on_error: str = "raise"
) -> Iterator[TaggedSentence | Rejected]:
    """Whitespace/tab separated columns, token first and tag last by default; blank lines end
    sentences; `-DOCSTART-` lines are document markers, not tokens.

    Sentences are cut from the decoded file at blank lines and split with list comprehensions: a
    per-line Python loop was the slowest step on million-line files. A block with anything unusual
    (a marker, a short row, a whitespace-only line) goes through the line-by-line reader, which names
    the line of any error.
    """
    shown = str(path)
    need = max(token_col, tag_col if tag_col >= 0 else -tag_col - 1) + 1
    need2 = max(need, 2)  # a token and a tag at least
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", path=shown)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        yield from _conll_lines(iter_text_lines(p), shown, need, tag_col, token_col, on_error)
        return
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    line = 1
    for block in text.split("\n\n"):
        first = line
        line += block.count("\n") + 2  # the block's lines, then the blank line that ended it
        if not block:
            continue
        rows = block.split("\n")
        cols = [r.split("\t") for r in rows] if "\t" in block else [r.split() for r in rows]
        # blank and whitespace-only lines split into fewer than 2 columns, so this catches them too
        if rows[0].startswith("-DOCSTART-") or min(map(len, cols)) < need2:
            numbered = ((first + k, r) for k, r in enumerate(rows))
            yield from _conll_lines(numbered, shown, need, tag_col, token_col, on_error)
            continue
        yield TaggedSentence([c[token_col] for c in cols], [c[tag_col].strip() for c in cols], shown, first)


def _conll_lines(
    numbered: Iterable[tuple[int, str]], shown: str, need: int, tag_col: int, token_col: int, on_error: str
) -> Iterator[TaggedSentence | Rejected]:
    """The line-by-line reader: exact line numbers for errors and unusual blocks."""
    tokens: list[str] = []
    tags: list[str] = []
    first = None
    for line, text in numbered:
        stripped = text.strip()
        if not stripped:
            if tokens:
                yield TaggedSentence(tokens, tags, shown, first)
            tokens, tags, first = [], [], None
            continue
        cols = text.split("\t") if "\t" in text else stripped.split()
        if cols[0].startswith("-DOCSTART-"):
            continue
        if len(cols) < need or (tag_col < 0 and len(cols) < 2):
            exc = InputError(
                f"expected at least {max(need, 2)} columns (token and tag), found {len(cols)}",
                path=shown,
                line=line,
                reason="malformed_row",
            )
            if on_error != "skip":
                raise exc
            yield rejected_from(exc, text)
            continue
        if first is None:
            first = line
        tokens.append(cols[token_col])
        tags.append(cols[tag_col].strip())
    if tokens:
        yield TaggedSentence(tokens, tags, shown, first)


def _fast_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Whole-file decode and split: NER files have millions of short lines, and decoding them
    one by one was the slowest step. On a decoding error, the line reader names the line."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", path=str(p))
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield from iter_text_lines(p)
        return
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def read_token_jsonl(
    path: str | Path,
    *,
    tag_names: Sequence[str] | None = None,
    tokens_field: str = "tokens",
    tags_field: str | None = None,
    on_error: str = "raise",
) -> Iterator[TaggedSentence | Rejected]:
    """{"tokens": [...], "tags": [...]} (or "ner_tags"); integer tags need --tag-names."""
    shown = str(path)
    for line, text, row in iter_jsonl(path):
        try:
            if isinstance(row, InputError):
                raise row
            yield row_to_sentence(
                row,
                tag_names=tag_names,
                tokens_field=tokens_field,
                tags_field=tags_field,
                path=shown,
                line=line,
            )
        except InputError as exc:
            if on_error != "skip":
                raise
            yield rejected_from(exc, text)


def row_to_sentence(
    row: Any,
    *,
    tag_names: Sequence[str] | None,
    tokens_field: str = "tokens",
    tags_field: str | None = None,
    path: str | None = None,
    line: int | None = None,
) -> TaggedSentence:
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", path=path, line=line, reason="malformed_json")
    if "text" in row and "entities" in row and tokens_field not in row:
        return _span_row(row, path, line)
    if tokens_field not in row:
        raise InputError(
            f"no '{tokens_field}' list (or text + entities)",
            path=path,
            line=line,
            field=tokens_field,
            reason="missing_field",
        )
    field_name = tags_field or next((f for f in ("tags", "ner_tags", "labels") if f in row), "tags")
    if field_name not in row:
        raise InputError(
            "no tags list (tried tags, ner_tags, labels)",
            path=path,
            line=line,
            field=field_name,
            reason="missing_field",
        )
    tokens, tags = row[tokens_field], row[field_name]
    if not isinstance(tokens, list) or not isinstance(tags, list):
        raise InputError(
            "tokens and tags must be lists", path=path, line=line, field=field_name, reason="bad_field"
        )
    if len(tokens) != len(tags):
        raise InputError(
            f"{len(tokens)} tokens but {len(tags)} tags",
            path=path,
            line=line,
            field=field_name,
            reason="misaligned_tags",
        )
    out_tags = []
    for t in tags:
        if isinstance(t, int):
            if tag_names is None:
                raise InputError(
                    "integer tags need their names (--tag-names O,B-PER,I-PER,...)",
                    path=path,
                    line=line,
                    field=field_name,
                    reason="missing_tag_names",
                )
            if not 0 <= t < len(tag_names):
                raise InputError(
                    f"tag id {t} is outside the {len(tag_names)} tag names",
                    path=path,
                    line=line,
                    field=field_name,
                    reason="bad_field",
                )
            out_tags.append(tag_names[t])
        else:
            out_tags.append(str(t))
    return TaggedSentence([str(x) for x in tokens], out_tags, path, line)


def _span_row(row: dict[str, Any], path: str | None, line: int | None) -> TaggedSentence:
    text = row["text"]
    spans = []
    for i, ent in enumerate(row["entities"] or []):
        try:
            start, end, label = int(ent["start"]), int(ent["end"]), str(ent["label"])
        except (KeyError, TypeError, ValueError):
            raise InputError(
                "an entity needs start, end and label",
                path=path,
                line=line,
                field=f"entities[{i}]",
                reason="bad_field",
            ) from None
        if not 0 <= start < end <= len(text):
            raise InputError(
                f"span {start}-{end} is outside the text ({len(text)} characters)",
                path=path,
                line=line,
                field=f"entities[{i}]",
                reason="bad_field",
            )
        spans.append((start, end, label))
    return TaggedSentence(tokens=[], source_file=path, line=line, char_spans=sorted(spans), text=text)


def read_tagged(
    path: str | Path,
    *,
    input_format: str | None = None,
    tag_col: int = -1,
    tag_names: Sequence[str] | None = None,
    on_error: str = "raise",
    split: str | None = None,
) -> Iterator[TaggedSentence | Rejected]:
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=str(p))
    fmt = input_format or (
        "hf" if p.is_dir() else "jsonl" if p.suffix.lower() in (".jsonl", ".json") else "conll"
    )
    if fmt == "conll":
        return read_conll(p, tag_col=tag_col, on_error=on_error)
    if fmt == "jsonl":
        return read_token_jsonl(p, tag_names=tag_names, on_error=on_error)
    if fmt == "hf":
        return _read_hf(p, tag_names, split)
    raise ConfigError(f"unknown NER input format '{fmt}' (conll, jsonl, hf)")


def _read_hf(path: Path, tag_names: Sequence[str] | None, split: str | None) -> Iterator[TaggedSentence]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise ConfigError(f"{path} holds splits {', '.join(ds)}; choose one with --split")
        ds = ds[split]
    yield from iter_dataset(ds, tag_names=tag_names, source=str(path))


def iter_dataset(
    ds: Any, *, tag_names: Sequence[str] | None = None, source: str | None = None
) -> Iterator[TaggedSentence]:
    """Rows of a datasets.Dataset; integer tags take their names from a ClassLabel feature."""
    tags_field = next((f for f in ("ner_tags", "tags", "labels") if f in ds.column_names), None)
    names = tag_names
    if names is None and tags_field is not None:
        feat = ds.features[tags_field]
        inner = getattr(feat, "feature", None)
        if inner is not None and hasattr(inner, "names"):
            names = inner.names
    for i, row in enumerate(ds):
        yield row_to_sentence(row, tag_names=names, tags_field=tags_field, path=source, line=i + 1)
