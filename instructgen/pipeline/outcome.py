"""What a record step answers for one item, and the one column contract it travels in between processes.

An `Outcome` is a Record or a Rejected, plus what the parent needs after the record steps ran in a
worker: the exact-dedup key (a fixed-size digest, comparable across processes), where the item was
read, a small `example` dict (the rejects file's example; template id and instruction language for
the report), and the name of the step that rejected it (per-step stats are rebuilt from that in the
parent, whatever executor ran the steps).

Between processes (datasets `map`, a process pool, Ray `map_batches`) outcomes are three string
columns, `kind`, `payload` and `dedup_key` (the contract `translation_batch_fn` has always had), so
every engine carries them the same way and Arrow never has to infer a schema from a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..schema import Record, Rejected

COLUMNS = ("kind", "payload", "dedup_key")


@dataclass
class Outcome:
    """One step answer: a Record or a Rejected, with what the sequential steps and the report need."""

    item: Record | Rejected
    dedup_key: bytes = b""  # empty: the record takes no part in exact dedup
    source_file: str | None = None
    line: int | None = None
    example: dict[str, Any] = field(default_factory=dict)
    step: str = ""  # for a Rejected: the step that rejected it ("read" for the reader)
    # the user's own texts, for checks that must tell data from template (placeholders); not sent
    # between processes: checks run where the convert step ran
    data: tuple[str, ...] = ()
    # names the parent counts into the result's `tallies` (NER tag repairs: "repaired:...") whether or
    # not the outcome is kept; they travel between processes with the outcome
    tally: tuple[str, ...] = ()

    @property
    def kept(self) -> bool:
        return isinstance(self.item, Record)


def outcomes_to_columns(outcomes: Iterable[Outcome]) -> dict[str, list]:
    """Flatten outcomes into the three string columns, Arrow-friendly whatever the record holds."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    kind, payload, keys = cols["kind"], cols["payload"], cols["dedup_key"]
    for o in outcomes:
        is_record = isinstance(o.item, Record)
        kind.append("record" if is_record else "rejected")
        body = {
            "item": o.item.model_dump(mode="json"),
            "source_file": o.source_file,
            "line": o.line,
            "example": o.example,
        }
        if o.step:
            body["step"] = o.step
        if o.tally:
            body["tally"] = list(o.tally)
        payload.append(json.dumps(body, ensure_ascii=False))
        keys.append(o.dedup_key.hex())
    return cols


def outcomes_from_rows(rows: Iterable[dict[str, Any]]) -> Iterator[Outcome]:
    """The inverse of `outcomes_to_columns`, row by row (a mapped Dataset iterates as dicts)."""
    for row in rows:
        body = json.loads(row["payload"])
        item = (
            Record.model_validate(body["item"])
            if row["kind"] == "record"
            else Rejected.model_validate(body["item"])
        )
        yield Outcome(
            item,
            dedup_key=bytes.fromhex(row["dedup_key"]),
            source_file=body["source_file"],
            line=body["line"],
            example=body["example"],
            step=body.get("step", ""),
            tally=tuple(body.get("tally", ())),
        )


def outcomes_from_columns(cols: dict[str, list]) -> Iterator[Outcome]:
    """The inverse of `outcomes_to_columns` for a column batch (a process pool or Ray returns those)."""
    return outcomes_from_rows(
        {"kind": k, "payload": p, "dedup_key": d}
        for k, p, d in zip(cols["kind"], cols["payload"], cols["dedup_key"], strict=True)
    )


def rejection(
    reason: str,
    detail: str,
    *,
    step: str,
    source_file: str | None = None,
    line: int | None = None,
    example: dict[str, Any] | None = None,
    dedup_key: bytes = b"",
    tally: tuple[str, ...] = (),
) -> Outcome:
    """An Outcome holding a Rejected whose file, line and example match the outcome's own.

    Keys of the example that start with "_" are the steps' own markers (NER's `_no_entities`, read by
    its empty quota after a rejection too): the outcome keeps them, the Rejected (the rejects file)
    does not."""
    ex = example or {}
    shown = {k: v for k, v in ex.items() if not k.startswith("_")} if any(k[:1] == "_" for k in ex) else ex
    item = Rejected(reason=reason, detail=detail, source_file=source_file, line=line, example=shown)
    return Outcome(item, dedup_key, source_file, line, ex, step, tally=tally)


def replace_with_rejection(o: Outcome, reason: str, detail: str, step: str) -> Outcome:
    """Reject a kept outcome in place of its record (a check, a quota, dedup), keeping where it was
    read, its example, its key and its tallies."""
    return rejection(
        reason,
        detail,
        step=step,
        source_file=o.source_file,
        line=o.line,
        example=o.example,
        dedup_key=o.dedup_key,
        tally=o.tally,
    )
