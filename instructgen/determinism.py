"""Seeded choices that do not depend on order, process count or machine.

A global RNG makes the template of record 5,000 depend on how many records came before it in
this worker; with `num_proc=2` that changes. Hashing (seed, task, key, purpose) instead makes
each choice a pure function of the record itself.
"""

from __future__ import annotations

import hashlib


def stable_hash(*parts: object) -> int:
    """A 64-bit integer from the parts' text, identical across runs, Python versions and machines."""
    data = "\x1f".join(map(str, parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def choose_index(n: int, *parts: object) -> int:
    """Pick one of `n` options for these parts; the modulo bias is below 1e-17 for any real pool."""
    if n <= 0:
        raise ValueError("cannot choose from an empty set")
    return stable_hash(*parts) % n


def content_key(*texts: str) -> str:
    """A record key derived from content, so the same pair gets the same key from any reader."""
    data = "\x1f".join(texts).encode("utf-8")
    return hashlib.blake2b(data, digest_size=10).hexdigest()
