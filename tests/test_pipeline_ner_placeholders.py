"""The Placeholders check's fast path (skip a text with none of the characters a placeholder starts
with) answers exactly what the full check (quality/filters.leftover_placeholders) answers.

NER and classification records are long prompts with no placeholder: the pattern's alternation of
every contract name cost ~10 us per record there, most of the two tasks' slowdown on the core.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from instructgen.pipeline.outcome import Outcome
from instructgen.pipeline.steps import Placeholders
from instructgen.quality.filters import leftover_placeholders
from instructgen.schema import Record

PIECES = ["{{ text }}", "{%x%}", "{# c #}", "[entities]", "{label}", "【source】", "<options>", "[ text ]",
          "{", "}", "[", "]", "<", ">", "【", "】", "text", "label", "entity", " ", "a", "（", "）", "%", "#"]  # fmt: skip
texts = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(instruction=texts, input_=texts, output=texts, data=st.lists(texts, max_size=2))
def test_fast_path_agrees_with_the_full_check(instruction, input_, output, data):
    record = Record(instruction=instruction, input=input_, output=output)
    got = Placeholders()(Outcome(record, example={"template_id": "t"}, data=tuple(data)))
    left = leftover_placeholders([instruction, input_, output], data)
    assert got == (("unrendered_placeholder", f"template t left {', '.join(left)}") if left else None)
