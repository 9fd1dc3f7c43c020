"""The bucketed best-fit-decreasing plan equals the plan of the implementation it replaced.

`old_plan_bfd` below is a verbatim copy of `instructgen/tokenize/packing.py::plan_bfd` as of
commit 767e07a (sorted list of (room, bin) tuples, bisection): the oracle. The rewrite only
changed how the bin with the least room that still fits is found (a min-heap of bin indexes
per room value and a bitset of non-empty rooms), so every plan, tie-breaks included, must be
identical: a changed plan would change every packed output byte for byte.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Sequence

import pytest

from instructgen.tokenize.packing import plan_bfd, plan_bfd_arrays

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def old_plan_bfd(lengths: Sequence[int], capacity: int) -> list[list[int]]:
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


@st.composite
def lengths_and_capacity(draw):
    capacity = draw(st.integers(min_value=1, max_value=64))
    # few distinct values make many ties (equal lengths, equal rooms): where tie-breaks matter
    pool = draw(st.lists(st.integers(min_value=0, max_value=capacity), min_size=1, max_size=6))
    lengths = draw(st.lists(st.sampled_from(pool), max_size=120))
    return lengths, capacity


@settings(max_examples=300, deadline=None)
@given(lengths_and_capacity())
def test_plan_equals_the_former_implementation(case):
    lengths, capacity = case
    assert plan_bfd(lengths, capacity) == old_plan_bfd(lengths, capacity)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2048), max_size=300), st.integers(2048, 4096))
def test_plan_equals_the_former_implementation_at_real_capacities(lengths, capacity):
    assert plan_bfd(lengths, capacity) == old_plan_bfd(lengths, capacity)


def test_arrays_form_is_the_same_plan_from_an_int32_array():
    # the pipeline's spool keeps lengths in an array('i'); the flat form must read it as is
    lengths = [7, 3, 5, 2, 8, 1, 4, 6, 10, 0, 3, 3]
    rows, starts = plan_bfd_arrays(array("i", lengths), 10)
    bins = [rows[a:b].tolist() for a, b in itertools.pairwise(starts.tolist())]
    assert bins == old_plan_bfd(lengths, 10)
    # by hand: 8,4,0,7,2 open bins 0-4; 6 -> bin 3 (room 4), 1 -> bin 2 (room 3), 10 -> bin 4
    # (room 5), 11 opens bin 5, 3 -> bin 1 (rooms 2 and 2: lower bin), 5 -> bin 4, 9 (0 tokens)
    # -> bin 0 (the smallest room, 0, lowest bin)
    assert bins == [[0, 1], [2, 5, 10], [3, 4], [6, 7], [8, 9], [11]]


def test_empty_and_errors_match():
    assert plan_bfd([], 8) == old_plan_bfd([], 8) == []
    rows, starts = plan_bfd_arrays([], 8)
    assert rows.tolist() == [] and starts.tolist() == [0]
    # the same message as before: the longest row (lowest index among equals) is named
    lengths = [3, 9, 9, 1]
    with pytest.raises(ValueError) as old:
        old_plan_bfd(lengths, 8)
    with pytest.raises(ValueError) as new:
        plan_bfd(lengths, 8)
    assert str(new.value) == str(old.value) == "row 1 has 9 tokens, more than the pack length 8"
    with pytest.raises(ValueError, match="row 1 has a negative length"):
        plan_bfd([1, -1], 8)
