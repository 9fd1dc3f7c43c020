"""The step protocol: record steps (a task's convert, then checks), sequential steps, and their stats.

- A **convert step** turns one read item into outcomes: one record, a rejection, or several records
  (translation `--direction both`). It is pure and picklable: workers rebuild it from its options.
- A **check** looks at one kept record and answers a (reason, detail) to reject it, or None. Checks
  are the same objects for every task: a task lists the ones it wants (`default_checks`).
- A **sequential step** sees the whole stream in input order (exact dedup, quotas) and runs in the
  parent, after the record steps, whatever executor ran those.

Stats (items in, kept, rejected by reason, seconds) are kept per step, datatrove-style. Counts are
rebuilt in the parent from each outcome's `step` field, so they are exact for any executor; seconds
come from where the step ran (summed over workers when an executor sends them back).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..quality.filters import find_placeholders, leftover_placeholders, placeholder_pattern
from ..schema import Record
from .outcome import Outcome, replace_with_rejection


class ConvertStep(Protocol):
    """A task's convert: one read item -> outcomes (records and/or rejections)."""

    name: str

    def __call__(self, item: Any) -> list[Outcome]: ...


class Check(Protocol):
    """A per-record filter: (reason, detail) rejects the outcome's record, None keeps it."""

    name: str

    def __call__(self, outcome: Outcome) -> tuple[str, str] | None: ...


class SequentialStep(Protocol):
    """A step that must see order (dedup, quotas): a stream of outcomes in, the same stream out."""

    name: str

    def __call__(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]: ...


@dataclass
class StepStats:
    """What one step saw: items in, records kept, rejections by reason, seconds spent.

    A record step's seconds are the sum of its time over the batches it ran on (`Pipeline.run_batch`
    reads the clock per step per batch, not per item), in every process that ran it."""

    name: str
    kind: str  # read | convert | check | sequential
    items_in: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds: float | None = None

    def merge_seconds(self, seconds: float) -> None:
        self.seconds = (self.seconds or 0.0) + seconds

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        text = f"  step {self.name} ({self.kind}): in {self.items_in}, kept {self.kept}, rejected {rejected}"
        if self.seconds is not None:
            text += f", {self.seconds:.2f} s"
        reasons = sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0]))
        if reasons:
            text += " (" + ", ".join(f"{r} {n}" for r, n in reasons) + ")"
        return text


# --- checks every task can use --------------------------------------------------------------


class EmptyFields:
    """A record with no prompt, no answer, or an empty history turn teaches nothing (or worse)."""

    name = "empty_fields"

    def __call__(self, outcome: Outcome) -> tuple[str, str] | None:
        r = outcome.item
        # the usual record (no history, every side non-empty) answered here, without the call below
        # (half of this check's ~0.5 us per record); any other record gets the full answer
        if r.history or not r.output.strip() or not (r.instruction.strip() or r.input.strip()):  # type: ignore[union-attr]
            return empty_fields(r)  # type: ignore[arg-type]
        return None


def empty_fields(record: Record) -> tuple[str, str] | None:
    if not (record.instruction.strip() or record.input.strip()):
        return "empty_prompt", "the user turn is empty"
    if not record.output.strip():
        return "empty_output", "the assistant answer is empty"
    for i, turn in enumerate(record.history, start=1):
        if not turn.user.strip() or not turn.assistant.strip():
            return "empty_turn", f"history turn {i} has an empty side"
    return None


class Placeholders:
    """A template variable left in the text (`{{ source }}`, `[tgt_lang]`) that the data did not bring in.

    The data's own texts are in `outcome.data`: a sentence about Jinja may contain `{{ x }}`, and
    only placeholders beyond those count. With `data_free=True` (existing instruction data, where
    every text is data) any placeholder counts, which is why `convert` leaves this check off by default.
    """

    name = "placeholders"

    def __init__(self, data_free: bool = False) -> None:
        self.data_free = data_free

    def __call__(self, outcome: Outcome) -> tuple[str, str] | None:
        r = outcome.item
        # the usual record has no placeholder-like text at all: a text without any of the characters a
        # placeholder starts with cannot hold one (`in` scans at C speed, ~0.1 us; the pattern's
        # alternation costs ~3 us per 100 characters), and one search per remaining text decides the
        # rest, before any counting (exact: a match anywhere is looked at by the full check below).
        # The three texts joined are scanned first: 4 scans instead of 12 (~0.35 us, not ~0.55)
        joined = r.instruction + r.input + r.output  # type: ignore[union-attr]
        if not ("{" in joined or "[" in joined or "<" in joined or "【" in joined):
            return None
        search = None
        for text in (r.instruction, r.input, r.output):  # type: ignore[union-attr]
            if "{" in text or "[" in text or "<" in text or "【" in text:
                search = search or placeholder_pattern().search
                if search(text) is not None:
                    break
        else:
            return None
        texts = [r.instruction, r.input, r.output]  # type: ignore[union-attr]
        if self.data_free:
            found = [p for t in texts for p in find_placeholders(t)]
            return ("unrendered_placeholder", f"placeholder {found[0]!r} left in the text") if found else None
        left = leftover_placeholders(texts, list(outcome.data))
        if not left:
            return None
        tid = outcome.example.get("template_id", "?")
        return "unrendered_placeholder", f"template {tid} left {', '.join(left)}"


