"""Best-fit-decreasing packing over the whole dataset.

TRL packs within 1,000-row map batches and torchtune fills greedily; packing the whole set at
once wastes less. Rows are packed by length (longest first) into the bin with the least room
that still fits, found by bisection over a sorted list of remaining capacities, so the plan is
O(n log n) and deterministic (ties go to the lower index). Each packed row keeps every
example's boundaries twice: `position_ids` restart at 0, and `seq_lens` lists the lengths.
`position_ids` is the one that matters: it is a forward() argument, so HF Trainer's
`remove_unused_columns` keeps it while it drops `seq_lens`, and the Collator rebuilds the
boundaries from where it restarts (then a 4D block mask for sdpa/eager, or a padding-free row
for FlashAttention varlen). The first label of every example is -100 so no example learns to
predict from the one before it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

IGNORE = -100


def plan_bfd(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of row indexes; every bin's total length <= capacity."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), kept sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"row {i} has {n} tokens, more than the pack length {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (room - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - n, len(bins) - 1))
    for b in bins:
        b.sort()
    bins.sort(key=lambda b: b[0])
    return bins


def pack_rows(
    input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], capacity: int
) -> dict[str, list]:
    bins = plan_bfd([len(x) for x in input_ids], capacity)
    out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lens": []}
    for b in bins:
        ids: list[int] = []
        lab: list[int] = []
        pos: list[int] = []
        lens: list[int] = []
        for i in b:
            n = len(input_ids[i])
            ids.extend(input_ids[i])
            lab.append(IGNORE)
            lab.extend(labels[i][1:])
            pos.extend(range(n))
            lens.append(n)
        out["input_ids"].append(ids)
        out["labels"].append(lab)
        out["position_ids"].append(pos)
        out["seq_lens"].append(lens)
    return out


def packing_efficiency(seq_lens: Sequence[Sequence[int]], capacity: int) -> float:
    used = sum(sum(s) for s in seq_lens)
    return used / (capacity * len(seq_lens)) if seq_lens else 0.0
