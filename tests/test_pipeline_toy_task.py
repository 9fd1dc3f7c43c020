"""A task registered from this test module (nothing under instructgen/ knows it) runs through every
path the core offers, with the same records, rejections and report on each:

(a) `pipeline.run_task` over a list and over a file read by the reader registry;
(b) `pipeline.batch_fn` + `datasets.Dataset.map(batched=True, with_indices=True, num_proc=2)` +
    `pipeline.collect`;
(c) the process pool (`num_proc=2`, the CLI's `--num-proc`), and one with chunks of 3;
(d) the report: the summary text exactly, the per-step (-v) lines, rejections by reason from the
    task's own convert step, a shared check (EmptyFields, Placeholders) and the shared ExactDedup.

This is the "how to add a task" of docs/pipeline.md, done: an options dataclass, a convert step,
`build`/`from_row` as module-level functions (workers import them by name), `register(Task(...))`.
The batched contract (`Dataset.map(batched=True, with_indices=True, num_proc=N)` on a picklable
callable) is the one datasets documents for `map` (huggingface/datasets, src/datasets/arrow_dataset.py,
`Dataset.map`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from instructgen import pipeline
from instructgen.determinism import choose_index
from instructgen.io.registry import open_input
from instructgen.pipeline.executors import ProcessPool
from instructgen.pipeline.outcome import Outcome, rejection
from instructgen.pipeline.registry import Task, finished, start
from instructgen.pipeline.run import Pipeline, Result
from instructgen.pipeline.steps import EmptyFields, ExactDedup, Placeholders, record_digest
from instructgen.schema import Record, Rejected

# --- the toy task: "shout" a text (its letters in capitals) --------------------------------------

NAME = "shout"
TEMPLATES = {
    "shout-1": "Write this in capitals:",
    "shout-2": "Shout it:",
    "shout-3": "Say it loudly, letters only:",
}
BROKEN = ("shout-x", "Shout it in [tgt_lang]:")  # a template that forgot to render a variable


@dataclass(frozen=True)
class ShoutOptions:
    seed: int = 0
    dedup: bool = True


class ShoutItem(NamedTuple):
    line: int | None
    text: str
    source_file: str | None = None


class Shout:
    """The convert step: a text -> one record, or the step's own rejection of an empty text."""

    name = "shout"

    def __init__(self, options: ShoutOptions) -> None:
        self.options = options

    def __call__(self, item: ShoutItem) -> list[Outcome]:
        text = item.text
        if not text.strip():
            return [
                rejection(
                    "empty_text",
                    "nothing to shout",
                    step="",
                    source_file=item.source_file,
                    line=item.line,
                    example={"text": text},
                )
            ]
        if text.startswith("!"):
            tid, instruction = BROKEN
        else:
            tid = sorted(TEMPLATES)[choose_index(len(TEMPLATES), self.options.seed, NAME, text)]
            instruction = TEMPLATES[tid]
        answer = " ".join("".join(c for c in text if c.isalpha() or c == " ").split()).upper()
        record = Record(instruction=instruction, input=text, output=answer)
        return [
            Outcome(
                record,
                dedup_key=record_digest(record),
                source_file=item.source_file,
                line=item.line,
                example={"text": text, "template_id": tid, "instruction_lang": "en"},
                data=(text,),
            )
        ]


def build(options: ShoutOptions, plan: Any = None) -> Pipeline:
    dedup = ExactDedup("duplicate_text", lambda first: f"same text as line {first}")
    return Pipeline(
        NAME,
        Shout(options),
        checks=(EmptyFields(), Placeholders()),
        sequential=(dedup,) if options.dedup else (),
    )


def from_row(options: ShoutOptions, row: dict[str, Any], line: int | None) -> ShoutItem:
    return ShoutItem(line, row["text"])


def observer(options: ShoutOptions):
    def observe(outcome: Outcome, result: Result) -> None:
        if outcome.kept:
            result.info["letters"] = result.info.get("letters", 0) + sum(
                c.isalpha() for c in outcome.item.output
            )

    return observe


def finish(options: ShoutOptions, result: Result) -> None:
    result.report.notes.append(f"letters shouted: {result.info.get('letters', 0)}")


TASK = pipeline.register(Task(NAME, build, from_row=from_row, observer=observer, finish=finish))


def read_file(path: Any) -> Iterator[ShoutItem | Rejected]:
    """The file source: JSONL rows through the reader registry (`rows` kind), bad rows counted."""
    for got in open_input("rows", path, on_error="skip"):
        yield got if isinstance(got, Rejected) else ShoutItem(got[0], got[1]["text"], str(path))


# --- the data -----------------------------------------------------------------------------------

