"""Every built-in format against the reference it cites, string for string, and id for id with
Meta's Llama-2 tokenizer (../shared/tokenizers/llama2, skipped when absent).

The references are re-stated here as the procedures their repositories run (not as our own
wrappers): Meta's `generation.py` chat_completion, alpaca-lora's `finetune.py` + templates,
Stanford Alpaca's `train.py`, BayLing's `conversation.py`, BELLE's `sample_generator.py`,
ChatGLM-6B / ChatGLM2-6B `ptuning/main.py`, ChatGLM3 `finetune_hf.py`, the Phi-3 and Qwen2.5 chat
templates (and the official Llama-2 chat template, rendered by transformers).
"""

from __future__ import annotations

import pytest
from helpers import REPO, trained_runs

from instructgen.formats import BAYLING_SYSTEM, FORMATS, QWEN_DEFAULT_SYSTEM, render
from instructgen.schema import Record, Turn

LLAMA2_DIR = REPO.parent / "shared" / "tokenizers" / "llama2"

WITH_INPUT = Record(instruction="Translate to English:", input="你好，世界", output="Hello, world!")
NO_INPUT = Record(instruction="Say hi.", output="Hi there!")
WITH_SYSTEM = Record(instruction="Say hi.", output="Hi there!", system="You are a careful translator.")
THREE_TURNS = Record(
    instruction="Bye",
    output="Goodbye, see you.",
    history=[
        Turn(user="Hi", assistant="Hello! How can I help?"),
        Turn(user="How are you?", assistant="Fine."),
    ],
)
CONVERSATIONS = {
    "with_input": WITH_INPUT,
    "no_input": NO_INPUT,
    "system": WITH_SYSTEM,
    "three_turns": THREE_TURNS,
}


def dialog(rec: Record) -> list[tuple[str, str]]:
    return [(t.user, t.assistant) for t in rec.history] + [(rec.prompt_text(), rec.output)]


# --- the references, as their code builds them (BOS/EOS written as <s> / </s>) ------------------------


def meta_llama2(rec: Record) -> list[str]:
    """meta-llama/llama llama/generation.py chat_completion: the system text goes into the first
    user message (B_SYS ... E_SYS); each turn f"{B_INST} {user} {E_INST} {answer} " with bos and eos."""
    turns = dialog(rec)
    if rec.system is not None:
        u0, a0 = turns[0]
        turns[0] = ("<<SYS>>\n" + rec.system + "\n<</SYS>>\n\n" + u0, a0)
    return [f"[INST] {u.strip()} [/INST] {a.strip()} " for u, a in turns]


STANFORD = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}


def stanford_source(rec: Record) -> str:
    """tatsu-lab/stanford_alpaca train.py: source = PROMPT_DICT[...].format_map(example)."""
    key = "prompt_input" if rec.input else "prompt_no_input"
    return STANFORD[key].format(instruction=rec.instruction, input=rec.input)


def alpaca_lora_prompt(rec: Record) -> str:
    """tloen/alpaca-lora templates/alpaca.json through utils/prompter.py generate_prompt."""
    return stanford_source(rec) + "\n"


def bayling_prompt(rec: Record) -> str:
    """ictnlp/BayLing bayling/conversation.py, SeparatorStyle.BAYLING with the BayLing template."""
    system = BAYLING_SYSTEM if rec.system is None else rec.system
    ret = system + "\n"
    for u, a in dialog(rec):
        ret += "### Instruction:\n" + u + "\n"
        ret += "### Response:\n" + a + "</s>" + "\n"
    return ret


def belle(rec: Record) -> str:
    """LianjiaTech/BELLE train/src/sample_generator.py sft_sample_to_ids: no BOS, EOS after each answer."""
    return "".join("Human: \n" + u + "\n\nAssistant: \n" + a + "</s>" for u, a in dialog(rec))


