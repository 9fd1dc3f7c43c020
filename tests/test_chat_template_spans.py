"""`--format chat_template`: trained spans from the template's structure, on the official Llama-2
template (../shared/tokenizers/llama2, skipped when absent) and the Qwen vocabulary; plus the
hostile-input cases of issue 11 (items 5, 10, 12, 19)."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import REPO, trained_runs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from instructgen.errors import ConfigError
from instructgen.formats import FORMATS
from instructgen.schema import Record, Rejected, Turn
from instructgen.tokenize.encode import IGNORE, ChatTemplateEncoder, EncodeOptions, Encoder, record_messages
from instructgen.tokenize.tokenizers import HFTokenizer

LLAMA2_DIR = REPO.parent / "shared" / "tokenizers" / "llama2"
DEMO = REPO.parent / "shared" / "data" / "alpaca_en_demo.json"


@pytest.fixture(scope="module")
def llama():
    if not (LLAMA2_DIR / "tokenizer_config.json").is_file():
        pytest.skip("../shared/tokenizers/llama2 is not present")
    return HFTokenizer(LLAMA2_DIR)


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return HFTokenizer(qwen_dir)


def test_llama2_official_template_trains_answer_spaces_and_eos(llama):
    """Meta's template renders '<s>[INST] q [/INST] a </s>': the space before the answer (its first
    token's "▁"), the answer, the space before </s> and </s> are what the model generates."""
    rec = Record(
        instruction="Bye", output="Yes", history=[Turn(user="Hi", assistant="Hello! How can I help?")]
    )
    (enc,) = ChatTemplateEncoder(llama, EncodeOptions()).encode_batch([rec])
    want = llama.hf.apply_chat_template(record_messages(rec), tokenize=False)
    assert enc.input_ids == llama.encode_texts([want], specials=True)[0]  # = one-pass tokenization
    trained = trained_runs(enc.labels)
    assert [llama.decode(r) for r in trained] == ["Hello! How can I help? </s>", "Yes </s>"]
    piece = llama.backend.id_to_token
    assert [piece(r[0]) for r in trained] == ["▁Hello", "▁Yes"]  # the first answer token is trained
    assert all(r[-2:] == [29871, 2] for r in trained)  # "▁" and </s>
    # a one-token answer is kept, not dropped
    (one,) = ChatTemplateEncoder(llama, EncodeOptions()).encode_batch(
        [Record(instruction="Hi", output="Yes")]
    )
    assert [piece(x) for x in trained_runs(one.labels)[0]] == ["▁Yes", "▁", "</s>"]


def test_llama2_template_on_alpaca_en_demo(llama):
    """A slice of alpaca_en_demo (the full 999 records were run once by hand: 999 out, 0 dropped,
    boundary audit 0/999, inspect --audit clean)."""
    if not DEMO.is_file():
        pytest.skip("../shared/data is not present")
    from instructgen.io.records import read_records

    recs = [r for _, r in read_records(DEMO)][:120]
    enc = ChatTemplateEncoder(llama, EncodeOptions(max_length=8192, audit_sample=-1))
    out = enc.encode_batch(recs)
    assert not any(isinstance(o, Rejected) for o in out)
    assert [[llama.decode(r) for r in trained_runs(o.labels)] for o in out] == [[r.output + " </s>"] for r in recs]
    assert enc.stats.boundary_mismatch == 0 and enc.stats.audited == len(recs)


def test_cli_audit_is_clean_on_llama2_multi_turn(tmp_path, llama, run_cli):
    """Llama-2's per-turn BOS comes from its template: inspect --audit must not call it duplicate_bos."""
    src = tmp_path / "chats.json"
    src.write_text(
        json.dumps(
            [
                {
                    "instruction": "And now?",
                    "output": "Still fine.",
                    "history": [["Hi", "Hello!"], ["How are you?", "Fine, thanks."]],
                },
                {"instruction": "Say yes.", "output": "Yes"},
            ]
        )
    )
    out = tmp_path / "tok"
    res = run_cli("tokenize", src, "--tokenizer", LLAMA2_DIR, "--format", "chat_template", "-o", out)
    assert res.exit_code == 0, res.output
    assert "2 rows in, 2 out" in res.stderr
    audit = run_cli("inspect", out, "-n", "0", "--audit")
    assert audit.exit_code == 0, audit.output
    assert "audit: 2 rows, 0 violations, trained text checked against the source on 2 rows" in audit.output


def _with_template(src_dir, tmp_path, template: str, name: str = "tpl"):
    d = tmp_path / name
    shutil.copytree(src_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "chat_template.jinja").unlink(missing_ok=True)
    return HFTokenizer(d)


def test_a_template_without_an_end_of_turn_token_is_refused(qwen_dir, tmp_path):
    tok = _with_template(
        qwen_dir,
        tmp_path,
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}",
    )
    with pytest.raises(
        ConfigError,
        match=r"the chat template puts no special token after assistant message 1 \(it renders '\\n'\), "
        r"so the end of the turn cannot be located",
    ):
        ChatTemplateEncoder(tok, EncodeOptions()).encode_batch([Record(instruction="hi", output="ho")])


def test_a_template_whose_generation_prompt_is_elsewhere_is_refused(qwen_dir, tmp_path):
    tok = _with_template(
        qwen_dir,
        tmp_path,
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>model\n{% endif %}",
    )
    with pytest.raises(ConfigError, match=r"its generation prompt \(add_generation_prompt=True\) ends with"):
        ChatTemplateEncoder(tok, EncodeOptions()).encode_batch([Record(instruction="hi", output="ho")])


