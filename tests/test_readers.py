"""Readers: every input layout, BOM/CRLF, and the exact error for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from instructgen.errors import ConfigError, InputError, MisalignedFilesError
from instructgen.io.readers import read_parallel
from instructgen.schema import Example, Rejected


def pairs(items) -> list[tuple[str, str, int | None]]:
    return [(i.fields["source"], i.fields["target"], i.line) for i in items if isinstance(i, Example)]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def test_tsv_with_bom_crlf_and_extra_columns(tmp_path):
    p = write(tmp_path, "cmn.txt", "\ufeffHi.\t嗨。\tCC-BY 2.0\r\nRun!\t你用跑的。\tCC-BY 2.0\r\n")
    assert pairs(read_parallel(p, src_lang="en", tgt_lang="zh")) == [
        ("Hi.", "嗨。", 1),
        ("Run!", "你用跑的。", 2),
    ]


def test_tsv_keeps_quotes_as_text(tmp_path):
    p = write(tmp_path, "q.tsv", 'He said "hi".\t他说"嗨"。\n')
    assert pairs(read_parallel(p, src_lang="en", tgt_lang="zh")) == [('He said "hi".', '他说"嗨"。', 1)]


def test_header_named_by_language_codes_is_detected(tmp_path):
    p = write(tmp_path, "h.tsv", "zh\ten\n你好\tHello\n")
    assert pairs(read_parallel(p, src_lang="zh", tgt_lang="en")) == [("你好", "Hello", 2)]


def test_csv_named_columns_with_quoted_multiline_field(tmp_path):
    p = write(
        tmp_path,
        "c.csv",
        'id,review_en,review_de\n1,"Good, really\ngood","Gut, wirklich\ngut"\n2,Bad,Schlecht\n',
    )
    got = pairs(read_parallel(p, src_lang="en", tgt_lang="de", src_col="review_en", tgt_col="review_de"))
    assert got == [
        ("Good, really\ngood", "Gut, wirklich\ngut", 2),
        ("Bad", "Schlecht", 5),
    ]  # row 1 spans lines 2-4


def test_columns_by_index(tmp_path):
    p = write(tmp_path, "i.tsv", "x\tHallo\tHello\n")
    assert pairs(read_parallel(p, src_lang="de", tgt_lang="en", src_col="1", tgt_col="2")) == [
        ("Hallo", "Hello", 1)
    ]


def test_jsonl_hf_translation_layout_and_plain_fields(tmp_path):
    p = write(
        tmp_path,
        "t.jsonl",
        '{"translation": {"de": "Hallo", "en": "Hello"}}\n\n{"de": "Ja", "en": "Yes"}\n{"source": "Nein", "target": "No"}\n',
    )
    assert pairs(read_parallel(p, src_lang="de", tgt_lang="en")) == [
        ("Hallo", "Hello", 1),
        ("Ja", "Yes", 3),
        ("Nein", "No", 4),
    ]


def test_jsonl_dotted_path_columns(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"pair": {"a": "Hallo", "b": "Hello"}}\n')
    assert pairs(read_parallel(p, src_lang="de", tgt_lang="en", src_col="pair.a", tgt_col="pair.b")) == [
        ("Hallo", "Hello", 1)
    ]


def test_json_array(tmp_path):
    p = write(tmp_path, "a.json", '[{"de": "Hallo", "en": "Hello"}, {"de": "Ja", "en": "Yes"}]')
    assert pairs(read_parallel(p, src_lang="de", tgt_lang="en")) == [("Hallo", "Hello", 1), ("Ja", "Yes", 2)]


BAD_JSONL = (
    '{"translation": {"de": "Hallo", "en": "Hello"}}\n'
    '{"translation": {"de": "Ja", "en": "Yes"}}\n'
    '{"translation": {"de": "Nein" "en": "No"}}\n'
    '{"translation": {"de": "Gut", "en": "Good"}}\n'
)


def test_malformed_jsonl_stops_naming_file_and_line(tmp_path):
    p = write(tmp_path, "bad.jsonl", BAD_JSONL)
    with pytest.raises(InputError) as info:
        list(read_parallel(p, src_lang="de", tgt_lang="en"))
    assert str(info.value) == f"{p}:3: invalid JSON: Expecting ',' delimiter (column 31)"
    assert info.value.reason == "malformed_json"


def test_malformed_jsonl_skip_counts_a_rejection_and_goes_on(tmp_path):
    p = write(tmp_path, "bad.jsonl", BAD_JSONL)
    items = list(read_parallel(p, src_lang="de", tgt_lang="en", on_error="skip"))
    assert pairs(items) == [("Hallo", "Hello", 1), ("Ja", "Yes", 2), ("Gut", "Good", 4)]
    (rej,) = [i for i in items if isinstance(i, Rejected)]
    assert rej.reason == "malformed_json"
    assert (rej.source_file, rej.line) == (str(p), 3)
    assert rej.example == {"raw": '{"translation": {"de": "Nein" "en": "No"}}'}


def test_malformed_json_array_names_the_line(tmp_path):
    p = write(tmp_path, "a.json", '[\n  {"de": "Hallo", "en": "Hello"},\n  {"de": "Ja" "en": "Yes"}\n]\n')
    with pytest.raises(InputError, match=r"a\.json:3: invalid JSON: Expecting ',' delimiter \(column 15\)"):
        list(read_parallel(p, src_lang="de", tgt_lang="en"))


def test_missing_field_names_field_and_what_was_tried(tmp_path):
    p = write(tmp_path, "m.jsonl", '{"translation": {"de": "Hallo"}}\n')
    with pytest.raises(InputError) as info:
        list(read_parallel(p, src_lang="de", tgt_lang="en"))
    assert str(info.value) == (
        f"{p}:1, field 'translation.en': no target text: tried translation.en, en, target, tgt, tgt_text; "
        "the row has translation"
    )
    assert info.value.reason == "missing_field"


def test_non_text_field_is_an_error(tmp_path):
    p = write(tmp_path, "n.jsonl", '{"de": "Hallo", "en": 3}\n')
    with pytest.raises(
        InputError, match=r"n\.jsonl:1, field 'en': expected text for the target side, found int"
    ):
        list(read_parallel(p, src_lang="de", tgt_lang="en"))


def test_short_tsv_row_is_an_error_or_a_counted_rejection(tmp_path):
    p = write(tmp_path, "s.tsv", "Hallo\tHello\nonly one column\n")
    with pytest.raises(
        InputError, match=r"s\.tsv:2, field '0': no source text|s\.tsv:2, field '1': no target text"
    ):
        list(read_parallel(p, src_lang="de", tgt_lang="en"))
    items = list(read_parallel(p, src_lang="de", tgt_lang="en", on_error="skip"))
    assert [i.reason for i in items if isinstance(i, Rejected)] == ["missing_field"]


def test_line_aligned_files_with_crlf_and_bom(tmp_path):
    src = write(tmp_path, "a.de", "\ufeffHallo\r\nJa\r\n")
    tgt = write(tmp_path, "a.en", "Hello\nYes")  # no final newline
    assert pairs(read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en")) == [
        ("Hallo", "Hello", 1),
        ("Ja", "Yes", 2),
    ]


def test_misaligned_files_name_both_line_counts(tmp_path):
    src = write(tmp_path, "s.de", "a\nb\nc\n")
    tgt = write(tmp_path, "t.en", "x\ny\n")
    with pytest.raises(MisalignedFilesError) as info:
        read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en")
    assert str(info.value) == (
        f"line-aligned files differ in length: {src} has 3 lines, {tgt} has 2 lines; nothing was written"
    )


def test_invalid_utf8_names_the_line(tmp_path):
    src = write(tmp_path, "e.de", b"ok\n\xff\xfe bad\n")
    tgt = write(tmp_path, "e.en", "x\ny\n")
    with pytest.raises(InputError) as info:
        list(read_parallel(src_file=src, tgt_file=tgt, src_lang="de", tgt_lang="en"))
    assert str(info.value) == f"{src}:2: not valid UTF-8 (invalid start byte at byte 0 of the line)"
    assert info.value.reason == "encoding_error"


def test_save_to_disk_folder(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"translation": [{"de": "Hallo", "en": "Hello"}, {"de": "Ja", "en": "Yes"}]}
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    assert pairs(read_parallel(tmp_path / "ds", src_lang="de", tgt_lang="en")) == [
        ("Hallo", "Hello", 1),
        ("Ja", "Yes", 2),
    ]


def test_dataset_dict_folder_needs_a_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"de": ["Ja"], "en": ["Yes"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ConfigError, match="holds splits train; choose one with --split"):
        list(read_parallel(tmp_path / "dd", src_lang="de", tgt_lang="en"))
    assert pairs(read_parallel(tmp_path / "dd", src_lang="de", tgt_lang="en", split="train")) == [
        ("Ja", "Yes", 1)
    ]


def test_unknown_extension_asks_for_input_format(tmp_path):
    p = write(tmp_path, "data.xyz", "a\tb\n")
    with pytest.raises(
        ConfigError, match=r"cannot tell the format from the extension '\.xyz'; pass --input-format"
    ):
        read_parallel(p, src_lang="de", tgt_lang="en")
    assert pairs(read_parallel(p, src_lang="de", tgt_lang="en", input_format="tsv")) == [("a", "b", 1)]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jsonl: file not found"):
        read_parallel(tmp_path / "nope.jsonl", src_lang="de", tgt_lang="en")
