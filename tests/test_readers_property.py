"""Property tests over every file reader (issue 11): on arbitrary bytes and arbitrary JSON values
no reader raises anything but the project's own errors, nothing it yields is text a UTF-8 writer
cannot encode, and every row read is accounted for: read == written + rejected.

Bounded for CI (200 examples per reader on arbitrary bytes, 100 per accounting test); run more by hand with, e.g.,
`INSTRUCTGEN_PROPERTY_EXAMPLES=20000 python -m pytest -q tests/test_readers_property.py`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from instructgen.errors import InstructgenError  # noqa: E402
from instructgen.io.readers import iter_delimited, iter_header_rows, read_parallel  # noqa: E402
from instructgen.io.records import read_records  # noqa: E402
from instructgen.io.tagged import TaggedSentence, read_tagged  # noqa: E402
from instructgen.schema import Example, Rejected  # noqa: E402

EXAMPLES = int(os.environ.get("INSTRUCTGEN_PROPERTY_EXAMPLES", "200"))
settings.register_profile(
    "readers",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 200,  # CI runs are reproducible; a long run by hand explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("readers")
# The accounting properties build structured files: half as many examples keeps CI in seconds.
ACCOUNTING = settings(PROFILE, max_examples=max(EXAMPLES // 2, 1))

# Every reason a reader may give (README "Quality checks" lists the reader's four; the rest name
# a field's type, tags that do not line up, integer tags without names, an unknown row layout).
READER_REASONS = {
    "malformed_json",
    "missing_field",
    "malformed_row",
    "encoding_error",
    "bad_field",
    "misaligned_tags",
    "missing_tag_names",
    "unknown_layout",
    "bad_input",
}


@contextmanager
def a_file(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        yield p


def drain(make: Callable[[], Any]) -> list[Any] | InstructgenError:
    """All items of a reader, or the project error it stopped with; anything else fails the test."""
    try:
        return list(make())
    except InstructgenError as exc:
        return exc


def writable(item: Any) -> None:
    """What a writer would do with the item: JSON, then UTF-8 (a lone surrogate fails here)."""
    if isinstance(item, tuple):  # read_records: (line, Record | Rejected)
        item = item[1]
    if isinstance(item, TaggedSentence):
        data: Any = [item.tokens, item.tags, item.text, item.char_spans]
    elif isinstance(item, dict):  # iter_header_rows: (line, {column: cell})
        data = item
    else:
        data = item.model_dump()
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    if isinstance(item, Rejected):
        assert item.reason in READER_REASONS, item
        assert item.line is not None and item.line >= 1, item


def check_items(items: list[Any] | InstructgenError) -> list[Any]:
    if isinstance(items, InstructgenError):
        return []
    for item in items:
        writable(item)
    return items


def is_rejected(item: Any) -> bool:
    return isinstance(item[1] if isinstance(item, tuple) else item, Rejected)


# --- 1. arbitrary bytes: only our errors, only writable text --------------------------------------

byte_soup = st.one_of(
    st.binary(max_size=400),
    # text-like bytes: line ends of every kind, quotes, separators, BOMs, JSON punctuation
    st.lists(
        st.sampled_from(
            [
                b"a",
                b"\xe4\xb8\x8a",
                b"\t",
                b",",
                b'"',
                b"\n",
                b"\r",
                b"\r\n",
                b" ",
                b"{",
                b"}",
                b"[",
                b"]",
                b":",
                b'"de"',
                b'"en"',
                b"null",
                b"1",
                b"\\ud800",
                b"\xff",
                b"\xef\xbb\xbf",
                b"\xff\xfe",
                b"\x00",
                b"B-PER",
                b"O",
                b"-DOCSTART-",
            ]
        ),
        max_size=80,
    ).map(b"".join),
)

READERS: dict[str, tuple[str, Callable[[Path, str], Any]]] = {
    "translate-tsv": ("x.tsv", lambda p, m: read_parallel(p, src_lang="de", tgt_lang="en", on_error=m)),
    "translate-csv": ("x.csv", lambda p, m: read_parallel(p, src_lang="de", tgt_lang="en", on_error=m)),
    "translate-jsonl": ("x.jsonl", lambda p, m: read_parallel(p, src_lang="de", tgt_lang="en", on_error=m)),
    "translate-json": ("x.json", lambda p, m: read_parallel(p, src_lang="de", tgt_lang="en", on_error=m)),
    "records-jsonl": ("x.jsonl", lambda p, m: read_records(p, on_error=m)),
    "records-json": ("x.json", lambda p, m: read_records(p, on_error=m)),
    "ner-conll": ("x.conll", lambda p, m: read_tagged(p, on_error=m)),
    "ner-jsonl": ("x.jsonl", lambda p, m: read_tagged(p, on_error=m)),
    "ner-json": ("x.json", lambda p, m: read_tagged(p, on_error=m)),
    "header-csv": ("x.csv", lambda p, m: iter_header_rows(p, ",", on_error=m)),
    "header-tsv": ("x.tsv", lambda p, m: iter_header_rows(p, "\t", on_error=m)),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@settings(PROFILE)
@given(data=byte_soup)
def test_arbitrary_bytes_give_only_our_errors_and_writable_items(reader, data):
    name, make = READERS[reader]
    with a_file(name, data) as p:
        for mode in ("skip", "raise"):
            items = check_items(drain(lambda mode=mode: make(p, mode)))
            lines = [i.line for i in items if isinstance(i, (Example, Rejected))]
            assert lines == sorted(lines)  # input order, so the rejects file lines up with the input


# --- 2. line-oriented files: read == written + rejected ----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=20)  # any code point, lone surrogates included (json.dumps escapes them)
pair_rows = st.fixed_dictionaries({"de": texts, "en": texts}) | st.fixed_dictionaries(
    {"translation": st.fixed_dictionaries({"de": texts, "en": texts})}
)
record_rows = st.one_of(
    st.fixed_dictionaries(
        {"instruction": texts, "output": texts}, optional={"input": texts, "system": texts}
    ),
    st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "assistant", "system"]), "content": texts}
                ),
                max_size=4,
            )
        }
    ),
)
ner_rows = st.integers(0, 4).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "tokens": st.lists(texts, min_size=n, max_size=n),
            "tags": st.lists(st.sampled_from(["O", "B-PER", "I-PER"]), min_size=n, max_size=n),
        }
    )
)


def jsonl_lines(good: st.SearchStrategy) -> st.SearchStrategy:
    """Lines of JSONL: good rows, arbitrary JSON values, broken text, undecodable bytes, blanks."""
    line = st.one_of(
        good.map(lambda v: json.dumps(v).encode()),
        good.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=15).map(
            lambda t: t.encode("utf-8", "surrogatepass")
        ),
        st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
        st.just(b"[" * 3000),
        st.just(b"   "),
    )
    return st.lists(line, max_size=12)


JSONL_READERS = {
    "translate": (pair_rows, lambda p: read_parallel(p, src_lang="de", tgt_lang="en", on_error="skip")),
    "records": (record_rows, lambda p: read_records(p, on_error="skip")),
    "ner": (ner_rows, lambda p: read_tagged(p, on_error="skip")),
}


@pytest.mark.parametrize("reader", sorted(JSONL_READERS))
@ACCOUNTING
@given(data=st.data())
def test_jsonl_every_non_blank_line_is_written_or_rejected(reader, data):
    good, make = JSONL_READERS[reader]
    lines = data.draw(jsonl_lines(good))
    end = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    if lines and lines[0].startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return  # a BOM-like first line changes how the file decodes; covered by test 1
    with a_file("x.jsonl", b"".join(ln + end for ln in lines)) as p:
        got = drain(lambda: make(p))
    if isinstance(got, InstructgenError):  # only a whole-file encoding refusal stops a skip run
        assert (got.reason, got.line) == ("encoding_error", 1), got
        return
    items = check_items(got)
    read = sum(1 for ln in lines if ln.decode("utf-8", "surrogateescape").strip())
    rejected = sum(1 for i in items if is_rejected(i))
    written = len(items) - rejected
    assert read == written + rejected


@pytest.mark.parametrize("reader", sorted(JSONL_READERS))
@ACCOUNTING
@given(data=st.data())
def test_json_array_every_element_is_written_or_rejected(reader, data):
    good, make = JSONL_READERS[reader]
    rows = data.draw(st.lists(st.one_of(good, json_values), max_size=10))
    with a_file("x.json", json.dumps(rows).encode()) as p:
        items = check_items(drain(lambda: make(p)))
    assert len(items) == len(rows)


@pytest.mark.parametrize("reader", sorted(JSONL_READERS))
@ACCOUNTING
@given(data=st.data())
def test_good_rows_are_read_exactly(reader, data):
    """Nothing garbled: valid rows (any text but lone surrogates) come back field for field."""
    make = JSONL_READERS[reader][1]
    clean = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
    if reader == "translate":
        rows = data.draw(st.lists(st.fixed_dictionaries({"de": clean, "en": clean}), max_size=8))
        want = [(r["de"], r["en"]) for r in rows]
    elif reader == "records":
        rows = data.draw(st.lists(st.fixed_dictionaries({"instruction": clean, "output": clean}), max_size=8))
        want = [(r["instruction"], r["output"]) for r in rows]
    else:
        rows = data.draw(st.lists(st.fixed_dictionaries({"tokens": st.lists(clean, max_size=4)}), max_size=8))
        for r in rows:
            r["tags"] = ["O"] * len(r["tokens"])
        want = [(r["tokens"], r["tags"]) for r in rows]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with a_file("x.jsonl", body) as p:
        items = list(make(p))
    if reader == "translate":
        got = [(i.fields["source"], i.fields["target"]) for i in items]
    elif reader == "records":
        got = [(r.instruction, r.output) for _, r in items]
    else:
        got = [(s.tokens, s.tags) for s in items]
    assert got == want


# --- 3. CSV/TSV: every physical line belongs to exactly one row, or is blank ------------------------

csv_text = st.lists(
    st.one_of(
        st.lists(st.text(alphabet='ab,"\t x\u4e0a', max_size=6), min_size=1, max_size=4).map(
            lambda cells: _csv_line(cells)
        ),
        st.text(alphabet='ab,"\t x\u4e0a', max_size=10),
        st.just(""),
    ),
    max_size=12,
)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


@pytest.mark.parametrize("delimiter", [",", "\t"])
@ACCOUNTING
@given(lines=csv_text, end=st.sampled_from(["\n", "\r\n", "\r"]), junk=st.binary(max_size=3))
def test_delimited_rows_cover_every_physical_line(delimiter, lines, end, junk):
    text = end.join(lines)
    data = text.encode("utf-8") + junk
    with a_file("x.csv", data) as p:
        got = drain(lambda: iter_delimited(p, delimiter))
        if isinstance(got, InstructgenError) or data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return  # UTF-16/32 (a BOM from the junk): decoded or refused by name, covered elsewhere
        decoded = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")  # the BOM is no text
        physical = re.split(r"\r\n|\r|\n", decoded)
        if physical and physical[-1] == "":
            physical.pop()
        covered = set()
        last = 0
        for first, end_line, row, _raw in got:
            assert last < first <= end_line, (first, end_line)
            # a gap between rows may only hold blank lines
            assert all(physical[n - 1] == "" for n in range(last + 1, first))
            covered.update(range(first, end_line + 1))
            last = end_line
            if not isinstance(row, InstructgenError):
                assert row  # only an empty line is left out; '""' is a row with one empty field
        assert all(physical[n - 1] == "" for n in range(last + 1, len(physical) + 1))
        # the translate reader accounts for every row the parser produced (header aside)
        items = check_items(
            drain(
                lambda: read_parallel(
                    p,
                    src_lang="de",
                    tgt_lang="en",
                    on_error="skip",
                    input_format="csv" if delimiter == "," else "tsv",
                )
            )
        )
        if items:
            header = 1 if len(got) - len(items) == 1 else 0
            assert len(items) + header == len(got)


# --- 4. CoNLL: one item per sentence, bad lines reject their whole sentence --------------------------

good_line = st.tuples(
    st.text(alphabet="abc上", min_size=1, max_size=4), st.sampled_from(["O", "B-PER", "I-LOC"])
)
bad_line = st.text(alphabet="abc上", min_size=1, max_size=4)  # one column: no tag
sentence = st.lists(st.one_of(good_line, bad_line), min_size=1, max_size=5)


@settings(PROFILE)
@given(
    sents=st.lists(sentence, max_size=6),
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    sep=st.sampled_from([" ", "\t"]),
)
def test_conll_one_item_per_sentence(sents, end, sep):
    lines: list[str] = []
    for s in sents:
        lines += [f"{t[0]}{sep}{t[1]}" if isinstance(t, tuple) else t for t in s]
        lines.append("")
    with a_file("x.conll", end.join(lines).encode("utf-8")) as p:
        items = check_items(drain(lambda: read_tagged(p, on_error="skip")))
    assert len(items) == len(sents)  # read == written + rejected, sentence for sentence
    for s, item in zip(sents, items, strict=True):
        if all(isinstance(t, tuple) for t in s):
            assert isinstance(item, TaggedSentence)
            assert (item.tokens, item.tags) == ([t[0] for t in s], [t[1] for t in s])
        else:
            assert isinstance(item, Rejected) and item.reason == "malformed_row"
