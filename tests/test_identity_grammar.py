"""identity grammar (issue 13 item 5): every shipped question and answer rendered with personas chosen to
stress agreement, per language. Expected forms are written out here, not computed by the helper under
test. References: Korean particle allomorphs by batchim (National Institute of Korean Language,
표준국어대사전 '을/를', '이/가', '(으)로' entries: ㄹ-final takes 로); Spanish contractions al/del (RAE,
Diccionario panhispánico de dudas, "al", "del"); French elision of que/de before a vowel (Académie
française, "Élision")."""

from __future__ import annotations

import re

import pytest

from instructgen.identity.generate import IdentityGenerator, IdentityOptions
from instructgen.identity.grammar import final_sound, fix_es, fix_fr, particle, resolve_ko
from instructgen.schema import Persona


def rendered(persona: dict, lang: str) -> list[tuple[str, str, str | None]]:
    """(question, answer, other) for every candidate pair of the shipped pool, plus system prompts."""
    gen = IdentityGenerator(
        Persona.model_validate(persona), IdentityOptions(languages=(lang,), langid="none")
    )
    pool = gen.pools[lang]
    values = gen.values(pool)
    out = []
    for cands in gen.candidates(pool, values).values():
        for c in cands:
            rec = gen._record(pool, values, c)
            out.append((rec.instruction, rec.output, c.other))
    return out


def texts(persona: dict, lang: str) -> list[str]:
    return sorted({t for q, a, _ in rendered(persona, lang) for t in (q, a)})


# --- Korean ---------------------------------------------------------------------------------------

KO_FORMS = {  # name -> the particle forms it takes (consonant-final, ㄹ-final, vowel-final)
    "바람": {"은", "이", "을", "과", "이랑", "으로", "이라는", "이고", "이라고", "이라면", "이잖아"},
    "한결": {"은", "이", "을", "과", "이랑", "로", "이라는", "이고", "이라고", "이라면", "이잖아"},
    "옌치": {"는", "가", "를", "와", "랑", "로", "라는", "고", "라고", "라면", "잖아"},
    "Yanqi": {"는", "가", "를", "와", "랑", "로", "라는", "고", "라고", "라면", "잖아"},
    "Nomin": {"은", "이", "을", "과", "이랑", "으로", "이라는", "이고", "이라고", "이라면", "이잖아"},
    "Mistral": {"은", "이", "을", "과", "이랑", "로", "이라는", "이고", "이라고", "이라면", "이잖아"},
    "雁栖-7B": {"는", "가", "를", "와", "랑", "로", "라는", "고", "라고", "라면", "잖아"},
    "GPT-4": {"는", "가", "를", "와", "랑", "로", "라는", "고", "라고", "라면", "잖아"},
    "Qwen": {"은", "이", "을", "과", "이랑", "으로", "이라는", "이고", "이라고", "이라면", "이잖아"},
}
KO_PARTICLE = re.compile(
    r"^(이라는|이라고|이라면|이잖아|이랑|으로|이고|라는|라고|라면|잖아|은|는|이|가|을|를|과|와|랑|로|고)"
)


@pytest.mark.parametrize("name", ["바람", "한결", "옌치", "Yanqi", "Nomin", "Mistral", "雁栖-7B"])
def test_korean_particles_follow_the_final_sound(name):
    persona = {
        "name": name,
        "developer": "연구팀",
        "capabilities": ["translation", "math"],
        "strengths": ["reasoning"],
        "languages": ["ko", "en"],
        "base_model": "Llama 2",
        "deny": ["GPT-4", "Qwen", "Mistral"],
    }
    seen = set()
    for text in texts(persona, "ko"):
        assert "[" not in text and "(은)" not in text and "(는)" not in text and "은(는)" not in text, text
        for word in (name, "GPT-4", "Qwen", "Mistral"):
            for m in re.finditer(re.escape(word), text):
                after = KO_PARTICLE.match(text[m.end() :])
                if after and not text[m.end() :].startswith(("입니", "이에요", "이야")):
                    assert after.group(1) in KO_FORMS[word], (word, after.group(1), text)
                    seen.add((word, after.group(1)))
    vowel_final = name in ("옌치", "Yanqi", "雁栖-7B")
    assert {p for w, p in seen if w == name} >= (
        {"는", "고", "라고", "라는"} if vowel_final else {"은", "이고", "이라고", "이라는"}
    )
    assert {p for w, p in seen if w == "Qwen"} >= {"이", "이랑", "이라고"} and ("GPT-4", "가") in seen


def test_korean_helper_readings_and_the_han_fallback():
    assert [final_sound(w) for w in ("바람", "한결", "옌치", "Qwen", "DeepSeek", "GPT", "7", "Mistral")] == [
        "consonant",
        "rieul",
        "vowel",
        "consonant",
        "vowel",  # 딥시크
        "vowel",  # 지피티
        "rieul",  # 칠
        "rieul",
    ]
    assert particle("서울", "으로", "로") == "로" and particle("바람", "으로", "로") == "으로"
    assert final_sound("通义千问") is None
    # No reading for a Han name: an apposition with 모델 (ㄹ-final) instead of "通义千问은(는)".
    assert resolve_ko("雁栖[은/는] 좋아요. 雁栖[으로/로] 해요.") == "雁栖 모델은 좋아요. 雁栖 모델로 해요."
    assert resolve_ko("Claude[이/가] 아닙니다") == "Claude가 아닙니다"


# --- German ---------------------------------------------------------------------------------------

