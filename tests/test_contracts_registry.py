"""A task's template contract lives on its TaskSpec (templates/tasks.py) and nowhere else.

A toy task registered here, from the test module, with no edit under instructgen/, must be offered by
`templates generate --task`, get a prompt built from its own bracket contract, have the LLM's answers
linted against that contract, and come out as a pool that `templates validate` accepts and that
renders; the leftover-placeholder check (quality/filters.py) must know its variable names. The LLM
is the real loopback chat-completions server of tests/llm_server.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from llm_server import ChatServer

from instructgen.llm.template_gen import to_brackets, to_jinja
from instructgen.quality.filters import find_placeholders
from instructgen.templates.pool import PoolSet
from instructgen.templates.tasks import (
    LLMContract,
    Requirement,
    TaskSpec,
    contract_names,
    generatable_tasks,
    get_task,
    known_tasks,
    register_task,
    unregister_task,
)

TOY = TaskSpec(
    name="toy-summary",
    variables={
        "passage": "the text to summarise",
        "summary": "its one-sentence summary (the answer)",
        "style": "how the summary should sound, in the pool's language",
    },
    requirements=(
        Requirement(("passage",), ("instruction", "input"), "the prompt must contain the passage"),
        Requirement(("summary",), ("output",), "the answer must contain the summary"),
    ),
    sample={"passage": "SAMPLE-PASSAGE", "summary": "SAMPLE-SUMMARY", "style": "STYLE"},
    llm=LLMContract(
        placeholders={"input": "passage", "style": "style"}, required=("input",), output="{{ summary }}"
    ),
)

SEED_POOL = """\
task: toy-summary
language: en
templates:
  - id: toy-en-001
    instruction: "Summarise the following passage in one sentence:"
    input: "{{ passage }}"
    output: "{{ summary }}"
  - id: toy-en-002
    instruction: "Give a {{ style }} summary of \\"{{ passage }}\\"."
    output: "{{ summary }}"
