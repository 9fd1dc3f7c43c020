"""`--format chat_template` with templates that trim or rewrite message content (issue 10 "Masks
from the template itself", issue 11 items 10 and 19: a bad record is rejected with a reason, never
aborts the run).

References: Meta's official Llama-2 chat template (../shared/tokenizers/llama2/tokenizer_config.json,
from meta-llama/Llama-2-7b-chat-hf; it renders `bos + '[INST] ' + content.strip() + ' [/INST]'` and
`' ' + content.strip() + ' ' + eos`), and the ChatML trimming template of tests/tokenizers_for_tests.py
(`m['content'] | trim` on assistant turns, as Llama-3's template trims every message).
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import REPO, trained_runs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from instructgen.schema import Record, Rejected, Turn
from instructgen.tokenize.encode import ChatTemplateEncoder, EncodeOptions, record_messages
from instructgen.tokenize.tokenizers import HFTokenizer

LLAMA2_DIR = REPO.parent / "shared" / "tokenizers" / "llama2"


def with_template(src_dir, tmp_path, template: str, name: str) -> HFTokenizer:
    d = tmp_path / name
    shutil.copytree(src_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "chat_template.jinja").unlink(missing_ok=True)
    return HFTokenizer(d)


@pytest.fixture(scope="module")
def llama():
    if not (LLAMA2_DIR / "tokenizer_config.json").is_file():
        pytest.skip("../shared/tokenizers/llama2 is not present")
    return HFTokenizer(LLAMA2_DIR)


@pytest.fixture(scope="module")
def trimming(qwen_dir, tmp_path_factory):
    from tokenizers_for_tests import TRIMMING_TEMPLATE

    return with_template(qwen_dir, tmp_path_factory.mktemp("trim"), TRIMMING_TEMPLATE, "trim")


@pytest.fixture(scope="module")
def upper(qwen_dir, tmp_path_factory):
    """ChatML that upper-cases assistant content: a rewrite that is not whitespace trimming."""
    from tokenizers_for_tests import CHATML_TEMPLATE

    tpl = CHATML_TEMPLATE.replace("m['content'] + '<|im_end|>'", "m['content'] | upper + '<|im_end|>'")
    assert tpl != CHATML_TEMPLATE
    return with_template(qwen_dir, tmp_path_factory.mktemp("upper"), tpl, "upper")


# --- Meta's Llama-2 template ------------------------------------------------------------------------


def test_llama2_trimming_is_probed_per_role(llama):
    """User and assistant content is .strip()ped; the system prompt is not (it sits inside
    '<<SYS>>\\n...\\n<</SYS>>\\n\\n' + user, and only that whole string is stripped)."""
    assert ChatTemplateEncoder(llama, EncodeOptions()).trims == {
        "user": (True, True),
        "assistant": (True, True),
    }


PADDED = [
    Record(instruction="Is it?", output="Yes\n"),
    Record(instruction="  Translate to French:\n", input="good morning\n", output="\n  Bonjour.\n\n"),
    Record(
        instruction="And now? ",
        output=" Still fine.\t",
        system="You are terse.\n",
        history=[Turn(user="\nHi", assistant="Hello!\n"), Turn(user="How are you?", assistant="  Fine.")],
    ),
]


def test_llama2_padded_records_train_the_stripped_answers_and_eos(llama):
    """The reviewer's case ('output': 'Yes\\n' aborted the whole run): every record is tokenized;
    the ids equal Meta's template applied to the stripped messages and tokenized in one pass, and
    the trained tokens decode to the stripped answers plus ' </s>'."""
    enc = ChatTemplateEncoder(llama, EncodeOptions(mask_history=False))
    out = enc.encode_batch(PADDED)
    assert enc.stats.rejected == {}
    decoded = [[llama.decode(r) for r in trained_runs(o.labels)] for o in out]
    assert decoded == [
        ["Yes </s>"],
        ["Bonjour. </s>"],
        ["Hello! </s>", "Fine. </s>", "Still fine. </s>"],
    ]
    for rec, o in zip(PADDED, out):
        msgs = record_messages(rec)
        for m in msgs:
            if m["role"] != "system":
                m["content"] = m["content"].strip()
        want = llama.hf.apply_chat_template(msgs, tokenize=False)
        assert o.input_ids == llama.encode_texts([want], specials=True)[0]


def test_llama2_system_whitespace_is_kept(llama):
    """The template keeps the system prompt's own whitespace, so it is not stripped here."""
    rec = Record(instruction="Hi", output="Yo", system="Be terse.\n")
    (o,) = ChatTemplateEncoder(llama, EncodeOptions()).encode_batch([rec])
    assert llama.decode(o.input_ids).startswith("<s> [INST] <<SYS>>\nBe terse.\n\n<</SYS>>\n\nHi [/INST]")


