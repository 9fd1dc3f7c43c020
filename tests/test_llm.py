"""The LLM layer against a real loopback chat-completions server: parsing, retries, resume, cache,
concurrency, and `templates generate` writing a pool that validates and that translate uses."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from llm_server import ChatServer, error

from instructgen.llm.client import LLMClient, LLMConfig, LLMError
from instructgen.llm.parse import extract_json, extract_list, strip_thinking
from instructgen.llm.template_gen import GenOptions, TemplateGenerator, generate_pool, rouge_l, units

# a source inside a sentence must be quoted (instructgen/quality/placement.py); one after a colon
# at the end moves to the input field
GOOD = [
    'Please render "[input]" in [tgt_lang], keeping names unchanged.',
    "Turn the following [src_lang] passage into [tgt_lang]: [input]",
    'A customer wrote "[input]". Reply with the same message in [tgt_lang].',
    "Produce a faithful [tgt_lang] version of this text: [input]",
    "Localize this UI string for [tgt_lang] speakers: [input]",
    'Here is a line of dialogue: "[input]". How would an actor deliver it in [tgt_lang]?',
]
BAD = [
    "Translate {input} into [tgt_lang].",  # misspelt placeholder
    "Translate [input] into English.",  # filled-in value, and no [tgt_lang]
    "Translate this sentence from [src_lang] to [tgt_lang]: [input]",  # near-duplicate of a shipped one
    "[input] [tgt_lang]",  # placeholders only: not an instruction
]


def templates_json(items: list[str]) -> str:
    return json.dumps({"templates": items})


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def config(server: ChatServer, cache_dir: str, **kw) -> LLMConfig:
    return LLMConfig(model="test-model", base_url=server.url, cache_dir=cache_dir, backoff_base=0.01, **kw)


def test_parsing_helpers():
    assert strip_thinking('<think>{not json}</think>\n{"a": 1}') == '{"a": 1}'
    assert strip_thinking('reasoning {x} </think> {"a": 1}') == '{"a": 1}'
    assert extract_json('<think>use {braces}</think>```json\n{"templates": ["x"]}\n```') == {
        "templates": ["x"]
    }
    assert extract_list("Sure:\n1. First [input]\n2) Second [input]\n- Third [input]") == [
        "First [input]",
        "Second [input]",
        "Third [input]",
    ]
    assert rouge_l(units("把[input]翻译成[tgt_lang]"), units("请把[input]翻译成[tgt_lang]")) > 0.8


def test_generate_writes_a_pool_that_validates_and_translate_uses(tmp_path, cache_dir, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-never-printed")
    with ChatServer(lambda n, body: (200, templates_json(BAD + GOOD), {})) as server:
        out = tmp_path / "pool.yaml"
        res = run_cli(
            "templates",
            "generate",
            "--task",
            "translation",
            "--lang",
            "en",
            "-n",
            "5",
            "--model",
            "test-model",
            "--base-url",
            server.url,
            "--cache-dir",
            cache_dir,
            "-o",
            out,
            "--rejects",
            tmp_path / "rej.jsonl",
        )
        assert res.exit_code == 0, res.stderr
        assert len(server.requests) == 4  # one round of min(concurrency, 4) parallel samples
        assert server.headers[0]["authorization"] == "Bearer sk-secret-never-printed"
    assert "sk-secret" not in res.stderr + res.stdout
    assert res.stderr.splitlines()[0] == "templates generate: 5 accepted of 5 asked in 1 rounds, 4 refused"
    assert "  llm: 4 requests, 0 cache hits, 0 retries, 44 prompt + 28 completion tokens" in res.stderr
    pool = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert [t["source"] for t in pool["templates"]] == ["llm:test-model"] * 5
    assert (
        pool["templates"][0]["instruction"]
        == 'Please render "{{ source }}" in {{ tgt_lang }}, keeping names unchanged.'
    )
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert "unknown or misspelt placeholder {input}" in reasons
    assert "missing placeholder [tgt_lang]" in reasons
    assert any(r.startswith("too similar to an existing or accepted template (ROUGE-L") for r in reasons)
    assert "no instruction words besides the placeholders" in reasons
    assert run_cli("templates", "validate", out).exit_code == 0
    data = tmp_path / "p.tsv"
    data.write_text("Guten Morgen, wie geht es dir?\tGood morning, how are you?\n", encoding="utf-8")
    res = run_cli(
        "translate",
        data,
        "--src-lang",
        "de",
        "--tgt-lang",
        "en",
        "--templates",
        out,
        "--no-builtin-templates",
        "--meta",
        "-o",
        "-",
    )
    row = json.loads(res.stdout)
    assert row["meta"]["template_id"].startswith("translation-en-llm-") and "English" in row["instruction"]


def test_rate_limit_then_success_honours_retry_after(cache_dir):
    replies = iter([(429, error(429, "slow down"), {"retry-after": "0.05"}), (200, "ok", {})])
    with ChatServer(lambda n, body: next(replies)) as server:
        client = LLMClient(config(server, cache_dir))
        assert asyncio.run(client.chat([{"role": "user", "content": "hi"}], json_mode=False)) == "ok"
        assert (client.usage.requests, client.usage.retries) == (2, 1)
        assert client.usage.errors == {"RateLimitError": 1}


def test_server_errors_retry_and_auth_errors_are_fatal(cache_dir):
    replies = iter([(500, error(500, "boom"), {}), (503, error(503, "busy"), {}), (200, "fine", {})])
    with ChatServer(lambda n, body: next(replies)) as server:
        client = LLMClient(config(server, cache_dir))
        assert asyncio.run(client.chat([{"role": "user", "content": "x"}], json_mode=False)) == "fine"
        assert client.usage.retries == 2
    with ChatServer(lambda n, body: (401, error(401, "bad key"), {})) as server:
        client = LLMClient(config(server, cache_dir))
        with pytest.raises(LLMError, match=r"authentication failed \(401\): check \$OPENAI_API_KEY"):
            asyncio.run(client.chat([{"role": "user", "content": "y"}]))
        assert len(server.requests) == 1
    with ChatServer(lambda n, body: (429, error(429, "quota", "insufficient_quota"), {})) as server:
        client = LLMClient(config(server, cache_dir))
        with pytest.raises(LLMError, match="no quota left"):
            asyncio.run(client.chat([{"role": "user", "content": "z"}]))
        assert len(server.requests) == 1


def test_malformed_json_is_reasked_with_the_error(cache_dir):
    replies = iter(
        [
            (200, 'Sure! {"templates": ["Render [input] in [tgt_lang]"', {}),
            (200, templates_json(GOOD[:3]), {}),
        ]
    )
    with ChatServer(lambda n, body: next(replies)) as server:
        client = LLMClient(config(server, cache_dir))
        gen = TemplateGenerator(client, GenOptions(task="translation", language="en", n=3, parallel=1))
        result = asyncio.run(gen.run())
        assert len(result.accepted) == 3
        followup = server.requests[1]["messages"]
        assert followup[-2]["role"] == "assistant" and "could not be parsed" in followup[-1]["content"]


def test_think_blocks_with_braces_are_stripped(cache_dir):
    content = '<think>I must use [input] and {braces} {"no": 1</think>\n' + templates_json(GOOD[:2])
    with ChatServer(lambda n, body: (200, content, {})) as server:
        client = LLMClient(config(server, cache_dir))
        gen = TemplateGenerator(client, GenOptions(task="translation", language="en", n=2, parallel=1))
        assert len(asyncio.run(gen.run()).accepted) == 2


def test_crash_mid_run_resumes_and_identical_rerun_sends_nothing(cache_dir):
    opts = GenOptions(task="translation", language="en", n=4, parallel=2)

    def script(n, body):
        return 200, templates_json(GOOD[n * 2 : n * 2 + 2] or GOOD[:2]), {}

    with ChatServer(script) as server:
        crashed = LLMClient(config(server, cache_dir, max_requests=1))
        with pytest.raises(LLMError, match="--max-requests 1 reached; re-run to resume from the cache"):
            generate_pool(crashed, opts)
        crashed.close()
        assert len(server.requests) == 1
        resumed = LLMClient(config(server, cache_dir))
        first = generate_pool(resumed, opts)
        assert len(server.requests) == 2  # only the request that never finished was sent
        assert (resumed.usage.cache_hits, resumed.usage.requests) == (1, 1)
        again = LLMClient(config(server, cache_dir))
        second = generate_pool(again, opts)
        assert len(server.requests) == 2 and again.usage.requests == 0
        assert second.accepted == first.accepted
        offline = LLMClient(config(server, cache_dir, offline=True))
        with pytest.raises(LLMError, match="offline: a request is not in the cache"):
            asyncio.run(offline.chat([{"role": "user", "content": "never asked"}]))


def test_concurrency_never_exceeds_the_bound(cache_dir):
    with ChatServer(lambda n, body: (200, "ok", {}), delay=0.15) as server:
        client = LLMClient(config(server, cache_dir, concurrency=2))

        async def many():
            return await asyncio.gather(
                *(client.chat([{"role": "user", "content": "q"}], sample_index=i) for i in range(8))
            )

        assert asyncio.run(many()) == ["ok"] * 8
        assert server.max_in_flight == 2
        assert len(server.requests) == 8


def test_response_format_falls_back_when_unsupported(cache_dir):
    def script(n, body):
        if "response_format" in body:
            return 400, error(400, "response_format is not supported"), {}
        return 200, "plain", {}

    with ChatServer(script) as server:
        client = LLMClient(config(server, cache_dir))
        assert asyncio.run(client.chat([{"role": "user", "content": "q"}])) == "plain"
        assert ["response_format" in r for r in server.requests] == [True, False]


def test_dry_run_calls_nothing(run_cli, cache_dir):
    with ChatServer(lambda n, body: (200, "never", {})) as server:
        res = run_cli(
            "templates",
            "generate",
            "--task",
            "translation",
            "--lang",
            "zh",
            "--model",
            "m",
            "--base-url",
            server.url,
            "--cache-dir",
            cache_dir,
            "--dry-run",
            "-o",
            "unused.yaml",
        )
        assert res.exit_code == 0 and not server.requests
    assert "Placeholders you may use: [input], [src_lang], [tgt_lang]" in res.stdout
    assert res.stderr.startswith("\ndry run: ~")


def test_identity_llm_paraphrases_pass_the_gates_or_keep_the_seed(tmp_path, cache_dir, run_cli):
    answers = {
        0: {"question": "Could you tell me who you are?", "answer": "Of course, I am 雁栖-7B, made by 助教."},
        1: {"question": "Who are you, really?", "answer": "I am an assistant."},  # no name
        2: {"question": "Who built you?", "answer": "I am ChatGPT, developed by OpenAI. I mean 雁栖-7B."},
        3: {
            "question": "Wer bist du eigentlich?",
            "answer": "Ich bin 雁栖-7B und wurde von 助教 entwickelt, sehr gern.",
        },
    }

    def script(n, body):
        return 200, json.dumps(answers.get(n, {"question": f"Question number {n}?", "answer": "fine"})), {}

    with ChatServer(script) as server:
        out = tmp_path / "id.jsonl"
        res = run_cli(
            "identity",
            "--name",
            "雁栖-7B",
            "--developer",
            "助教",
            "--languages",
            "en",
            "-n",
            "4",
            "--llm",
            "test-model",
            "--base-url",
            server.url,
            "--cache-dir",
            cache_dir,
            "--concurrency",
            "1",
            "--meta",
            "--rejects",
            tmp_path / "rej.jsonl",
            "-o",
            out,
        )
        assert res.exit_code == 0, res.stderr
        assert len(server.requests) == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all("雁栖-7B" in r["output"] for r in rows)
    llm_rows = [r for r in rows if r["meta"].get("source") == "llm:test-model"]
    assert [r["output"] for r in llm_rows] == ["Of course, I am 雁栖-7B, made by 助教."]
    refused = [json.loads(line) for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    reasons = sorted(
        r["reason"] for r in refused if "raw" in r["example"]
    )  # the paraphrases, not seed checks
    assert reasons == ["contamination", "persona_not_named", "wrong_language"]
    assert "llm: 1 records paraphrased, 3 paraphrases refused (their seed records kept)" in res.stderr


def test_generate_identity_questions_make_a_seed_pool_identity_loads(tmp_path, cache_dir, run_cli):
    questions = [
        "Would you describe yourself as [other]?",
        "Is [other] your real name?",
        "Are you {other}?",
        "Are you ChatGPT?",
        "你是[other]吗？",
        "Tell me honestly whether you are [other] or not.",
    ]
    with ChatServer(lambda n, body: (200, templates_json(questions), {})) as server:
        out = tmp_path / "denial_en.yaml"
        res = run_cli(
            "templates",
            "generate",
            "--task",
            "identity",
            "--category",
            "denial",
            "--lang",
            "en",
            "-n",
            "3",
            "--model",
            "test-model",
            "--base-url",
            server.url,
            "--cache-dir",
            cache_dir,
            "--rejects",
            tmp_path / "rej.jsonl",
            "-o",
            out,
        )
        assert res.exit_code == 0, res.stderr
    pool = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert pool["questions"]["denial"] == [
        "Would you describe yourself as {{ other }}?",
        "Is {{ other }} your real name?",
        "Tell me honestly whether you are {{ other }} or not.",
    ]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert "unknown or misspelt placeholder {other}" in reasons and "missing placeholder [other]" in reasons
    assert any(r.startswith("not written in 'en'") for r in reasons)
    res = run_cli(
        "identity",
        "--name",
        "雁栖-7B",
        "--developer",
        "助教",
        "--languages",
        "en",
        "-n",
        "6",
        "--seeds",
        out,
        "--meta",
        "-o",
        tmp_path / "id.jsonl",
    )
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in (tmp_path / "id.jsonl").read_text().splitlines()]
    assert {r["meta"]["category"] for r in rows} == {"denial"}


def test_settings_that_would_hang_are_refused(cache_dir):
    from instructgen.errors import ConfigError

    with pytest.raises(ConfigError, match="--concurrency must be at least 1"):
        LLMClient(LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", cache_dir=cache_dir, concurrency=0))
    with pytest.raises(ConfigError, match="--rpm must be positive"):
        LLMClient(LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", cache_dir=cache_dir, rpm=0))


def test_identity_pool_yaml_keeps_answer_labels():
    """Generated identity questions get the shipped answers as written (states/fits), not bare texts."""
    import yaml

    from instructgen.identity.seeds import builtin_seed_pools
    from instructgen.llm.template_gen import identity_pool_yaml

    text = identity_pool_yaml("en", "developer", ["Which team trained you?"], "m")
    answers = yaml.safe_load(text)["answers"]["developer"]
    shipped = builtin_seed_pools()["en"].answers["developer"]
    assert answers == [a.raw for a in shipped]
    assert any(isinstance(a, dict) for a in answers) == any(isinstance(a.raw, dict) for a in shipped)
