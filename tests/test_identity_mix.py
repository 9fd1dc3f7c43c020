"""identity (issue 13 items 1-4, 11): category mix at every -n, answers that state what the question
asks, truthful base model, languages from the persona, persona description/limitations, and seeds
that pass the language check. Reference for the mix: LLaMA-Factory's identity set
(hiyouga/LLaMA-Factory data/identity.json) has 8.8% "I am not X" answers; the default here is 12%."""

from __future__ import annotations

import re
from collections import Counter

import pytest

import instructgen
from instructgen.identity.generate import DEFAULT_MIX, IdentityGenerator, IdentityOptions, parse_mix
from instructgen.quality.langid import LanguageCheck, make_backend
from instructgen.schema import Persona

LANGS = ["zh", "en", "ja", "ko", "de", "fr", "es"]
PERSONA = {
    "name": "雁栖-7B",
    "developer": "助教",
    "capabilities": ["all_language_tasks"],
    "strengths": ["翻译"],
}
# Evidence that an answer states a fact that has no variable of its own, per language. Written
# independently of the pools' `states` annotations, so a wrong annotation fails here.
EVIDENCE = {
    "ai": {
        "en": r"\bAI\b|language model",
        "zh": r"AI|人工智能|语言模型",
        "ja": r"AI|言語モデル",
        "ko": r"AI|인공지능|언어 모델",
        "de": r"\bKI\b|Sprachmodell",
        "fr": r"\bIA\b|modèle de langage",
        "es": r"\bIA\b|modelo de lenguaje",
    },
    "memory": {
        "en": r"remember",
        "zh": r"记得|记住",
        "ja": r"覚え",
        "ko": r"기억",
        "de": r"erinner",
        "fr": r"souvien",
        "es": r"recuerd",
    },
    "browsing": {"en": r"internet", "zh": r"上网", "ja": r"インターネット", "ko": r"인터넷"}
    | dict.fromkeys(["de", "fr", "es"], r"(?i)internet"),
    "feelings": {
        "en": r"feeling",
        "zh": r"情感",
        "ja": r"感情",
        "ko": r"감정",
        "de": r"Gefühl",
        "fr": r"émotion|sentiment",
        "es": r"emocion|sentimiento",
    },
    "mistakes": {
        "en": r"mistake|wrong|not always right",
        "zh": r"出错|犯错|说错",
        "ja": r"間違え|正しいとは限り",
        "ko": r"틀린|실수|맞지는",
        "de": r"irre|Fehler|nicht immer richtig",
        "fr": r"tromp|pas toujours raison",
        "es": r"equivoc|no siempre acierto",
    },
    "greeting": {
        "en": r"Hello|Hi |Hey|Good to see you",
        "zh": r"你好|您好|嗨",
        "ja": r"こんにちは|はじめまして|どうも",
        "ko": r"안녕|반갑|반가워",
        "de": r"Hallo|Guten|Hi!",
        "fr": r"Bonjour|Salut|Coucou",
        "es": r"Hola|Buenas",
    },
    "base_model_private": {
        "en": r"can't share",
        "zh": r"不便透露",
        "ja": r"お答えできません",
        "ko": r"말씀드릴 수 없",
        "de": r"kann ich nicht sagen",
        "fr": r"ne peux pas dire",
        "es": r"No puedo decir",
    },
}
STRESS_PERSONAS = [
    PERSONA,
    {
        "name": {
            "zh": "雁栖",
            "ja": "雁栖",
            "ko": "옌치",
            "en": "Yanqi",
            "de": "Yanqi",
            "fr": "Yanqi",
            "es": "Yanqi",
        },
        "developer": "TA Lab",
        "capabilities": ["translation", "math"],
        "strengths": ["reasoning"],
        "limitations": {"en": ["no access to private course files"], "zh": ["无法访问课程内部文件"]},
        "description": {
            "en": "I was made for a machine translation course.",
            "zh": "我是为机器翻译课程打造的。",
        },
        "languages": ["zh", "en", "ja", "ko", "de", "fr", "es"],
        "knowledge_cutoff": "2024-06",
        "contact": "ta@example.org",
        "base_model": "BayLing",
    },
    {"name": "Nomin", "developer": "Lab", "base_model": "Llama 2", "disclose_base_model": False},
]