# --- issue 11 ---------------------------------------------------------------------------------------------


def test_reply_starting_with_a_newline_is_trained_whole(qwen):
    """issue 11 item 10: '\\nHello' after 'assistant\\n' used to merge into one '\\n\\n' token that was
    left untrained; the response side is now its own string."""
    rec = Record(instruction="hi", output="\nHello")
    (enc,) = ChatTemplateEncoder(qwen, EncodeOptions()).encode_batch([rec])
    assert [qwen.decode(r) for r in trained_runs(enc.labels)] == ["\nHello<|im_end|>"]
    prompt = qwen.hf.apply_chat_template(record_messages(rec)[:1], tokenize=False, add_generation_prompt=True)
    assert (
        enc.input_ids[: enc.labels.index(trained_runs(enc.labels)[0][0])]
        == qwen.encode_texts([prompt], specials=True)[0]
    )


def test_private_use_sentinels_reject_the_record_not_the_run(qwen):
    """issue 11 item 19: U+E000..U+E002 mark spans; a record holding one is rejected with a reason."""
    recs = [
        Record(instruction="a\ue000b", output="x"),
        Record(instruction="fine", output="ok"),
        Record(instruction="q", output="y", history=[Turn(user="u", assistant="\ue002")]),
    ]
    enc = ChatTemplateEncoder(qwen, EncodeOptions())
    out = enc.encode_batch(recs)
    assert isinstance(out[0], Rejected) and out[0].reason == "private_use_character"
    assert (
        out[0].detail
        == "field 'instruction' contains U+E000..U+E002, which mark message spans in chat_template"
    )
    assert isinstance(out[2], Rejected) and "history[0].assistant" in out[2].detail
    assert [qwen.decode(r) for r in trained_runs(out[1].labels)] == ["ok<|im_end|>"]
    assert enc.stats.rejected == {"private_use_character": 2}


@pytest.fixture(scope="module")
def qwen_tool(qwen_dir, tmp_path_factory):
    """The Qwen vocabulary with Qwen2.5's non-special added token <tool_call> (special: false)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(qwen_dir))
    hf.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    out = tmp_path_factory.mktemp("qwen-tool") / "tok"
    hf.save_pretrained(str(out))
    return HFTokenizer(out)


def test_users_never_produce_non_special_added_tokens(qwen_tool):
    """issue 11 item 5: '<tool_call>' typed by a user stays text in `qwen` and `chat_template`;
    the template's own occurrences (none here) would still be control tokens."""
    tid = qwen_tool.token_id("<tool_call>")
    assert tid is not None and "<tool_call>" not in qwen_tool.special_tokens()
    rec = Record(instruction="Call <tool_call> now", output="<tool_call>{}")
    for enc in (
        Encoder(qwen_tool, FORMATS["qwen"], EncodeOptions()),
        ChatTemplateEncoder(qwen_tool, EncodeOptions()),
    ):
        (out,) = enc.encode_batch([rec])
        assert tid not in out.input_ids
        assert [qwen_tool.decode(r) for r in trained_runs(out.labels)] == ["<tool_call>{}<|im_end|>"]
    fmt_file_tok = Encoder(qwen_tool, FORMATS["qwen"], EncodeOptions(escape_special=False))
    assert tid in fmt_file_tok.encode_batch([rec])[0].input_ids  # --no-escape: the user asked for it


def test_qwen_empty_system_matches_apply_chat_template(qwen):
    """issue 11 item 12: an empty system message renders an empty system block, as the template does."""
    rec = Record(instruction="Hi", output="Hello", system="")
    (enc,) = Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([rec])
    want = qwen.hf.apply_chat_template(record_messages(rec), tokenize=False)
    assert want.startswith("<|im_start|>system\n<|im_end|>\n")
    assert qwen.decode(enc.input_ids) == want


def test_decode_check_allows_the_tokenizers_own_normalisation(qwen):
    """The Qwen tokenizer normalises to NFC: a decomposed 'é' decodes composed, which is not a
    misread template structure, so tokenize must not stop on it."""
    rec = Record(instruction="Cafe\u0301?", output="Cafe\u0301 au lait")
    (enc,) = ChatTemplateEncoder(qwen, EncodeOptions()).encode_batch([rec])
    assert [qwen.decode(r) for r in trained_runs(enc.labels)] == ["Caf\u00e9 au lait<|im_end|>"]


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Co")), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    instruction=_text.filter(lambda t: t.strip()),
    output=_text,
    history=st.lists(st.tuples(_text.filter(lambda t: t.strip()), _text), max_size=2),
)
def test_chat_template_spans_property(qwen, instruction, output, history):
    """Any text: each trained run is exactly one answer and its <|im_end|> (NFC, as the tokenizer
    normalises), never more, never less (whitespace and newlines at the edges included)."""
    import unicodedata

    rec = Record(
        instruction=instruction, output=output, history=[Turn(user=u, assistant=a) for u, a in history]
    )
    (enc,) = ChatTemplateEncoder(qwen, EncodeOptions(max_length=100_000)).encode_batch([rec])
    answers = [a for _, a in history] + [output]
    want = [unicodedata.normalize("NFC", a) + "<|im_end|>" for a in answers]
    assert [qwen.decode(r) for r in trained_runs(enc.labels)] == want
    assert all(lab in (IGNORE, x) for x, lab in zip(enc.input_ids, enc.labels))
