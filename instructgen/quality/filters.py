"""Per-example checks that need no global state (so they run unchanged in any worker)."""

from __future__ import annotations

import re

from ..templates.tasks import contract_names

# Characters written without spaces between words: each one counts as a word-sized unit.
_DENSE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f]")
_NON_DENSE_WORD = re.compile(
    r"[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f]+"
)


# One CJK character carries about 0.7 of an English word: shared/data has a median of 1.41
# (WMT21) and 1.50 (Tatoeba) Chinese characters per English word.
DENSE_CHAR_UNITS = 0.7


def length_units(text: str) -> float:
    """Comparable length across scripts: words, with CJK/Thai characters at 0.7 of a word each.

    Character counts make zh->en pairs look 3-8x unbalanced (WMT21 has 83 zh characters
    against 687 en characters for a faithful pair); units keep a faithful pair near 1x.
    """
    return DENSE_CHAR_UNITS * len(_DENSE.findall(text)) + len(_NON_DENSE_WORD.findall(text))


def length_ratio(a: str, b: str) -> float:
    ua, ub = length_units(a), length_units(b)
    return max(ua, ub) / max(1.0, min(ua, ub))


# Names a leftover placeholder may have besides the registered tasks' variables and brackets
# (templates/tasks.py contract_names): the answer as LLMs write it, and the persona fields of
# identity seed pools (identity is not a pool task; quality must not import it).
OTHER_PLACEHOLDER_NAMES = frozenset({"output", "labels", "name", "developer"})
_compiled: dict[frozenset[str], re.Pattern[str]] = {}


def placeholder_pattern() -> re.Pattern[str]:
    """Jinja delimiters, and any contract name in brackets (`[input]`, `{text}`, `【source】`, `<label>`).

    Built from the task registry, so a task registered at run time has its names checked too;
    compiled once per registry state.
    """
    names = contract_names()
    pattern = _compiled.get(names)
    if pattern is None:
        alternatives = "|".join(sorted(names | OTHER_PLACEHOLDER_NAMES, key=lambda n: (-len(n), n)))
        pattern = re.compile(
            r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|[\[{【<]\s*(?:" + alternatives + r")\s*[\]}】>]"
        )
        _compiled.clear()
        _compiled[names] = pattern
    return pattern


def find_placeholders(text: str) -> list[str]:
    return placeholder_pattern().findall(text)


def leftover_placeholders(rendered: list[str], data: list[str]) -> list[str]:
    """Placeholders in rendered text that the data itself did not bring in."""
    from collections import Counter

    seen = Counter(p for text in rendered for p in find_placeholders(text))
    if not seen:
        return []
    seen.subtract(Counter(p for text in data for p in find_placeholders(text)))
    return sorted(p for p, n in seen.items() if n > 0)
