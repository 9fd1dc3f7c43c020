"""SeenKeys (the exact-dedup memory) answers exactly as the plain dict it replaced: first line of an
earlier equal key, or NEW; across folds into the sorted numpy columns, for keys with trailing NUL
bytes (numpy `S` strips them on read-back) and keys of other lengths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from instructgen.pipeline.outcome import Outcome
from instructgen.pipeline.steps import NEW, ExactDedup, SeenKeys
from instructgen.schema import Record

KEYS = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.sampled_from([b"\x00" * 16, b"a" + b"\x00" * 15, b"a" + b"\x00" * 14 + b"\x01", b"short", b"x" * 20]),
)


def reference(batches: list[list[tuple[bytes, int | None]]]) -> list[list[object]]:
    seen: dict[bytes, int | None] = {}
    out = []
    for batch in batches:
        answers: list[object] = []
        for key, line in batch:
            if key in seen:
                answers.append(seen[key])
            else:
                seen[key] = line
                answers.append(NEW)
        out.append(answers)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(KEYS, st.one_of(st.none(), st.integers(0, 10**9))), max_size=12),
        max_size=12,
    )
)
def test_answers_equal_a_dict_across_folds(batches):
    seen = SeenKeys()
    seen.FOLD = 3  # fold often: most lookups go through the numpy columns
    got = [seen.check(b) for b in batches]
    assert got == reference(batches)
    assert len(seen) == len({k for b in batches for k, _ in b})


def test_repeated_keys_with_trailing_nul_are_told_apart_after_a_fold():
    seen = SeenKeys()
    seen.FOLD = 1
    a, b = b"k" + b"\x00" * 15, b"k" + b"\x00" * 14 + b"\x01"
    assert seen.check([(a, 1)]) == [NEW]  # folded now
    assert len(seen.keys) == 1 and not seen.recent
    assert seen.check([(b, 2), (a, 3), (b, 4)]) == [NEW, 1, 2]


def test_dedup_keeps_outcomes_before_an_upstream_error():
    """Outcomes are decided a batch at a time; an error upstream still lets every earlier one out."""
    rec = Record(instruction="i", input="x", output="y")

    def upstream():
        for line in range(1, 6):
            yield Outcome(rec, b"0" * 16, "f.jsonl", line, {}, "")
        raise ValueError("line 6: broken")

    got = []
    try:
        for o in ExactDedup()(upstream()):
            got.append((o.line, getattr(o.item, "reason", "kept")))
    except ValueError as exc:
        assert str(exc) == "line 6: broken"
    assert got == [(1, "kept")] + [(n, "duplicate_record") for n in range(2, 6)]