"""

ANSWERS = [
    'Condense "[input]" into a single [style] sentence for a busy reader.',  # accepted
    "Translate [input] into [tgt_lang].",  # [tgt_lang] is translation's, not this task's
    "Write a short, [style] abstract of the passage below, keeping every name.",  # no [input]
    "Summarise {passage} please.",  # misspelt placeholder
    'What is the gist of "[input]"? Answer in one sentence.',  # accepted
]


@pytest.fixture
def toy_task():
    register_task(TOY)
    yield TOY
    unregister_task(TOY.name)


def generate(run_cli, server: ChatServer, tmp_path, *extra: str):
    return run_cli(
        "templates",
        "generate",
        "--task",
        "toy-summary",
        "--lang",
        "en",
        "-n",
        "2",
        "--model",
        "test-model",
        "--base-url",
        server.url,
        "--cache-dir",
        tmp_path / "cache",
        "--concurrency",
        "1",
        "--templates",
        tmp_path / "seed.yaml",
        "--rejects",
        tmp_path / "rejects.jsonl",
        "-o",
        tmp_path / "pool.yaml",
        *extra,
    )


def test_a_task_registered_from_a_test_generates_a_pool_that_validates(
    toy_task, tmp_path, run_cli, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (tmp_path / "seed.yaml").write_text(SEED_POOL, encoding="utf-8")
    with ChatServer(lambda n, body: (200, json.dumps({"templates": ANSWERS}), {})) as server:
        res = generate(run_cli, server, tmp_path)
        assert res.exit_code == 0, res.stderr
        prompt = server.requests[0]["messages"][1]["content"]
    # the prompt shows the toy contract in brackets and the seed pool's templates converted to them
    assert prompt.startswith(
        "Write 10 new, varied instruction templates for the task 'toy-summary', written in English.\n"
        "Placeholders you may use: [input], [style]. Every template must contain [input], written exactly like "
        "that, and no other bracketed placeholder."
    )
    assert "- Summarise the following passage in one sentence: (input: [input])\n" in prompt
    assert '- Give a [style] summary of "[input]".\n' in prompt

    pool = yaml.safe_load((tmp_path / "pool.yaml").read_text(encoding="utf-8"))
    ids = [t.pop("id") for t in pool["templates"]]
    assert re.fullmatch(r"toy-summary-en-llm-[0-9a-f]{6}-001", ids[0]) and ids[1] == ids[0][:-1] + "2"
    assert pool["task"] == "toy-summary" and pool["language"] == "en"
    assert pool["templates"] == [
        {
            "instruction": 'Condense "{{ passage }}" into a single {{ style }} sentence for a busy reader.',
            "output": "{{ summary }}",
            "source": "llm:test-model",
        },
        {
            "instruction": 'What is the gist of "{{ passage }}"? Answer in one sentence.',
            "output": "{{ summary }}",
            "source": "llm:test-model",
        },
    ]
    refused = [json.loads(line)["reason"] for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert refused == [
        "unknown or misspelt placeholder [tgt_lang]",
        "missing placeholder [input]",
        "unknown or misspelt placeholder {passage}",
    ]
    assert res.stderr.startswith(
        "templates generate: 2 accepted of 2 asked in 1 rounds, 3 refused\n"
        "  refused missing placeholder [input]: 1\n"
        "  refused unknown or misspelt placeholder [tgt_lang]: 1\n"
        "  refused unknown or misspelt placeholder {passage}: 1\n"
    )

    # the generated pool passes the same validator as hand-written pools, and renders
    res = run_cli("templates", "validate", tmp_path / "pool.yaml")
    assert (
        res.exit_code == 0 and res.stdout == f"ok   {tmp_path / 'pool.yaml'} (toy-summary, en, 2 templates)\n"
    )
    pools = PoolSet.load(
        "toy-summary", [tmp_path / "seed.yaml", tmp_path / "pool.yaml"], include_builtin=False
    )
    rendered = pools.by_language["en"][2].render(
        {"passage": "Rain fell.", "summary": "It rained.", "style": "dry"}
    )
    assert rendered == {
        "system": None,
        "instruction": 'Condense "Rain fell." into a single dry sentence for a busy reader.',
        "input": "",
        "output": "It rained.",
    }


def test_the_registry_decides_what_generate_offers(toy_task, run_cli):
    help_text = run_cli("templates", "generate", "--help").stdout
    assert "--task [translation|ner|classification|toy-summary|identity]" in help_text
    unregister_task("toy-summary")
    res = run_cli("templates", "generate", "--task", "toy-summary", "--lang", "en", "--model", "m", "-o", "x")
    assert res.exit_code == 2
    assert (
        "Invalid value for '--task': 'toy-summary' is not one of 'translation', 'ner', 'classification', "
        "'identity'." in res.stderr
    )
    assert "toy-summary" not in run_cli("templates", "generate", "--help").stdout


def test_the_placeholder_check_knows_registered_variables(toy_task):
    # filters.py built its names from the registry: the toy task's names count once registered
    assert find_placeholders("keep [passage] and <summary> but not [passages]") == ["[passage]", "<summary>"]
    unregister_task("toy-summary")
    assert find_placeholders("keep [passage] and <summary>") == []
    assert "passage" not in contract_names()


def test_brackets_round_trip_through_the_registered_contract(toy_task):
    text = 'Give a {{ style }} summary of "{{passage}}".'
    assert to_brackets(text, "toy-summary") == 'Give a [style] summary of "[input]".'
    assert (
        to_jinja(to_brackets(text, "toy-summary"), "toy-summary")
        == 'Give a {{ style }} summary of "{{ passage }}".'
    )


def test_builtin_contracts_name_only_declared_variables():
    """Every built-in contract maps its brackets to variables its task declares, requires only brackets
    it shows, and answers with one of its variables (so a generated template can pass validation)."""
    assert generatable_tasks() == ["translation", "ner", "classification"]
    for name in known_tasks():
        spec = get_task(name)
        assert spec.llm is not None, name
        assert set(spec.llm.placeholders.values()) <= set(spec.variables), name
        assert set(spec.llm.required) <= set(spec.llm.placeholders), name
        assert re.fullmatch(r"\{\{ (\w+) \}\}", spec.llm.output).group(1) in spec.variables, name
    # the names the old hard-coded placeholder list held are all still checked
    old = "src_lang tgt_lang src_code tgt_code source target input output name developer label labels options text"
    assert all(find_placeholders(f"[{n}]") == [f"[{n}]"] for n in old.split())