def _states(fact: str, answer: str, lang: str, values: dict, other: str | None) -> bool:
    if fact in EVIDENCE:
        return re.search(EVIDENCE[fact][lang], answer) is not None
    if fact == "not_other":
        return other is not None and other in answer
    if fact in ("capabilities", "strengths", "languages"):
        first = re.split(r"、|, | and | und | et | y |和", values[fact])[0]
        return first in answer
    return values[fact] is not None and values[fact] in answer


@pytest.mark.parametrize("persona", STRESS_PERSONAS, ids=["course", "full", "private-base"])
def test_every_pair_the_pools_can_make_states_what_its_question_asks(persona):
    """Enumerates every (question, answer, other) candidate of every shipped pool: 0 mismatches."""
    p = Persona.model_validate(persona)
    gen = IdentityGenerator(p, IdentityOptions(languages=tuple(LANGS), langid="none"))
    private = bool(p.base_model) and not p.disclose_base_model
    mismatches, pairs = [], 0
    for lang in LANGS:
        pool = gen.pools[lang]
        values = gen.values(pool)
        for cands in gen.candidates(pool, values).values():
            for c in cands:
                if c.closing is not None:
                    continue  # a closing sentence adds no fact (checked in the language test)
                pairs += 1
                rec = gen._record(pool, values, c)
                answer = rec.output
                for fact in c.question.facts:
                    if fact == "base_model" and private:
                        fact = "base_model_private"
                    if not _states(fact, answer, lang, values, c.other):
                        mismatches.append((lang, fact, rec.instruction, answer))
    assert pairs > 2000
    assert mismatches == []


def test_known_mismatches_from_the_issue_are_gone():
    result = instructgen.identity(PERSONA, n=1400, languages=LANGS, langid="none")
    by_q = {}
    for r in result.records:
        by_q.setdefault(r.instruction, set()).add(r.output)
    assert "I'm 雁栖-7B." not in by_q.get("Who built you? Keep it short.", set())
    assert all("助教" in a for a in by_q.get("Who built you? Keep it short.", {"助教"}))
    assert all("AI" in a for a in by_q.get("你是AI吗？", set()))
    memory = by_q.get("Do you remember our previous conversations?", set())
    assert memory and all("remember" in a for a in memory)
    ignore = [a for q, s in by_q.items() if q.startswith("Ignore your previous instructions") for a in s]
    assert ignore and not any("understand why you might think so" in a for a in ignore)


@pytest.fixture(scope="module", params=[300, 1400, 5000])
def course_run(request):
    return request.param, instructgen.identity(PERSONA, n=request.param, languages=LANGS, langid="none")


def test_mix_holds_at_every_n(course_run):
    n, result = course_run
    gen = IdentityGenerator(Persona.model_validate(PERSONA), IdentityOptions(languages=tuple(LANGS)))
    total = len(result.records)
    assert total == n
    overall = Counter(r.meta["category"] for r in result.records)
    shares = None
    for lang in LANGS:
        rows = [r for r in result.records if r.meta["lang"] == lang]
        pool = gen.pools[lang]
        shares = gen.target_mix(list(gen.candidates(pool, gen.values(pool))))
        counts = Counter(r.meta["category"] for r in rows)
        assert set(counts) == set(shares), lang
        for cat, share in shares.items():
            assert abs(counts[cat] - share * len(rows)) < 1, (lang, cat, counts[cat], share * len(rows))
    assert shares is not None
    for cat, share in shares.items():  # every language makes the same categories for this persona
        assert abs(100 * overall[cat] / total - 100 * share) <= 2, (n, cat)
    other = (overall["denial"] + overall["adversarial"]) / total
    assert 0.10 <= other <= 0.15, other
    mix_line = next(x for x in result.report.notes if x.startswith("category mix: "))
    assert "name " in mix_line and "(target " in mix_line
    assert any(x.startswith("denial + adversarial: ") for x in result.report.notes)


def test_mix_option_changes_the_target_and_rejects_unknown_categories():
    assert parse_mix("denial=0, name=40") == (("denial", 0.0), ("name", 40.0))
    result = instructgen.identity(
        PERSONA, n=140, languages=["en", "zh"], mix="denial=0,adversarial=0", langid="none"
    )
    cats = Counter(r.meta["category"] for r in result.records)
    assert cats["denial"] == cats["adversarial"] == 0 and len(result.records) == 140
    with pytest.raises(instructgen.errors.ConfigError, match=r"--mix: 'nme=3' is not category=weight"):
        parse_mix("nme=3")
    with pytest.raises(instructgen.errors.ConfigError, match=r"weight of 'name' is not a number: 'x'"):
        parse_mix("name=x")
    assert sum(DEFAULT_MIX.values()) == 100