def chatglm6b(rec: Record) -> str:
    """THUDM/ChatGLM-6B ptuning/main.py preprocess_function_train: prompt = query, or the rounds
    from 0 with history; build_inputs_with_special_tokens adds [gMASK] <sop> after it, <eop> at the end."""
    turns = dialog(rec)
    *history, (query, answer) = turns
    if not history:
        prompt = query
    else:
        prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
        prompt += f"[Round {len(history)}]\n问：{query}\n答："
    return prompt + "[gMASK]<sop>" + answer + "<eop>"


def chatglm2(rec: Record) -> str:
    """THUDM/ChatGLM2-6B tokenization_chatglm.py build_prompt + ptuning/main.py: prefix tokens
    [gMASK] sop, rounds from 1, the answer, then eos."""
    *history, (query, answer) = dialog(rec)
    prompt = "".join(f"[Round {i + 1}]\n\n问：{q}\n\n答：{a}\n\n" for i, (q, a) in enumerate(history))
    prompt += f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："
    return "[gMASK]sop" + prompt + answer + "</s>"


def chatglm3(rec: Record) -> str:
    """THUDM/ChatGLM3 finetune_demo/finetune_hf.py process_batch: [gMASK] sop, then
    build_single_message(role, '', content) = <|role|> + '\\n' + content per message, eos at the end."""
    out = "[gMASK]sop"
    if rec.system is not None:
        out += "<|system|>\n" + rec.system
    for u, a in dialog(rec):
        out += "<|user|>\n" + u + "<|assistant|>\n" + a
    return out + "</s>"


def phi3(rec: Record) -> str:
    """microsoft/Phi-3-mini-4k-instruct chat_template: role header + '\\n' + content + '<|end|>\\n' per
    message, eos_token (<|endoftext|>) when no generation prompt is asked for."""
    out = "" if rec.system is None else "<|system|>\n" + rec.system + "<|end|>\n"
    for u, a in dialog(rec):
        out += "<|user|>\n" + u + "<|end|>\n" + "<|assistant|>\n" + a + "<|end|>\n"
    return out + "<|endoftext|>"


def chatml(rec: Record, default_system: str | None = None) -> str:
    """Qwen/Qwen2.5-7B-Instruct chat_template (no tools): a system block (the default one when the
    conversation has none), then <|im_start|>role\\ncontent<|im_end|>\\n per message."""
    system = rec.system if rec.system is not None else default_system
    out = "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
    for u, a in dialog(rec):
        out += f"<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
    return out


def expected(name: str, rec: Record) -> str:
    if name == "llama2":
        return "".join(f"<s>{t}</s>" for t in meta_llama2(rec))
    if name == "stanford_alpaca":
        assert not rec.history and rec.system is None
        return "<s>" + stanford_source(rec) + rec.output + "</s>"
    if name in ("alpaca", "alpaca_lora"):
        assert not rec.history and rec.system is None
        return "<s>" + alpaca_lora_prompt(rec) + rec.output + "</s>"
    if name == "bayling":
        return "<s>" + bayling_prompt(rec)
    if name == "bloom":
        assert rec.system is None
        return belle(rec)
    if name == "chatglm":
        assert rec.system is None
        return chatglm6b(rec)
    if name == "chatglm2":
        assert rec.system is None
        return chatglm2(rec)
    if name == "chatglm3":
        return chatglm3(rec)
    if name == "phi3":
        return phi3(rec)
    if name == "chatml":
        return chatml(rec)
    if name == "qwen":
        return chatml(rec, QWEN_DEFAULT_SYSTEM)
    raise AssertionError(f"no reference for {name}")


