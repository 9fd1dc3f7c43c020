"""identity: the issue's acceptance run, persona errors, capacity, determinism, scan and mix."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from helpers import read_jsonl

import instructgen
from instructgen.errors import ConfigError
from instructgen.identity.generate import IdentityGenerator, IdentityOptions
from instructgen.identity.scan import IDENTITY_CATEGORIES, scan_record
from instructgen.quality.langid import LanguageCheck, make_backend
from instructgen.schema import Persona, Record

PERSONA = {
    "name": "雁栖-7B",
    "developer": "助教",
    "capabilities": ["all_language_tasks"],
    "strengths": ["翻译"],
}
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\[(?:name|developer|other)\]|\{(?:name|developer|NAME|AUTHOR)\}")


@pytest.fixture(scope="module")
def acceptance_run():
    return instructgen.identity(PERSONA, n=300, languages=["zh", "en", "ja"], seed=0)


def test_acceptance_counts_names_and_placeholders(acceptance_run):
    records = acceptance_run.records
    assert Counter(r.meta["lang"] for r in records) == {"zh": 100, "en": 100, "ja": 100}
    assert all("雁栖-7B" in r.output for r in records)
    assert not [r for r in records if PLACEHOLDER.search(r.instruction + r.output)]
    # Fresh questions first: within each category, as many distinct instructions as its share and its
    # questions (times the other assistants, for denials) allow.
    gen = IdentityGenerator(Persona.model_validate(PERSONA), IdentityOptions(languages=("zh", "en", "ja")))
    for lang in ("zh", "en", "ja"):
        pool = gen.pools[lang]
        cands = gen.candidates(pool, gen.values(pool))
        rows = [r for r in records if r.meta["lang"] == lang]
        for cat, k in Counter(r.meta["category"] for r in rows).items():
            distinct = {r.instruction for r in rows if r.meta["category"] == cat}
            available = {(c.question.id, c.other) for c in cands[cat]}
            assert len(distinct) == min(k, len(available)), (lang, cat, k, len(distinct))
    assert len({(r.instruction, r.output) for r in records}) == 300
    for lang in ("zh", "en", "ja"):
        cats = Counter(r.meta["category"] for r in records if r.meta["lang"] == lang)
        assert cats["denial"] > 0 and cats["adversarial"] > 0 and cats["short"] > 0, (lang, cats)
        assert len(cats) == 9, (lang, cats)


def test_acceptance_question_and_answer_languages_agree(acceptance_run):
    check = LanguageCheck(make_backend("fasttext"))
    gen = IdentityGenerator(Persona.model_validate(PERSONA), IdentityOptions(languages=("zh", "en", "ja")))
    bad = [
        r
        for r in acceptance_run.records
        for text in (r.instruction, r.output)
        if check.check(gen._mask(text), r.meta["lang"])
    ]
    assert bad == []


def test_every_shipped_language_covers_every_category():
    result = instructgen.identity(PERSONA, n=7 * 30, languages=["zh", "en", "ja", "ko", "de", "fr", "es"])
    assert Counter(r.meta["lang"] for r in result.records) == dict.fromkeys(
        ["zh", "en", "ja", "ko", "de", "fr", "es"], 30
    )
    for lang in ("ko", "de", "fr", "es"):
        cats = {r.meta["category"] for r in result.records if r.meta["lang"] == lang}
        assert {"denial", "short", "adversarial", "name", "developer"} <= cats, lang
    assert all("雁栖-7B" in r.output for r in result.records)


def test_per_language_names_and_localized_capabilities():
    persona = {
        "name": {"zh": "雁栖", "en": "Yanqi"},
        "developer": {"zh": "助教", "en": "the TA team"},
        "capabilities": ["翻译", "coding"],
        "strengths": ["translation"],
    }
    result = instructgen.identity(persona, n=80, languages=["zh", "en"])
    for r in result.records:
        assert ("雁栖" if r.meta["lang"] == "zh" else "Yanqi") in r.output
    en_caps = [
        r.output for r in result.records if r.meta["lang"] == "en" and r.meta["category"] == "capabilities"
    ]
    assert en_caps and all("翻译" not in t for t in en_caps)
    assert any("translation and programming" in t for t in en_caps)


def test_denials_never_claim_the_other_identity(acceptance_run):
    # The persona's own "I'm an AI" is not contamination once it names itself (scan --allow NAME).
    hits = [(r.output, scan_record(r, ("雁栖-7B",), IDENTITY_CATEGORIES)) for r in acceptance_run.records]
    assert [h for h in hits if h[1]] == []
    denials = [r for r in acceptance_run.records if r.meta["category"] == "denial"]
    assert all(r.meta["other"] in r.instruction for r in denials)


def test_missing_persona_field_names_field_and_template(tmp_path):
    pool = tmp_path / "en.yaml"
    pool.write_text(
        "task: identity\nlanguage: en\nquestions:\n  name: ['Who are you?']\n"
        "answers:\n  name: ['I am {{ name }}; write to {{ contact }}.']\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        instructgen.identity(PERSONA, n=5, languages=["en"], seed_files=[str(pool)])
    assert str(info.value) == (
        f"template identity-en-name-a01 ({pool}) needs persona field 'contact', which the persona does not set"
    )
    result = instructgen.identity(
        {**PERSONA, "contact": "ta@example.org"}, n=1, languages=["en"], seed_files=[str(pool)]
    )
    assert result.records[0].output == "I am 雁栖-7B; write to ta@example.org."


def test_n_beyond_capacity_writes_what_exists_and_says_so(tmp_path):
    pool = tmp_path / "en.yaml"
    pool.write_text(
        "task: identity\nlanguage: en\nquestions:\n  name: ['Who are you?', 'Your name?']\n"
        "answers:\n  name: ['I am {{ name }}.', '{{ name }} here.']\n",
        encoding="utf-8",
    )
    result = instructgen.identity(PERSONA, n=50, languages=["en"], seed_files=[str(pool)])
    assert len(result.records) == 4
    assert len({(r.instruction, r.output) for r in result.records}) == 4
    assert (
        "en: asked for 50 records; the pools hold enough distinct question/answer pairs for 4 in the target mix; "
        "wrote those rather than repeat rows or drift from the mix (add seeds with --seeds FILE)"
    ) in result.report.notes


def test_cli_is_deterministic_and_writes_query_response(tmp_path, run_cli):
    args = [
        "identity",
        "--name",
        "雁栖-7B",
        "--developer",
        "助教",
        "--capability",
        "all_language_tasks",
        "--strength",
        "翻译",
        "--languages",
        "zh,en,ja",
        "-n",
        "90",
        "--format",
        "query-response",
        "--system-ratio",
        "0.3",
        "--multi-turn-ratio",
        "0.3",
    ]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    res = run_cli(*args, "-o", a)
    assert res.exit_code == 0, res.stderr
    run_cli(*args, "-o", b)
    assert a.read_bytes() == b.read_bytes()
    rows = read_jsonl(a)
    assert len(rows) == 90 and {r["tag"] for r in rows} == {"zh", "en", "ja"}
    assert any("system" in r for r in rows) and any("history" in r for r in rows)
    assert "instruction languages: en 30, ja 30, zh 30" in res.stderr
    assert "identity-only set: mix it with general instruction data" in res.stderr
    assert run_cli(*args, "--seed", "1", "-o", b).exit_code == 0
    assert a.read_bytes() != b.read_bytes()


def test_multi_turn_records_start_with_a_greeting():
    result = instructgen.identity(PERSONA, n=60, languages=["en"], multi_turn_ratio=1.0)
    multi = [r for r in result.records if r.history]
    assert multi and all(r.meta["category"] != "greeting" for r in multi)
    greetings = {
        "Hello! I'm 雁栖-7B. How can I help you today?",
        "Hey! I'm 雁栖-7B, nice to meet you.",
        "Hi there! I am 雁栖-7B, an AI assistant developed by 助教. What can I do for you?",
        "Good to see you! I'm 雁栖-7B. What's on your mind?",
        "Hello! 雁栖-7B here, ready to help.",
    }
    assert all(r.history[0].assistant in greetings for r in multi)


def test_cli_needs_name_and_developer(run_cli):
    res = run_cli("identity", "--name", "X")
    assert res.exit_code == 2 and "give --developer, or a --persona file that sets them" in res.stderr


def test_persona_file_errors_name_file_and_field(tmp_path, run_cli):
    p = tmp_path / "persona.yaml"
    p.write_text("name: 雁栖-7B\nlanguages: [zh, en]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"persona\.yaml: field 'developer': Field required"):
        instructgen.load_persona(str(p))
    p.write_text(
        "name: 雁栖-7B\ndeveloper: 助教\nlanguages: [zh, en]\ncapabilities: [translation]\n", encoding="utf-8"
    )
    out = tmp_path / "o.jsonl"
    res = run_cli("identity", "--persona", p, "-n", "20", "--meta", "-o", out)
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(out)
    assert Counter(r["meta"]["lang"] for r in rows) == {"zh": 10, "en": 10}  # the persona's languages
    assert any("translation" in r["output"] for r in rows if r["meta"]["category"] == "capabilities")


def test_unknown_language_lists_available_pools():
    with pytest.raises(
        ConfigError, match=r"no identity seed pool for 'it' \(available: de, en, es, fr, ja, ko, zh\)"
    ):
        instructgen.identity(PERSONA, n=10, languages=["it"])


def test_mix_ratio_without_repeats(tmp_path, run_cli):
    special = [Record(instruction=f"s{i}", output="x") for i in range(10)]
    general = [Record(instruction=f"g{i}", output="y") for i in range(100)]
    rows, note = instructgen.mix(special, general, 0.2, seed=3)
    assert len(rows) == 50 and len({r.instruction for r in rows}) == 50
    assert sum(r.instruction.startswith("s") for r in rows) == 10
    assert note == "mixed 10 of 10 special rows with 40 of 100 general rows (20.0% special)"
    rows2, _ = instructgen.mix(special, general, 0.05, seed=3)
    assert sum(r.instruction.startswith("s") for r in rows2) == 5 and len(rows2) == 105
    assert instructgen.mix(special, general, 0.2, seed=3)[0] == rows
    with pytest.raises(ConfigError, match="--ratio must be between 0 and 1"):
        instructgen.mix(special, general, 1.5)


def test_mix_cli(tmp_path, run_cli):
    ident = tmp_path / "id.jsonl"
    run_cli("identity", "--name", "雁栖-7B", "--developer", "助教", "-n", "20", "-o", ident)
    general = tmp_path / "g.jsonl"
    general.write_text(
        "".join(f'{{"instruction": "task {i}", "input": "", "output": "done {i}"}}\n' for i in range(90)),
        encoding="utf-8",
    )
    out = tmp_path / "m.jsonl"
    res = run_cli("mix", ident, general, "--ratio", "0.1", "-o", out)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "mix: mixed 10 of 20 special rows with 90 of 90 general rows (10.0% special)\n"
    assert len(read_jsonl(out)) == 100
