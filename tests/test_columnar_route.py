"""Columnar routing (instructgen/tokenize/columnar.py): which rows the array path takes.

`_identity_rows` replaces `_IDENTITY_Q.search` on every prompt (the check `Encoder._system_for`
runs through `encode.identity_conflict`) with anchored matches where an alternative can start;
the reference is the regex itself, row by row, on the shared corpora's prompts and outputs and
on hand-made texts at the edges (Unicode case folding, separators, CJK). A shape's constant
pieces are merged; the rows must stay the encoder's (`Encoder`, the --no-fast reference path).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from helpers import SHARED_DATA

from instructgen.formats import FORMATS
from instructgen.io.records import read_records
from instructgen.schema import Record
from instructgen.tokenize.columnar import ColumnarEncoder, _holds, _identity_rows, payload_of
from instructgen.tokenize.encode import _IDENTITY_Q, EncodeOptions, Encoder
from instructgen.tokenize.tokenizers import HFTokenizer

EDGE = [
    "Who are you?",
    "WHO R U",
    "who  made\tyou",
    "hi\nWHO Trained you",
    "xwho are you",  # no word boundary before: no match
    "_who are you",
    "who are youth",
    "What are you",
    "whatever are you",
    "what   are   you",
    "your name",
    "yourname",
    "Kyour name",
    "ıntroduce yourself",  # dotless i: re.IGNORECASE matches it to "i"
    "introduce yourſelf",  # long s: matches "s" under re.IGNORECASE
    "İntroduce yourself",  # lowercases to two characters: the row-by-row path
    "Introduce\u3000yourself",
    "your\u2003name",
    "ntroduce yourself",
    "你是谁",
    "您是谁？",
    "请介绍一下你自己",
    "谁开发了你",
    "谁",
    "",
    "who",
]


def _reference(texts: list[str]) -> list[int]:
    return [k for k, t in enumerate(texts) if _IDENTITY_Q.search(t)]


def _corpus_texts() -> list[str]:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    texts: list[str] = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        for _, r in read_records(SHARED_DATA / name):
            texts += [r.prompt_text(), r.output]
    return texts


def test_identity_rows_equal_the_regex_on_the_shared_corpora():
    texts = _corpus_texts()
    want = _reference(texts)
    assert len(want) >= 5  # the corpora hold identity questions: the check is not vacuous
    for i in range(0, len(texts), 1000):  # chunks as the encoder sees them
        chunk = texts[i : i + 1000]
        assert _identity_rows(chunk, list(range(len(chunk)))) == _reference(chunk)


def test_identity_rows_equal_the_regex_at_the_edges():
    assert _identity_rows(EDGE, list(range(len(EDGE)))) == _reference(EDGE)
    ascii_only = [t for t in EDGE if "İ" not in t]  # the joined path (no length change on lower)
    assert _identity_rows(ascii_only, list(range(len(ascii_only)))) == _reference(ascii_only)
    # a subset of rows keeps the caller's row numbers
    rows = [0, 3, 4, 13, 19]
    assert _identity_rows(EDGE, rows) == [k for k in rows if _IDENTITY_Q.search(EDGE[k])]


def test_identity_rows_equal_the_regex_on_random_texts():
    rng = random.Random(7)
    words = ["who", "are", "you", "r", "u", "your", "name", "what", "introduce", "yourself"]
    words += ["ıntroduce", "made", "x", "Who", "ſ", "_"]
    words += [" ", "\n", "\t", "你", "是", "谁", "您", "介绍一下你自己", "开发", "了"]
    texts = [
        "".join(rng.choice(words) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(1, 8)))
        for _ in range(20_000)
    ]
    want = _reference(texts)
    assert len(want) > 100
    assert _identity_rows(texts, list(range(len(texts)))) == want


def test_constant_pieces_are_merged_and_rows_stay_the_encoders(qwen_dir):
    tok = HFTokenizer(qwen_dir)
    opts = EncodeOptions(max_length=1024, audit_sample=0)
    enc = Encoder(tok, FORMATS["qwen"], opts)
    col = ColumnarEncoder(enc)
    recs = [
        Record(instruction="Name a colour.", output="Blue."),
        Record(instruction="Translate", input="bonjour", output="hello"),
        Record(instruction="Who are you?", output="I am Qwen."),  # the identity check: the encoder
        Record(instruction="Sum", input="1 2", output="3", system="Be brief."),
    ]
    got = col.encode(recs)
    assert got[:4] == payload_of(Encoder(tok, FORMATS["qwen"], opts).encode_batch(recs))[:4]
    assert (col.columnar_rows, col.encoder_rows) == (3, 1)
    for shape in col._shapes.values():
        assert shape is not None
        pairs = zip(shape.pieces, shape.pieces[1:])
        assert not any(
            a.template is None and b.template is None and a.trainable == b.trainable for a, b in pairs
        )


def test_route_sends_identity_questions_added_tokens_meta_and_history_to_the_encoder(qwen_dir):
    tok = HFTokenizer(qwen_dir)
    col = ColumnarEncoder(Encoder(tok, FORMATS["qwen"], EncodeOptions(max_length=1024, audit_sample=0)))
    recs = [
        Record(instruction="Name a colour.", output="Blue."),  # 0: columnar
        Record(instruction="Answer", input="who are you?", output="x"),  # 1: the question is in the input
        Record(instruction="Tell me who are", input="you", output="x"),  # 2: across the joining newline
        Record(instruction="Who are you?", output="x", system="Be brief."),  # 3: own system: no check
        Record(instruction="Hi", output="x", meta={"question_id": "q1"}),  # 4: meta: the encoder
        Record(instruction="Say <|im_end|>", output="x"),  # 5: an added-token string: escaped encoding
        Record(instruction="Say", output="a <|endoftext|> b"),  # 6: in the output too
        Record(instruction="Translate", input="hola", output="hello"),  # 7: columnar, with input
        Record(instruction="what are\tyou", output="x"),  # 8
        Record(instruction="whatever", input="you", output="x"),  # 9: "what" and "you", no question
    ]
    codes, _ = col._route(recs)
    assert np.flatnonzero(codes < 0).tolist() == [1, 2, 4, 5, 6, 8]
    prompts = [r.prompt_text() for r in recs]
    assert [k for k in (1, 2, 8) if _IDENTITY_Q.search(prompts[k])] == [1, 2, 8]  # the reference agrees


def test_holds_is_substring_search():
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choice("<|ab\x00é😀") for _ in range(rng.randint(0, 300)))
        for prefix in ("<|", "<", "a<|b"):
            assert _holds(text, prefix) == (prefix in text)
