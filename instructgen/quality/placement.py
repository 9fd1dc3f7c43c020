"""Where a template puts the source text, and whether a given source fits there.

A translation record is only useful when the model can tell where the text to translate starts and
ends. Putting a source inside the instruction is fine for a short sentence in quotes ("How do you say
"..." in German?"), but not for a 400-character paragraph, a text holding the same quote character
(请把“...“台湖星期音乐会”...”翻译成英语), or a text that ends in a stop right before the template's own
(。”。). Each template's shape is read once from its Jinja source:

- `input`:  the source is the record's input field: always delimited.
- `block`:  the source stands on its own line(s) of the instruction (start or end of the text, or a
            newline on both sides): fits anything.
- `line`:   `Label: {{ source }}` followed by a newline: fits a source with no newline of its own.
            (`...for them: {{ source }}` at the end of the text is `bare`: the source runs on after a
            sentence, and a colon inside it blurs where it starts.)
- `quoted`: between a pair of quotes: fits a short, single-line, single-sentence source containing
            neither quote character, and no stop before the template's own stop.
- `bare`:   none of these (the source runs on after a colon): never fits; the pool test forbids it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..determinism import choose_index

MAX_INLINE_CHARS = 200

# `{{ source }}`, also with filters or whitespace control (`{{- source | trim -}}`): a filtered source is
# still the source, and must not pass as "not in the instruction"
_SOURCE = re.compile(r"\{\{-?\s*source\b(?:\s*\|[^{}]*?)?\s*-?\}\}")
_QUOTES = {'"': '"', "“": "”", "「": "」", "『": "』", "'": "'", "«": "»", "„": "“", "‘": "’"}
_STOPS = ".。!?！？"
_LABEL_END = (":", "：")
# a stop followed by more text inside the source: more than one sentence
_INNER_SENTENCE = re.compile(r"[.!?。！？]+[\"'”’」』)]?\s*\S")


@dataclass(frozen=True)
class Placement:
    shape: str  # input | block | line | quoted | bare
    open_quote: str = ""
    close_quote: str = ""
    stop_after: bool = False  # the template puts a stop right after the closing quote


def placement(instruction: str | None, input_text: str | None) -> Placement:
    """The shape of a template, from the raw Jinja text of its instruction and input fields."""
    if input_text and _SOURCE.search(input_text):
        return Placement("input")
    match = _SOURCE.search(instruction or "") if instruction else None
    if match is None:
        return Placement("input")  # the source is not in the instruction at all
    text = instruction or ""
    before, after = text[: match.start()], text[match.end() :]
    if (not before or before.endswith("\n")) and (not after or after.startswith("\n")):
        return Placement("block")
    if before and after and before[-1] in _QUOTES and after[0] == _QUOTES[before[-1]]:
        return Placement("quoted", before[-1], after[0], stop_after=after[1:2] in tuple(_STOPS))
    if before.rstrip(" ").endswith(_LABEL_END) and after.startswith("\n"):
        return Placement("line")  # "German: {{ source }}\n...": the line ends the source
    return Placement("bare")


def misfit(shape: Placement, source: str) -> str | None:
    """Why `source` cannot sit in this shape (None when it fits)."""
    if shape.shape in ("input", "block"):
        return None
    if shape.shape == "bare":
        return "the template does not delimit the source"
    if "\n" in source:
        return "the source has several lines"
    if shape.shape == "line":
        return None
    if len(source) > MAX_INLINE_CHARS:
        return f"the source is over {MAX_INLINE_CHARS} characters"
    if shape.open_quote in source or shape.close_quote in source:
        return f"the source contains the template's quote {shape.open_quote}{shape.close_quote}"
    if _INNER_SENTENCE.search(source.rstrip(_STOPS + " ")):
        return "the source has more than one sentence"
    if shape.stop_after and source.rstrip()[-1:] in tuple(_STOPS):
        return "the source ends with a stop before the template's own"
    return None


def template_placement(template) -> Placement:
    """The (cached) placement of a compiled pool `Template` (`instructgen.templates.pool.Template`)."""
    cached = template.__dict__.get("_placement")
    if cached is None:
        cached = placement(template.spec.instruction, template.spec.input)
        template.__dict__["_placement"] = cached
    return cached


def choose_fitting(templates: list, seed: int, task: str, key: str, source: str):
    """The seeded template for `key`, re-drawn among the templates the source fits when it does not fit.

    The first draw is exactly `PoolSet.choose`'s, so records whose source fits keep their template; the
    re-draw is a pure function of (seed, task, key) too. None when no template of the pool fits.
    """
    first = templates[choose_index(len(templates), seed, task, key, "template")]
    if misfit(template_placement(first), source) is None:
        return first
    fitting = [t for t in templates if misfit(template_placement(t), source) is None]
    if not fitting:
        return None
    return fitting[choose_index(len(fitting), seed, task, key, "template-refit")]
