"""The in-process run's batches (instructgen/pipeline/run.py `in_process`, `Pipeline.run_batch`) and
classification's one check per read (tasks/classification.py `prepare`).

The in-process run converts a few items at a time so that the core's own work (the step clocks, the
loops) is paid per batch, not per item. What an item-by-item loop guaranteed must still hold: an
error while reading or converting stops the run after every outcome before it was yielded (a sink
that streams has written exactly those), `report.read` counts what was read, and `-v` still has
seconds for every record step. Batches stay small because a batch's outcomes are alive together:
past the cycle collector's young threshold every batch triggers collections (measured: 256 items
per batch made ~500 collections on a 50,000-sentence CoNLL run against ~5 for c4f1698).
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from instructgen.converters.classification import ClassificationConverter, ClassifyOptions, iter_rows
from instructgen.converters.ner import NerOptions
from instructgen.errors import InputError
from instructgen.io.tagged import read_tagged
from instructgen.pipeline import registry
from instructgen.pipeline import run as run_module
from instructgen.pipeline.outcome import Outcome, rejection
from instructgen.pipeline.run import BATCH_ITEMS, Pipeline, Run
from instructgen.pipeline.steps import EmptyFields, Placeholders
from instructgen.schema import Record, Rejected


class Boom(RuntimeError):
    pass


class Echo:
    """(line, text) -> an echo record; "boom" raises (a defect in a task's convert step), "" is refused."""

    name = "convert"

    def __call__(self, item: Any) -> list[Outcome]:
        line, text = item
        if text == "boom":
            raise Boom(f"line {line}")
        if text == "":
            return [rejection("no_text", "nothing to echo", step="", line=line, example={"text": text})]
        record = Record(instruction="Echo:", input=text, output=text)
        return [Outcome(record, b"", None, line, {"text": text}, data=(text,))]


def build_echo(plan: Any = None) -> Pipeline:
    return Pipeline("echo_batches", Echo(), checks=(EmptyFields(), Placeholders()))


def items(n: int, boom_at: int | None = None) -> list[tuple[int, str]]:
    return [(i, "boom" if i == boom_at else ("" if i % 7 == 3 else f"t{i}")) for i in range(n)]


@pytest.mark.parametrize("boom_at", [0, 5, BATCH_ITEMS - 1, BATCH_ITEMS, BATCH_ITEMS + 3])
def test_a_convert_error_yields_every_outcome_before_it(boom_at):
    got: list[Record | Rejected] = []
    with pytest.raises(Boom, match=f"line {boom_at}$"):
        for item in Run("echo_batches", items(100, boom_at), build_echo):
            got.append(item)
    # what an item-by-item loop yields before the failing item: records and rejections, in order
    expected = [o.item for it in items(boom_at) for o in build_echo().record_outcomes(it)]
    assert got == expected
    assert len(got) == boom_at


def test_a_read_error_yields_every_outcome_before_it_and_counts_what_was_read():
    def source():
        for i in range(BATCH_ITEMS + 10):
            if i == BATCH_ITEMS + 5:
                raise InputError("bad line", path="f.txt", line=i)
            yield (i, f"t{i}")

    run = Run("echo_batches", source, build_echo)
    got = []
    with pytest.raises(InputError, match="bad line"):
        for item in run:
            got.append(item)
    assert [r.input for r in got] == [f"t{i}" for i in range(BATCH_ITEMS + 5)]
    assert run.report.read == BATCH_ITEMS + 5


def test_record_outcomes_raises_the_convert_steps_error_and_names_rejecting_steps():
    with pytest.raises(Boom, match="line 4"):
        build_echo().record_outcomes((4, "boom"))
    outs = build_echo().outcomes_of([(1, "a"), (3, ""), (4, "{{ x }}")])
    assert [(o.step, type(o.item).__name__) for o in outs] == [
        ("", "Record"),
        ("convert", "Rejected"),  # the convert step's own rejection is named after it
        # a check's rejection is named after the check: "{{ x }}" is written twice (input and
        # output) but the data brought it in once
        ("placeholders", "Rejected"),
    ]


def test_steps_are_timed_once_per_batch_not_per_item(monkeypatch):
    calls = []

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            calls.append(1)
            return float(len(calls))

    monkeypatch.setattr(run_module, "time", Clock)
    n = 3 * BATCH_ITEMS + 1  # 4 batches
    run = Run("echo_batches", items(n), build_echo)
    out = list(run)
    assert len(out) == n
    assert len(calls) == 4 * (2 + 2)  # per batch: convert's two reads, one more per check
    # every record step has seconds in the -v stats (per-batch sums), the reader has none
    assert [(s.name, s.seconds is not None) for s in run.stats] == [
        ("read", False),
        ("convert", True),
        ("empty_fields", True),
        ("placeholders", True),
    ]


def test_a_ner_run_keeps_the_cycle_collector_quiet(shared_data):
    """The conversion pass of CoNLL testa (3,250 sentences): with batches of 256 items it made ~35
    young collections here (the batch's outcomes outlive the threshold), with 32 about one."""
    path = shared_data / "conll2003_en" / "eng.testa"
    options = NerOptions(dedup=False)
    collections = [0, 0, 0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    run = registry.start("ner", options, lambda: read_tagged(path))  # the plan pass is done here
    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever the test session set
    gc.callbacks.append(count)
    try:
        written = sum(isinstance(x, Record) for x in run)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*threshold)
    assert written == 3250
    assert collections[0] <= 8, collections
    assert collections[2] == 0, collections


# --- classification: one row check per read ----------------------------------------------------


@pytest.fixture
def sst2(shared_data):
    return shared_data / "sst2" / "glue_sst2_dev.tsv"


def _counting_checks(monkeypatch) -> list[int]:
    calls = []
    real = ClassificationConverter._check

    def check(self, item, source, *, first=False):
        calls.append(1)
        return real(self, item, source, first=first)

    monkeypatch.setattr(ClassificationConverter, "_check", check)
    return calls


def _options(sst2) -> ClassifyOptions:
    return ClassifyOptions(text_col="sentence", label_names=("negative", "positive"), source_file=str(sst2))


def test_classification_checks_each_row_once_per_read(sst2, monkeypatch):
    options = _options(sst2)
    rows = list(iter_rows(sst2))
    calls = _counting_checks(monkeypatch)
    replayed = registry.run_task("classification", options, lambda: iter_rows(sst2))
    assert len(calls) == len(rows) == 872  # one read, replayed: each row checked once, not twice
    calls.clear()
    monkeypatch.setattr("instructgen.converters.twopass.REPLAY_LIMIT", 10)
    reread = registry.run_task("classification", options, lambda: iter_rows(sst2))
    assert len(calls) == 2 * len(rows)  # read twice (past the replay limit): checked once per read
    # the records are those of plain rows checked by the convert step (the batched adapter's path)
    calls.clear()
    fn = registry.batch_fn("classification", options, replayed.plan)
    plain = [o.item for row in rows for o in fn.pipeline.record_outcomes(row)]
    assert len(calls) == len(rows)
    assert replayed.records == reread.records == [x for x in plain if isinstance(x, Record)]
    assert replayed.report.written == 872 and replayed.labels_out == {"positive": 444, "negative": 428}


def test_a_missing_column_on_the_first_row_still_stops_the_plan_pass(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("sentence\tlabel\nfine\tpos\n", encoding="utf-8")
    with pytest.raises(InputError, match="no text column 'text'"):
        registry.start("classification", ClassifyOptions(source_file=str(p)), lambda: iter_rows(p))


# --- NER: a sentence over the empty quota is rejected before it is rendered ---------------------


def _ner_runs(path, options, monkeypatch, *, reread: bool = False):
    """(run with the task's prepare, run without it: every sentence rendered, the quota applied
    after), and how many sentences each rendered."""
    from dataclasses import replace

    from instructgen.converters.ner import NerConverter

    renders = []
    real = NerConverter.render

    def render(self, *args, **kwargs):
        renders.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(NerConverter, "render", render)
    if reread:
        monkeypatch.setattr("instructgen.converters.twopass.REPLAY_LIMIT", 10)
    task = registry.get("ner")
    numbered = registry.run_task("ner", options, lambda: read_tagged(path))
    n_numbered = len(renders)
    renders.clear()
    registry.register(replace(task, prepare=None))
    try:
        plain = registry.run_task("ner", options, lambda: read_tagged(path))
    finally:
        registry.register(task)
    return numbered, plain, n_numbered, len(renders)


@pytest.mark.parametrize("reread", [False, True])
def test_ner_rejects_sentences_over_the_quota_without_rendering_them(shared_data, monkeypatch, reread):
    """CoNLL testa, per-type (its default empty share 0.15 is a quota): the same records, rejections
    (too_many_empty included, with their lines and texts), counts and notes as rendering every
    sentence first, read once (replayed) or twice (past the replay limit: the numbering restarts)."""
    path = shared_data / "conll2003_en" / "eng.testa"
    numbered, plain, n_numbered, n_plain = _ner_runs(
        path, NerOptions(target="per-type", dedup=False), monkeypatch, reread=reread
    )
    assert numbered.records == plain.records
    assert numbered.rejected == plain.rejected
    assert numbered.report.summary(verbose=False) == plain.report.summary(verbose=False)
    assert numbered.report.rejected == {"too_many_empty": 186}
    assert numbered.info["empty_answers"] == plain.info["empty_answers"]
    assert n_plain == 3250
    # all 186 over the quota are sentences whose every tag is "O", so none of them was rendered
    assert n_numbered == 3250 - 186


def test_ner_list_with_a_ratio_skips_renders_and_no_quota_numbers_nothing(shared_data, monkeypatch):
    path = shared_data / "conll2003_en" / "eng.testa"
    numbered, plain, n_numbered, n_plain = _ner_runs(
        path, NerOptions(target="list", max_empty_ratio=0.1, meta=True), monkeypatch
    )
    assert numbered.records == plain.records and numbered.rejected == plain.rejected
    over = numbered.report.rejected["too_many_empty"]
    assert over > 0 and n_numbered == n_plain - over
    from instructgen.tasks.ner import prepare

    assert prepare(NerOptions(target="list")) is None  # no quota possible: nothing to number
    assert prepare(NerOptions(target="per-type", empty_share=None)) is None


def test_empty_quota_refuses_a_convert_step_rejection_within_the_quota():
    from instructgen.tasks.ner import NO_ENTITIES, EmptyQuota, over_quota

    early = over_quota("a b", "detail", "f", 3, ())
    early.example = {"text": "a b", NO_ENTITIES: True}
    with pytest.raises(RuntimeError, match="line 3: rejected as over the empty quota while within it"):
        list(EmptyQuota(1, "detail")([early]))
    # over the allowance, it is rejected exactly as a rendered sentence would be
    (out,) = list(EmptyQuota(0, "detail")([early]))
    assert out.item == over_quota("a b", "detail", "f", 3, ()).item
    assert NO_ENTITIES not in out.item.example
