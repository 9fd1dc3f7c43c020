"""Identity records and their LLM paraphrases go through one set of checks: IdentityGenerator.check_record.

`llm/paraphrase.py` used to re-implement the seed checks (and reached into the generator's private
`_mask`/`check`); now a paraphrase is refused with exactly what `check_record` says about it (plus
the contamination scan), and a paraphrased denial that names the persona's base model is refused as
a seed denial would be. The model is the real loopback server of tests/llm_server.py.
"""

from __future__ import annotations

import json

import pytest
from llm_server import ChatServer

from instructgen.identity.generate import IdentityGenerator, IdentityOptions
from instructgen.llm.client import LLMClient, LLMConfig
from instructgen.llm.paraphrase import paraphrase
from instructgen.schema import Persona, Record

PERSONA = Persona(name="雁栖-7B", developer="助教", base_model="Llama", deny=["ChatGPT"], languages=["en"])


@pytest.fixture(scope="module")
def seeded():
    gen = IdentityGenerator(PERSONA, IdentityOptions(n=40, languages=("en",)))
    records, _, _ = gen.generate()
    by_category: dict[str, Record] = {}
    for record in records:
        by_category.setdefault(record.meta["category"], record)
    return gen, by_category


def test_seed_records_pass_check_record_and_edits_fail_it_with_the_seed_reasons(seeded):
    gen, by_cat = seeded
    name, denial = by_cat["name"], by_cat["denial"]
    assert gen.check_record(name) is None and gen.check_record(denial, scan=False) is None
    assert gen.check_record(name.model_copy(update={"output": "I am {{ name }}, hello."})) == (
        "unrendered_placeholder",
        "left {{ name }}",
    )
    assert gen.check_record(name.model_copy(update={"output": "I am an assistant."})) == (
        "persona_not_named",
        "answer does not name 雁栖-7B",
    )
    assert gen.check_record(denial.model_copy(update={"output": "No, I am 雁栖-7B, made from Llama."})) == (
        "denies_base_model",
        "a denial names the persona's base model",
    )
    reason, _ = gen.check_record(
        name.model_copy(update={"output": "Ich bin 雁栖-7B und wurde von 助教 entwickelt, sehr gern."})
    )
    assert reason == "wrong_language_answer"
    claim = name.model_copy(update={"output": "I am ChatGPT, developed by OpenAI. I mean 雁栖-7B."})
    assert gen.check_record(claim) is None  # the scan is for paraphrases only
    assert gen.check_record(claim, scan=True)[0] == "contamination"


def test_paraphrases_are_refused_with_what_check_record_says(seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    gen, by_cat = seeded
    picked = [by_cat[c] for c in ("name", "developer", "capabilities", "denial", "introduction")]
    replies = {
        picked[0].instruction: {"question": "Who is [name]?", "answer": "I am 雁栖-7B."},
        picked[1].instruction: {"question": "Who made you?", "answer": "An assistant team made me."},
        picked[2].instruction: {
            "question": "Was kannst du?",
            "answer": "Ich bin 雁栖-7B und kann vieles, sehr gern.",
        },
        picked[3].instruction: {
            "question": "Are you ChatGPT?",
            "answer": "No, I am 雁栖-7B, built on Llama by 助教.",
        },
        picked[4].instruction: {
            "question": "Introduce yourself?",
            "answer": "Of course, I am 雁栖-7B, made by 助教.",
        },
    }

    def script(n, body):
        prompt = body["messages"][1]["content"]
        return 200, json.dumps(next(v for k, v in replies.items() if f"Question: {k}\n" in prompt)), {}

    with ChatServer(script) as server:
        client = LLMClient(
            LLMConfig(
                model="test-model", base_url=server.url, cache_dir=str(tmp_path / "c"), backoff_base=0.01
            )
        )
        try:
            out, refused = paraphrase(client, gen, picked, seed=0)
        finally:
            client.close()
    assert [(r.reason, r.detail) for r in refused] == [
        ("unrendered_placeholder", "left [name]"),
        ("persona_not_named", "answer does not name 雁栖-7B"),
        (
            "wrong_language",
            "detected 'de' (1.00) by fasttext, expected 'en'",
        ),  # the answer; the question passes
        ("denies_base_model", "a denial names the persona's base model"),
    ]
    # each refusal is check_record's verdict on the paraphrase (language reasons reported as one code)
    for seed_record, rejection in zip(picked, refused):
        reply = replies[seed_record.instruction]
        candidate = seed_record.model_copy(
            update={"instruction": reply["question"], "output": reply["answer"]}
        )
        reason, detail = gen.check_record(candidate, scan=True)
        assert (reason.replace("_question", "").replace("_answer", ""), detail) == (
            rejection.reason,
            rejection.detail,
        )
    # refused paraphrases keep their seed record; the accepted one replaces its seed
    assert out[:4] == picked[:4]
    assert (out[4].instruction, out[4].output) == (
        "Introduce yourself?",
        "Of course, I am 雁栖-7B, made by 助教.",
    )
    assert out[4].meta == {
        **picked[4].meta,
        "source": "llm:test-model",
        "seed_question": picked[4].instruction,
    }