# Which conversations each reference defines; the rest are instructgen's own, pinned below.
COVERED = {
    "llama2": ["with_input", "no_input", "system", "three_turns"],
    "stanford_alpaca": ["with_input", "no_input"],
    "alpaca": ["with_input", "no_input"],
    "alpaca_lora": ["with_input", "no_input"],
    "bayling": ["with_input", "no_input", "system", "three_turns"],
    "bloom": ["with_input", "no_input", "three_turns"],
    "chatglm": ["with_input", "no_input", "three_turns"],
    "chatglm2": ["with_input", "no_input", "three_turns"],
    "chatglm3": ["with_input", "no_input", "system", "three_turns"],
    "phi3": ["with_input", "no_input", "system", "three_turns"],
    "chatml": ["with_input", "no_input", "system", "three_turns"],
    "qwen": ["with_input", "no_input", "system", "three_turns"],
}


LLAMA_FAMILY = {"llama2", "alpaca", "alpaca_lora", "stanford_alpaca", "bayling"}


def ours(name: str, rec: Record) -> str:
    # BOS is the tokenizer's: the LLaMA-family formats run on LLaMA tokenizers, which add <s>;
    # Qwen's adds none, and BELLE / ChatGLM / Phi-3 never put one
    bos = "<s>" if name in LLAMA_FAMILY else ""
    return render(FORMATS[name], rec, bos=bos, eos="</s>")


def test_every_builtin_format_has_a_reference():
    assert set(COVERED) == set(FORMATS)
    assert all(FORMATS[name].reference for name in FORMATS)


@pytest.mark.parametrize(
    ("name", "conv"), [(n, c) for n, convs in COVERED.items() for c in convs], ids=lambda x: str(x)
)
def test_format_equals_its_reference_string(name, conv):
    rec = CONVERSATIONS[conv]
    assert ours(name, rec) == expected(name, rec)


def test_formats_without_a_reference_system_slot_keep_an_explicit_separator():
    """Alpaca, BELLE and ChatGLM publish no system slot: the system text goes first with the
    format's separator, never glued to the prompt ('...translator.Below is...')."""
    sys_text = WITH_SYSTEM.system
    assert ours("alpaca", WITH_SYSTEM).startswith(f"<s>{sys_text}\n\nBelow is an instruction")
    assert ours("stanford_alpaca", WITH_SYSTEM).startswith(f"<s>{sys_text}\n\nBelow is an instruction")
    assert ours("bloom", WITH_SYSTEM) == f"{sys_text}\n\nHuman: \nSay hi.\n\nAssistant: \nHi there!</s>"
    assert ours("chatglm", WITH_SYSTEM) == f"{sys_text}\nSay hi.[gMASK]<sop>Hi there!<eop>"
    assert (
        ours("chatglm2", WITH_SYSTEM)
        == f"[gMASK]sop{sys_text}\n\n[Round 1]\n\n问：Say hi.\n\n答：Hi there!</s>"
    )


def test_alpaca_later_turns_follow_llama_factory():
    """Alpaca publishes one turn; later turns are LLaMA-Factory's alpaca template
    (hiyouga/LLaMA-Factory src/llamafactory/data/template.py): '### Instruction:\\n...\\n\\n### Response:\\n'."""
    assert ours("alpaca_lora", THREE_TURNS) == (
        "<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nHi\n\n### Response:\nHello! How can I help?</s>\n\n"
        "### Instruction:\nHow are you?\n\n### Response:\nFine.</s>\n\n"
        "### Instruction:\nBye\n\n### Response:\nGoodbye, see you.</s>"
    )


def test_empty_system_renders_an_empty_block_like_the_templates():
    """issue 11 item 12: Qwen2.5's template renders a system message with empty content as an empty block."""
    rec = Record(instruction="Hi", output="Hello", system="")
    assert ours("qwen", rec) == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" + (
        "<|im_start|>assistant\nHello<|im_end|>\n"
    )
    assert ours("llama2", rec) == "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST] Hello </s>"