def test_cli_llama2_one_padded_row_among_fifty(tmp_path, llama, run_cli):
    """The reviewer's reproducer: 50 clean rows and one ending in a newline, through the CLI."""
    rows = [{"instruction": f"Say {i}.", "output": f"Number {i}."} for i in range(50)]
    rows.insert(20, {"instruction": "Is it?", "output": "Yes\n"})
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "tok"
    res = run_cli("tokenize", src, "--tokenizer", LLAMA2_DIR, "--format", "chat_template", "-o", out)
    assert res.exit_code == 0, res.output
    assert "51 rows in, 51 out" in res.stderr
    from datasets import load_from_disk

    row = load_from_disk(str(out))[20]
    assert [llama.decode(r) for r in trained_runs(row["labels"])] == ["Yes </s>"]


# --- test tokenizers (Qwen vocabulary) --------------------------------------------------------------------


def test_chatml_trimming_template_strips_only_what_it_trims(trimming):
    """TRIMMING_TEMPLATE trims assistant content only: the user's whitespace stays in the prompt."""
    enc = ChatTemplateEncoder(trimming, EncodeOptions())
    assert enc.trims == {"assistant": (True, True)}
    (o,) = enc.encode_batch([Record(instruction=" hi \n", output="\n  padded answer  \n")])
    assert [trimming.decode(r) for r in trained_runs(o.labels)] == ["padded answer<|im_end|>"]
    assert "<|im_start|>user\n hi \n<|im_end|>\n<|im_start|>assistant\npadded answer<|im_end|>" in (
        trimming.decode(o.input_ids)
    )


def test_a_template_that_does_not_trim_keeps_the_whitespace(qwen_dir):
    """Nothing is stripped for a template that keeps content as given (ChatML)."""
    tok = HFTokenizer(qwen_dir)
    enc = ChatTemplateEncoder(tok, EncodeOptions())
    assert enc.trims == {}
    (o,) = enc.encode_batch([Record(instruction="hi", output="Yes\n")])
    assert [tok.decode(r) for r in trained_runs(o.labels)] == ["Yes\n<|im_end|>"]


def test_a_template_that_rewrites_content_rejects_that_record(upper):
    """'| upper' changes content in a way stripping cannot undo: the record whose answer changes is
    rejected with a reason naming the message; an answer it leaves alone is written."""
    enc = ChatTemplateEncoder(upper, EncodeOptions())
    assert enc.trims == {}
    recs = [
        Record(instruction="a", output="YES."),
        Record(instruction="b", output="Yes."),
        Record(instruction="c", output="NO.", history=[Turn(user="u", assistant="Mixed Case")]),
        Record(instruction="d", output="OK."),
    ]
    out = enc.encode_batch(recs)
    assert [type(o).__name__ for o in out] == ["Encoded", "Rejected", "Rejected", "Encoded"]
    assert out[1] == Rejected(
        reason="template_changed_content",
        detail="the chat template changed the content of message 1 (assistant) beyond trimming its "
        "whitespace: 'Yes.' renders as 'YES.', so its spans cannot be trusted",
    )
    assert out[2].detail.startswith("the chat template changed the content of message 1 (assistant)")
    assert "'Mixed Case' renders as 'MIXED CASE'" in out[2].detail
    assert [upper.decode(r) for r in trained_runs(out[3].labels)] == ["OK.<|im_end|>"]
    assert enc.stats.rejected == {"template_changed_content": 2}


def test_cli_rewriting_template_counts_and_locates_the_rejected_row(tmp_path, upper, run_cli):
    src = tmp_path / "rows.jsonl"
    rows = [{"instruction": "a", "output": "YES."}, {"instruction": "b", "output": "Yes."}]
    rows.append({"instruction": "c", "output": "NO."})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, rej = tmp_path / "tok", tmp_path / "rej.jsonl"
    res = run_cli(
        "tokenize", src, "--tokenizer", upper.path, "--format", "chat_template", "-o", out, "--rejects", rej
    )
    assert res.exit_code == 0, res.output
    assert "3 rows in, 2 out" in res.stderr
    assert "rejected template_changed_content: 1" in res.stderr
    assert [json.loads(x) for x in rej.read_text().splitlines()] == [
        {
            "reason": "template_changed_content",
            "detail": "the chat template changed the content of message 1 (assistant) beyond trimming "
            "its whitespace: 'Yes.' renders as 'YES.', so its spans cannot be trusted",
            "source_file": str(src),
            "line": 2,
        }
    ]


