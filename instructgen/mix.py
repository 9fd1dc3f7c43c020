"""Mixing a small special-purpose set (identity data) into general instruction data, seeded.

Identity-only training overfits: the model answers everything with its self-introduction
and forgets how to write (LLaMA-Factory #4299, ChatGLM-Efficient-Tuning #85). A stated share
of special rows among general ones avoids that. Rows are never repeated: when there are too
few special rows for the share, general rows are sampled down instead, and the note says so.
Which rows are kept, and their order, are hashes of (seed, source, position).

This is `mix SPECIAL GENERAL --ratio R`; N sources by share, count or all, with a manifest, are in
`instructgen.dataops.mixing` (`mix a.jsonl:0.1 b.jsonl:5000 c.json`).
"""

from __future__ import annotations

from typing import TypeVar

from .determinism import stable_hash
from .errors import ConfigError

T = TypeVar("T")


def mix(special: list[T], general: list[T], ratio: float, *, seed: int = 0) -> tuple[list[T], str]:
    """`ratio` of the output comes from `special`, the rest from `general`; returns (rows, note)."""
    if not 0 < ratio < 1:
        raise ConfigError(f"--ratio must be between 0 and 1 (the share of the first file), not {ratio}")
    if not special or not general:
        raise ConfigError("both inputs must have at least one row")
    want_special = round(ratio / (1 - ratio) * len(general))
    if want_special <= len(special):
        n_special, n_general = max(1, want_special), len(general)
    else:
        n_special, n_general = len(special), max(1, round(len(special) * (1 - ratio) / ratio))

    def sample(rows: list[T], k: int, tag: str) -> list[tuple[int, str, int]]:
        order = sorted(range(len(rows)), key=lambda i: stable_hash(seed, "mix", tag, i))
        return [(stable_hash(seed, "mix-order", tag, i), tag, i) for i in order[:k]]

    chosen = sorted(sample(special, n_special, "special") + sample(general, n_general, "general"))
    rows = [special[i] if tag == "special" else general[i] for _, tag, i in chosen]
    note = (
        f"mixed {n_special} of {len(special)} special rows with {n_general} of {len(general)} general rows "
        f"({n_special / len(rows):.1%} special)"
    )
    return rows, note