TEXTS = [
    "hello world",  # 1
    "Good morning",  # 2
    "",  # 3  the convert step's own rejection: empty_text
    "1234",  # 4  no letters: an empty answer, the shared EmptyFields check (empty_output)
    "!wow",  # 5  the broken template: the shared Placeholders check (unrendered_placeholder)
    "hello world",  # 6  the shared ExactDedup: duplicate_text of line 1
    "use {{ name }} here",  # 7  a placeholder the data brought: kept
    "Good night",  # 8
    "good morning",  # 9  not a duplicate of line 2 (case differs in the input)
    "What a day!",  # 10
    "Good morning",  # 11 duplicate of line 2
    "  ",  # 12 empty_text
]
OPTIONS = ShoutOptions(seed=7)

SUMMARY = "\n".join(
    [
        "shout: read 12, wrote 6, rejected 6",
        "  rejected duplicate_text: 2",
        "  rejected empty_text: 2",
        "  rejected empty_output: 1",
        "  rejected unrendered_placeholder: 1",
        "  instruction languages: en 6",
        "  templates used: 3",
        "  note: letters shouted: 60",
    ]
)
STEP_LINES = [
    "  step read (read): in 12, kept 12, rejected 0",
    "  step shout (convert): in 12, kept 10, rejected 2 (empty_text 2)",
    "  step empty_fields (check): in 10, kept 9, rejected 1 (empty_output 1)",
    "  step placeholders (check): in 9, kept 8, rejected 1 (unrendered_placeholder 1)",
    "  step dedup (sequential): in 8, kept 6, rejected 2 (duplicate_text 2)",
]
REJECTED = [  # (line, reason, detail) in input order
    (3, "empty_text", "nothing to shout"),
    (4, "empty_output", "the assistant answer is empty"),
    (5, "unrendered_placeholder", "template shout-x left [tgt_lang]"),
    (6, "duplicate_text", "same text as line 1"),
    (11, "duplicate_text", "same text as line 2"),
    (12, "empty_text", "nothing to shout"),
]


def list_items() -> list[ShoutItem]:
    return [ShoutItem(i, t) for i, t in enumerate(TEXTS, start=1)]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    return path


def no_seconds(text: str) -> str:
    """-v lines without their seconds: the only part that differs between executors (a premapped
    run measured none in this process)."""
    return re.sub(r", \d+\.\d\d s", "", text)


def facts(result: Result) -> tuple:
    """What every path must agree on: records, rejections (without the file name) and the report."""
    return (
        result.records,
        [(r.line, r.reason, r.detail, r.example) for r in result.rejected],
        result.report.summary(),
        no_seconds(result.report.summary(verbose=True)),
        result.info,
    )


# --- (a) the API ---------------------------------------------------------------------------------


def test_run_task_on_a_list_gives_the_expected_records_and_report():
    result = pipeline.run_task(NAME, OPTIONS, list_items())
    assert result.report.summary() == SUMMARY
    assert no_seconds(result.report.summary(verbose=True)) == SUMMARY + "\n" + "\n".join(STEP_LINES)
    assert [(r.line, r.reason, r.detail) for r in result.rejected] == REJECTED
    assert [(r.input, r.output) for r in result.records] == [
        ("hello world", "HELLO WORLD"),
        ("Good morning", "GOOD MORNING"),
        ("use {{ name }} here", "USE NAME HERE"),
        ("Good night", "GOOD NIGHT"),
        ("good morning", "GOOD MORNING"),
        ("What a day!", "WHAT A DAY"),
    ]
    # the template is a pure function of (seed, task, text): the same text, the same instruction
    assert {r.instruction for r in result.records} <= set(TEMPLATES.values())
    assert result.letters == 60  # the task's observer, read as an attribute of the one Result type
    # the dedup rejection's example is the duplicate's own, as the rejects file shows it
    assert result.rejected[3].example == {
        "text": "hello world",
        "template_id": result.rejected[3].example["template_id"],
        "instruction_lang": "en",
    }


def test_run_task_on_a_file_equals_the_list(jsonl):
    from_list = pipeline.run_task(NAME, OPTIONS, list_items())
    from_file = pipeline.run_task(NAME, OPTIONS, lambda: read_file(jsonl))
    assert facts(from_file) == facts(from_list)
    assert {r.source_file for r in from_file.rejected} == {str(jsonl)}


