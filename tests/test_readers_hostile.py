"""Hostile input for every reader (issue 11, items 3, 4, 7, 8, 15, 20): nothing lost or garbled
silently, no tracebacks, errors naming file, line and field, counted rejections under skip.

References for the formats: RFC 4180 (CSV quoting: a quoted field ends at a quote followed by a
delimiter or a line end); CPython `Lib/csv.py`/`Modules/_csv.c` (`strict`, `field_size_limit`);
RFC 8259 section 8.2 (a lone surrogate escape is not a Unicode string); the CoNLL-2003 shared task
format (blank line ends a sentence); Unicode section 5.8 (CR, LF and CRLF are all line ends).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from instructgen.errors import InputError, MisalignedFilesError
from instructgen.io.readers import read_parallel
from instructgen.schema import Example, Rejected


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def pairs(items) -> list[tuple[str, str, int | None]]:
    return [(i.fields["source"], i.fields["target"], i.line) for i in items if isinstance(i, Example)]


def rejections(items) -> list[tuple[str, int | None, str]]:
    return [(i.reason, i.line, i.detail) for i in items if isinstance(i, Rejected)]


def translate(p: Path, on_error: str = "raise", **kw):
    return list(read_parallel(p, src_lang="de", tgt_lang="en", on_error=on_error, **kw))


# --- item 3: CSV quoting ------------------------------------------------------------------------


UNMATCHED = 'de,en\n"Hallo,Hello\nJa,Yes\nNein,"No\nGut,Good\n'


def test_unmatched_csv_quote_is_an_error_naming_the_line(tmp_path):
    # before: rows 2-4 merged into one pair ('Hallo,Hello\nJa,Yes\nNein,No', ...), "read 4" of 5
    p = write(tmp_path, "q.csv", UNMATCHED)
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == (
        f"{p}:2: malformed CSV: quoting went wrong in the row that starts on line 2: a closing quote "
        "on line 4 is followed by more text (an unmatched quote? lines 2-4 read as one row)"
    )
    assert info.value.reason == "malformed_row"


def test_unmatched_csv_quote_under_skip_is_one_counted_rejection(tmp_path):
    p = write(tmp_path, "q.csv", UNMATCHED)
    items = translate(p, "skip")
    assert pairs(items) == [("Gut", "Good", 5)]
    assert [(r, line) for r, line, _ in rejections(items)] == [("malformed_row", 2)]


def test_csv_truncated_inside_a_quoted_field_is_not_accepted(tmp_path):
    p = write(tmp_path, "t.csv", 'de,en\nHallo,Hello\nJa,"Yes, and\nmore')
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == (
        f"{p}:3: malformed CSV: a quoted field in the row that starts on line 3 is never closed "
        "(the file ends inside it, lines 3-4 read as one row)"
    )
    items = translate(p, "skip")
    assert pairs(items) == [("Hallo", "Hello", 2)]
    assert [(r, line) for r, line, _ in rejections(items)] == [("malformed_row", 3)]


def test_quoted_field_closing_exactly_at_a_comma_is_caught_by_the_field_count(tmp_path):
    # '"Hallo,Hello\nJa,"' is well-formed RFC 4180 text, so only the width gives it away
    p = write(tmp_path, "w.csv", 'de,en\n"Hallo,Hello\nJa,",Yes,x\nGut,Good\n')
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == (
        f"{p}:2: 3 fields, the header has 2; the row runs over lines 2-3 (an unmatched quote?)"
    )


def test_valid_multiline_csv_still_reads(tmp_path):
    p = write(tmp_path, "m.csv", 'de,en\n"Hallo\nWelt","Hello\nworld"\nJa,Yes\n')
    assert pairs(translate(p)) == [("Hallo\nWelt", "Hello\nworld", 2), ("Ja", "Yes", 5)]


# --- item 7: rows with the wrong number of fields -------------------------------------------------


def test_tsv_cells_beyond_the_header_are_a_malformed_row(tmp_path):
    # before: the third cell was dropped by dict(zip(header, row)) and the pair written
    p = write(tmp_path, "x.tsv", "de\ten\nHallo\tHello\tExtra\nJa\tYes\n")
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == f"{p}:2: 3 fields, the header has 2 (a tab or delimiter inside a text?)"
    assert info.value.reason == "malformed_row"


def test_tab_inside_a_sentence_does_not_shift_the_pair(tmp_path):
    # before: ("Hallo", "Welt") was written as a translation pair
    p = write(tmp_path, "s.tsv", "Ja\tYes\nHallo\tWelt\tHello world\nNein\tNo\n")
    items = translate(p, "skip")
    assert pairs(items) == [("Ja", "Yes", 1), ("Nein", "No", 3)]
    assert rejections(items) == [
        ("malformed_row", 2, "3 fields, the first row has 2 (a tab or delimiter inside a text?)")
    ]


def test_csv_row_with_extra_cells_is_counted(tmp_path):
    p = write(tmp_path, "e.csv", "de,en\nHallo,Hello,extra\nJa,Yes\n")
    items = translate(p, "skip")
    assert pairs(items) == [("Ja", "Yes", 3)]
    assert [(r, line) for r, line, _ in rejections(items)] == [("malformed_row", 2)]


def test_tatoeba_rows_with_a_constant_third_column_still_read(tmp_path):
    p = write(tmp_path, "cmn.txt", "Hi.\t嗨。\tCC-BY 2.0\nRun!\t跑！\tCC-BY 2.0\n")
    assert pairs(read_parallel(p, src_lang="en", tgt_lang="zh")) == [("Hi.", "嗨。", 1), ("Run!", "跑！", 2)]


# --- item 15 / 20: line ends, field size, encodings --------------------------------------------------


def test_lone_cr_line_ends_read_like_lf(tmp_path):
    # before: csv.Error "new-line character seen in unquoted field - do you need to open the file
    # in universal-newline mode?"
    for name in ("cr.csv", "cr.tsv"):
        sep = "," if name.endswith("csv") else "\t"
        p = write(tmp_path, name, f"de{sep}en\rHallo{sep}Hello\rJa{sep}Yes\r\nNein{sep}No\n")
        assert pairs(translate(p)) == [("Hallo", "Hello", 2), ("Ja", "Yes", 3), ("Nein", "No", 4)]


def test_csv_field_over_131072_characters(tmp_path):
    # before: csv.Error "field larger than field limit (131072)" as a traceback
    long = "a" * 200_000
    p = write(tmp_path, "big.csv", f'de,en\n"{long}",b\n')
    assert pairs(translate(p)) == [(long, "b", 2)]


def test_utf16_with_bom_is_decoded_as_text(tmp_path):
    # U+4E0A (上) is the bytes 0A 4E in UTF-16 LE: a byte-wise line split cut it in half
    data = "\ufeffde\ten\nHallo\tHello\n上\t上\n"
    for codec in ("utf-16-le", "utf-16-be"):
        p = write(tmp_path, f"u-{codec}.tsv", data.encode(codec))
        assert pairs(translate(p)) == [("Hallo", "Hello", 2), ("上", "上", 3)]


def test_utf16_line_aligned_files_are_not_misaligned(tmp_path):
    # before: "line-aligned files differ in length" (LF bytes counted inside UTF-16 code units)
    src = write(tmp_path, "a.de", "\ufeff上\nJa\n".encode("utf-16-le"))
    tgt = write(tmp_path, "a.en", "up\nyes\n")
    got = list(read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en"))
    assert pairs(got) == [("上", "up", 1), ("Ja", "yes", 2)]


def test_misaligned_message_names_the_encodings_found(tmp_path):
    src = write(tmp_path, "b.de", "\ufeffa\nb\nc\n".encode("utf-16-be"))
    tgt = write(tmp_path, "b.en", "a\nb\n")
    with pytest.raises(MisalignedFilesError) as info:
        read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en")
    assert str(info.value) == (
        f"line-aligned files differ in length: {src} has 3 lines, {tgt} has 2 lines "
        f"(encodings found: {src} UTF-16-BE, {tgt} UTF-8); nothing was written"
    )


def test_utf16_without_bom_is_refused_by_name(tmp_path):
    p = write(tmp_path, "n.tsv", "Hallo\tHello\n".encode("utf-16-le"))
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == (
        f"{p}:1: looks like UTF-16 LE without a byte order mark (every other byte is NUL); "
        "save it as UTF-8, or as UTF-16 with a BOM"
    )
    assert info.value.reason == "encoding_error"


def test_skip_counts_encoding_errors(tmp_path):
    # before: --on-error skip still stopped at the first undecodable line
    for name, data, at in (
        ("bad.tsv", b"Hallo\tHello\n\xff\tx\nJa\tYes\n", 0),
        (
            "bad.jsonl",
            b'{"de": "Hallo", "en": "Hello"}\n{"de": "\xff", "en": "x"}\n{"de": "Ja", "en": "Yes"}\n',
            8,
        ),
    ):
        p = write(tmp_path, name, data)
        items = translate(p, "skip")
        assert pairs(items) == [("Hallo", "Hello", 1), ("Ja", "Yes", 3)], name
        assert rejections(items) == [
            ("encoding_error", 2, f"not valid UTF-8 (invalid start byte at byte {at} of the line)")
        ], name
        (rej,) = [i for i in items if isinstance(i, Rejected)]
        assert "\\udcff" in rej.example["raw"], rej.example  # the line kept, its bad byte escaped


def test_line_aligned_skip_counts_encoding_errors(tmp_path):
    src = write(tmp_path, "c.de", b"Hallo\n\xfe\nJa\n")
    tgt = write(tmp_path, "c.en", b"Hello\nx\nYes\n")
    items = list(read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en", on_error="skip"))
    assert pairs(items) == [("Hallo", "Hello", 1), ("Ja", "Yes", 3)]
    (rej,) = [i for i in items if isinstance(i, Rejected)]
    assert (rej.reason, rej.source_file, rej.line) == ("encoding_error", str(src), 2)
    assert rej.example == {"raw": "\\udcfe\tx"}


def test_a_folder_given_as_src_file_says_so(tmp_path):
    # before: "file not found" for a path that exists
    (tmp_path / "d").mkdir()
    tgt = write(tmp_path, "a.en", "x\n")
    with pytest.raises(InputError) as info:
        read_parallel(src_file=tmp_path / "d", tgt_file=tgt, src_lang="de", tgt_lang="en")
    assert str(info.value) == f"{tmp_path / 'd'}: is a folder, not a file"


# --- items 4 and 15: JSON values that are not text ------------------------------------------------


def test_null_and_non_string_values_are_counted_rejections_naming_the_field(tmp_path):
    p = write(
        tmp_path,
        "n.jsonl",
        '{"de": null, "en": "x"}\n{"de": "a", "en": {"a": 1}}\n{"de": ["a"], "en": "b"}\n{"de": "Ja", "en": "Yes"}\n',
    )
    items = translate(p, "skip")
    assert pairs(items) == [("Ja", "Yes", 4)]
    assert rejections(items) == [
        ("bad_field", 1, "field 'de': expected text for the source side, found null"),
        ("bad_field", 2, "field 'en': expected text for the target side, found dict"),
        ("bad_field", 3, "field 'de': expected text for the source side, found list"),
    ]


def test_lone_surrogate_escape_is_an_encoding_error_naming_the_field(tmp_path):
    # before: UnicodeEncodeError traceback when the writer encoded the text
    p = write(
        tmp_path,
        "s.jsonl",
        '{"translation": {"de": "a\\ud800", "en": "x"}}\n{"de": "\\ud83d\\ude00", "en": "y"}\n',
    )
    with pytest.raises(InputError) as info:
        translate(p)
    assert str(info.value) == (
        f"{p}:1, field 'translation.de': a lone UTF-16 surrogate (\\ud800-\\udfff, e.g. a JSON escape) is not text"
    )
    assert info.value.reason == "encoding_error"
    assert pairs(translate(p, "skip")) == [("\U0001f600", "y", 2)]  # a proper pair is fine


def test_lone_surrogate_in_a_json_array_row(tmp_path):
    p = write(tmp_path, "s.json", '[{"de": "Ja", "en": "Yes"}, {"de": "\\udfff", "en": "x"}]')
    items = translate(p, "skip")
    assert pairs(items) == [("Ja", "Yes", 1)]
    assert [(r, line) for r, line, _ in rejections(items)] == [("encoding_error", 2)]


def test_deeply_nested_json_is_a_counted_rejection(tmp_path):
    # before: RecursionError traceback, even with --on-error skip
    p = write(tmp_path, "d.jsonl", "[" * 100_000 + "\n" + '{"de": "Ja", "en": "Yes"}\n')
    items = translate(p, "skip")
    assert pairs(items) == [("Ja", "Yes", 2)]
    assert rejections(items) == [("malformed_json", 1, "invalid JSON: nested too deeply to read")]
    a = write(tmp_path, "d.json", "[" * 100_000)
    with pytest.raises(InputError, match=r"d\.json: invalid JSON: nested too deeply to read"):
        translate(a)


def test_non_object_rows_are_named_by_json_type(tmp_path):
    p = write(tmp_path, "o.jsonl", '[1, 2]\n"text"\nnull\n')
    items = translate(p, "skip")
    assert [d for _, _, d in rejections(items)] == [
        "expected a JSON object, found array",
        "expected a JSON object, found string",
        "expected a JSON object, found null",
    ]


# --- item 15: save_to_disk folders ------------------------------------------------------------------


def test_plain_folder_is_an_error_not_a_traceback(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    with pytest.raises(Exception) as info:
        translate(d)
    assert "a folder that is not a dataset saved with save_to_disk" in str(info.value)


def test_corrupt_save_to_disk_folder_is_an_input_error(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]')
    (d / "dataset_info.json").write_text("{}")
    with pytest.raises(InputError) as info:
        translate(d)
    assert str(info.value).startswith(f"{d}: cannot load the saved dataset (")


# --- items 4 and 15: tokenize's record reader --------------------------------------------------------


def read_one(tmp_path: Path, row: str, name: str = "r.jsonl"):
    from instructgen.io.records import read_records

    p = write(tmp_path, name, row + "\n")
    with pytest.raises(InputError) as info:
        list(read_records(p))
    skipped = list(read_records(p, on_error="skip"))
    assert len(skipped) == 1 and isinstance(skipped[0][1], Rejected)
    assert (skipped[0][1].reason, skipped[0][1].line) == (info.value.reason, 1)
    return str(info.value).removeprefix(f"{p}:1")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        # before: written as the text "None", "{'a': 1}" and "5" (str() of the value)
        ('{"instruction": "Hi", "output": null}', ", field 'output': expected text, found null"),
        ('{"instruction": {"a": 1}, "output": "x"}', ", field 'instruction': expected text, found object"),
        ('{"query": "Hi", "response": 5}', ", field 'response': expected text, found number"),
        ('{"instruction": "Hi", "input": [1], "output": "x"}', ", field 'input': expected text, found array"),
        # before: pydantic ValidationError / ValueError / TypeError tracebacks
        (
            '{"instruction": "Hi", "output": "x", "system": 5}',
            ", field 'system': expected text, found number",
        ),
        (
            '{"instruction": "Hi", "output": "x", "history": "ab"}',
            ", field 'history': expected a list of [user, assistant] pairs, found string",
        ),
        (
            '{"instruction": "Hi", "output": "x", "history": [["a"]]}',
            ", field 'history[0]': expected a [user, assistant] pair",
        ),
        (
            '{"instruction": "Hi", "output": "x", "history": [["a", null]]}',
            ", field 'history[0][1]': expected text, found null",
        ),
        ('{"messages": null}', ", field 'messages': expected a list of turns, found null"),
        (
            '{"system": ["s"], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
            ", field 'system': expected text, found array",
        ),
        # before: the content parts were written as raw JSON text
        (
            '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, {"role": "assistant", "content": "b"}]}',
            ", field 'messages[0].content[0]': a content part of type 'image_url' is not text; only text parts can be joined",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": null}]}',
            ", field 'messages[1].content': expected text, found null",
        ),
        (
            '{"conversations": [{"from": "human", "value": 1}, {"from": "gpt", "value": "b"}]}',
            ", field 'conversations[0].value': expected text, found number",
        ),
        (
            '{"instruction": "\\udc00", "output": "x"}',
            ", field 'instruction': a lone UTF-16 surrogate (\\ud800-\\udfff, e.g. a JSON escape) is not text",
        ),
        ("[" * 50_000, ": invalid JSON: nested too deeply to read"),
    ],
)
def test_record_fields_that_are_not_text(tmp_path, row, message):
    assert read_one(tmp_path, row) == message


def test_text_content_parts_are_joined(tmp_path):
    from instructgen.io.records import read_records

    p = write(
        tmp_path,
        "p.jsonl",
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},'
        ' {"role": "assistant", "content": "Hi"}]}\n',
    )
    ((line, rec),) = list(read_records(p))
    assert (line, rec.instruction, rec.output) == (1, "Hello there", "Hi")


def test_record_json_array_rejection_keeps_the_row(tmp_path):
    from instructgen.io.records import read_records

    p = write(
        tmp_path, "a.json", '[{"instruction": "a", "output": "b"}, {"instruction": "a", "output": ["b"]}]'
    )
    got = list(read_records(p, on_error="skip"))
    assert got[0][1].output == "b"
    rej = got[1][1]
    assert (rej.reason, rej.line, rej.detail) == (
        "bad_field",
        2,
        "field 'output': expected text, found array",
    )
    assert rej.example == {"raw": '{"instruction": "a", "output": ["b"]}'}
    with pytest.raises(InputError, match=r"a\.json:2, field 'output': expected text, found array"):
        list(read_records(p))


def test_record_reader_on_a_folder_says_so(tmp_path):
    from instructgen.io.records import read_records

    with pytest.raises(InputError, match="is a folder, not a file"):
        list(read_records(tmp_path))


# --- items 8, 15, 20: NER readers --------------------------------------------------------------------


def tagged(p: Path, on_error: str = "raise", **kw):
    from instructgen.io.tagged import read_tagged

    return list(read_tagged(p, on_error=on_error, **kw))


def sentences(items) -> list[tuple[list[str], list[str], int | None]]:
    return [(s.tokens, s.tags, s.line) for s in items if not isinstance(s, Rejected)]


CONLL_BROKEN = "John B-PER\nlives\nin O\nParis B-LOC\n\nShe O\nwent O\n"


def test_conll_broken_token_line_rejects_the_whole_sentence(tmp_path):
    # before: "lives" was dropped and "John in Paris" written as a sentence
    p = write(tmp_path, "b.conll", CONLL_BROKEN)
    items = tagged(p, "skip")
    assert sentences(items) == [(["She", "went"], ["O", "O"], 6)]
    (rej,) = [i for i in items if isinstance(i, Rejected)]
    assert (rej.reason, rej.line, rej.detail) == (
        "malformed_row",
        2,
        "expected at least 2 columns (token and tag), found 1",
    )
    assert rej.example == {"raw": "John B-PER\nlives\nin O\nParis B-LOC"}
    with pytest.raises(InputError, match=r"b\.conll:2: expected at least 2 columns"):
        tagged(p)


@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
def test_conll_line_ends_are_alike(tmp_path, end):
    # before: a lone CR merged "Paris B-LOC" into the previous line, losing a token and its entity
    text = end.join(["John B-PER", "in O", "Paris B-LOC", "", "She O", ""])
    p = write(tmp_path, "cr.conll", text)
    assert sentences(tagged(p)) == [
        (["John", "in", "Paris"], ["B-PER", "O", "B-LOC"], 1),
        (["She"], ["O"], 5),
    ]


def test_conll_undecodable_bytes_reject_the_sentence_under_skip(tmp_path):
    p = write(tmp_path, "e.conll", b"John B-PER\n\xffx O\n\nShe O\n")
    items = tagged(p, "skip")
    assert sentences(items) == [(["She"], ["O"], 4)]
    assert [(i.reason, i.line) for i in items if isinstance(i, Rejected)] == [("encoding_error", 2)]
    with pytest.raises(InputError, match=r"e\.conll:2: not valid UTF-8"):
        tagged(p)


def test_conll_utf16_with_bom(tmp_path):
    p = write(tmp_path, "u.conll", "\ufeff上 B-LOC\n海 I-LOC\n".encode("utf-16-le"))
    assert sentences(tagged(p)) == [(["上", "海"], ["B-LOC", "I-LOC"], 1)]


def test_ner_json_array_is_read_as_an_array(tmp_path):
    # before: read line by line as JSONL, every line of a pretty-printed array a malformed_json
    p = write(
        tmp_path,
        "a.json",
        '[\n  {"tokens": ["John"], "tags": ["B-PER"]},\n  {"tokens": ["x"], "tags": [null]}\n]\n',
    )
    items = tagged(p, "skip")
    assert sentences(items) == [(["John"], ["B-PER"], 1)]
    assert [(i.reason, i.line, i.detail) for i in items if isinstance(i, Rejected)] == [
        ("bad_field", 2, "field 'tags[0]': expected a tag name or id, found null")
    ]
    lines = write(tmp_path, "l.json", '{"tokens": ["John"], "tags": ["B-PER"]}\n')
    assert sentences(tagged(lines)) == [(["John"], ["B-PER"], 1)]  # JSON lines named .json still read


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        # before: TypeError "object of type 'NoneType' has no len()"
        ('{"text": null, "entities": []}', "field 'text': expected text, found null"),
        (
            '{"text": "ab", "entities": {"a": 1}}',
            "field 'entities': expected a list of entities, found object",
        ),
        (
            '{"text": "ab", "entities": [{"start": 0, "end": 1, "label": null}]}',
            "field 'entities[0]': an entity needs integer start and end and a label (text)",
        ),
        (
            '{"tokens": ["a", null], "tags": ["O", "O"]}',
            "field 'tokens[1]': expected a token string, found null",
        ),
        ('{"tokens": ["a"], "tags": [true]}', "field 'tags[0]': expected a tag name or id, found boolean"),
        (
            '{"tokens": ["\\ud800"], "tags": ["O"]}',
            "field 'tokens[0]': a lone UTF-16 surrogate (\\ud800-\\udfff, e.g. a JSON escape) is not text",
        ),
        ('"text"', "expected a JSON object, found string"),
    ],
)
def test_ner_rows_that_are_not_text(tmp_path, row, detail):
    p = write(tmp_path, "r.jsonl", row + "\n" + '{"tokens": ["ok"], "tags": ["O"]}\n')
    items = tagged(p, "skip")
    assert sentences(items) == [(["ok"], ["O"], 2)]
    assert [(i.line, i.detail) for i in items if isinstance(i, Rejected)] == [(1, detail)]


def test_ner_save_to_disk_folder_honours_skip(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"tokens": [["John"], ["x"]], "ner_tags": [["B-PER"], ["O", "O"]]})
    ds.save_to_disk(str(tmp_path / "ds"))
    # before: the misaligned row stopped the run even with --on-error skip
    items = tagged(tmp_path / "ds", "skip")
    assert sentences(items) == [(["John"], ["B-PER"], 1)]
    assert [(i.reason, i.line) for i in items if isinstance(i, Rejected)] == [("misaligned_tags", 2)]


def test_ner_plain_or_corrupt_folder_is_an_input_error(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="a folder that is not a dataset saved with save_to_disk"):
        tagged(plain)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{")
    with pytest.raises(InputError, match=r"cannot load the saved dataset \("):
        tagged(broken)


# --- rows with named columns (for the classification reader) ---------------------------------------


def test_header_rows_count_bad_rows_and_keep_good_ones(tmp_path):
    from instructgen.io.readers import iter_header_rows

    p = write(tmp_path, "c.csv", b'text,label\r"good, really",pos\rbad,neg,extra\n\xff,neg\n"open,pos\n')
    items = list(iter_header_rows(p, ",", on_error="skip"))
    assert [i for i in items if not isinstance(i, Rejected)] == [
        (2, {"text": "good, really", "label": "pos"})
    ]
    assert [(i.reason, i.line) for i in items if isinstance(i, Rejected)] == [
        ("malformed_row", 3),
        ("encoding_error", 4),
        ("malformed_row", 5),
    ]
    with pytest.raises(InputError, match=r"c\.csv:3: 3 fields, the header has 2"):
        list(iter_header_rows(p, ","))


def test_a_broken_header_is_never_skipped(tmp_path):
    from instructgen.io.readers import iter_header_rows

    p = write(tmp_path, "h.tsv", b"te\xffxt\tlabel\nx\ty\n")
    with pytest.raises(InputError, match=r"h\.tsv:1: not valid UTF-8"):
        list(iter_header_rows(p, "\t", on_error="skip"))
    with pytest.raises(InputError, match=r"h\.tsv:1: not valid UTF-8"):
        translate(p, "skip")


def test_every_documented_reader_reason_is_reachable_under_skip(tmp_path):
    """README ("Quality checks") documents the reader's malformed_json, missing_field,
    malformed_row and encoding_error: each must be what --on-error skip counts for its input."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = ["malformed_json", "missing_field", "malformed_row", "encoding_error"]
    assert all(f"`{r}`" in readme for r in documented)
    inputs = {
        "malformed_json": ("a.jsonl", b'{"de": "a"\n'),
        "missing_field": ("b.jsonl", b'{"de": "a"}\n'),
        "malformed_row": ("c.tsv", b"a\tb\na\tb\tc\n"),
        "encoding_error": ("d.tsv", b"a\tb\n\xffa\tb\n"),
    }
    for reason, (name, data) in inputs.items():
        items = translate(write(tmp_path, name, data), "skip")
        assert [i.reason for i in items if isinstance(i, Rejected)] == [reason]


def test_python_pairs_with_a_lone_surrogate_are_refused(tmp_path):
    from instructgen.io.readers import iter_pairs

    got = list(iter_pairs([("a\ud800", "b"), ("Ja", "Yes")], src_lang="de", tgt_lang="en", on_error="skip"))
    assert pairs(got) == [("Ja", "Yes", 2)]
    assert [(r, line) for r, line, _ in rejections(got)] == [("encoding_error", 1)]
    assert got[0].example == {"raw": '["a\\ud800", "b"]'}


def test_jsonl_with_cr_line_ends(tmp_path):
    # before: the whole file was one line, one malformed_json rejection for every row
    p = write(tmp_path, "cr.jsonl", '{"de": "Hallo", "en": "Hello"}\r{"de": "Ja", "en": "Yes"}\r')
    assert pairs(translate(p)) == [("Hallo", "Hello", 1), ("Ja", "Yes", 2)]
