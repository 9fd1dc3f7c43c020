"""Tag sequences -> entity spans, for IOB1, IOB2/BIO and BIOES, with one documented repair rule.

Decoding happens here, in tested Python, never in a template.

Repair rule (counted by kind, never silent): an entity token that cannot continue the entity
before it starts a new entity of its own type; an entity that is never closed (a BIOES `B-`
without `E-`) ends at its last tagged token. Concretely:

- `i_starts_entity`: BIO `I-X` after `O`, at sentence start, or after another type -> starts X.
- `e_starts_entity`: BIOES `I-X`/`E-X` with no open X -> starts X (an `E-X` alone is one token).
- `unclosed_entity`: BIOES `B-X`/`I-X` followed by anything but `I-X`/`E-X` -> ends there.

IOB1 (the original CoNLL-2003 files) needs no repair: `I-X` starts an entity unless it continues
X, and `B-X` only separates two adjacent X entities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError

SCHEMES = ("iob1", "bio", "bioes")


@dataclass(frozen=True)
class Span:
    start: int  # first token
    end: int  # one past the last token
    label: str


@lru_cache(maxsize=4096)
def split_tag(tag: str) -> tuple[str, str | None]:
    """("B", "PER") from "B-PER"; ("O", None) from "O". Accepts "B_PER" too."""
    if tag == "O" or not tag:
        return "O", None
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESLU":
        prefix = {"L": "E", "U": "S"}.get(tag[0], tag[0])
        return prefix, tag[2:]
    raise ValueError(f"unknown tag '{tag}' (expected O, or B-/I-/E-/S- followed by a type)")


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """bioes if E-/S- tags occur; else iob1 when most entities start with I-, bio otherwise.

    A majority rule, not "any I- start": BIO files cut into chunks (the MSRA file has 11 of
    6,181 entities starting with I-) must still read as BIO.
    """
    starts = Counter()
    for tags in sentences:
        prev = ("O", None)
        for tag in tags:
            p, t = split_tag(tag)
            if p in ("E", "S"):
                return "bioes"
            if p == "B":
                starts["B"] += 1
            elif p == "I" and (prev[1] != t or prev[0] == "O"):
                starts["I"] += 1
            prev = (p, t)
    return "iob1" if starts["I"] > starts["B"] else "bio"


def decode(tags: Sequence[str], scheme: str, repairs: Counter | None = None) -> list[Span]:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown tag scheme '{scheme}' (choose {', '.join(SCHEMES)} or auto)")
    repairs = repairs if repairs is not None else Counter()
    spans: list[Span] = []
    start: int | None = None
    label: str | None = None

    def close(end: int) -> None:
        nonlocal start, label
        if start is not None:
            spans.append(Span(start, end, label or ""))
        start, label = None, None

    for i, tag in enumerate(tags):
        if tag == "O":  # most tokens: close an open entity, nothing else
            if start is not None:
                if scheme == "bioes":
                    repairs["unclosed_entity"] += 1
                close(i)
            continue
        p, t = split_tag(tag)
        if scheme == "iob1":
            if p == "O":
                close(i)
            elif p == "B" or label != t:
                close(i)
                start, label = i, t
        elif scheme == "bio":
            if p == "O":
                close(i)
            elif p == "B":
                close(i)
                start, label = i, t
            elif p == "I":
                if label != t:
                    repairs["i_starts_entity"] += 1
                    close(i)
                    start, label = i, t
            else:
                raise ValueError(f"tag '{tag}' is not BIO")
        else:  # bioes
            if p == "O":
                if start is not None:
                    repairs["unclosed_entity"] += 1
                close(i)
            elif p == "S":
                if start is not None:
                    repairs["unclosed_entity"] += 1
                close(i)
                spans.append(Span(i, i + 1, t or ""))
            elif p == "B":
                if start is not None:
                    repairs["unclosed_entity"] += 1
                close(i)
                start, label = i, t
            elif p in ("I", "E"):
                if label != t:
                    if start is not None:
                        repairs["unclosed_entity"] += 1
                    repairs["e_starts_entity"] += 1
                    close(i)
                    start, label = i, t
                if p == "E":
                    close(i + 1)
    if start is not None:
        if scheme == "bioes":
            repairs["unclosed_entity"] += 1
        close(len(tags))
    return spans


def encode(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Spans -> tags (used to convert files between schemes, and in tests)."""
    tags = ["O"] * length
    ordered = sorted(spans, key=lambda s: s.start)
    for k, s in enumerate(ordered):
        for i in range(s.start, s.end):
            tags[i] = f"I-{s.label}"
        if scheme == "bio":
            tags[s.start] = f"B-{s.label}"
        elif scheme == "bioes":
            if s.end - s.start == 1:
                tags[s.start] = f"S-{s.label}"
            else:
                tags[s.start] = f"B-{s.label}"
                tags[s.end - 1] = f"E-{s.label}"
        elif scheme == "iob1":
            prev = ordered[k - 1] if k else None
            if prev is not None and prev.end == s.start and prev.label == s.label:
                tags[s.start] = f"B-{s.label}"
    return tags