_WS = st.sampled_from(["", " ", "\n", "  ", "\n\n", "\t", " \n "])
_WORDS = st.text(alphabet="abcXYZ .,!?", min_size=1, max_size=12).filter(lambda s: s.strip())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pre=_WS, word=_WORDS, post=_WS, user=_WORDS, upre=_WS)
def test_trimmed_answers_property(trimming, pre, word, post, user, upre):
    """Any whitespace around an answer: the trained tokens are the stripped answer + <|im_end|>,
    and the ids equal the template's own render tokenized in one pass."""
    rec = Record(instruction=upre + user, output=pre + word + post)
    (o,) = ChatTemplateEncoder(trimming, EncodeOptions()).encode_batch([rec])
    assert [trimming.decode(r) for r in trained_runs(o.labels)] == [word.strip() + "<|im_end|>"]
    want = trimming.hf.apply_chat_template(record_messages(rec), tokenize=False)
    assert o.input_ids == trimming.encode_texts([want], specials=True)[0]


_NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ CONTENT }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_probe_retries_without_system_and_finds_one_sided_trimming(qwen_dir, tmp_path):
    """A template that refuses a system role (Gemma's do) is probed without one; `.rstrip()` is
    found as right-side trimming only, so leading whitespace stays in the trained answer."""
    tok = with_template(qwen_dir, tmp_path, _NO_SYSTEM.replace("CONTENT", "m['content'].rstrip()"), "rs")
    enc = ChatTemplateEncoder(tok, EncodeOptions())
    assert enc.trims == {"user": (False, True), "assistant": (False, True)}
    (o,) = enc.encode_batch([Record(instruction="q \n", output=" a\n\n")])
    assert [tok.decode(r) for r in trained_runs(o.labels)] == [" a<|im_end|>"]
    assert tok.decode(o.input_ids) == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n a<|im_end|>\n"


def test_a_template_over_the_sandbox_bounds_still_stops_the_run(qwen_dir, tmp_path):
    """The trimming probe does not swallow a breached bound (issue 11 item 13): it is the template's
    fault, not a record's, and the error names the tokenizer folder."""
    from instructgen.errors import TemplateLimitError

    hostile = "{% for m in messages %}{{ m['content'] * 100000000 }}{% endfor %}"
    tok = with_template(qwen_dir, tmp_path, hostile, "hostile")
    with pytest.raises(TemplateLimitError, match=r"template 'chat_template': the repeated value would be"):
        ChatTemplateEncoder(tok, EncodeOptions()).encode_batch([Record(instruction="hi", output="ho")])


# Qwen3's template keeps only what follows '</think>' in an answer (content.split('</think>')[-1]),
# QwenLM/Qwen3 tokenizer_config.json; reduced here to ChatML with that split.
_THINK_SPLIT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ m['content'].split('</think>')[-1].lstrip('\\n') }}"
    "{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_record_the_template_cuts_up_is_rejected_not_the_run(qwen_dir, tmp_path):
    """An answer holding '</think>' loses its span marks in a Qwen3-style template: that record is
    rejected with what the template did; the others are written."""
    tok = with_template(qwen_dir, tmp_path, _THINK_SPLIT, "think")
    enc = ChatTemplateEncoder(tok, EncodeOptions())
    recs = [
        Record(instruction="a", output="Plain."),
        Record(instruction="b", output="<think>hmm</think>\n\nReasoned."),
    ]
    out = enc.encode_batch(recs)
    assert [tok.decode(r) for r in trained_runs(out[0].labels)] == ["Plain.<|im_end|>"]
    assert out[1] == Rejected(
        reason="template_changed_content",
        detail="the chat template dropped message 1 (assistant); it rewrites the conversation, so spans "
        "cannot be trusted (with other content a record of this shape renders fine)",
    )
    assert enc.stats.rejected == {"template_changed_content": 1}


def test_a_template_that_always_drops_a_message_still_refuses_the_run(qwen_dir, tmp_path):
    """Structure that cannot be located for any content is the template's fault: the run stops."""
    from instructgen.errors import ConfigError

    last_only = "<|im_start|>user\n{{ messages[-1]['content'] }}<|im_end|>\n"
    tok = with_template(qwen_dir, tmp_path, last_only, "last")
    with pytest.raises(ConfigError, match=r"^the chat template dropped message 0 \(user\)"):
        ChatTemplateEncoder(tok, EncodeOptions()).encode_batch([Record(instruction="hi", output="ho")])
