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
from .readers import (
    check_text,
    guard,
    iter_jsonl,
    iter_lines,
    json_type,
    load_hf_dataset,
    load_json_rows,
    not_an_object,
    numbered_rows,
    printable,
    rejected_from,
    require_file,
    sniff_encoding,
)
from .registry import Kind, open_input, register_kind, register_reader


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
    sentences; `-DOCSTART-` lines are document markers, not tokens. CR, LF and CRLF all end a line
    (a lone CR once merged two token lines and lost a token and its entity).

    Sentences are cut from the decoded file at blank lines and split with list comprehensions: a
    per-line Python loop was the slowest step on million-line files. A block with anything unusual
    (a marker, a short row, a whitespace-only line) goes through the line-by-line reader, which names
    the line of any error. Files that are not clean UTF-8 (UTF-16, undecodable bytes) go through it
    whole.
    """
    shown = str(path)
    need = max(token_col, tag_col if tag_col >= 0 else -tag_col - 1) + 1
    need2 = max(need, 2)  # a token and a tag at least
    p = require_file(path)
    codec, bom = sniff_encoding(p)
    if codec != "utf-8" or not _valid_utf8(p, bom):
        numbered = iter_lines(p, newlines="any")
        yield from _conll_lines(numbered, shown, need, tag_col, token_col, on_error)
        return
    line = 1
    for block in _blocks(p, bom):
        first = line
        line += block.count("\n") + 2  # the block's lines, then the blank line that ended it
        if not block:
            continue
        rows = block.split("\n")
        cols = [r.split("\t") for r in rows] if "\t" in block else [r.split() for r in rows]
        # blank and whitespace-only lines split into fewer than 2 columns, so this catches them too
        if rows[0].startswith("-DOCSTART-") or min(map(len, cols)) < need2:
            numbered_rows = ((first + k, r, None) for k, r in enumerate(rows))
            yield from _conll_lines(numbered_rows, shown, need, tag_col, token_col, on_error)
            continue
        yield TaggedSentence([c[token_col] for c in cols], [c[tag_col].strip() for c in cols], shown, first)


CHUNK_BYTES = 1 << 24  # 16 MiB: memory stays flat whatever the file's size


def _valid_utf8(path: Path, bom: int) -> bool:
    """Whether the whole file decodes as UTF-8 (checked chunk by chunk, nothing kept)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as f:
        f.seek(bom)
        try:
            while chunk := f.read(CHUNK_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _blocks(path: Path, bom: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The file's text split at blank lines ("\n\n", with CR and CRLF read as LF), read in chunks.

    Yields exactly what `text.split("\n\n")` gives on the whole decoded file: the split scans left to
    right, so after the last separator of a chunk the scan goes on from the kept tail; a CR at a chunk's
    end waits for the next chunk in case an LF follows it.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    with path.open("rb") as f:
        f.seek(bom)
        while True:
            chunk = f.read(chunk_bytes)
            text = tail + decoder.decode(chunk, final=not chunk)
            if chunk and text.endswith("\r"):
                text, cr = text[:-1], "\r"
            else:
                cr = ""
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            parts = text.split("\n\n")
            if not chunk:
                yield from parts
                return
            tail = parts.pop() + cr
            yield from parts


def _conll_lines(
    numbered: Iterable[tuple[int, str, str | None]],
    shown: str,
    need: int,
    tag_col: int,
    token_col: int,
    on_error: str,
) -> Iterator[TaggedSentence | Rejected]:
    """The line-by-line reader: exact line numbers for errors and unusual blocks.

    A bad line (too few columns, undecodable bytes) spoils its whole sentence: under skip the
    sentence is one counted rejection, never written with a token missing ("John in Paris").
    """
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[str] = []
    first = None
    bad: InputError | None = None
    for line, text, problem in numbered:
        stripped = text.strip()
        if not stripped and problem is None:
            if bad is not None:
                yield rejected_from(bad, printable("\n".join(lines)))
            elif tokens:
                yield TaggedSentence(tokens, tags, shown, first)
            tokens, tags, lines, first, bad = [], [], [], None, None
            continue
        lines.append(text)
        if problem is not None:
            exc = InputError(problem, path=shown, line=line, reason="encoding_error")
        else:
            cols = text.split("\t") if "\t" in text else stripped.split()
            if cols[0].startswith("-DOCSTART-"):
                lines.pop()
                continue
            if len(cols) >= need and (tag_col >= 0 or len(cols) >= 2):
                if first is None:
                    first = line
                tokens.append(cols[token_col])
                tags.append(cols[tag_col].strip())
                continue
            exc = InputError(
                f"expected at least {max(need, 2)} columns (token and tag), found {len(cols)}",
                path=shown,
                line=line,
                reason="malformed_row",
            )
        if on_error != "skip":
            raise exc
        bad = bad or exc
    if bad is not None:
        yield rejected_from(bad, printable("\n".join(lines)))
    elif tokens:
        yield TaggedSentence(tokens, tags, shown, first)


def read_token_jsonl(
    path: str | Path,
    *,
    tag_names: Sequence[str] | None = None,
    tokens_field: str = "tokens",
    tags_field: str | None = None,
    on_error: str = "raise",
) -> Iterator[TaggedSentence | Rejected]:
    """{"tokens": [...], "tags": [...]} (or "ner_tags") per line; integer tags need --tag-names.

    A `.json` file that starts with `[` is a JSON array of such rows (`line` = 1-based position);
    one that does not is read as JSON lines, as the `datasets` json loader accepts both.
    """
    shown = str(path)
    p = require_file(path)
    rows: Iterable[tuple[int, str | None, Any]]
    escapes = False
    if p.suffix.lower() == ".json" and _starts_with_bracket(p):
        data, escapes = load_json_rows(p, "rows")
        rows = numbered_rows(data)
    else:
        rows = iter_jsonl(p)

    def parse(line: int, row: Any) -> TaggedSentence:
        if escapes:
            check_text(row, path=shown, line=line)
        return row_to_sentence(
            row,
            tag_names=tag_names,
            tokens_field=tokens_field,
            tags_field=tags_field,
            path=shown,
            line=line,
        )

    yield from guard(rows, parse, on_error)


def _starts_with_bracket(p: Path) -> bool:
    """Whether the first character after a BOM and whitespace is `[` (a JSON array)."""
    codec, bom = sniff_encoding(p)
    with open(p, "rb") as f:
        f.read(bom)
        head = f.read(4096)
    try:
        text = head.decode(codec, "ignore")
    except LookupError:  # pragma: no cover - sniff_encoding only returns known codecs
        return False
    return text.lstrip().startswith("[")


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
        raise not_an_object(row, path, line)
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
    for k, tok in enumerate(tokens):
        if not isinstance(tok, str):  # str(None) would put the token "None" in the text
            raise InputError(
                f"expected a token string, found {json_type(tok)}",
                path=path,
                line=line,
                field=f"{tokens_field}[{k}]",
                reason="bad_field",
            )
    out_tags = []
    for k, t in enumerate(tags):
        if isinstance(t, int) and not isinstance(t, bool):
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
        elif isinstance(t, str):
            out_tags.append(t)
        else:
            raise InputError(
                f"expected a tag name or id, found {json_type(t)}",
                path=path,
                line=line,
                field=f"{field_name}[{k}]",
                reason="bad_field",
            )
    return TaggedSentence(list(tokens), out_tags, path, line)


def _span_row(row: dict[str, Any], path: str | None, line: int | None) -> TaggedSentence:
    text = row["text"]
    if not isinstance(text, str):
        raise InputError(
            f"expected text, found {json_type(text)}", path=path, line=line, field="text", reason="bad_field"
        )
    entities = row["entities"]
    if entities is None:
        entities = []
    if not isinstance(entities, list):
        raise InputError(
            f"expected a list of entities, found {json_type(entities)}",
            path=path,
            line=line,
            field="entities",
            reason="bad_field",
        )
    spans = []
    for i, ent in enumerate(entities):
        ok = isinstance(ent, dict) and all(k in ent for k in ("start", "end", "label"))
        if ok:
            start, end, label = ent["start"], ent["end"], ent["label"]
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
            ok = ints and isinstance(label, str) and bool(label.strip())
        if not ok:
            raise InputError(
                "an entity needs integer start and end and a label (text)",
                path=path,
                line=line,
                field=f"entities[{i}]",
                reason="bad_field",
            )
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
    """NER sentences through the `tagged` readers of `registry`: a folder is a `save_to_disk`
    dataset, `.jsonl`/`.json` token/tag or span rows, anything else CoNLL columns."""
    p = Path(path)
    return open_input(
        "tagged", p, input_format=input_format, on_error=on_error, tag_col=tag_col, tag_names=tag_names, split=split
    )


def iter_dataset(
    ds: Any, *, tag_names: Sequence[str] | None = None, source: str | None = None, on_error: str = "raise"
) -> Iterator[TaggedSentence | Rejected]:
    """Rows of a datasets.Dataset; integer tags take their names from a ClassLabel feature."""
    tags_field = next((f for f in ("ner_tags", "tags", "labels") if f in ds.column_names), None)
    names = tag_names
    if names is None and tags_field is not None:
        feat = ds.features[tags_field]
        inner = getattr(feat, "feature", None)
        if inner is not None and hasattr(inner, "names"):
            names = inner.names

    def parse(line: int, row: Any) -> TaggedSentence:
        return row_to_sentence(row, tag_names=names, tags_field=tags_field, path=source, line=line)

    yield from guard(numbered_rows(ds), parse, on_error)


register_kind(
    Kind(
        "tagged",
        fallback="conll",
        unknown=lambda p, name: ConfigError(f"unknown NER input format '{name}' (conll, jsonl, hf)"),
    )
)


@register_reader("tagged", "conll")
def _open_conll(path: str | Path, *, tag_col: int = -1, on_error: str = "raise", **_: Any):
    return read_conll(path, tag_col=tag_col, on_error=on_error)


@register_reader("tagged", "jsonl", extensions=(".jsonl", ".json"))
def _open_token_jsonl(
    path: str | Path, *, tag_names: Sequence[str] | None = None, on_error: str = "raise", **_: Any
):
    return read_token_jsonl(path, tag_names=tag_names, on_error=on_error)


@register_reader("tagged", "hf", folder=True)
def _open_tagged_hf(
    path: str | Path,
    *,
    tag_names: Sequence[str] | None = None,
    split: str | None = None,
    on_error: str = "raise",
    **_: Any,
):
    return iter_dataset(load_hf_dataset(path, split), tag_names=tag_names, source=str(path), on_error=on_error)
