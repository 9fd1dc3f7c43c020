"""Make a slot agree with the words around it, after rendering.

A pool writes fixed text correctly; what breaks agreement is the value put into a slot (a
name, a developer, another assistant). Three languages need a rule at the slot boundary:

- Korean particles depend on the final sound of the word before them (을/를, 이/가, 은/는,
  과/와, 이랑/랑, 으로/로, 이에요/예요, 이라는/라는, 이라고/라고, 이고/고, ...). Pools write the pair as a marker,
  `{{ name }}[은/는]` (consonant form first); `resolve_ko` picks the form by the batchim of a
  final Hangul syllable, by how a final Latin word or letter or digit is read, and where the
  sound cannot be known (a Han or kana name) restructures to `NAME 모델은` so no guess is written.
- Spanish contracts a + el -> al and de + el -> del ("de el equipo" is never written).
- French elides que/de/je/ne/le/la/me/te/se before a vowel ("que ERNIE" -> "qu'ERNIE") and
  contracts de le -> du, de les -> des, à le -> au, à les -> aux.

German needs case and article; pools avoid it by giving slots the nominative only
(subject, predicate, or after a colon), so no rule is needed there. In Latin-script languages a
slot that opens a sentence gets a capital ("the TA team" -> "The TA team built me").
"""

from __future__ import annotations

import re

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
RIEUL = 8  # jongseong index of ㄹ
# How a digit is read in Sino-Korean: its final sound.
DIGIT_SOUND = {
    "0": "consonant",  # 영
    "1": "rieul",  # 일
    "2": "vowel",  # 이
    "3": "consonant",  # 삼
    "4": "vowel",  # 사
    "5": "vowel",  # 오
    "6": "consonant",  # 육
    "7": "rieul",  # 칠
    "8": "rieul",  # 팔
    "9": "vowel",  # 구
}
# A Latin letter read by its name (acronyms, "7B"): 엘, 엠, 엔 end in a consonant, 알 in ㄹ.
LETTER_SOUND = {"l": "rieul", "m": "consonant", "n": "consonant", "r": "rieul"}
# Particles: consonant form / vowel form. 으로 treats a final ㄹ like a vowel.
PARTICLES = {
    ("을", "를"),
    ("이", "가"),
    ("은", "는"),
    ("과", "와"),
    ("이랑", "랑"),
    ("으로", "로"),
    ("이에요", "예요"),
    ("이라는", "라는"),
    ("이고", "고"),
    ("이라고", "라고"),
    ("이라면", "라면"),
    ("이잖아", "잖아"),
    ("아", "야"),
}
MARKER = re.compile(
    r"\[(" + "|".join(sorted({c for c, _ in PARTICLES}, key=len, reverse=True)) + r")/([^\]/]+)\]"
)
LATIN_WORD = re.compile(r"([A-Za-z]+)([^A-Za-z]*)$")


def final_sound(word: str) -> str | None:
    """'vowel', 'consonant' or 'rieul' (final ㄹ) for the last sound of `word` read in Korean; None
    when it cannot be known (Han characters, kana, nothing readable)."""
    text = word.rstrip(" .,!?)）」』\"'")
    if not text:
        return None
    last = text[-1]
    code = ord(last)
    if HANGUL_FIRST <= code <= HANGUL_LAST:
        jong = (code - HANGUL_FIRST) % 28
        return "vowel" if jong == 0 else ("rieul" if jong == RIEUL else "consonant")
    if last in DIGIT_SOUND:
        return DIGIT_SOUND[last]
    m = LATIN_WORD.search(text)
    if m and not m.group(2):
        return _latin_sound(m.group(1))
    return None


def _latin_sound(word: str) -> str:
    """A Latin word's final sound as Korean writes it: letters by name in acronyms and single
    letters (GPT -> 티, 7B -> 비); in words, final n/m/ng are a batchim, final l is ㄹ, and a final
    consonant like k/t/p/s/d gets 으 (DeepSeek -> 딥시크), so it reads as a vowel."""
    if len(word) == 1 or (word.isupper() and len(word) <= 5):
        return LETTER_SOUND.get(word[-1].lower(), "vowel")
    low = word.lower()
    if low.endswith(("n", "m", "ng")):
        return "consonant"
    if low.endswith("l"):
        return "rieul"
    return "vowel"


def particle(word: str, consonant_form: str, vowel_form: str) -> str | None:
    """The particle form that follows `word`, or None when its final sound is unknown."""
    sound = final_sound(word)
    if sound is None:
        return None
    if consonant_form == "으로":
        return vowel_form if sound in ("vowel", "rieul") else consonant_form
    return vowel_form if sound == "vowel" else consonant_form


def resolve_ko(text: str) -> str:
    """Replace every `[은/는]`-style marker with the form that agrees with the word before it."""

    def repl(m: re.Match[str]) -> str:
        before = text[: m.start()]
        form = particle(before, m.group(1), m.group(2))
        if form is None:
            # No reading: restructure as an apposition with a noun whose sound is known.
            return " 모델" + (particle("모델", m.group(1), m.group(2)) or m.group(1))
        return form

    out, last = [], 0
    for m in MARKER.finditer(text):
        out.append(text[last : m.start()])
        out.append(repl(m))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


_ES = [(re.compile(r"\b([Aa]) el\b"), r"\1l"), (re.compile(r"\b([Dd])e el\b"), r"\1el")]
_FR_VOWEL = "aeiouàâäéèêëîïôöùûüœAEIOUÀÂÄÉÈÊËÎÏÔÖÙÛÜŒ"
_FR_ELIDE = re.compile(rf"\b(qu|[dljnmts])e ([{_FR_VOWEL}])")
_FR_LA = re.compile(rf"\b([Ll])a ([{_FR_VOWEL}])")
_FR_CONTRACT = [
    (re.compile(r"\b([Dd])e le\b"), r"\1u"),
    (re.compile(r"\b([Dd])e les\b"), r"\1es"),
    (re.compile(r"\bà le\b"), "au"),
    (re.compile(r"\bà les\b"), "aux"),
]


def fix_es(text: str) -> str:
    """a el -> al, de el -> del (only the article: "de El Salvador" keeps its capital El)."""
    for pattern, repl in _ES:
        text = pattern.sub(repl, text)
    return text


def fix_fr(text: str) -> str:
    """Elision before a vowel and the de/à + le/les contractions."""
    text = _FR_ELIDE.sub(r"\1'\2", text)
    text = _FR_LA.sub(r"\1'\2", text)
    for pattern, repl in _FR_CONTRACT:
        text = pattern.sub(repl, text)
    return text


_SENTENCE_START = re.compile(r"(^|[.!?] +)([a-zà-ÿ])")


def capitalize_sentences(text: str) -> str:
    """A slot that opens a sentence ("the TA team built me") starts with a capital letter."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def agree(text: str, language: str) -> str:
    """Apply the slot-boundary rules of `language` (a no-op for languages that need none)."""
    base = language.split("-")[0]
    if base in ("en", "de", "fr", "es"):
        text = capitalize_sentences(text)
    if base == "ko":
        return resolve_ko(text)
    if base == "es":
        return fix_es(text)
    if base == "fr":
        return fix_fr(text)
    return text
