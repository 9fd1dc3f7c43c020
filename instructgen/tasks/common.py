"""What the NER and classification tasks share: one converter per options, the old batch columns.

One converter per (options, template files) in a process, shared by a task's plan and build steps.

A task's plan step and its convert step each need the converter (loaded template pools, checked
label words): building it twice per run cost about 0.1 s (a twentieth of a 50,000-sentence NER run),
and the API called in a loop (property tests, notebooks) rebuilt it per call. The key holds the
user's template files' size and modification time, so an edited pool file is loaded afresh.
Converters keep no per-run state here: a step copies one before setting what its plan decides.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

C = TypeVar("C")

_MAX = 16
_CACHE: dict[Hashable, Any] = {}


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:  # the converter reports a missing file itself
            out.append((p, -1, -1))
            continue
        out.append((p, st.st_mtime_ns, st.st_size))
    return tuple(out)


def cached(make: Callable[[Any], C], options: Any) -> C:
    """`make(options)`, built once per options and template-file state in this process."""
    key = (make, options, _stamp(tuple(getattr(options, "templates", ()) or ())))
    conv = _CACHE.get(key)
    if conv is None:
        conv = make(options)  # errors (a bad pool, a bad option) are raised every time, never cached
        if len(_CACHE) >= _MAX:
            _CACHE.clear()
        _CACHE[key] = conv
    return conv


def record_columns(outcomes: list[Any]) -> dict[str, list]:
    """The columns `NerBatchFn`/`ClassifyBatchFn` always returned, from the one adapter's outcomes:
    instruction, input, output, meta (JSON) and `rejected` ("reason: detail", None for a record;
    the text columns empty then), so one bad row does not stop a long map and none is lost."""
    from ..schema import Record

    out: dict[str, list] = {"instruction": [], "input": [], "output": [], "meta": [], "rejected": []}
    for o in outcomes:
        item = o.item
        if isinstance(item, Record):
            out["instruction"].append(item.instruction)
            out["input"].append(item.input)
            out["output"].append(item.output)
            out["meta"].append(json.dumps(item.meta, ensure_ascii=False))
            out["rejected"].append(None)
        else:
            for col in ("instruction", "input", "output", "meta"):
                out[col].append("")
            out["rejected"].append(f"{item.reason}: {item.detail}")
    return out