def test_chatml_and_qwen_equal_apply_chat_template(qwen_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(qwen_dir))  # tests/tokenizers_for_tests.py: Qwen2.5's template
    for rec in CONVERSATIONS.values():
        msgs = [{"role": "system", "content": rec.system}] if rec.system is not None else []
        for u, a in dialog(rec):
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        assert ours("qwen", rec) == hf.apply_chat_template(msgs, tokenize=False)


# --- ids with Meta's Llama-2 tokenizer --------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama():
    if not (LLAMA2_DIR / "tokenizer.json").is_file():
        pytest.skip("../shared/tokenizers/llama2 is not present")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from instructgen.tokenize.tokenizers import HFTokenizer

    # the reference procedures run on sentencepiece; tokenizer.json loaded raw reproduces it
    # (../shared/tokenizers/SOURCES.md), and it is what `instructgen tokenize` encodes with
    return HFTokenizer(LLAMA2_DIR), Tokenizer.from_file(str(LLAMA2_DIR / "tokenizer.json"))


def _encode(name: str, tok, rec: Record):
    from instructgen.tokenize.encode import EncodeOptions, Encoder

    (enc,) = Encoder(tok, FORMATS[name], EncodeOptions(system_mode="default")).encode_batch([rec])
    return enc


def sp_encode(raw, text: str, *, bos: bool, eos: bool) -> list[int]:
    """Meta's Tokenizer.encode(s, bos, eos): sentencepiece ids of s, BOS/EOS by id."""
    return [1] * bos + raw.encode(text, add_special_tokens=False).ids + [2] * eos


@pytest.mark.parametrize("conv", list(CONVERSATIONS))
def test_llama2_ids_equal_meta_generation_py(llama, conv):
    tok, raw = llama
    rec = CONVERSATIONS[conv]
    want = [i for turn in meta_llama2(rec) for i in sp_encode(raw, turn, bos=True, eos=True)]
    enc = _encode("llama2", tok, rec)
    assert enc.input_ids == want
    # trained: each answer with the template's spaces around it ("▁" word-start of its first
    # token, the lone "▁" before </s>), and </s>; the decoder drops a leading space, so look at pieces
    runs = trained_runs(enc.labels)
    assert [tok.decode(r) for r in runs] == [f"{a} </s>" for _, a in dialog(rec)]
    assert all(raw.id_to_token(r[0]).startswith("▁") and r[-2:] == [29871, 2] for r in runs)


@pytest.mark.parametrize("conv", ["with_input", "no_input"])
@pytest.mark.parametrize("name", ["alpaca", "alpaca_lora"])
def test_alpaca_lora_ids_equal_its_finetune_py(llama, name, conv):
    """tloen/alpaca-lora finetune.py: tokenizer(full_prompt) (BOS from the tokenizer), EOS appended;
    labels -100 over len(tokenizer(user_prompt))."""
    tok, raw = llama
    rec = CONVERSATIONS[conv]
    full = sp_encode(raw, alpaca_lora_prompt(rec) + rec.output, bos=True, eos=True)
    prompt_len = len(sp_encode(raw, alpaca_lora_prompt(rec), bos=True, eos=False))
    enc = _encode(name, tok, rec)
    assert enc.input_ids == full
    assert enc.labels == [-100] * prompt_len + full[prompt_len:]


@pytest.mark.parametrize("conv", list(CONVERSATIONS))
def test_bayling_ids_equal_its_conversation_prompt(llama, conv):
    """BayLing's prompt string through the LLaMA tokenizer (BOS added, '</s>' read as EOS)."""
    tok, raw = llama
    rec = CONVERSATIONS[conv]
    want = [1, *raw.encode(bayling_prompt(rec), add_special_tokens=False).ids]
    enc = _encode("bayling", tok, rec)
    assert enc.input_ids == want
    assert [tok.decode(r) for r in trained_runs(enc.labels)] == [a + "</s>" for _, a in dialog(rec)]


