"""The pipeline core itself (instructgen/pipeline/): per-step stats, the shared checks, exact dedup,
the process pool's ordering and read-ahead bound, the batched adapter's column contract and
`collect` over rows some engine already mapped.

Per-step stats follow datatrove's `PipelineStats` (huggingface/datatrove,
src/datatrove/utils/stats.py: per step, documents in, kept/dropped by reason, time): here the
counts are rebuilt in the parent from each outcome's `step`, so they must be exact for any executor.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections import Counter
from typing import Any

import pytest

from instructgen.errors import ConfigError
from instructgen.pipeline import registry
from instructgen.pipeline.executors import ProcessPool, item_batch
from instructgen.pipeline.outcome import (
    COLUMNS,
    Outcome,
    outcomes_from_columns,
    outcomes_to_columns,
    rejection,
)
from instructgen.pipeline.registry import Task
from instructgen.pipeline.run import Pipeline, Run
from instructgen.pipeline.steps import EmptyFields, ExactDedup, Placeholders, record_digest
from instructgen.schema import Record, Rejected, Turn

# --- a probe task: strings in, echo records out --------------------------------------------------

PROBE = "probe_core"


class Echo:
    """Convert step: "" is refused by the step itself; "!x" uses a template that leaves `[tgt_lang]`;
    "~N" sleeps N ms (to make a pool's chunks finish out of order); every record notes the pid."""

    name = "convert"

    def __call__(self, item: Any) -> list[Outcome]:
        line, text = item
        if text == "":
            return [rejection("no_text", "nothing to echo", step="", line=line, example={"text": text})]
        if text.startswith("~"):
            time.sleep(int(text[1:]) / 1000)
        instruction = "Echo into [tgt_lang]:" if text.startswith("!") else "Echo:"
        record = Record(instruction=instruction, input=text, output=text.strip())
        example = {
            "text": text,
            "template_id": "bang" if text.startswith("!") else "plain",
            "pid": os.getpid(),
        }
        return [Outcome(record, record_digest(record), None, line, example, data=(text, record.output))]


def build_probe(options: Any, plan: Any = None) -> Pipeline:
    dedup = ExactDedup("duplicate_probe", lambda first: f"same as line {first}")
    return Pipeline(PROBE, Echo(), checks=(EmptyFields(), Placeholders()), sequential=(dedup,))


def probe_from_row(options: Any, row: dict[str, Any], line: int | None) -> tuple[int | None, str]:
    return (line, row["text"])


def build_plain(plan: Any) -> Pipeline:
    return build_probe(None, plan)


registry.register(Task(PROBE, build_probe, from_row=probe_from_row))

READ_ERROR = Rejected(reason="malformed_json", detail="invalid JSON", line=1, example={"raw": "{"})
TEXTS = ["a", "", " ", "{{ x }}", "!b", "a", "c"]  # lines 2..8; line 1 is the reader's rejection


def probe_items() -> list[Any]:
    return [READ_ERROR, *[(i, t) for i, t in enumerate(TEXTS, start=2)]]


def without_pid(rejected: list[Rejected]) -> list[Rejected]:
    """Rejections with the worker's pid taken out of their example (the only field a pool changes)."""
    return [
        r.model_copy(update={"example": {k: v for k, v in r.example.items() if k != "pid"}}) for r in rejected
    ]


def mask_seconds(text: str) -> str:
    return re.sub(r", \d+\.\d\d s", ", S s", text)


# --- per-step stats -----------------------------------------------------------------------------


def test_step_stats_count_every_step_exactly():
    run = Run(PROBE, probe_items(), lambda plan: build_probe(None, plan))
    out = list(run)
    assert [type(i).__name__ for i in out] == [
        "Rejected",
        "Record",
        "Rejected",
        "Rejected",
        "Record",
        "Rejected",
        "Rejected",
        "Record",
    ]
    got = [(s.name, s.kind, s.items_in, s.kept, dict(s.rejected)) for s in run.stats]
    assert got == [
        ("read", "read", 8, 7, {"malformed_json": 1}),
        ("convert", "convert", 7, 6, {"no_text": 1}),
        ("empty_fields", "check", 6, 5, {"empty_output": 1}),
        ("placeholders", "check", 5, 4, {"unrendered_placeholder": 1}),
        ("dedup", "sequential", 4, 3, {"duplicate_probe": 1}),
    ]
    # seconds are measured where a record step ran; the reader and the parent's dedup have none
    assert [s.seconds is None for s in run.stats] == [True, False, False, False, True]
    assert mask_seconds(run.report.summary(verbose=True)) == "\n".join(
        [
            "probe_core: read 8, wrote 3, rejected 5",
            "  rejected duplicate_probe: 1",
            "  rejected empty_output: 1",
            "  rejected malformed_json: 1",
            "  rejected no_text: 1",
            "  rejected unrendered_placeholder: 1",
            "  templates used: 1",
            "  step read (read): in 8, kept 7, rejected 1 (malformed_json 1)",
            "  step convert (convert): in 7, kept 6, rejected 1, S s (no_text 1)",
            "  step empty_fields (check): in 6, kept 5, rejected 1, S s (empty_output 1)",
            "  step placeholders (check): in 5, kept 4, rejected 1, S s (unrendered_placeholder 1)",
            "  step dedup (sequential): in 4, kept 3, rejected 1 (duplicate_probe 1)",
        ]
    )
    # without -v the summary has no step lines (the CLI's default text is unchanged by the core)
    assert "step" not in run.report.summary()
    # only kept records count templates; the rejected "!b" used template "bang"
    assert run.report.templates == Counter({"plain": 3})


def test_a_rejection_remembers_the_step_and_the_line_it_had():
    run = Run(PROBE, probe_items(), lambda plan: build_probe(None, plan))
    rejected = [i for i in run if isinstance(i, Rejected)]
    assert [(r.line, r.reason, r.detail) for r in rejected] == [
        (1, "malformed_json", "invalid JSON"),
        (3, "no_text", "nothing to echo"),
        (4, "empty_output", "the assistant answer is empty"),
        (6, "unrendered_placeholder", "template bang left [tgt_lang]"),
        (7, "duplicate_probe", "same as line 2"),
    ]
    # a check's rejection keeps the outcome's example (the rejects file shows what was dropped)
    assert rejected[2].example["text"] == " "


# --- the shared checks and dedup ------------------------------------------------------------


def _kept(record: Record, line: int, data: tuple[str, ...] = (), tid: str = "t1") -> Outcome:
    return Outcome(record, record_digest(record), "f.jsonl", line, {"template_id": tid}, data=data)


def test_exact_dedup_keeps_the_first_in_input_order():
    a, b = Record(instruction="a", output="1"), Record(instruction="b", output="2")
    refused = rejection("bad", "x", step="convert", line=1, dedup_key=record_digest(a))
    stream = [
        refused,  # a rejected outcome with a's key does not make a later `a` a duplicate
        _kept(a, 2),
        _kept(b, 3),
        _kept(a, 4),
        _kept(a, 5),
        Outcome(Record(instruction="a", output="1"), b"", line=6),  # empty key: never de-duplicated
    ]
    out = list(ExactDedup("dup", lambda first: f"first at {first}")(stream))
    assert [(o.line, o.kept, getattr(o.item, "detail", None)) for o in out] == [
        (1, False, "x"),
        (2, True, None),
        (3, True, None),
        (4, False, "first at 2"),
        (5, False, "first at 2"),
        (6, True, None),
    ]
    # the dedup rejection keeps where the record was read and what it was
    assert (out[3].step, out[3].source_file, out[3].example, out[3].dedup_key) == (
        "dedup",
        "f.jsonl",
        {"template_id": "t1"},
        record_digest(a),
    )
    assert ExactDedup().describe(7) == "same conversation as line 7"


def test_record_digest_is_unambiguous_and_covers_every_text():
    base = Record(instruction="ab", input="c", output="d")
    variants = [
        Record(instruction="a", input="bc", output="d"),
        Record(instruction="ab", input="c", output="d", system=""),  # "" system is no system
        Record(instruction="ab", input="c", output="d", system="s"),
        Record(instruction="ab", input="c", output="d", history=[Turn(user="u", assistant="v")]),
        Record(instruction="ab", input="c", output="d", history=[Turn(user="uv", assistant="")]),
    ]
    digests = [record_digest(v) for v in variants]
    assert digests[1] == record_digest(base)
    assert len({record_digest(base), *digests[:1], *digests[2:]}) == 5
    assert len(record_digest(base)) == 16
    # meta is not content: a record is the same conversation whatever its meta says
    assert record_digest(Record(instruction="ab", input="c", output="d", meta={"x": 1})) == record_digest(
        base
    )


def test_placeholders_tells_data_from_template():
    check = Placeholders()
    in_data = Record(
        instruction="Translate:", input="Use {{ name }} here.", output="Benutze {{ name }} hier."
    )
    # the data brought both occurrences of {{ name }}: nothing left over by the template
    assert check(_kept(in_data, 1, data=("Use {{ name }} here.", "Benutze {{ name }} hier."))) is None
    # the same record with no data declared: the template is blamed, by id
    assert check(_kept(in_data, 1, tid="tr-007")) == (
        "unrendered_placeholder",
        "template tr-007 left {{ name }}",
    )
    leftover = Record(instruction="Translate into [tgt_lang]:", input="Hallo", output="Hello")
    assert check(_kept(leftover, 1, data=("Hallo", "Hello"))) == (
        "unrendered_placeholder",
        "template t1 left [tgt_lang]",
    )
    # a template adding a second {{ name }} beyond the data's one is caught (counts, not sets)
    twice = Record(instruction="{{ name }}:", input="{{ name }}", output="x")
    assert check(_kept(twice, 1, data=("{{ name }}", "x"))) == (
        "unrendered_placeholder",
        "template t1 left {{ name }}",
    )
    # existing data (convert): every text is data, so any placeholder counts
    assert Placeholders(data_free=True)(_kept(in_data, 1, data=("Use {{ name }} here.",))) == (
        "unrendered_placeholder",
        "placeholder '{{ name }}' left in the text",
    )
    assert Placeholders(data_free=True)(_kept(Record(instruction="[word] is fine", output="ok"), 1)) is None


def test_empty_fields_reasons():
    check = EmptyFields()
    assert check(_kept(Record(instruction=" ", input="\n", output="x"), 1)) == (
        "empty_prompt",
        "the user turn is empty",
    )
    assert check(_kept(Record(instruction="", input="only input", output="x"), 1)) is None
    assert check(_kept(Record(instruction="q", output="\t"), 1)) == (
        "empty_output",
        "the assistant answer is empty",
    )
    with_turn = Record(
        instruction="q", output="a", history=[Turn(user="u", assistant="v"), Turn(user="u", assistant=" ")]
    )
    assert check(_kept(with_turn, 1)) == ("empty_turn", "history turn 2 has an empty side")


# --- executors ----------------------------------------------------------------------------------


def _slow_first_chunks(n: int) -> list[tuple[int, str]]:
    # chunks of 3: chunks 0, 2, 4... sleep 30 ms an item, so chunk 1 is done before chunk 0
    return [(i, f"~{30 if (i // 3) % 2 == 0 else 0}") if i % 3 == 0 else (i, f"t{i}") for i in range(n)]


def test_process_pool_keeps_input_order_with_chunks_of_3():
    items = _slow_first_chunks(14)
    parent = build_plain(None)
    batches = list(ProcessPool(2, chunk_items=3)(iter(items), parent, build_plain, None))
    assert [len(b) for b in batches] == [3, 3, 3, 3, 2]  # one outcome list per chunk, in order
    pooled = [o for b in batches for o in b]
    here = [o for it in items for o in build_plain(None).record_outcomes(it)]
    assert [(o.line, o.item) for o in pooled] == [(o.line, o.item) for o in here]
    assert {o.example["pid"] for o in pooled}.isdisjoint({os.getpid()})  # the steps ran in workers
    # the workers' seconds came back into the parent's pipeline for the per-step stats
    assert set(parent.seconds) == {"convert", "empty_fields", "placeholders"}


def test_process_pool_reads_at_most_two_chunks_per_worker_ahead():
    taken = []

    def items():
        for i in range(30):
            taken.append(i)
            yield (i, f"t{i}")

    batches = ProcessPool(2, chunk_items=3)(items(), build_plain(None), build_plain, None)
    first = next(batches)
    assert [o.line for o in first] == [0, 1, 2]
    assert len(taken) == 12  # 2 * num_proc chunks of 3 in flight, not the whole input
    assert [o.line for b in batches for o in b] == list(range(3, 30))


def test_a_run_on_the_pool_equals_the_run_in_process():
    here = registry.run_task(PROBE, None, probe_items())
    pooled = registry.run_task(PROBE, None, probe_items(), executor=ProcessPool(2, chunk_items=3))
    assert pooled.records == here.records
    assert without_pid(pooled.rejected) == without_pid(here.rejected)
    assert pooled.report.summary() == here.report.summary()
    assert mask_seconds(pooled.report.summary(True)) == mask_seconds(here.report.summary(True))


# --- the column contract, the batched adapter and collect ------------------------------------


def test_columns_round_trip_every_outcome_field():
    outs = build_plain(None).record_outcomes((5, "a"))
    outs.append(
        rejection("r", "d", step="convert", source_file="f", line=9, example={"k": [1]}, tally=("t:x",))
    )
    cols = outcomes_to_columns(outs)
    assert list(cols) == list(COLUMNS)
    assert cols["kind"] == ["record", "rejected"]
    back = list(outcomes_from_columns(cols))
    assert [(o.item, o.dedup_key, o.source_file, o.line, o.example, o.step, o.tally) for o in back] == [
        (o.item, o.dedup_key, o.source_file, o.line, o.example, o.step, o.tally) for o in outs
    ]
    # `data` stays in the process that ran the checks
    assert back[0].data == ()


def test_batch_fn_pickles_and_reads_rows_or_items():
    fn = registry.batch_fn(PROBE, None)
    again = pickle.loads(pickle.dumps(fn))
    rows = {"text": ["a", "b"]}
    assert again(rows, [0, 1]) == fn(rows, [0, 1])
    via_items = fn(item_batch([(1, "a"), (2, "b")]))
    assert [p for p in via_items["payload"]] == fn(rows, [0, 1])["payload"]


def test_collect_finishes_a_premapped_list_like_the_run():
    items = probe_items()[1:]  # rows only (a table has no reader rejection)
    rows = [{"text": t} for _, t in items]
    fn = registry.batch_fn(PROBE, None)
    mapped = fn({"text": [r["text"] for r in rows]}, list(range(1, len(rows) + 1)))
    premapped = [
        dict(zip(COLUMNS, vals, strict=True)) for vals in zip(*(mapped[c] for c in COLUMNS), strict=True)
    ]
    finished = registry.collect(PROBE, None, premapped)
    direct = registry.run_task(PROBE, None, items)
    assert (finished.records, finished.rejected) == (direct.records, direct.rejected)
    assert (
        finished.report.summary()
        == direct.report.summary()
        == "\n".join(
            [
                "probe_core: read 7, wrote 3, rejected 4",
                "  rejected duplicate_probe: 1",
                "  rejected empty_output: 1",
                "  rejected no_text: 1",
                "  rejected unrendered_placeholder: 1",
                "  templates used: 1",
            ]
        )
    )
    # an iterator of rows works too (collect takes it into a list)
    assert registry.collect(PROBE, None, iter(premapped)).records == direct.records


def test_collect_names_missing_columns():
    with pytest.raises(ConfigError) as err:
        registry.collect(PROBE, None, [{"kind": "record", "payload": "{}"}])
    assert str(err.value) == "collect() needs the columns kind, payload, dedup_key; missing dedup_key"


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        registry.get("no_such_task")
    assert str(err.value).startswith("unknown task 'no_such_task' (known: ")
    assert "convert" in str(err.value) and "translation" in str(err.value) and PROBE in str(err.value)