def test_a_bad_row_in_the_file_is_the_read_steps_rejection(jsonl):
    with jsonl.open("a", encoding="utf-8") as f:
        f.write('{"text": \n')
    result = pipeline.run_task(NAME, OPTIONS, lambda: read_file(jsonl))
    assert result.report.summary().splitlines()[:2] == [
        "shout: read 13, wrote 6, rejected 7",
        "  rejected duplicate_text: 2",
    ]
    assert (result.rejected[-1].line, result.rejected[-1].reason) == (13, "malformed_json")
    steps = [s.line() for s in result.report.steps]
    assert steps[0] == "  step read (read): in 13, kept 12, rejected 1 (malformed_json 1)"
    assert no_seconds(steps[1]) == STEP_LINES[1]


def test_no_dedup_option_keeps_duplicates():
    result = pipeline.run_task(NAME, ShoutOptions(seed=7, dedup=False), list_items())
    assert result.report.summary().splitlines()[0] == "shout: read 12, wrote 8, rejected 4"
    assert [s.name for s in result.report.steps] == ["read", "shout", "empty_fields", "placeholders"]


# --- (b) the batched adapter through datasets ----------------------------------------------------


def test_batch_fn_with_dataset_map_num_proc_2_then_collect_equals_the_run():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"text": t} for t in TEXTS])
    fn = pipeline.batch_fn(NAME, OPTIONS)
    mapped = ds.map(
        fn, batched=True, batch_size=4, with_indices=True, num_proc=2, remove_columns=ds.column_names
    )
    assert mapped.column_names == ["kind", "payload", "dedup_key"]
    collected = pipeline.collect(NAME, OPTIONS, mapped)
    assert facts(collected) == facts(pipeline.run_task(NAME, OPTIONS, list_items()))
    assert collected.report.summary() == SUMMARY


def test_a_dataset_source_runs_through_dataset_map():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"text": t} for t in TEXTS])
    result = pipeline.run_task(NAME, OPTIONS, ds, num_proc=2)  # DatasetsMap: the table itself is mapped
    assert facts(result) == facts(pipeline.run_task(NAME, OPTIONS, list_items()))
    # the seconds the record steps took in the map's workers came back for -v
    assert [s.seconds is not None for s in result.report.steps] == [False, True, True, True, False]


# --- (c) the process pool ------------------------------------------------------------------------


def test_process_pool_num_proc_2_equals_the_run(jsonl):
    run = start(NAME, OPTIONS, lambda: read_file(jsonl), num_proc=2)
    assert isinstance(run._executor, ProcessPool) and run._executor.num_proc == 2  # the CLI's --num-proc
    pooled = run.collect()
    finished(NAME, OPTIONS, run)
    assert facts(pooled) == facts(pipeline.run_task(NAME, OPTIONS, list_items()))
    # seconds measured in the workers came back for the record steps
    assert [s.seconds is not None for s in pooled.report.steps] == [False, True, True, True, False]


def test_process_pool_with_chunks_of_3_equals_the_run():
    pooled = pipeline.run_task(NAME, OPTIONS, list_items(), executor=ProcessPool(2, chunk_items=3))
    assert facts(pooled) == facts(pipeline.run_task(NAME, OPTIONS, list_items()))


# --- (d) the registry itself --------------------------------------------------------------------


def test_the_task_is_a_registry_entry_like_the_builtin_ones():
    assert pipeline.registry.get(NAME) is TASK
    assert {NAME, "translation", "convert"} <= set(pipeline.registry.names())


# --- a check added from outside the package (docs/pipeline.md, "How to add a check") ------------


class NoDigits:
    """A check: a record whose input holds a digit is rejected (reason, detail), else None."""

    name = "no_digits"

    def __call__(self, outcome: Outcome) -> tuple[str, str] | None:
        digits = [c for c in outcome.item.input if c.isdigit()]
        return ("has_digits", f"the text holds {len(digits)} digit(s)") if digits else None


def build_strict(options: ShoutOptions, plan: Any = None) -> Pipeline:
    built = build(options, plan)
    built.checks = (*built.checks, NoDigits())
    return built


STRICT = pipeline.register(dataclasses.replace(TASK, name="shout_strict", build=build_strict))


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_check_added_to_a_registered_task_runs_after_the_others(num_proc):
    items = [*list_items(), ShoutItem(13, "Route 66")]
    result = pipeline.run_task("shout_strict", OPTIONS, items, num_proc=num_proc)
    # "1234" was rejected by empty_fields before no_digits saw it: checks run in the order listed
    assert [(r.line, r.reason, r.detail) for r in result.rejected if r.reason == "has_digits"] == [
        (13, "has_digits", "the text holds 2 digit(s)")
    ]
    assert result.report.summary().splitlines()[0] == "shout_strict: read 13, wrote 6, rejected 7"
    assert (
        no_seconds(result.report.steps[4].line())
        == "  step no_digits (check): in 9, kept 8, rejected 1 (has_digits 1)"
    )
