"""Issue 11 item 13: untrusted templates and YAML end within their bounds with a named error.

Every payload here hung, exhausted memory or wrote gigabytes before (nested `range(100000)`
loops and `9**(9**9)` ran for 30-50 minutes in `templates validate`; `'a'*100000000` passed
validation and wrote 2.5 GB for 25 pairs; alias bombs in `labels:` / `description:` hung load).
Now each is refused on load or on the first record, naming the file, line and template id.
The chat-template renderer is checked against transformers' own `apply_chat_template`
(transformers/utils/chat_template_utils.py: `_cached_compile_jinja_template`, `render_jinja_template`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instructgen.errors import TemplateError, TemplateLimitError
from instructgen.templates.env import MAX_RANGE, render_bounded, render_chat_template, template_env
from instructgen.templates.pool import parse_pool
from instructgen.templates.safe_yaml import load_yaml_bounded, safe_load_bounded

HEADER = "task: translation\nlanguage: en\ntemplates:\n"


def pool_with(instruction: str, *, tid: str = "evil") -> str:
    """A pool whose one template has this instruction (kept valid otherwise: source, target, tgt_lang)."""
    return (
        HEADER
        + f"  - id: {tid}\n    instruction: {json.dumps(instruction)}\n"
        + '    input: "{{ source }}"\n    output: "{{ target }}"\n'
    )


def limit_error(text: str) -> str:
    with pytest.raises(TemplateLimitError) as info:
        parse_pool(text, path="pool.yaml")
    return str(info.value)


TL = "{{ tgt_lang }}"
PAYLOADS = [
    (
        "nested range(100000)",
        TL + "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "range() of 100,000 items, over the bound of 10,000",
    ),
    ("9**(9**9)", TL + "{{ 9**(9**9) }}", "9 ** 387420489 would be over 10,000 bits"),
    (
        "'a'*100000000",
        TL + "{{ 'a'*100000000 }}",
        "the repeated value would be 100,000,000 long, over the bound of 1,000,184",
    ),
    (
        "doubling with ~",
        TL
        + "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "a concatenated string would be 1,048,576 long, over the bound of 1,000,184",
    ),
    (
        "doubling with a set block",
        TL + "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set x %}{{ ns.s }}{{ ns.s }}"
        "{% endset %}{% set ns.s = x %}{% endfor %}",
        "a concatenated string would be 1,048,576 long, over the bound of 1,000,184",
    ),
    (
        "printf width",
        TL + "{{ '%1000000000s' % 'a' }}",
        "format width 1000000000 is over the bound of 1,000,184",
    ),
    (
        "str.format width",
        TL + "{{ '{:>1000000000}'.format(1) }}",
        "format width 1000000000 is over the bound of 1,000,184",
    ),
    (
        "center filter",
        TL + "{{ 'a'|center(1000000000) }}",
        "argument 1000000000 is over the bound of 1,000,184",
    ),
    (
        "replace squares",
        TL + "{% set s = 'a'*1000 %}{% set t = s|replace('a', s) %}{{ t|replace('a', t) }}",
        "the result of |replace would be 1,001,000 long, over the bound of 1,000,184",
    ),
    (
        "join with a huge separator",
        TL + "{% set s = 'a'*900000 %}{{ range(10000)|join(s) }}",
        "the joined string would be 9,000,000,000 long, over the bound of 1,000,184",
    ),
    (
        "integer squaring",
        TL + "{% set ns = namespace(x=3) %}{% for i in range(100) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
        "a product would be over 10,000 bits",
    ),
    (
        "macro recursion",
        TL + "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "recursion too deep (a macro or loop that calls itself?)",
    ),
]


@pytest.mark.parametrize(("name", "instruction", "message"), PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_payloads_are_refused_on_load_naming_file_line_and_template(name, instruction, message):
    assert (
        limit_error(pool_with(instruction)) == f"pool.yaml:4, template 'evil': trial render failed: {message}"
    )


def test_a_template_nested_past_the_parser_is_a_named_error():
    text = pool_with(TL + "{{ source }}{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}")
    assert limit_error(text) == "pool.yaml:4, template 'evil': 'instruction' is nested too deeply"


def test_a_loop_that_only_burns_cpu_stops_at_the_time_bound():
    # three nested loops of 10,000 (each within MAX_RANGE): 10**12 iterations that call nothing
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}"
    text = pool_with(TL + loops + "{% endfor %}{% endfor %}{% endfor %}")
    assert limit_error(text) == (
        "pool.yaml:4, template 'evil': trial render failed: render took more than 2 s of CPU time"
    )


def test_the_time_bound_holds_in_a_worker_thread():
    # renders run in threads (LLM runs, worker pools) where SIGALRM cannot reach: the budget is
    # the thread's own CPU time, checked inside the loops
    from concurrent.futures import ThreadPoolExecutor

    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(render_bounded, loops, {}, path="p.yaml", template_id="t")
        with pytest.raises(TemplateLimitError, match=r"^p.yaml, template 't': render took more than 2 s"):
            future.result()


def test_the_bounds_leave_ordinary_templates_alone():
    env = template_env()
    src = (
        "{% macro q(x) %}«{{ x }}»{% endmacro %}{{ q(source|trim) }} {{ '%-5s|' % 'ab' }}"
        "{{ '{:>4}'.format(7) }} {{ range(3)|join(',') }} {% for w in words %}{{ loop.index }}{{ w|upper }}"
        "{% endfor %} {{ 2**10 }} {{ 'ab' * 3 }}"
    )
    assert env.from_string(src).render(source=" hi ", words=["a", "b"]) == (
        "«hi» ab   |   7 0,1,2 1A2B 1024 ababab"
    )
    # digits outside a format spec are text, not widths
    assert render_bounded(
        "{{ 'Call 1-800-1234567 about %s' % 'x' }}|{{ 'Room 12345678: {}'.format(1) }}", {}
    ) == ("Call 1-800-1234567 about x|Room 12345678: 1")
    # large integers being formatted are values, not widths
    assert render_bounded("{{ '%d' % 12345678901 }}|{{ '{}'.format(12345678901) }}", {}) == (
        "12345678901|12345678901"
    )
    # the size budget grows with the input: a long document renders twice without complaint
    doc = "x" * 3_000_000
    assert len(render_bounded("{{ d }}{{ d }}", {"d": doc})) == 6_000_000
    assert MAX_RANGE == 10_000


def test_render_bounded_names_file_and_template():
    with pytest.raises(TemplateLimitError) as info:
        render_bounded("{{ 'a' * n }}", {"n": 10**9}, path="seeds.yaml:12", template_id="q-name-3")
    assert str(info.value) == (
        "seeds.yaml:12, template 'q-name-3': the repeated value would be 1,000,000,000 long, "
        "over the bound of 1,000,000"
    )
    with pytest.raises(
        TemplateError, match=r"^seeds.yaml, template 'x': render failed: 'nope' is undefined$"
    ):
        render_bounded("{{ nope }}", {}, path="seeds.yaml", template_id="x")
    # lipsum(n) builds n paragraphs without calling back into the sandbox: it is not offered
    with pytest.raises(TemplateError, match="render failed: 'lipsum' is undefined"):
        render_bounded("{{ lipsum(3) }}", {})


BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def indent(text: str, by: str = "  ") -> str:
    return "".join(by + line + "\n" for line in text.splitlines())


@pytest.mark.parametrize("key", ["labels", "description"])
def test_alias_bombs_in_labels_or_description_are_refused(key):
    body = pool_with(TL + " {{ source }}", tid="ok")
    text = f"{key}:\n" + indent(BOMB) + body
    with pytest.raises(TemplateError) as info:
        parse_pool(text, path="pool.yaml")
    assert (
        str(info.value)
        == "pool.yaml:8: invalid YAML: aliases expand to more than 1,000,000 nodes (an alias bomb?)"
    )


def test_safe_load_bounded_keeps_yaml_semantics_and_refuses_self_reference(tmp_path):
    assert safe_load_bounded("k: &k {a: 1}\nl: {<<: *k, b: 2}\nm: [*k, *k]\n") == {
        "k": {"a": 1},
        "l": {"a": 1, "b": 2},
        "m": [{"a": 1}, {"a": 1}],
    }
    with pytest.raises(yaml.YAMLError, match="an anchor refers to itself"):
        safe_load_bounded("x: &x [1, *x]\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="python/object"):
        safe_load_bounded("!!python/object:os.system x\n")
    # a large string repeated by aliases: few nodes, many characters
    big = "s: &s " + "y" * 100_000 + "\nt: [" + ", ".join(["*s"] * 200) + "]\n"
    with pytest.raises(
        yaml.YAMLError, match=r"aliases expand to more than 10,100,811 characters \(an alias bomb\?\)"
    ):
        safe_load_bounded(big)
    with pytest.raises(yaml.YAMLError, match="collections nested too deeply"):
        safe_load_bounded("a: " + "[" * 5000 + "]" * 5000)  # was a RecursionError traceback
    f = tmp_path / "p.yaml"
    f.write_text("\ufeffa: 1\n", encoding="utf-8")
    assert load_yaml_bounded(f) == {"a": 1}


def test_cli_validate_refuses_each_payload_within_bounds(tmp_path, run_cli):
    files = []
    for i, (_name, instruction, _message) in enumerate(PAYLOADS[:4]):
        f = tmp_path / f"p{i}.yaml"
        f.write_text(pool_with(instruction, tid=f"evil-{i}"), encoding="utf-8")
        files.append(f)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("labels:\n" + indent(BOMB) + pool_with(TL + " {{ source }}", tid="ok"), encoding="utf-8")
    res = run_cli("templates", "validate", *files, bomb)
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[:4] == [
        f"FAIL {files[i]}:4, template 'evil-{i}': trial render failed: {PAYLOADS[i][2]}" for i in range(4)
    ]
    assert (
        lines[4]
        == f"FAIL {bomb}:8: invalid YAML: aliases expand to more than 1,000,000 nodes (an alias bomb?)"
    )


def test_translate_with_a_user_pool_stops_on_the_record_that_exceeds_a_bound(tmp_path, run_cli):
    # passes the trial render (13-character sample) but not a 1,000-character sentence
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_with(TL + "{{ source * 2000 }}", tid="grows"), encoding="utf-8")
    data = tmp_path / "p.tsv"
    data.write_text(
        "Guten Morgen.\tGood morning.\n" + "a" * 1000 + "\t" + "b" * 1000 + "\n", encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    res = run_cli(
        "translate", data, "--src-lang", "de", "--tgt-lang", "en", "--templates", pool,
        "--no-builtin-templates", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {pool}:4, template 'grows': the repeated value would be 2,000,000 long, "
        "over the bound of 1,008,068"
    )
    assert not out.exists()  # nothing half-written


def test_chat_template_renders_like_transformers_and_is_bounded(qwen_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(qwen_dir))
    convs = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
    ]
    for msgs in convs:
        for gen in (False, True):
            assert render_chat_template(hf, msgs, add_generation_prompt=gen) == hf.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=gen
            )
    llama = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "llama2"
    if llama.is_dir():  # Meta's own template: raise_exception, bos_token/eos_token, loop.index0
        tok = AutoTokenizer.from_pretrained(str(llama))
        msgs = [{"role": "system", "content": "S"}, *convs[0]]
        assert render_chat_template(tok, msgs) == tok.apply_chat_template(msgs, tokenize=False)
        with pytest.raises(TemplateError, match="Conversation roles must alternate"):
            render_chat_template(tok, msgs[:1] + msgs[2:], path=str(llama))
    # the environment's extras: namespace, tojson, loop controls, {% generation %}, dict(), None dropped
    extras = (
        "{%- set ns = namespace(n=0) -%}{%- for m in messages -%}{%- if loop.index > 3 %}{% break %}{% endif -%}"
        "{%- set ns.n = ns.n + 1 -%}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}"
        "{{ m.content }}{% endgeneration %}{% else %}{{ m.content|tojson }}{% endif %}"
        "{{ dict(a=m.name is defined)|tojson }}{%- endfor -%}{{ ns.n }}{{ eos_token }}"
    )
    msgs = [*convs[1], {"role": "user", "content": "é", "name": None}]
    assert render_chat_template(hf, msgs, chat_template=extras) == hf.apply_chat_template(
        msgs, chat_template=extras, tokenize=False
    )
    hostile = "{% for m in messages %}{{ m['content'] * 100000000 }}{% endfor %}"
    with pytest.raises(TemplateLimitError) as info:
        render_chat_template(hf, convs[0], chat_template=hostile, path="tok/")
    assert str(info.value) == (
        "tok/, template 'chat_template': the repeated value would be 200,000,000 long, over the bound of 1,000,176"
    )
