"""Issue 11 items 14, 17, 18, 22: a misbehaving endpoint, on a real loopback server.

Malformed 200s (invalid JSON, an HTML page, `choices: []` / `null`, no `message`) gave
tracebacks; an endpoint echoing the request printed the API key; a hung endpoint waited
120 s x 6 attempts and said only "gave up after 5 retries"; a run that accepted nothing exited 0
with `templates: []`; pools generated separately all numbered ids from 001; a numbered-list
answer split an item continued on the next line; `identity --llm` against an unreachable
endpoint wrote nothing. The chat-completion shape checked is OpenAI's (openai-python
`types/chat/chat_completion.py`: `choices[].message.content`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3

import pytest
import yaml
from llm_server import HANG, RESET, ChatServer, Raw, error

from instructgen.llm.client import LLMClient, LLMConfig, LLMError, RequestFailed, redact
from instructgen.llm.parse import extract_list
from instructgen.llm.template_gen import GenOptions, generate_pool
from instructgen.templates.pool import PoolSet, load_pool

KEY = "sk-test-0123456789abcdef"
GOOD = [
    'Please render "[input]" in [tgt_lang], keeping names unchanged.',
    "Turn the following [src_lang] passage into [tgt_lang]: [input]",
    'A customer wrote "[input]". Reply with the same message in [tgt_lang].',
]
MALFORMED = [
    ("invalid JSON", Raw('{"choices": ['), "malformed response: invalid JSON body (Expecting value: line 1 column 14 (char 13))"),
    ("HTML page", Raw("<html><body>502 Bad Gateway</body></html>", "text/html"),
     "malformed response: the body is an HTML page: <html><body>502 Bad Gateway</body></html>"),
    ("HTML as JSON", Raw("<html>oops</html>"), "malformed response: invalid JSON body (Expecting value: line 1 column 1 (char 0))"),
    ("choices empty", {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []},
     "malformed response: 'choices' is empty"),
    ("choices null", {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": None},
     "malformed response: 'choices' is null"),
    ("no message", {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop"}]},
     "malformed response: the first choice has no 'message'"),
    ("a list", [1, 2], "malformed response: the body is not a chat completion: [1, 2]"),
]  # fmt: skip


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def config(server: ChatServer, cache_dir: str, **kw) -> LLMConfig:
    kw.setdefault("backoff_base", 0.01)
    return LLMConfig(model="test-model", base_url=server.url, cache_dir=cache_dir, **kw)


def ask(client: LLMClient, text: str = "hi") -> str:
    return asyncio.run(client.chat([{"role": "user", "content": text}], json_mode=False))


@pytest.mark.parametrize(("name", "payload", "cause"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_200_is_a_retried_failed_attempt_with_its_cause(cache_dir, name, payload, cause):
    replies = iter([(200, payload, {}), (200, "fine", {})])
    with ChatServer(lambda n, body: next(replies)) as server:
        client = LLMClient(config(server, cache_dir))
        assert ask(client) == "fine"
        assert (client.usage.requests, client.usage.retries, client.usage.failed) == (2, 1, {})
    with ChatServer(lambda n, body: (200, payload, {})) as server:
        client = LLMClient(config(server, cache_dir, max_retries=2))
        with pytest.raises(RequestFailed) as info:
            ask(client, "again")
        assert len(server.requests) == 3
    assert str(info.value) == f"{server.url}: no usable answer after 3 attempts in 0 s; last error: {cause}"
    assert client.usage.failed == {cause: 1}


def test_reset_connections_are_retried(cache_dir):
    replies = iter([(200, RESET, {}), (500, error(500, "boom"), {}), (200, "ok", {})])
    with ChatServer(lambda n, body: next(replies)) as server:
        client = LLMClient(config(server, cache_dir))
        assert ask(client) == "ok"
        assert client.usage.retries == 2


def test_generate_counts_malformed_answers_and_exits_nonzero_when_nothing_is_accepted(
    tmp_path, cache_dir, run_cli
):
    payload = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    out = tmp_path / "pool.yaml"
    with ChatServer(lambda n, body: (200, payload, {})) as server:
        res = run_cli(
            "templates", "generate", "--task", "translation", "--lang", "en", "-n", "3", "--model", "test-model",
            "--base-url", server.url, "--cache-dir", cache_dir, "--max-retries", "0", "--concurrency", "1",
            "--rejects", tmp_path / "rej.jsonl", "-o", out,
        )  # fmt: skip
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert not out.exists()
    lines = res.stderr.splitlines()
    assert lines[0] == "templates generate: 0 accepted of 3 asked in 3 rounds, 0 refused"
    assert lines[1] == (
        "  llm: 3 requests, 0 cache hits, 0 retries, 0 prompt + 0 completion tokens, "
        "3 failed requests (3 x malformed response: 'choices' is empty)"
    )
    assert lines[-1] == (
        f"error: no template was accepted, {out} was not written "
        "(the last request failed: malformed response: 'choices' is empty)"
    )
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert rejects == [{"reason": "request_failed", "cause": "malformed response: 'choices' is empty"}] * 3


def test_generate_that_only_gets_refusable_answers_exits_nonzero(tmp_path, cache_dir, run_cli):
    answer = json.dumps({"templates": ["Translate [input] into English."]})
    with ChatServer(lambda n, body: (200, answer, {})) as server:
        res = run_cli(
            "templates", "generate", "--task", "translation", "--lang", "en", "-n", "2", "--model", "m",
            "--base-url", server.url, "--cache-dir", cache_dir, "-o", tmp_path / "p.yaml",
        )  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == (
        f"error: no template was accepted, {tmp_path / 'p.yaml'} was not written (see --rejects)"
    )


def test_the_api_key_never_reaches_messages_rejects_or_the_cache(tmp_path, cache_dir, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def echo(n, body):  # a proxy that echoes the request headers back, in errors and in answers
        if n == 0:
            return 500, error(500, f"upstream failed for Authorization: Bearer {KEY}"), {}
        return 200, json.dumps({"templates": [GOOD[n % 3] + f" {KEY}"]}), {}

    with ChatServer(echo) as server:
        client = LLMClient(config(server, cache_dir))
        content = ask(client)
        assert KEY not in content and "[REDACTED]" in content
        assert client.usage.retries == 1
    with ChatServer(lambda n, body: (400, error(400, f"bad request, your key {KEY} is odd"), {})) as server:
        client = LLMClient(config(server, cache_dir))
        with pytest.raises(LLMError) as info:
            ask(client, "other")
    assert KEY not in str(info.value) and "your key [REDACTED] is odd" in str(info.value)
    with ChatServer(
        lambda n, body: (400, error(400, f'echo: {{"authorization": "Bearer {KEY}"}}'), {})
    ) as server:
        res = run_cli(
            "templates", "generate", "--task", "translation", "--lang", "en", "-n", "1", "--model", "m",
            "--base-url", server.url, "--cache-dir", cache_dir, "-o", tmp_path / "p.yaml",
        )  # fmt: skip
    assert res.exit_code == 2 and KEY not in res.stderr + res.stdout
    assert '"authorization": "[REDACTED]' in res.stderr
    db = sqlite3.connect(str(tmp_path / "cache" / "llm_cache.sqlite"))
    bodies = [row[0] for row in db.execute("SELECT body FROM responses")]
    assert bodies and not any(KEY in b for b in bodies)
    assert redact("Authorization: Basic dXNlcjpwYXNz and bearer abc.def") == (
        "Authorization: [REDACTED] and bearer [REDACTED]"
    )


def test_a_hung_endpoint_times_out_naming_the_url_and_the_cause(tmp_path, cache_dir, run_cli):
    with ChatServer(lambda n, body: (200, HANG, {})) as server:
        client = LLMClient(config(server, cache_dir, timeout=0.3, max_retries=1))
        with pytest.raises(RequestFailed) as info:
            ask(client)
        assert len(server.requests) == 2
        assert str(info.value).startswith(f"{server.url}: no usable answer after 2 attempts in ")
        assert str(info.value).endswith("; last error: no answer within 0.3 s (--timeout)")
        res = run_cli(
            "templates", "generate", "--task", "translation", "--lang", "en", "-n", "1", "--model", "m",
            "--base-url", server.url, "--cache-dir", cache_dir, "--timeout", "0.3", "--max-retries", "0",
            "-o", tmp_path / "p.yaml",
        )  # fmt: skip
    assert res.exit_code == 2
    assert "no answer within 0.3 s (--timeout)" in res.stderr.splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_identity_llm_against_an_unreachable_endpoint_keeps_every_seed_record(tmp_path, cache_dir, run_cli):
    out = tmp_path / "id.jsonl"
    res = run_cli(
        "identity", "--name", "雁栖-7B", "--developer", "助教", "--languages", "en", "-n", "4",
        "--llm", "test-model", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--cache-dir", cache_dir,
        "--max-retries", "1", "--timeout", "2", "--rejects", tmp_path / "rej.jsonl", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4
    assert (
        "llm: 0 records paraphrased, 0 paraphrases refused (their seed records kept), "
        "4 requests failed (their seed records kept unparaphrased)"
    ) in res.stderr
    refused = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    failed = [r for r in refused if r["reason"] == "llm_request_failed"]
    assert len(failed) == 4 and failed[0]["detail"] == "connection failed: All connection attempts failed"


def test_identity_llm_with_malformed_answers_keeps_the_seeds(tmp_path, cache_dir, run_cli):
    with ChatServer(lambda n, body: (200, Raw("<html>proxy error</html>", "text/html"), {})) as server:
        res = run_cli(
            "identity", "--name", "雁栖-7B", "--developer", "助教", "--languages", "en", "-n", "3",
            "--llm", "test-model", "--base-url", server.url, "--cache-dir", cache_dir, "--max-retries", "0",
            "-o", tmp_path / "id.jsonl",
        )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert len((tmp_path / "id.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert "3 requests failed (their seed records kept unparaphrased)" in res.stderr


def gen_pool(server, cache_dir, model: str, out, run_cli, *extra) -> dict:
    res = run_cli(
        "templates", "generate", "--task", "translation", "--lang", "en", "-n", "2", "--model", model,
        "--base-url", server.url, "--cache-dir", cache_dir, "-o", out, *extra,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    return yaml.safe_load(out.read_text(encoding="utf-8"))


def test_separately_generated_pools_have_distinct_deterministic_ids(tmp_path, cache_dir, run_cli):
    def script(n, body):
        return 200, json.dumps({"templates": GOOD[:2] if body["model"] == "a" else GOOD[1:]}), {}

    with ChatServer(script) as server:
        a = gen_pool(server, cache_dir, "a", tmp_path / "a.yaml", run_cli)
        b = gen_pool(server, cache_dir, "b", tmp_path / "b.yaml", run_cli)
        again = gen_pool(server, str(tmp_path / "other-cache"), "a", tmp_path / "a2.yaml", run_cli)
        # extending a pool: dedup against it gives another prefix, so both load together
        c = gen_pool(server, cache_dir, "b", tmp_path / "c.yaml", run_cli, "--templates", tmp_path / "a.yaml")
    ids_a = [t["id"] for t in a["templates"]]
    ids_b = [t["id"] for t in b["templates"]]
    assert all(i.startswith("translation-en-llm-") and i.endswith(("-001", "-002")) for i in ids_a + ids_b)
    assert not set(ids_a) & set(ids_b)
    assert [t["id"] for t in again["templates"]] == ids_a  # no clock, no randomness in the ids
    pools = [load_pool(tmp_path / f) for f in ("a.yaml", "b.yaml", "c.yaml")]
    assert len(PoolSet("translation", pools).all_templates()) == len(ids_a) + len(ids_b) + len(c["templates"])
    # the colon-run-on source moved to the input field, where it is delimited
    moved = next(t for t in a["templates"] if t["instruction"].startswith("Turn the following"))
    assert (moved["instruction"], moved["input"]) == (
        "Turn the following {{ src_lang }} passage into {{ tgt_lang }}:",
        "{{ source }}",
    )


def test_numbered_list_items_continue_on_the_next_line(cache_dir):
    answer = (
        "Here are some templates:\n\n"
        "1. Convert the [src_lang] sentence below into natural [tgt_lang].\n"
        "   [input]\n"
        "2. Give a fluent [tgt_lang] rendering of this passage:\n"
        "[input]\n"
        '3. "Rewrite \\"[input]\\" in [tgt_lang]."\n'
        "\n"
        "Let me know if you need more!"
    )
    assert extract_list(answer) == [
        "Convert the [src_lang] sentence below into natural [tgt_lang].\n[input]",
        "Give a fluent [tgt_lang] rendering of this passage:\n[input]",
        'Rewrite \\"[input]\\" in [tgt_lang].',
    ]
    with ChatServer(lambda n, body: (200, answer, {})) as server:
        client = LLMClient(config(server, cache_dir))
        result = generate_pool(client, GenOptions(task="translation", language="en", n=2, parallel=1))
    assert [t["instruction"] for t in result.accepted] == [
        "Convert the {{ src_lang }} sentence below into natural {{ tgt_lang }}.\n{{ source }}",
        "Give a fluent {{ tgt_lang }} rendering of this passage:\n{{ source }}",
    ]
