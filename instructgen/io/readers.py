"""Readers that turn files and datasets into `Example`s, naming file, line and field on errors.

Every reader yields `Example | Rejected`: with `on_error="raise"` a bad row stops the run
with an `InputError`; with `on_error="skip"` it becomes a `Rejected` that the report counts
and the rejects file keeps (`guard`, the one loop that does this for every reader). UTF-8 BOMs
and CRLF line ends are accepted everywhere. The readers are registered by kind and format name
in `registry.py`, which picks one from `--input-format`, the extension or a folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, InputError, MisalignedFilesError
from ..schema import Example, Rejected
from .registry import KINDS, Kind, detect, get_reader, register_kind, register_reader

Item = Example | Rejected
T = TypeVar("T")

TABULAR = {".tsv": "tsv", ".txt": "tsv", ".tab": "tsv", ".csv": "csv"}
JSONISH = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def detect_format(path: str | Path) -> str:
    """tsv | csv | jsonl | json | hf (a `save_to_disk` folder) or another registered `pairs`
    reader, from the name or folder contents."""
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
    # the extensions the registered `pairs` readers claim (TABULAR and JSONISH for the shipped ones)
    for reader in KINDS["pairs"].readers.values():
        if suffix in reader.extensions:
            return reader.name
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


# Fields longer than csv's default 131,072 characters are real (whole documents in one cell):
# allow up to 64 MiB per field instead of failing with csv's "field larger than field limit".
CSV_FIELD_LIMIT = 1 << 26
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))

# Undecodable bytes (surrogateescape) and JSON-escaped lone surrogates both show up as lone
# surrogates in decoded text: text no UTF-8 writer can encode.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def require_file(path: str | Path) -> Path:
    """The path if it is a readable file; otherwise an InputError that says what it is instead."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        raise InputError("is a folder, not a file", path=str(path), reason="bad_input")
    if p.exists():
        raise InputError("is not a regular file", path=str(path), reason="bad_input")
    raise InputError("file not found", path=str(path))


def sniff_encoding(path: str | Path) -> tuple[str, int]:
    """(codec, BOM length) from the first bytes: UTF-8 with or without BOM, UTF-16 LE/BE with BOM.

    UTF-32 and BOM-less UTF-16 are refused by name: read as UTF-8 they would decode "successfully"
    into text full of NUL characters, which is garbage written without a word.
    """
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise InputError(
            "the file starts with a UTF-32 byte order mark; save it as UTF-8",
            path=str(path),
            line=1,
            reason="encoding_error",
        )
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8", 3
    if head.startswith(b"\xff\xfe"):
        return "utf-16-le", 2
    if head.startswith(b"\xfe\xff"):
        return "utf-16-be", 2
    pairs = len(head) // 2
    if pairs >= 2:
        even = head[0 : 2 * pairs : 2].count(0)
        odd = head[1 : 2 * pairs : 2].count(0)
        if max(even, odd) >= pairs // 2 and min(even, odd) == 0:
            order = "BE" if even > odd else "LE"
            raise InputError(
                f"looks like UTF-16 {order} without a byte order mark (every other byte is NUL); "
                "save it as UTF-8, or as UTF-16 with a BOM",
                path=str(path),
                line=1,
                reason="encoding_error",
            )
    return "utf-8", 0