DE_CAPS = {
    "Mathematik": "math",
    "logisches Denken": "reasoning",
    "Alltagsgespräche": "chat",
    "Übersetzen": "translation",
}


@pytest.mark.parametrize(
    ("capabilities", "strengths"),
    [
        (["math"], ["reasoning"]),
        (["chat", "translation"], ["math"]),
        (["all_language_tasks"], ["translation"]),
    ],
)
def test_german_slots_stay_in_the_nominative(capabilities, strengths):
    persona = {
        "name": "Yanqi",
        "developer": "das Forschungsteam der Universität",
        "capabilities": capabilities,
        "strengths": strengths,
        "languages": ["de", "en"],
        "base_model": "Llama 2",
        "knowledge_cutoff": "Juni 2024",
        "contact": "ta@example.org",
    }
    for text in texts(persona, "de"):
        for bad in ("von das", "bei das", "mit das", "dem das", "im Mathematik", "im Übersetzen", "bei alle ",
                    "gut im ", "bei Mathematik", "im logisches"):  # fmt: skip
            assert bad not in text, (bad, text)
        for m in re.finditer("das Forschungsteam|Das Forschungsteam", text):
            before = text[: m.start()].split()[-1:] or [""]
            assert before[0] in ("", "hat", "mich", "ist", "und", "steht"), text
    outs = texts(persona, "de")
    assert "Entwickelt hat mich das Forschungsteam der Universität. Mein Name ist Yanqi." in outs
    assert "Das Forschungsteam der Universität hat mich gebaut und trainiert. Ich bin Yanqi." in outs


# --- Spanish --------------------------------------------------------------------------------------


def test_spanish_contractions_and_agreement():
    persona = {
        "name": "Yanqi",
        "developer": "el equipo de IA",
        "capabilities": ["math", "reasoning", "translation"],
        "strengths": ["math"],
        "languages": ["es", "en"],
        "base_model": "Llama 2",
        "contact": "ta@example.org",
        "deny": ["El Chat", "Claude"],
    }
    outs = texts(persona, "es")
    for text in outs:
        assert not re.search(r"\b[Aa] el\b|\b[Dd]e el\b", text), text
        assert "se me da" not in text and "es las" not in text, text
    assert "Me desarrolló el equipo de IA. Mi nombre es Yanqi." in outs
    assert "Soy Yanqi y destaco especialmente en las matemáticas." in outs
    assert "Mi desarrollador es el equipo de IA. Soy Yanqi." in outs
    assert fix_es("Escribe a el equipo de el laboratorio en El Salvador") == (
        "Escribe al equipo del laboratorio en El Salvador"
    )


# --- French ---------------------------------------------------------------------------------------


def test_french_elision_and_contraction():
    persona = {
        "name": "Yanqi",
        "developer": "le laboratoire TAL",
        "capabilities": ["math", "reasoning", "translation", "analysis"],
        "strengths": ["analysis"],
        "languages": ["fr", "en"],
        "base_model": "Llama 2",
        "deny": ["ERNIE", "ChatGPT", "Orion"],
    }
    outs = texts(persona, "fr")
    for text in outs:
        assert not re.search(r"\bque [AEIOUaeiou]|\bde [AEIOUaeiou]|\bde le\b|\bà le\b", text), text
    assert "Es-tu le même modèle qu'ERNIE ?" in outs
    assert "Non. Je suis Yanqi, un assistant différent d'Orion." in outs
    assert "Es-tu le même modèle que ChatGPT ?" in outs
    assert "J'ai été développé par le laboratoire TAL. Je m'appelle Yanqi." in outs
    assert "Je suis Yanqi, et je suis particulièrement doué pour l'analyse de données." in outs
    assert fix_fr("le même modèle que ERNIE, créé par l'équipe de le labo de Yanqi") == (
        "le même modèle qu'ERNIE, créé par l'équipe du labo de Yanqi"
    )


# --- Japanese, Chinese, English ---------------------------------------------------------------------


def test_japanese_writes_other_assistants_in_japanese_form():
    persona = {"name": "雁栖-7B", "developer": "助教"}
    pairs = rendered(persona, "ja")
    others = {o for _, _, o in pairs if o}
    assert "通義千問" in others and "通义千问" not in others and "Qwen" not in others
    assert not [t for q, a, _ in pairs for t in (q, a) if "通义千问" in t]
    assert "あなたは通義千問ですか？" in {q for q, _, _ in pairs}


def test_chinese_capability_phrases_do_not_repeat_task():
    for persona in ({"name": "雁栖-7B", "developer": "助教"}, {"name": "雁栖-7B", "developer": "助教", "capabilities": ["all_language_tasks"]}):  # fmt: skip
        for text in texts(persona, "zh"):
            assert "任务等任务" not in text and "任务方面的问题等" not in text, text
    outs = texts({"name": "雁栖-7B", "developer": "助教", "capabilities": ["translation", "coding"]}, "zh")
    assert "我是雁栖-7B，可以在翻译和编程方面为你提供帮助。" not in outs  # needs strengths: not rendered
    assert "我是雁栖-7B，翻译和编程方面的问题都可以交给我。" in outs


def test_english_sentence_that_opens_with_the_developer_is_capitalized():
    outs = texts({"name": "Yanqi", "developer": "the TA team", "capabilities": ["translation"]}, "en")
    assert "The TA team created and trained me. I'm Yanqi." in outs
    assert "I was developed by the TA team. My name is Yanqi." in outs
    assert not [t for t in outs if re.search(r"(^|[.!?] )the TA team", t)]
