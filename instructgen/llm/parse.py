"""Reading LLM answers: strip thinking and code fences, find JSON, fall back to lists.

Braces inside a `<think>` block break first-brace JSON extractors, so thinking is removed
first (a closing tag without an opener too: some servers strip the opener).
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"```(?:json|yaml|text)?\s*\n?(.*?)```", re.S)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$")


class ParseError(ValueError):
    pass


def strip_thinking(text: str) -> str:
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return text.strip()


def extract_json(text: str) -> Any:
    """The first JSON object or array in the text (after thinking and fences are removed)."""
    text = strip_thinking(text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for i, ch in enumerate(cand):
            if ch in "[{":
                try:
                    value, _ = decoder.raw_decode(cand[i:])
                    return value
                except json.JSONDecodeError:
                    continue
    raise ParseError("no JSON object or array found in the answer")


def extract_list(text: str) -> list[str]:
    """Numbered or bulleted items, quotes stripped (for models that ignore the JSON request).

    An item may continue on the following lines (`1. Convert the sentence below into [tgt_lang].`
    then `   [input]`): a non-blank line that is not an item joins the item above with a newline.
    A blank line ends the item, so a closing remark after the list is not glued onto it.
    """
    items: list[list[str]] = []
    open_item = False
    for line in strip_thinking(text).splitlines():
        m = _LIST_ITEM.match(line)
        if m:
            items.append([m.group(1).strip()])
            open_item = True
        elif not line.strip():
            open_item = False
        elif open_item:
            items[-1].append(line.strip())
    if not items:
        raise ParseError("neither JSON nor a numbered/bulleted list")
    return ["\n".join(lines).strip('"“”') for lines in items]