def printable(text: str) -> str:
    """Text safe to write anywhere: lone surrogates (undecodable bytes) become backslash escapes."""
    return text if not _SURROGATE.search(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def encoding_problem(text: str, codec: str = "utf-8") -> str | None:
    """What is wrong with a line decoded leniently (undecodable bytes became lone surrogates)."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    ch = m.group()
    if codec == "utf-8" and 0xDC80 <= ord(ch) <= 0xDCFF:
        return f"not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x} at column {m.start() + 1})"
    return f"not valid {codec.upper()} (a lone surrogate U+{ord(ch):04X} at column {m.start() + 1})"


def iter_lines(path: str | Path, *, newlines: str = "lf") -> Iterator[tuple[int, str, str | None]]:
    """(1-based line number, text, encoding problem or None) for every line, BOM and line end removed.

    The encoding is detected (`sniff_encoding`). Undecodable bytes never stop the iteration: the
    line comes back with them escaped and a problem that names them, so a reader can raise or count
    an `encoding_error` per --on-error. `newlines="lf"` splits on LF only (a stray CR inside a Moses
    line must not shift the alignment; CRLF still ends a line); `"any"` treats CR, LF and CRLF alike.
    """
    p = require_file(path)
    codec, bom = sniff_encoding(p)
    split_cr = newlines == "any"
    if codec != "utf-8":
        yield from _utf16_lines(p, codec, bom, split_cr)
        return
    number = 0
    with open(p, "rb") as f:
        if bom:
            f.read(bom)
        for raw in f:
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            for part in raw.split(b"\r") if split_cr and b"\r" in raw else (raw,):
                number += 1
                try:
                    yield number, part.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    problem = f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)"
                    yield number, part.decode("utf-8", "surrogateescape"), problem


def _utf16_lines(p: Path, codec: str, bom: int, split_cr: bool) -> Iterator[tuple[int, str, str | None]]:
    """UTF-16 files are decoded whole: LF is two bytes there, so a byte-wise line split is wrong."""
    data = p.read_bytes()[bom:]
    tail = ""
    if len(data) % 2:
        data, tail = data[:-1], chr(0xDC00 + data[-1])  # a dangling byte: reported on its line
    text = data.decode(codec, "surrogatepass") + tail
    text = text.replace("\r\n", "\n")
    if split_cr:
        text = text.replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not split_cr and line.endswith("\r"):
            line = line[:-1]
        yield number, line, encoding_problem(line, codec) if _SURROGATE.search(line) else None


def iter_text_lines(path: str | Path, *, newlines: str = "lf") -> Iterator[tuple[int, str]]:
    """(1-based line number, text) with BOM and line end removed; undecodable bytes stop the run
    with an `encoding_error` naming the line (use `iter_lines` to count them instead)."""
    shown = str(path)
    for number, text, problem in iter_lines(path, newlines=newlines):
        if problem is not None:
            raise InputError(problem, path=shown, line=number, reason="encoding_error")
        yield number, text


def find_lone_surrogate(value: Any, where: str = "") -> str | None:
    """The field path of the first string (or key) holding a lone surrogate, else None.

    `json.loads` turns the escape `"\\ud800"` into a one-character string that no UTF-8 writer can
    encode; such text must be refused where it is read, not crash the writer later. Iterative, so
    a deeply nested value cannot exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                return at or "value"
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and _SURROGATE.search(k):
                    return at or "key"
                stack.append((f"{at}.{k}" if at else str(k), item))
        elif isinstance(v, list):
            stack.extend((f"{at}[{i}]", item) for i, item in enumerate(v))
    return None


def parse_json(text: str, *, path: str, line: int, escapes: bool | None = None) -> Any:
    """json.loads with every failure as an InputError naming the line: syntax, nesting too deep,
    integers too long, and JSON escapes of lone surrogates (`encoding_error`, naming the field)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=line, reason="malformed_json"
        ) from None
    except RecursionError:
        raise InputError(
            "invalid JSON: nested too deeply to read", path=path, line=line, reason="malformed_json"
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError(f"invalid JSON: {exc}", path=path, line=line, reason="malformed_json") from None
    if escapes if escapes is not None else _SURROGATE_ESCAPE.search(text):
        check_text(value, path=path, line=line)
    return value


def iter_jsonl(path: str | Path, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str, Any]]:
    """(line, text, value) for each non-blank line; value is the parsed JSON, or the InputError that
    names the line when it is not JSON or not text (callers raise it or count it, per --on-error).

    CR, LF and CRLF all end a line, as in Python's text mode (`for line in open(path)`), which is
    how most JSONL is written and read: a file with old Mac line ends is not one long bad line.
    `start`/`stop` select non-blank lines [start, stop): the earlier ones are skipped unparsed
    (~2 us a line against ~15 us to parse and validate a record), which is how a shard reader gets
    to its part of a large file."""
    shown = str(path)
    lines = (x for x in iter_lines(path, newlines="any") if x[1].strip())
    for line, text, problem in islice(lines, start, stop):
        if problem is not None:
            yield line, printable(text), InputError(problem, path=shown, line=line, reason="encoding_error")
            continue
        try:
            yield line, text, parse_json(text, path=shown, line=line)
        except InputError as exc:
            yield line, text, exc


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
                if not isinstance(value, str):
                    # null is not an empty string, and str(value) would write "None" as a translation
                    found_what = "null" if value is None else type(value).__name__
                    raise InputError(
                        f"expected text for the {side} side, found {found_what}",
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


def guard(
    rows: Iterable[tuple[int, Any, Any]],
    parse: Callable[[int, Any], T],
    on_error: str,
    raw: Callable[[Any, Any], Any] | None = None,
    *,
    keyed: bool = False,
) -> Iterator[Any]:
    """The one skip-or-raise loop every reader shares.

    `rows` are `(line, raw text or None, value or InputError)`; `parse(line, value)` turns a value
    into the reader's item or raises an InputError naming file, line and field. With
    `on_error="skip"` the error becomes a `Rejected` keeping `raw(text, value)` (default: the text,
    else the value dumped as JSON); otherwise it stops the run.
    """
    for line, text, row in rows:
        try:
            if isinstance(row, InputError):
                raise row
            item = parse(line, row)
        except InputError as exc:
            if on_error != "skip":
                raise
            kept = raw(text, row) if raw is not None else text if text is not None else dump_row(row)
            yield (line, rejected_from(exc, kept)) if keyed else rejected_from(exc, kept)
            continue
        yield item


def guard_lines(
    rows: Iterable[tuple[int, Any, Any]], parse: Callable[[int, Any], T], on_error: str
) -> Iterator[tuple[int, T | Rejected]]:
    """`guard`, each item or rejection paired with the line of its row (for `read_records`)."""
    return guard(rows, lambda line, row: (line, parse(line, row)), on_error, None, keyed=True)


def check_on_error(on_error: str) -> None:
    """--on-error is raise or skip; anything else is a ConfigError before a row is read."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"--on-error must be raise or skip, not '{on_error}'")


def _pair_example(src: str, tgt: str, path: str | None, line: int | None, key: str = "") -> Example:
    return Example(key=key, fields={"source": src, "target": tgt}, source_file=path, line=line)


def read_line_aligned(
    src_file: str | Path, tgt_file: str | Path, *, on_error: str = "raise"
) -> Iterator[Item]:
    """Moses/OPUS style: line i of one file translates line i of the other.

    Line counts are compared here, before the iterator is returned, so a misaligned pair of
    files fails before any output is opened instead of giving a corpus shifted by one line.
    Each file's encoding is detected on its own (UTF-16 with a BOM counts lines as text, not bytes).
    """
    n_src, enc_src = _count_lines(src_file)
    n_tgt, enc_tgt = _count_lines(tgt_file)
    if n_src != n_tgt:
        found = ""
        if {enc_src, enc_tgt} != {"utf-8"}:
            found = f" (encodings found: {src_file} {enc_src.upper()}, {tgt_file} {enc_tgt.upper()})"
        raise MisalignedFilesError(
            f"line-aligned files differ in length: {src_file} has {n_src} lines, {tgt_file} has {n_tgt} lines"
            f"{found}; nothing was written",
            reason="misaligned",
        )
    return _aligned_pairs(src_file, tgt_file, on_error)


def _aligned_pairs(src_file: str | Path, tgt_file: str | Path, on_error: str) -> Iterator[Item]:
    shown = str(src_file)

    def rows() -> Iterator[tuple[int, str | None, Any]]:
        pairs = zip(iter_lines(src_file), iter_lines(tgt_file), strict=True)
        for (line, src, bad_src), (_, tgt, bad_tgt) in pairs:
            if bad_src is None and bad_tgt is None:
                yield line, None, (src, tgt)
                continue
            path = shown if bad_src is not None else str(tgt_file)
            exc = InputError(bad_src or bad_tgt or "", path=path, line=line, reason="encoding_error")
            yield line, printable(f"{src}\t{tgt}"), exc

    return guard(rows(), lambda line, pair: _pair_example(pair[0], pair[1], shown, line), on_error)


def _count_lines(path: str | Path) -> tuple[int, str]:
    """(lines, codec): LF bytes plus an unterminated last line for UTF-8, decoded lines otherwise."""
    p = require_file(path)
    codec, _ = sniff_encoding(p)
    if codec != "utf-8":
        return sum(1 for _ in iter_lines(p)), codec
    n = count_rows(p) or 0
    return n + _no_final_newline(p), codec


def _no_final_newline(path: str | Path) -> int:
    p = Path(path)
    if p.stat().st_size == 0:
        return 0
    with open(p, "rb") as f:
        f.seek(-1, io.SEEK_END)
        return 0 if f.read(1) == b"\n" else 1


def iter_delimited(
    path: str | Path, delimiter: str
) -> Iterator[tuple[int, int, list[str] | InputError, str]]:
    """(first line, last line, cells or InputError, raw text of a bad row) per non-blank row of a
    TSV or CSV file (the raw text, undecodable bytes escaped, is for the rejects file).

    TSV has no quoting (text may contain quotes); CSV follows RFC 4180, quoted fields may span
    lines. CR, LF and CRLF all end a line. Quoting is parsed strictly and checked against the
    physical lines it consumed, so an unmatched quote cannot merge rows without a word: text after
    a closing quote, or a file that ends inside a quoted field, is a `malformed_row` naming the
    line where the row (and the quote) started. Undecodable bytes make the row an `encoding_error`.
    """
    shown = str(path)
    kind = "TSV" if delimiter == "\t" else "CSV"
    last = 0
    problems: list[tuple[int, str]] = []
    texts: list[str] = []  # the current row's lines

    def feed() -> Iterator[str]:
        nonlocal last
        for number, text, problem in iter_lines(path, newlines="any"):
            last = number
            texts.append(text)
            if problem is not None:
                problems.append((number, problem))
            yield text + "\n"  # csv needs the ends for quoted newlines

    if delimiter == "\t":
        reader = csv.reader(feed(), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    first = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield (
                first,
                last,
                InputError(
                    _quoting_message(kind, str(exc), first, last),
                    path=shown,
                    line=first,
                    reason="malformed_row",
                ),
                printable("\n".join(texts)),
            )
            first = last + 1
            problems.clear()
            texts.clear()
            continue
        start, first = first, last + 1
        if problems:
            line, problem = problems[0]
            problems.clear()
            error = InputError(problem, path=shown, line=line, reason="encoding_error")
            yield start, last, error, printable("\n".join(texts))
        elif row:  # [] is an empty line; '""' is a row with one empty field, and is counted
            yield start, last, row, ""
        texts.clear()


def _quoting_message(kind: str, error: str, first: int, last: int) -> str:
    span = f"line {first}" if first == last else f"lines {first}-{last}"
    if "unexpected end of data" in error:
        return (
            f"malformed {kind}: a quoted field in the row that starts on line {first} is never closed "
            f"(the file ends inside it, {span} read as one row)"
        )
    if "expected after" in error:
        return (
            f"malformed {kind}: quoting went wrong in the row that starts on line {first}: a closing quote "
            f"on line {last} is followed by more text (an unmatched quote? {span} read as one row)"
        )
    return f"malformed {kind}: {error} ({span})"


def read_tabular(
    path: str | Path, spec: FieldSpec, *, delimiter: str, header: str = "auto", on_error: str = "raise"
) -> Iterator[Item]:
    """TSV (no quoting: text may contain quotes) or CSV (RFC 4180 quoting, multi-line fields).

    Every row must have as many fields as the header (or, without one, the first row): extra cells
    are never dropped and a tab inside a sentence never shifts a pair; such a row is `malformed_row`.
    """
    shown = str(path)
    names: list[str] | None = None
    width: int | None = None

    def rows() -> Iterator[tuple[int, str, Any]]:
        for line, end, row, raw in iter_delimited(path, delimiter):
            if line == 1 and isinstance(row, InputError) and header != "no":
                raise row  # a broken first row may be the header: skipping it would misread every row
            yield line, raw, row if isinstance(row, InputError) else (end, row)

    def parse(line: int, value: tuple[int, list[str]]) -> Example | None:
        nonlocal names, width
        end, row = value
        if names is None and line == 1:
            names = _header(row, spec, header, shown)
            if names:
                width = len(row)
                return None
        record: Any = dict(zip(names, row)) if names else row
        src, tgt = extract_pair(record, spec, path=shown, line=line)
        width = len(row) if width is None else width
        if len(row) != width:
            raise InputError(
                _width_message(len(row), width, bool(names), line, end),
                path=shown,
                line=line,
                reason="malformed_row",
            )
        return _pair_example(src, tgt, shown, line)

    for item in guard(rows(), parse, on_error, _delimited_raw(delimiter)):
        if item is not None:  # None: the header row
            yield item


def _delimited_raw(delimiter: str) -> Callable[[str, Any], str]:
    """The rejects-file text of a bad delimited row: its raw lines, or its cells joined again."""

    def raw(text: str, value: Any) -> str:
        return (text or delimiter.join(value[1])) if isinstance(value, tuple) else text

    return raw


def iter_header_rows(
    path: str | Path, delimiter: str, *, on_error: str = "raise"
) -> Iterator[tuple[int, dict[str, str]] | Rejected]:
    """(line, {column: cell}) per row of a TSV/CSV file whose first row names the columns.

    The checks of `iter_delimited` (quoting against physical lines, CR line ends, encodings) plus
    the header width: a row with more or fewer cells than the header is `malformed_row`, counted
    under skip, never cut or padded. For readers with named columns (classification).
    """
    shown = str(path)
    header: list[str] = []

    def rows() -> Iterator[tuple[int, str, Any]]:
        for line, end, row, raw in iter_delimited(path, delimiter):
            if not header:  # no skipping past a broken header: every row would be misread
                if isinstance(row, InputError):
                    raise row
                header.extend(h.strip() for h in row)
                continue
            yield line, raw, row if isinstance(row, InputError) else (end, row)

    def parse(line: int, value: tuple[int, list[str]]) -> tuple[int, dict[str, str]]:
        end, row = value
        if len(row) != len(header):
            raise InputError(
                _width_message(len(row), len(header), True, line, end),
                path=shown,
                line=line,
                reason="malformed_row",
            )
        return line, dict(zip(header, row))

    yield from guard(rows(), parse, on_error, _delimited_raw(delimiter))


def _width_message(n: int, width: int, header: bool, line: int, end: int) -> str:
    against = "the header has" if header else "the first row has"
    msg = f"{n} fields, {against} {width}"
    if end > line:
        msg += f"; the row runs over lines {line}-{end} (an unmatched quote?)"
    elif n > width:
        msg += " (a tab or delimiter inside a text?)"
    return msg


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

    def parse(line: int, row: Any) -> Example:
        if not isinstance(row, dict):
            raise not_an_object(row, shown, line)
        src, tgt = extract_pair(row, spec, path=shown, line=line)
        return _pair_example(src, tgt, shown, line)

    return guard(iter_jsonl(path), parse, on_error)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("found array", not "found list")."""
    if value is None:
        return "null"
    names = {bool: "boolean", str: "string", int: "number", float: "number", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def load_json_rows(path: str | Path, what: str = "objects") -> tuple[list[Any], bool]:
    """A JSON array file ({"data": [...]} too), with the line of a syntax error in the message,
    and whether it has surrogate escapes (then each row must be checked with `find_lone_surrogate`)."""
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
    except (RecursionError, ValueError) as exc:
        why = "nested too deeply to read" if isinstance(exc, RecursionError) else str(exc)
        raise InputError(f"invalid JSON: {why}", path=shown, reason="malformed_json") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise InputError(f"expected a JSON array of {what}", path=shown, reason="malformed_json")
    return data, bool(_SURROGATE_ESCAPE.search(text))


def load_json_array(path: str | Path, what: str = "objects") -> list[Any]:
    """A JSON array file, every string checked: a lone-surrogate escape is an `encoding_error`
    naming the array position and field (line = 1-based position, as the array readers count)."""
    data, escapes = load_json_rows(path, what)
    if escapes:
        for i, row in enumerate(data):
            check_text(row, path=str(path), line=i + 1)
    return data


def read_json(path: str | Path, spec: FieldSpec, *, on_error: str = "raise") -> Iterator[Item]:
    """A JSON array of objects; `line` is the 1-based position in the array."""
    rows, escapes = load_json_rows(path)
    yield from _iter_rows(rows, spec, str(path), on_error, escapes)


def _iter_rows(
    rows: Iterable[Any], spec: FieldSpec, shown: str | None, on_error: str, escapes: bool = True
) -> Iterator[Item]:
    def parse(line: int, row: Any) -> Example:
        if not isinstance(row, dict):
            raise InputError(
                f"expected an object, found {json_type(row)}",
                path=shown,
                line=line,
                reason="malformed_json",
            )
        if escapes:
            check_text(row, path=shown, line=line)
        src, tgt = extract_pair(row, spec, path=shown, line=line, where_field=f"[{line - 1}].")
        return _pair_example(src, tgt, shown, line)

    return guard(numbered_rows(rows), parse, on_error)


def numbered_rows(rows: Iterable[Any]) -> Iterator[tuple[int, None, Any]]:
    """(1-based position, no raw text, row) for rows held in memory: a JSON array, a Dataset."""
    return ((i + 1, None, row) for i, row in enumerate(rows))


def dump_row(row: Any) -> str:
    """A row as JSON text for the rejects file, whatever it holds (deep, surrogates, odd types)."""
    try:
        return printable(json.dumps(row, ensure_ascii=False, default=str))[:2000]
    except (RecursionError, ValueError):
        return printable(repr(row))[:2000]


def check_text(value: Any, *, path: str | None, line: int | None) -> None:
    """Refuse a row holding a lone surrogate (a JSON escape like "\\ud800", or a dataset string)."""
    bad = find_lone_surrogate(value)
    if bad is not None:
        raise InputError(
            "a lone UTF-16 surrogate (\\ud800-\\udfff, e.g. a JSON escape) is not text",
            path=path,
            line=line,
            field=bad,
            reason="encoding_error",
        )


def load_hf_dataset(path: str | Path, split: str | None = None) -> Any:
    """A `save_to_disk` folder (a DatasetDict needs `split`); a corrupt or plain folder is an
    InputError that names the folder and what datasets said, not a traceback."""
    import datasets

    shown = str(path)
    p = Path(path)
    if not p.is_dir():
        require_file(p)  # names what it is instead
        raise InputError("a dataset saved with save_to_disk is a folder, this is a file", path=shown)
    marks = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((p / m).exists() for m in marks):
        raise InputError(
            "a folder that is not a dataset saved with save_to_disk (no dataset_info.json, state.json "
            "or dataset_dict.json)",
            path=shown,
            reason="bad_input",
        )
    try:
        ds = datasets.load_from_disk(shown)
    except Exception as exc:  # datasets raises many types for a damaged folder
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise InputError(
            f"cannot load the saved dataset ({type(exc).__name__}: {first})", path=shown, reason="bad_input"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise ConfigError(f"{path} holds splits {', '.join(ds)}; choose one with --split")
        if split not in ds:
            raise ConfigError(f"{path} has no split '{split}' (it has {', '.join(ds)})")
        ds = ds[split]
    return ds


def read_hf_disk(
    path: str | Path, spec: FieldSpec, *, split: str | None = None, on_error: str = "raise"
) -> Iterator[Item]:
    """A dataset saved with `Dataset.save_to_disk` (or a DatasetDict with --split)."""
    ds = load_hf_dataset(path, split)
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
    """Pick the reader for the input (the `pairs` readers of `registry`) and yield its examples
    (fields `source` and `target`)."""
    check_on_error(on_error)
    if src_file is not None or tgt_file is not None:
        if src_file is None or tgt_file is None or input_path is not None:
            raise ConfigError("line-aligned input needs both --src-file and --tgt-file, and no INPUT")
        return get_reader("pairs", "aligned").open(src_file, tgt_file, on_error=on_error)
    if input_path is None:
        raise ConfigError("give an INPUT file, or --src-file and --tgt-file")
    spec = FieldSpec.for_languages(src_lang, tgt_lang, src_col, tgt_col)
    if not Path(input_path).exists():
        raise InputError("file not found", path=str(input_path))
    reader = detect("pairs", input_path, input_format)
    if not reader.folder:
        require_file(input_path)
    return reader.open(input_path, spec=spec, header=header, split=split, on_error=on_error)


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
            if not (_SURROGATE.search(src) or _SURROGATE.search(tgt)):
                yield _pair_example(src, tgt, None, i + 1)
                continue
        yield from _one_row(row, spec, i, on_error)


def _one_row(row: Any, spec: FieldSpec, i: int, on_error: str) -> Iterator[Item]:
    def parse(line: int, row: Any) -> Example:
        if not isinstance(row, (dict, list, tuple)):
            raise InputError(
                f"expected a pair or a mapping, found {type(row).__name__}",
                line=line,
                reason="malformed_row",
            )
        check_text(list(row) if isinstance(row, tuple) else row, path=None, line=line)
        src, tgt = extract_pair(row, spec, path=None, line=line)
        return _pair_example(src, tgt, None, line)

    return guard(((i + 1, None, row),), parse, on_error)


# The `pairs` readers (translation). Detection keeps `detect_format`'s wording; a new format is
# one more `register_reader("pairs", ...)` in any module.
register_kind(
    Kind(
        "pairs",
        detect=detect_format,
        unknown=lambda p, name: ConfigError(f"unknown input format '{name}' (tsv, csv, jsonl, json, hf)"),
    )
)


@register_reader("pairs", "tsv", extensions=tuple(k for k, v in TABULAR.items() if v == "tsv"))
def _open_tsv(path: str | Path, *, spec: FieldSpec, header: str = "auto", on_error: str = "raise", **_: Any):
    return read_tabular(path, spec, delimiter="\t", header=header, on_error=on_error)


@register_reader("pairs", "csv", extensions=tuple(k for k, v in TABULAR.items() if v == "csv"))
def _open_csv(path: str | Path, *, spec: FieldSpec, header: str = "auto", on_error: str = "raise", **_: Any):
    return read_tabular(path, spec, delimiter=",", header=header, on_error=on_error)


@register_reader("pairs", "jsonl", extensions=tuple(k for k, v in JSONISH.items() if v == "jsonl"))
def _open_jsonl(path: str | Path, *, spec: FieldSpec, on_error: str = "raise", **_: Any):
    return read_jsonl(path, spec, on_error=on_error)


@register_reader("pairs", "json", extensions=(".json",))
def _open_json(path: str | Path, *, spec: FieldSpec, on_error: str = "raise", **_: Any):
    return read_json(path, spec, on_error=on_error)


@register_reader("pairs", "hf", folder=True)
def _open_hf(
    path: str | Path, *, spec: FieldSpec, split: str | None = None, on_error: str = "raise", **_: Any
):
    return read_hf_disk(path, spec, split=split, on_error=on_error)


register_reader("pairs", "aligned")(read_line_aligned)


# The `rows` readers: `(line, {column: value})` from files with named columns (classification).
# `converters.classification.iter_rows` can become `yield from open_input("rows", p, ...)`.
def _rows_cannot_tell(p: Path, _: str) -> ConfigError:
    return ConfigError(f"{p}: cannot tell the format; pass --input-format csv|tsv|jsonl|json|hf")


register_kind(Kind("rows", cannot_tell=_rows_cannot_tell, unknown=_rows_cannot_tell))


def not_an_object(value: Any, path: str | None, line: int | None) -> InputError:
    """The error for a row that is not an object (`[1, 2]`, `"text"`, `null`): a counted
    `malformed_json`, where `"label" in row` would test a list or a substring, then crash."""
    return InputError(
        f"expected a JSON object, found {json_type(value)}", path=path, line=line, reason="malformed_json"
    )


def _object_row(shown: str) -> Callable[[int, Any], tuple[int, dict[str, Any]]]:
    def parse(line: int, row: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(row, dict):
            raise not_an_object(row, shown, line)
        return line, row

    return parse


@register_reader("rows", "csv", extensions=(".csv",))
def _rows_csv(path: str | Path, *, on_error: str = "raise", **_: Any):
    return iter_header_rows(path, ",", on_error=on_error)


@register_reader("rows", "tsv", extensions=(".tsv", ".txt"))
def _rows_tsv(path: str | Path, *, on_error: str = "raise", **_: Any):
    return iter_header_rows(path, "\t", on_error=on_error)


@register_reader("rows", "jsonl", extensions=(".jsonl",))
def _rows_jsonl(path: str | Path, *, on_error: str = "raise", **_: Any):
    return guard(iter_jsonl(path), _object_row(str(path)), on_error)


@register_reader("rows", "json", extensions=(".json",))
def _rows_json(path: str | Path, *, on_error: str = "raise", **_: Any):
    rows = numbered_rows(load_json_array(path, "rows"))
    return guard(rows, _object_row(str(path)), on_error, lambda _text, row: row)


@register_reader("rows", "hf", folder=True)
def _rows_hf(path: str | Path, *, split: str | None = None, **_: Any):
    # a plain or damaged folder is an InputError naming it
    return ((line, row) for line, _, row in numbered_rows(load_hf_dataset(path, split)))
