"""Template pools: shipped pools, validation errors with file/line/id, sandbox, rendering."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instructgen.errors import ConfigError, TemplateError
from instructgen.templates.env import template_env
from instructgen.templates.languages import language_name, normalize_code
from instructgen.templates.pool import PoolSet, load_builtin_pools, parse_pool

HEADER = "task: translation\nlanguage: en\ntemplates:\n"
GOOD = '  - id: t1\n    instruction: "Translate to {{ tgt_lang }}:"\n    input: "{{ source }}"\n    output: "{{ target }}"\n'


def error_of(text: str) -> str:
    with pytest.raises(TemplateError) as info:
        parse_pool(text, path="pool.yaml")
    return str(info.value)


def test_shipped_translation_pools_have_both_shapes_and_20_templates():
    pools = {p.language: p for p in load_builtin_pools("translation")}
    assert set(pools) >= {"en", "zh"}
    for lang in ("en", "zh"):
        templates = pools[lang].templates
        assert len(templates) >= 20
        with_input = [t for t in templates if t.spec.input]
        inline = [t for t in templates if not t.spec.input and "source" in t.spec.instruction]
        assert len(with_input) >= 5 and len(inline) >= 5, lang


def test_template_ids_are_unique_across_shipped_pools():
    PoolSet("translation", load_builtin_pools("translation"))  # raises on a duplicate id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '  - id: t1\n    instruction: "Translate to {{ tgt_langg }}:"\n    input: "{{ source }}"\n    output: "{{ target }}"\n',
            "pool.yaml:4, template 't1': unknown variable 'tgt_langg' (did you mean 'tgt_lang'?) in 'instruction'; "
            "task 'translation' has: source, src_code, src_lang, target, tgt_code, tgt_lang",
        ),
        (
            '  - id: t1\n    instruction: "Translate to {{ tgt_lang }:"\n    input: "{{ source }}"\n    output: "{{ target }}"\n',
            "pool.yaml:4, template 't1': Jinja syntax error in 'instruction' (line 1 of the field): unexpected '}'",
        ),
        (
            GOOD
            + '  - id: drops\n    instruction: "Say something in {{ tgt_lang }}."\n    output: "{{ target }}"\n',
            "pool.yaml:8, template 'drops': the prompt must contain the source text: use {{ source }} in instruction or input",
        ),
        (
            '  - id: t2\n    instruction: "Translate:"\n    input: "{{ source }}"\n    output: "{{ target }}"\n',
            "pool.yaml:4, template 't2': the instruction must name the target language: use {{ tgt_lang }} in instruction",
        ),
        (
            '  - id: t3\n    instruction: "Into {{ tgt_lang }}: {{ source }}"\n    output: "done"\n',
            "pool.yaml:4, template 't3': the answer must contain the translation: use {{ target }} in output",
        ),
        (
            GOOD + GOOD.replace("Translate to", "Into"),
            "pool.yaml:8, template 't1': duplicate template id (first defined at line 4)",
        ),
        (
            '  - id: t1\n    instruction: "Translate to {{ tgt_lang }}:"\n    intput: "{{ source }}"\n    output: "{{ target }}"\n',
            "pool.yaml:4, template 't1': unknown key 'intput' (did you mean 'input'?)",
        ),
        (
            '  - id: t1\n    instruction: "Translate to {{ tgt_lang }}:\n    input: x\n',
            "pool.yaml:7: invalid YAML: found unexpected end of stream",
        ),
        (
            '  - id: t1\n    instruction: "To {{ tgt_lang }}: {{ source.__class__.__mro__ }}"\n    output: "{{ target }}"\n',
            "pool.yaml:4, template 't1': trial render failed: access to attribute '__class__' of 'str' object is unsafe.",
        ),
    ],
    ids=[
        "unknown-var",
        "syntax",
        "drops-source",
        "no-target-lang",
        "no-target",
        "duplicate-id",
        "key-typo",
        "yaml",
        "sandbox",
    ],
)
def test_invalid_pools_fail_naming_file_line_and_template(body, message):
    assert error_of(HEADER + body) == message


def test_pool_language_must_be_a_real_language():
    assert error_of("task: translation\nlanguage: klingonish\ntemplates: []\n") == (
        "pool.yaml: 'klingonish' is not a valid language code (use a BCP-47 tag such as zh, en, de, pt-BR)"
    )


def test_unknown_task_lists_known_tasks():
    assert error_of("task: summarise\nlanguage: en\ntemplates: []\n").startswith(
        "pool.yaml: unknown task 'summarise' (known: "
    )


def test_duplicate_id_across_pools_names_both_files():
    a = parse_pool(HEADER + GOOD, path="a.yaml")
    b = parse_pool(HEADER.replace("language: en", "language: de") + GOOD, path="b.yaml")
    with pytest.raises(
        TemplateError, match=r"b\.yaml, template 't1': duplicate template id, also defined in a\.yaml"
    ):
        PoolSet("translation", [a, b])


def test_missing_pool_language_is_a_clear_config_error():
    pools = PoolSet("translation", load_builtin_pools("translation"))
    with pytest.raises(
        ConfigError, match=r"no 'translation' template pool written in 'fr' \(pools exist for: en, zh\)"
    ):
        pools.resolve_language("fr")
    assert pools.resolve_language("zh-CN") == "zh"


def test_language_names_are_rendered_in_the_pool_language():
    assert language_name("zh", "zh") == "中文"
    assert language_name("en", "zh") == "英语"
    assert language_name("de", "zh") == "德语"
    assert language_name("zh", "en") == "Chinese"
    assert language_name("de", "de") == "Deutsch"
    assert language_name("ja", "fr") == "japonais"
    assert normalize_code("cmn") == "zh"
    assert normalize_code("pt_BR") == "pt-BR"


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@functools.cache
def _shipped_with_jinja() -> list:
    """Every shipped template with its task's variables and Jinja's own compiled template per field,
    built once: compiling them anew for each example cost ~30 s of CI per run."""
    from instructgen.templates.tasks import get_task

    env = template_env()
    out = []
    for pool in load_builtin_pools():
        names = sorted(get_task(pool.task).variables)
        for t in pool.templates:
            fields = {}
            for field in ("instruction", "input", "output"):
                text = getattr(t.spec, field)
                fields[field] = env.from_string(text) if text else None
            out.append((names, t, fields))
    return out


@settings(max_examples=60, deadline=None)
@given(source=_text, target=_text, src=_text, tgt=_text)
def test_fast_renderer_equals_jinja_for_every_shipped_template(source, target, src, tgt):
    texts = [source, target, src, tgt]
    shipped = _shipped_with_jinja()
    assert len(shipped) > 100  # every pool's templates, not an empty list
    for names, t, jinja in shipped:
        # every variable of the pool's task gets one of the generated texts
        values = {name: texts[i % 4] for i, name in enumerate(names)}
        got = t.render(values)
        for field, compiled in jinja.items():
            expected = compiled.render(values) if compiled is not None else ""
            assert got[field] == expected, (t.id, field)


def test_templates_with_filters_and_conditionals_render_through_jinja():
    pool = parse_pool(
        HEADER
        + '  - id: cond\n    instruction: "{% if src_lang %}From {{ src_lang }} {% endif %}to {{ tgt_lang | upper }}:"\n'
        '    input: "{{ source }}"\n    output: "{{ target }}"\n',
        path="p.yaml",
    )
    out = pool.templates[0].render(
        {
            "source": "s",
            "target": "t",
            "src_lang": "German",
            "tgt_lang": "English",
            "src_code": "de",
            "tgt_code": "en",
        }
    )
    assert out["instruction"] == "From German to ENGLISH:"


def test_shipped_pools_name_languages_without_leftover_braces():
    for pool in load_builtin_pools():
        for t in pool.templates:
            assert not re.search(r"\{\{(?!\s*\w+\s*\}\})", t.spec.instruction), t.id
