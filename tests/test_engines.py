"""The engine layer (instructgen/tokenize/engines.py) and columnar assembly (columnar.py).

The contract is the user's tokenizer: an engine runs only after it reproduces its ids and the
encoder's output on a sample, and the columnar rows must be byte-identical to `Encoder`'s (the
`--no-fast` reference path). References: the ids of HF `tokenizers` loading the same
`tokenizer.json`; Meta's Llama-2 tokenizer (../shared/tokenizers/llama2, SOURCES.md there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA

from instructgen.errors import ConfigError
from instructgen.formats import FORMATS
from instructgen.io.records import read_records
from instructgen.schema import Record, Turn
from instructgen.tokenize.columnar import ColumnarEncoder, payload_of
from instructgen.tokenize.encode import EncodeOptions, Encoder
from instructgen.tokenize.engines import FastokensTokenizer, select_engine
from instructgen.tokenize.pipeline import _plan_ahead, encode_columns
from instructgen.tokenize.tokenizers import HFTokenizer

pytest.importorskip("fastokens")
LLAMA2 = SHARED_DATA.parent / "tokenizers" / "llama2"


@pytest.fixture(scope="module")
def qwen_tok(qwen_dir) -> HFTokenizer:
    return HFTokenizer(qwen_dir)  # loaded once: 150k merges take seconds on a busy machine


def _demo(shared_data: Path, n: int | None = None) -> list[Record]:
    recs = [r for _, r in read_records(shared_data / "alpaca_en_demo.json")]
    return recs[:n] if n else recs


def _columns(chunks) -> tuple[bytes, ...]:
    return tuple(
        b"".join(getattr(c, name).tobytes() for c in chunks)
        for name in ("lengths", "ids", "labels", "truncated")
    )


def _same_as_no_fast(tok: HFTokenizer, records: list[Record], fmt: str, num_proc: int = 1, **opts) -> str:
    """Engine + columnar output vs the reference path (--no-fast), byte for byte; the report line."""
    options = EncodeOptions(**opts)
    path = tok.path
    fast, report = encode_columns(records, path, fmt, options, num_proc=num_proc, fast=True, tokenizer=tok)
    slow, ref = encode_columns(records, path, fmt, options, num_proc=1, fast=False, tokenizer=tok)
    assert _columns(fast) == _columns(slow)
    assert [r for c in fast for r in c.rejected] == [r for c in slow for r in c.rejected]
    assert (report.tokens, report.trained_tokens, report.truncated) == (
        ref.tokens,
        ref.trained_tokens,
        ref.truncated,
    )
    assert ref.fast_path == "fast path off: --no-fast (the tokenizer itself encodes)"
    return report.fast_path


def test_qwen_fastokens_is_proven_and_columnar_rows_equal_the_reference(qwen_tok, shared_data):
    line = _same_as_no_fast(qwen_tok, _demo(shared_data), "qwen", max_length=1024)
    assert line == (
        "fast path on: fastokens gives identical ids on 401 sample texts and identical output on 200 "
        "records; columnar rows"
    )


def test_two_processes_give_the_same_bytes(qwen_tok, shared_data):
    recs = _demo(shared_data) + [r for _, r in read_records(shared_data / "alpaca_zh_demo.json")]
    _same_as_no_fast(qwen_tok, recs, "qwen", num_proc=2, max_length=1024)


@pytest.mark.parametrize("fmt", ["llama2", "alpaca"])
def test_llama2_sentencepiece_takes_fastokens_with_identical_output(shared_data, fmt):
    if not LLAMA2.is_dir():
        pytest.skip("../shared/tokenizers/llama2 is not present")
    # llama2: BOS and [INST] ... [/INST] with the response encoded together with its prompt
    # (SentencePiece word-start markers); alpaca: BOS from the tokenizer's own post-processor
    line = _same_as_no_fast(HFTokenizer(LLAMA2), _demo(shared_data), fmt)
    assert line.startswith("fast path on: fastokens gives identical ids") and line.endswith("; columnar rows")


def test_truncation_rejections_and_odd_rows_go_through_the_encoder(qwen_tok):
    long = " ".join(f"word{i}" for i in range(400))
    recs = [
        Record(instruction="Say hi.", output="Hi!"),
        Record(instruction="Echo <|im_end|> literally.", output="<|im_end|> is text here."),
        Record(instruction="Continue.", output="Sure.", history=[Turn(user="Hello", assistant="Hi!")]),
        Record(instruction="Summarise.", input=long, output="Short."),
        Record(instruction="Answer.", output=long),
        Record(instruction="Use {braces} and {0}.", input="{x}", output="{y} }{", system="sys {z}"),
        Record(instruction="No system.", output="ok", system=""),
        Record(instruction="x", output=""),
    ]
    for truncation in ("drop", "truncate_prompt_left"):
        _same_as_no_fast(qwen_tok, recs, "qwen", max_length=128, truncation=truncation)
    tok = qwen_tok
    enc = Encoder(FastokensTokenizer(tok), FORMATS["qwen"], EncodeOptions(max_length=128, audit_sample=0))
    col = ColumnarEncoder(enc)
    got = col.encode(recs)
    want = payload_of(
        Encoder(tok, FORMATS["qwen"], EncodeOptions(max_length=128, audit_sample=0)).encode_batch(recs)
    )
    assert got[:5] == want
    assert col.encoder_rows == 4  # the special-token string, the history and the two long rows


def test_chunks_planned_while_the_engine_loads_finish_as_encoded_in_turn(qwen_tok, shared_data):
    """With 2+ processes the main thread routes and renders the first window's chunks while the
    engine loads (`pipeline._plan_ahead`, with the user's tokenizer), and the engine finishes
    them. Planned ahead, the audit state is unknown: a chunk whose turn comes while the audit
    still wants rows goes to the encoder, exactly as when encoded in turn."""
    en = _demo(shared_data)
    recs = en + [r for _, r in read_records(shared_data / "alpaca_zh_demo.json")] + en[::-1]
    recs += [Record(instruction="Echo <|im_end|>.", output="ok"), Record(instruction="Who are you?", output="x")]
    options = EncodeOptions(max_length=512, audit_sample=1500)  # the first chunk and a half audit
    plans: dict = {}
    _plan_ahead(qwen_tok, FORMATS["qwen"], options, recs, plans)(lambda: False)  # never loaded yet
    assert sorted(plans) == list(range(0, len(recs), 1000))
    engine = FastokensTokenizer(qwen_tok)
    ahead = ColumnarEncoder(Encoder(engine, FORMATS["qwen"], options))
    in_turn = ColumnarEncoder(Encoder(engine, FORMATS["qwen"], options))
    reference = Encoder(qwen_tok, FORMATS["qwen"], options)
    for start in sorted(plans):
        chunk = recs[start : start + 1000]
        got = ahead.finish(chunk, plans[start])
        want = in_turn.encode(chunk)
        assert got == want
        assert got[:5] == payload_of(reference.encode_batch(chunk))
    assert (ahead.columnar_rows, ahead.encoder_rows) == (in_turn.columnar_rows, in_turn.encoder_rows)
    assert ahead.encoder_rows >= 2000 and ahead.columnar_rows > 0  # audited chunks, then columnar


def test_identity_records_still_meet_the_system_check(qwen_tok):
    """The columnar router sends identity questions through Encoder._system_for (qwen's default
    system names Qwen): the same error as the reference path."""
    recs = [Record(instruction="Say hi.", output="Hi!")] * 3 + [
        Record(instruction="Who are you?", output="I am Nova-7B, an assistant made by ACME.")
    ]
    tok = qwen_tok
    options = EncodeOptions(audit_sample=0)
    with pytest.raises(ConfigError) as ref:
        Encoder(tok, FORMATS["qwen"], options).encode_batch(recs)
    with pytest.raises(ConfigError) as got:
        ColumnarEncoder(Encoder(FastokensTokenizer(tok), FORMATS["qwen"], options)).encode(recs)
    assert str(got.value) == str(ref.value)


def _with(tok_dir: Path, out: Path, edit) -> Path:
    """A copy of a tokenizer directory with its tokenizer.json edited."""
    out.mkdir(parents=True)
    for f in tok_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    state = json.loads((out / "tokenizer.json").read_text("utf-8"))
    edit(state)
    (out / "tokenizer.json").write_text(json.dumps(state), "utf-8")
    return out


def test_unsupported_normalizer_falls_back_with_one_line(tiny_dir, tmp_path):
    def strip(state):
        state["normalizer"] = {"type": "Strip", "strip_left": True, "strip_right": True}

    tok = HFTokenizer(_with(tiny_dir, tmp_path / "strip", strip))
    recs = [Record(instruction=" Hello world! ", output=" How are you today? ")] * 3
    choice = select_engine(tok, recs, FORMATS["alpaca"], EncodeOptions())
    assert choice.tok is tok and choice.name == "tokenizers"
    assert choice.line == (
        "fast path off: fastokens refused: cannot load the tokenizer: normalizer error: unsupported "
        "normalizer type: Strip; tiktoken refused: normalizer Strip has no tiktoken equivalent (the "
        "tokenizer itself encodes; columnar rows)"
    )
    assert "\n" not in choice.line


def test_nfkc_is_refused_by_fastokens_and_taken_by_the_tiktoken_twin(qwen_dir, tmp_path):
    def nfkc(state):
        state["normalizer"] = {"type": "NFKC"}

    tok = HFTokenizer(_with(qwen_dir, tmp_path / "nfkc", nfkc))
    recs = [Record(instruction="ﬁne ① Ｈｅｌｌｏ", output="Hello world!")] * 3
    choice = select_engine(tok, recs, FORMATS["qwen"], EncodeOptions())
    assert choice.name == "tiktoken"
    assert choice.line == (
        "fast path on: tiktoken gives identical ids on 7 sample texts and identical output on 3 records; "
        "columnar rows (fastokens refused: cannot load the tokenizer: normalizer error: unsupported "
        "normalizer type: NFKC)"
    )


def test_engine_that_gives_other_ids_is_refused(qwen_tok, shared_data):
    """An engine loading a tokenizer.json that differs from the tokenizer (here: one merge
    dropped) is caught by the proof, not used."""
    tok = qwen_tok

    class Skewed(FastokensTokenizer):
        def encode_texts(self, texts, *, specials):
            out = super().encode_texts(texts, specials=specials)
            return [ids[:-1] if len(ids) > 40 else ids for ids in out]

    from instructgen.tokenize import engines

    real = engines._build
    engines._build = lambda name, t: Skewed(t) if name == "fastokens" else real(name, t)
    try:
        choice = select_engine(
            tok, _demo(shared_data, 20), FORMATS["qwen"], EncodeOptions(), candidates=("fastokens",)
        )
    finally:
        engines._build = real
    assert choice.name == "tokenizers"
    assert choice.line.startswith("fast path off: fastokens refused: ids differ on ")


def test_a_loaded_engine_is_reused_only_for_the_same_tokenizer_json(tiny_dir, tmp_path):
    """Loading fastokens is most of a run's fixed cost, so the last engine loaded is kept for the
    next tokenizer whose tokenizer.json is the same text (a copy in another folder too); an
    edited file (one merge dropped: other ids) gets its own engine, with the edited ids."""
    first = FastokensTokenizer(HFTokenizer(tiny_dir))
    assert FastokensTokenizer(HFTokenizer(tiny_dir)).ft is first.ft
    shutil.copytree(tiny_dir, tmp_path / "copy")
    assert FastokensTokenizer(HFTokenizer(tmp_path / "copy")).ft is first.ft

    def drop_a_merge(state):
        state["model"]["merges"].remove(["01234567", "89"])

    edited = HFTokenizer(_with(tiny_dir, tmp_path / "edited", drop_a_merge))
    engine = FastokensTokenizer(edited)
    assert engine.ft is not first.ft
    text = ["0123456789 x"]
    assert first.encode_texts(text, specials=False) == HFTokenizer(tiny_dir).encode_texts(text, specials=False)
    assert engine.encode_texts(text, specials=False) == edited.encode_texts(text, specials=False)
    assert engine.encode_texts(text, specials=False) != first.encode_texts(text, specials=False)


def test_non_special_added_tokens_stay_text_in_user_text(tiny_dir, tmp_path):
    def add(state):
        next_id = max(t["id"] for t in state["added_tokens"]) + 1
        next_id = max(next_id, len(state["model"]["vocab"]))
        state["added_tokens"].append(
            {
                "id": next_id,
                "content": "<extra>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )

    tok = HFTokenizer(_with(tiny_dir, tmp_path / "added", add))
    extra = tok.token_id("<extra>")
    assert extra is not None and not any(t.special for t in [tok.backend.get_added_tokens_decoder()[extra]])
    recs = [
        Record(instruction="Say <extra> please.", output="Here: <extra>"),
        Record(instruction="Hello world!", output="How are you today?"),
    ] * 3
    choice = select_engine(tok, recs, FORMATS["alpaca"], EncodeOptions())
    assert choice.name == "fastokens", choice.line
    ref = Encoder(tok, FORMATS["alpaca"], EncodeOptions()).encode_batch(recs)
    got = Encoder(choice.tok, FORMATS["alpaca"], EncodeOptions()).encode_batch(recs)
    assert [(r.input_ids, r.labels) for r in got] == [(r.input_ids, r.labels) for r in ref]
    assert extra not in ref[0].input_ids  # typed by the user: text, not the token
    ids, offsets = choice.tok.encode_flat(["a <extra> b"], specials=True)
    assert extra in np.asarray(ids).tolist() and offsets.tolist() == [0, len(ids)]