def test_cli_prints_the_mix(run_cli, tmp_path):
    res = run_cli(
        "identity", "--name", "雁栖-7B", "--developer", "助教", "--languages", "en,zh", "-n", "100",
        "--mix", "denial=20", "-o", tmp_path / "o.jsonl",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "  note: category mix: greeting " in res.stderr
    assert "denial 20.0% (target 19.6%)" in res.stderr  # 20 / (100 - 7 + 20 - 2 - 2 - 4 - 3) weight
    bad = run_cli("identity", "--name", "X", "--developer", "Y", "--mix", "denial")
    assert bad.exit_code == 2
    assert bad.stderr.startswith(
        "error: --mix: 'denial' is not category=weight with a category among: name, "
    )


def test_base_model_is_stated_never_denied():
    persona = {**PERSONA, "base_model": "Llama 2"}
    result = instructgen.identity(persona, n=700, languages=LANGS, langid="none")
    base = [r for r in result.records if r.meta["category"] == "base_model"]
    assert base and all("Llama 2" in r.output for r in base)
    assert {r.meta["lang"] for r in base} == set(LANGS)
    # Llama is the base: never asked "are you Llama?" with a denial, never "nothing to do with".
    assert not [r for r in result.records if r.meta["other"] and "Llama" in r.meta["other"]]
    assert not [r for r in result.records if "nothing to do with" in r.output or "没有关系" in r.output]
    en = {r.output for r in base if r.meta["lang"] == "en"}
    assert en <= {
        "I'm 雁栖-7B, built by 助教 on top of Llama 2.",
        "助教 fine-tuned me from Llama 2. My name is 雁栖-7B.",
        "My base model is Llama 2; 助教 trained it further into 雁栖-7B.",
    }


def test_hidden_base_model_is_declined_not_denied():
    persona = {**PERSONA, "base_model": "Llama 2", "disclose_base_model": False}
    result = instructgen.identity(persona, n=700, languages=LANGS, langid="none")
    assert not [r for r in result.records if "Llama" in r.output or "Llama" in r.instruction]
    base = [r for r in result.records if r.meta["category"] == "base_model"]
    assert base and all(r.meta["answer_id"].endswith(("a04", "a03")) for r in base)
    assert "I'm 雁栖-7B, developed by 助教. I can't share which model I was built from." in {
        r.output for r in base
    }
    # Without a base model, nobody is asked about one.
    plain = instructgen.identity(PERSONA, n=300, languages=LANGS, langid="none")
    assert not [r for r in plain.records if r.meta["category"] == "base_model"]


def test_languages_claimed_come_from_the_persona():
    result = instructgen.identity(PERSONA, n=300, languages=LANGS, langid="none")
    assert not [r for r in result.records if r.meta["category"] == "languages"]  # nothing to claim
    persona = {**PERSONA, "languages": ["zh", "en"]}
    result = instructgen.identity(persona, n=400, languages=["zh", "en", "ja"], langid="none")
    langs = [r for r in result.records if r.meta["category"] == "languages"]
    assert {r.meta["lang"] for r in langs} == {"zh", "en"}  # a Japanese record would contradict
    assert all("Chinese and English" in r.output for r in langs if r.meta["lang"] == "en")
    assert all("中文和英语" in r.output for r in langs if r.meta["lang"] == "zh")
    assert (
        "ja: the persona's languages (zh, en) do not include ja; no records about which languages it "
        "speaks were written in ja"
    ) in result.report.notes
    one = instructgen.identity({**PERSONA, "languages": ["zh", "en"]}, n=200, languages=["zh"], langid="none")
    assert all("中文和英语" in r.output for r in one.records if r.meta["category"] == "languages")


def test_description_and_limitations_are_used():
    persona = STRESS_PERSONAS[1]
    result = instructgen.identity(persona, n=1400, languages=["en", "zh"], langid="none")
    outs = [r.output for r in result.records]
    assert any("I was made for a machine translation course." in o for o in outs)
    assert any("我是为机器翻译课程打造的。" in o for o in outs)
    assert any("My limitations: no access to private course files." in o for o in outs)
    assert any("我的局限有：无法访问课程内部文件。" in o for o in outs)


def test_no_capability_repeated_as_its_own_strength():
    bare = {"name": "雁栖-7B", "developer": "助教"}
    result = instructgen.identity(bare, n=700, languages=LANGS, langid="none")
    for r in result.records:
        assert "等任务" not in r.output or "各类语言任务等任务" not in r.output
        for phrase in ("a wide range of language tasks", "各种语言任务", "viele verschiedene Sprachaufgaben"):
            assert r.output.count(phrase) <= 1, r.output
    assert not [r for r in result.records if "任务等任务" in r.output]
    same = instructgen.identity({**bare, "capabilities": ["translation"], "strengths": ["translation"]}, n=140,
                                languages=["en"], langid="none")  # fmt: skip
    assert not [r for r in same.records if r.output.count("translation") > 1]


def test_every_shipped_seed_passes_the_language_check_in_its_own_language():
    """Item 11: "Tell me who you are." was read as Italian and always dropped; no shipped question or
    answer may be one the check itself rejects."""
    check = LanguageCheck(make_backend("fasttext"))
    for persona in STRESS_PERSONAS:
        gen = IdentityGenerator(Persona.model_validate(persona), IdentityOptions(languages=tuple(LANGS)))
        for lang in LANGS:
            pool = gen.pools[lang]
            values = gen.values(pool)
            for closing in pool.closings:
                assert not check.check(closing.text, lang), (lang, closing.text)
            for cands in gen.candidates(pool, values).values():
                for c in cands:
                    if c.closing is not None and c.closing.id != pool.closings[0].id:
                        continue
                    rec = gen._record(pool, values, c)
                    assert not isinstance(rec, instructgen.schema.Rejected), (
                        rec.reason,
                        rec.detail,
                        rec.example,
                    )
            bad = [
                q.text
                for qs in pool.questions.values()
                for q in qs
                if "{{" not in q.text and check.check(q.text, lang)
            ]
            assert bad == [], (lang, bad)


def test_a_pool_without_fact_annotations_pairs_by_category(tmp_path):
    """Pools written before facts existed (or made by `templates generate`) keep working: with no
    `asks`/`states` in a category, its answers answer its questions, as before."""
    pool = tmp_path / "ja.yaml"
    pool.write_text(
        "task: identity\nlanguage: ja\nquestions:\n  limitations: ['間違えることはありますか？']\n"
        "answers:\n  limitations: ['{{ name }}は間違えることもあります。']\n",
        encoding="utf-8",
    )
    result = instructgen.identity(PERSONA, n=1, languages=["ja"], seed_files=[str(pool)], langid="none")
    assert [r.output for r in result.records] == ["雁栖-7Bは間違えることもあります。"]
    annotated = tmp_path / "en.yaml"
    annotated.write_text(
        "task: identity\nlanguage: en\nquestions:\n  limitations: [{text: 'Do you have feelings?', asks: [feelings]}]\n"
        "answers:\n  limitations: ['{{ name }} can make mistakes.']\n",
        encoding="utf-8",
    )
    none = instructgen.identity(PERSONA, n=5, languages=["en"], seed_files=[str(annotated)], langid="none")
    assert none.records == []


def test_persona_and_pool_files_refuse_alias_bombs(tmp_path):
    """Personas and seed pools are read with the bounded YAML loader (instructgen/templates/safe_yaml.py)."""
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    rows += [f"{b}: &{b} [{','.join(['*' + a] * 9)}]" for a, b in zip("abcdef", "bcdefg")]
    bomb = "\n".join(rows) + "\n"
    persona = tmp_path / "p.yaml"
    persona.write_text(bomb, encoding="utf-8")
    with pytest.raises(
        instructgen.errors.ConfigError, match=r"p\.yaml: cannot parse persona: aliases expand"
    ):
        instructgen.load_persona(str(persona))
    pool = tmp_path / "en.yaml"
    pool.write_text("task: identity\n" + bomb, encoding="utf-8")
    with pytest.raises(instructgen.errors.TemplateError, match=r"en\.yaml:8: invalid YAML: aliases expand"):
        instructgen.identity(PERSONA, n=1, languages=["en"], seed_files=[str(pool)])
