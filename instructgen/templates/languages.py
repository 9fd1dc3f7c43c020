"""Language codes and names, from CLDR through langcodes.

Pools name languages in their own language (an en pool says "Chinese", a zh pool says
"中文"), for any pair: a hand-made table would cover the pairs someone thought of and mislabel
the rest (xP3x mapped `lij_Latn` to "Latvian").
"""

from __future__ import annotations

from functools import lru_cache

import langcodes

from ..errors import ConfigError


@lru_cache(maxsize=4096)
def normalize_code(code: str) -> str:
    """BCP-47 tag in standard form, macrolanguages folded (`cmn` -> `zh`, `zh_CN` -> `zh-CN`)."""
    raw = code.strip().replace("_", "-")
    if not raw or not langcodes.tag_is_valid(raw):
        raise ConfigError(
            f"'{code}' is not a valid language code (use a BCP-47 tag such as zh, en, de, pt-BR)"
        )
    tag = langcodes.standardize_tag(raw, macro=True)
    if langcodes.Language.get(tag).display_name("en").startswith("Unknown language"):
        raise ConfigError(f"'{code}' is not a known language")
    return tag


@lru_cache(maxsize=4096)
def base_language(code: str) -> str:
    """The language subtag alone: what a language detector can tell apart (`zh-Hant` -> `zh`)."""
    return langcodes.Language.get(normalize_code(code)).language or code


@lru_cache(maxsize=4096)
def language_name(code: str, in_language: str) -> str:
    """The name of language `code` written in language `in_language` (`de`, `zh` -> 德语).

    Variants are named as people say them, not as data labels: CLDR's own variant names first
    (`en-GB` -> "British English", `zh-Hant` -> "Traditional Chinese" / 繁体中文); a Chinese tag with
    only a region is named by the script it implies (`zh-HK`, `zh-TW` -> 繁体中文), because a translation
    instruction needs the script, and "Chinese (Hong Kong SAR China)" or 中文（繁体） inside a
    template's own brackets reads like a form field. Other variants fall back to CLDR's display name.
    """
    tag = normalize_code(code)
    target = normalize_code(in_language)
    lang = langcodes.Language.get(tag)
    if lang.script is None and lang.territory is None:
        return lang.display_name(target)
    for candidate in _variant_candidates(lang):
        name = _cldr_variant_name(candidate, target)
        if name:
            return name
    return lang.display_name(target)


def _variant_candidates(lang: langcodes.Language) -> list[str]:
    """Tags whose CLDR name may stand for `lang`: itself, then language+script (implied for zh regions)."""
    candidates = [lang.to_tag()]
    script = lang.script
    if script is None and lang.language == "zh":
        script = lang.maximize().script
    if script:
        candidates.append(f"{lang.language}-{script}")
    return candidates


def _cldr_variant_name(tag: str, in_language: str) -> str | None:
    from language_data.names import code_to_names

    names = code_to_names(tag)
    return names.get(in_language) or names.get(langcodes.Language.get(in_language).language or "")


@lru_cache(maxsize=4096)
def default_script(code: str) -> str | None:
    """The script a language is usually written in (ISO 15924), or None when CLDR has no guess."""
    lang = langcodes.Language.get(normalize_code(code))
    if lang.script:
        return lang.script
    try:
        return lang.maximize().script
    except Exception:  # langcodes has no likely-subtags entry for some rare codes
        return None
