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
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from ..errors import ConfigError

SCHEMES = ("iob1", "bio", "bioes")


class Span(NamedTuple):
    """Tokens [start, end) of one entity. A tuple, not a dataclass: a file makes one per entity
    and a frozen dataclass costs several times more to build."""

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


_SPLIT: dict[str, tuple[str, str | None]] = {}


def _split(tag: str) -> tuple[str, str | None]:
    """split_tag through a plain dict (a file has a handful of distinct tags)."""
    got = _SPLIT.get(tag)
    if got is None:
        got = split_tag(tag)  # raises on an unknown tag, which is then not cached
        if len(_SPLIT) < 4096:
            _SPLIT[tag] = got
    return got


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """bioes if E-/S- tags occur; else iob1 when most entities start with I-, bio otherwise.

    A majority rule, not "any I- start": BIO files cut into chunks (the MSRA file has 11 of
    6,181 entities starting with I-) must still read as BIO.
    """
    vote = SchemeVote()
    for tags in sentences:
        if vote.add(tags):
            break
    return vote.scheme()


class SchemeVote:
    """`detect_scheme` one sentence at a time, so a converter can vote while it streams a file."""

    def __init__(self) -> None:
        self.starts: Counter = Counter()
        self.bioes = False

    def add(self, tags: Sequence[str]) -> bool:
        """Count one sentence's entity starts; True once the answer is known (an E-/S- tag)."""
        if self.bioes or tags.count("O") == len(tags):  # most sentences of most files: nothing to learn
            return self.bioes
        starts = self.starts
        prev: tuple[str, str | None] = ("O", None)
        for tag in tags:
            if tag == "O":
                prev = ("O", None)
                continue
            try:
                p, t = _split(tag)
            except ValueError:  # the sentence is rejected when decoded; it has no say in the scheme
                prev = ("O", None)
                continue
            if p in ("E", "S"):
                self.bioes = True
                return True
            if p == "B":
                starts["B"] += 1
            elif p == "I" and (prev[1] != t or prev[0] == "O"):
                starts["I"] += 1
            prev = (p, t)
        return False

    def scheme(self) -> str:
        if self.bioes:
            return "bioes"
        return "iob1" if self.starts["I"] > self.starts["B"] else "bio"


def decode(tags: Sequence[str], scheme: str, repairs: Counter | None = None) -> list[Span]:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown tag scheme '{scheme}' (choose {', '.join(SCHEMES)} or auto)")
    repairs = repairs if repairs is not None else Counter()
    if scheme == "bioes":
        return _decode_bioes(tags, repairs)
    # IOB1 and BIO differ only in what an I- after another type means; both are one pass where an
    # "O" (most tokens) costs one comparison.
    spans: list[Span] = []
    start = -1
    label: str | None = None
    bio = scheme == "bio"
    same = None  # an I- tag just seen inside its own entity: the same tag again only continues it
    for i, tag in enumerate(tags):
        if tag == "O":
            if start >= 0:
                spans.append(Span(start, i, label or ""))
                start, label, same = -1, None, None
            continue
        if tag == same:
            continue
        p, t = _split(tag)
        same = tag if p == "I" else None
        if p == "O":
            if start >= 0:
                spans.append(Span(start, i, label or ""))
            start, label = -1, None
        elif p == "B" or label != t:
            if bio:
                if p not in "BI":
                    raise ValueError(f"tag '{tag}' is not BIO")
                if p == "I":
                    repairs["i_starts_entity"] += 1
            if start >= 0:
                spans.append(Span(start, i, label or ""))
            start, label = i, t
        elif bio and p != "I":
            raise ValueError(f"tag '{tag}' is not BIO")
    if start >= 0:
        spans.append(Span(start, len(tags), label or ""))
    return spans


def _decode_bioes(tags: Sequence[str], repairs: Counter) -> list[Span]:
    spans: list[Span] = []
    start = -1
    label: str | None = None
    for i, tag in enumerate(tags):
        p, t = ("O", None) if tag == "O" else _split(tag)
        if p == "I" or p == "E":
            if label != t:
                if start >= 0:
                    repairs["unclosed_entity"] += 1
                    spans.append(Span(start, i, label or ""))
                repairs["e_starts_entity"] += 1
                start, label = i, t
            if p == "E":
                spans.append(Span(start, i + 1, label or ""))
                start, label = -1, None
            continue
        if start >= 0:  # O, S and B all end an open entity, which should have ended with E-
            repairs["unclosed_entity"] += 1
            spans.append(Span(start, i, label or ""))
        start, label = -1, None
        if p == "S":
            spans.append(Span(i, i + 1, t or ""))
        elif p == "B":
            start, label = i, t
    if start >= 0:
        repairs["unclosed_entity"] += 1
        spans.append(Span(start, len(tags), label or ""))
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