def test_stanford_alpaca_ids_equal_its_train_py_where_the_boundary_allows(llama):
    """tatsu-lab/stanford_alpaca train.py tokenizes source + output + eos_token in one pass. The
    response follows '### Response:' with no separator, so a token can straddle the boundary;
    instructgen keeps the prompt as inference sees it, and the boundary audit counts such records."""
    tok, raw = llama
    rec = WITH_INPUT
    want = sp_encode(raw, stanford_source(rec) + rec.output + "</s>", bos=True, eos=False)
    assert _encode("stanford_alpaca", tok, rec).input_ids == want


def test_bos_follows_the_tokenizer(llama, tiny_dir):
    from instructgen.tokenize.tokenizers import HFTokenizer

    tok, _ = llama
    assert tok.adds_bos  # its post-processor puts <s> first
    assert _encode("alpaca", tok, NO_INPUT).input_ids[0] == 1
    tiny = HFTokenizer(tiny_dir)  # has a <s> token but never adds it itself
    assert not tiny.adds_bos
    assert tiny.bos_id not in _encode("alpaca", tiny, NO_INPUT).input_ids
    assert _encode("llama2", tiny, NO_INPUT).input_ids[0] == tiny.bos_id  # Meta's encode(bos=True)


def test_official_llama2_chat_template_renders_our_llama2_string(llama):
    tok, _ = llama
    for rec in CONVERSATIONS.values():
        msgs = [{"role": "system", "content": rec.system}] if rec.system is not None else []
        for u, a in dialog(rec):
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        assert tok.hf.apply_chat_template(msgs, tokenize=False) == ours("llama2", rec)


def test_phi3_newline_after_end_follows_the_tokenizers_rstrip(tiny_dir, tmp_path):
    """Phi-3's template writes '<|end|>\\n'; what becomes of the '\\n' is the tokenizer's call (an
    added token with rstrip=True swallows the whitespace after it). instructgen places <|end|> by id
    and applies the same flags, so its ids equal one-pass tokenization of the template's string."""
    import json
    import shutil

    from instructgen.tokenize.encode import EncodeOptions, Encoder
    from instructgen.tokenize.tokenizers import HFTokenizer

    for rstrip in (False, True):
        d = tmp_path / f"rstrip-{rstrip}"
        shutil.copytree(tiny_dir, d)
        spec = json.loads((d / "tokenizer.json").read_text())
        for tok in spec["added_tokens"]:
            if tok["content"] == "<|end|>":
                tok["rstrip"] = rstrip
        (d / "tokenizer.json").write_text(json.dumps(spec))
        tok = HFTokenizer(d)
        text = render(FORMATS["phi3"], THREE_TURNS, eos="</s>").replace("<|endoftext|>", "")
        fmt = FORMATS["phi3"].__class__(
            **{**FORMATS["phi3"].to_dict(), "suffix": ""}
        )  # tiny has no <|endoftext|>
        (enc,) = Encoder(tok, fmt, EncodeOptions()).encode_batch([THREE_TURNS])
        assert enc.input_ids == tok.encode_texts([text], specials=True)[0]
        newline_after_end = "<|end|>\n" in tok.decode(enc.input_ids)
        assert newline_after_end is (not rstrip)


def test_inspect_audit_is_clean_for_llama2_format(llama, tmp_path, run_cli):
    """The trained runs of `llama2` are ' {answer} </s>': the audit knows the response wrapper."""
    import json

    src = tmp_path / "d.json"
    src.write_text(json.dumps([{"instruction": "Q?", "output": "A.", "history": [["Hi", "Hello!"]]}]))
    out = tmp_path / "tok"
    res = run_cli("tokenize", src, "--tokenizer", LLAMA2_DIR, "--format", "llama2", "-o", out)
    assert res.exit_code == 0, res.output
    audit = run_cli("inspect", out, "-n", "0", "--audit")
    assert "audit: 1 rows, 0 violations, trained text checked against the source on 1 rows" in audit.output