def record_digest(record: Record) -> bytes:
    """A 16-byte key for exact dedup: every text of the conversation, length-prefixed (unambiguous)."""
    h = hashlib.blake2b(digest_size=16)
    texts = [record.system or "", record.instruction, record.input, record.output]
    for turn in record.history:
        texts += [turn.user, turn.assistant]
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


NEW = object()  # SeenKeys.check: the key was not seen before (this occurrence is now the first)


class SeenKeys:
    """The first line of every exact-dedup key seen so far, in ~24 bytes a key.

    A dict of 16-byte digests to line numbers costs ~130 bytes a key (the bytes object, the int, the
    slots): 2M pairs grew the translate parent from 95 MB to 330 MB. Here the most recent keys sit in
    a small dict and are folded, sorted, into two numpy columns (`S16` keys, int64 lines), which a batch
    looks up with one `searchsorted`. Keys of another length (a task's own key) stay in a dict.
    """

    FOLD = 1 << 16  # recent keys held as Python objects before they are folded into the columns

    def __init__(self) -> None:
        self.recent: dict[bytes, int | None] = {}
        self.odd: dict[bytes, int | None] = {}
        self.keys = np.empty(0, dtype="S16")
        self.lines = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.recent) + len(self.odd) + len(self.keys)

    def check(self, batch: list[tuple[bytes, int | None]]) -> list[Any]:
        """For each (key, line) of a batch, in order: the line of the first earlier occurrence of the
        key (None when it had none), or NEW, and then this occurrence is recorded as the first."""
        frozen: list[int] | None = None
        if len(self.keys):
            q = np.array([k if len(k) == 16 else b"" for k, _ in batch], dtype="S16")
            at = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
            frozen = np.where(self.keys[at] == q, self.lines[at], -2).tolist()
        recent, odd = self.recent, self.odd
        out: list[Any] = []
        for i, (key, line) in enumerate(batch):
            held = recent if len(key) == 16 else odd
            if key in held:
                out.append(held[key])
            elif frozen is not None and len(key) == 16 and frozen[i] != -2:
                out.append(None if frozen[i] == -1 else frozen[i])
            else:
                held[key] = line
                out.append(NEW)
        if len(recent) >= self.FOLD:
            self._fold()
        return out

    def _fold(self) -> None:
        keys = np.array(list(self.recent), dtype="S16")
        lines = np.array([-1 if v is None else v for v in self.recent.values()], dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, lines = keys[order], lines[order]
        at = np.searchsorted(self.keys, keys)
        self.keys, self.lines = np.insert(self.keys, at, keys), np.insert(self.lines, at, lines)
        self.recent = {}


class ExactDedup:
    """Drop a record whose `dedup_key` was seen before, keeping the first in input order.

    The key is made where the record is (a worker), as a fixed-size digest; the parent holds it in
    `SeenKeys` (~24 bytes a record whatever the texts). Outcomes are decided BATCH at a time (one
    lookup per batch); when the upstream raises, the outcomes before the error still come out first.
    `reason` and `detail(first_line)` keep each task's wording.
    """

    name = "dedup"
    BATCH = 256

    def __init__(self, reason: str = "duplicate_record", describe: Any = None) -> None:
        self.reason = reason
        self.describe = describe or (lambda first: f"same conversation as line {first}")

    def __call__(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        seen = SeenKeys()
        it = iter(outcomes)
        while True:
            buf: list[Outcome] = []
            try:
                for o in it:
                    buf.append(o)
                    if len(buf) == self.BATCH:
                        break
            except Exception:
                yield from self._decide(buf, seen)
                raise
            if not buf:
                return
            yield from self._decide(buf, seen)

    def _decide(self, buf: list[Outcome], seen: SeenKeys) -> Iterator[Outcome]:
        keyed = [o for o in buf if o.dedup_key and isinstance(o.item, Record)]
        firsts = iter(seen.check([(o.dedup_key, o.line) for o in keyed]))
        reason, describe, name = self.reason, self.describe, self.name
        for o in buf:
            if o.dedup_key and isinstance(o.item, Record):
                first = next(firsts)
                if first is not NEW:
                    yield replace_with_rejection(o, reason, describe(first), name)
                    continue
            yield o
