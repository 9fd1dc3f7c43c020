"""The one run loop: plan, record steps (on an executor), sequential steps, counting; one result type.

Every converting command and API call goes through `Run`: translation, NER, classification,
existing instruction data (`convert`) and any task registered from outside the package. A run

1. opens its source (a function that reads the input afresh, a collection, or a one-shot iterator);
2. when the task has a plan, reads it once to plan (`TwoPass`: a second read, not a copy in memory);
3. runs the record steps (convert, then checks) in-process, in a process pool, or through whatever
   executor is given, always getting outcomes back in input order;
4. runs the sequential steps (exact dedup, quotas) in the parent, in input order;
5. counts everything into one `Report` (read, written, rejected by reason, templates, instruction
   languages, per-step stats) and yields records and rejections as they come, so a sink writes
   while the input is read and memory stays flat.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from ..converters.twopass import TwoPass
from ..quality.report import Report
from ..schema import Record, Rejected
from .outcome import Outcome, replace_with_rejection
from .steps import Check, ConvertStep, SequentialStep, StepStats


@dataclass
class Pipeline:
    """The steps of one run, built once per process from a task's options and plan.

    `outcomes_of(items)` (a batch) and `record_outcomes(item)` are the pure part (convert, then
    checks) that any executor may run in a worker; `sequential` runs in the parent. `seconds`
    accumulates the time each record step took in this process, for the per-step stats: measured
    per batch (a step's seconds are the sum over the batches it ran on), not per item.
    """

    task: str
    convert: ConvertStep
    checks: tuple[Check, ...] = ()
    sequential: tuple[SequentialStep, ...] = ()
    seconds: Counter = field(default_factory=Counter)

    def record_outcomes(self, item: Any) -> list[Outcome]:
        """The record steps over one item (see `outcomes_of` for a batch: what executors should call)."""
        outs, error = self.run_batch([item])
        if error is not None:
            raise error
        return outs

    def outcomes_of(self, items: list[Any]) -> list[Outcome]:
        """The record steps over a batch of items: their outcomes, flat, in input order."""
        outs, error = self.run_batch(items)
        if error is not None:
            raise error
        return outs

    def run_batch(self, items: list[Any]) -> tuple[list[Outcome], Exception | None]:
        """The record steps over a batch: convert every item, then each check over the batch's kept
        records. Each step is timed once per batch (two clock reads per step, not per item: on
        ~40-80 us of work per item the per-item clock pairs and loops cost several percent).

        When the convert step raises on an item, the outcomes of the items before it (checked) come
        back with the error instead of being lost, so a caller streaming to a sink writes exactly
        what an item-by-item run wrote before it stopped.
        """
        clock = time.perf_counter
        convert = self.convert
        name = convert.name
        out: list[Outcome] = []
        append, extend = out.append, out.extend
        error: Exception | None = None
        t0 = clock()
        try:
            for item in items:
                if isinstance(item, Rejected):  # the reader already refused it (on_error=skip)
                    append(Outcome(item, b"", item.source_file, item.line, item.example, "read"))
                else:
                    extend(convert(item))
        except Exception as exc:  # handed back with the outcomes before it
            error = exc
        t1 = clock()
        seconds = self.seconds
        seconds[name] += t1 - t0
        kept = []
        for i, o in enumerate(out):
            if isinstance(o.item, Record):
                kept.append(i)
            elif not o.step:
                o.step = name
        for check in self.checks:
            still = []
            for i in kept:
                problem = check(out[i])
                if problem is None:
                    still.append(i)
                else:
                    out[i] = replace_with_rejection(out[i], problem[0], problem[1], check.name)
            kept = still
            t2 = clock()
            seconds[check.name] += t2 - t1
            t1 = t2
        return out, error

    def step_stats(self) -> list[StepStats]:
        """Empty stats for each step, in pipeline order (counts are filled in by `Run`)."""
        stats = [StepStats("read", "read"), StepStats(self.convert.name, "convert")]
        stats += [StepStats(c.name, "check") for c in self.checks]
        stats += [StepStats(s.name, "sequential") for s in self.sequential]
        return stats


@dataclass
class Result:
    """What any run produced: kept records, rejections, the report, the plan and the task's extras.

    One type for every command and API call (it replaced `api.Result`, `NerRun` and `ClassifyRun`).
    Task-specific facts live in `info` and read as attributes: `result.scheme`, `result.labels`
    (NER), `result.labels_out` (classification); `tallies` counts what the record steps tallied.
    """

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    report: Report = field(default_factory=lambda: Report(task="translation"))
    plan: Any = None
    tallies: Counter = field(default_factory=Counter)
    info: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        info = self.__dict__.get("info")
        if info is not None and name in info:
            return info[name]
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")

    def add(self, item: Record | Rejected) -> None:
        (self.records if isinstance(item, Record) else self.rejected).append(item)


# An executor: (items, the parent's pipeline, build, plan) -> outcome lists in input order. It builds
# its own pipelines from `build(plan)` wherever the record steps run (see executors.py).
Executor = Callable[[Iterable[Any], Pipeline, Callable[[Any], Pipeline], Any], Iterator[list[Outcome]]]


# Items the in-process run converts at a time: each step is timed once per batch and the loops run
# over lists, so the per-item cost of the core stays small. Kept small on purpose: a batch's
# outcomes (records, dicts, lists: ~10 tracked containers per item) are all alive at once, and once
# more than the collector's young threshold (700) are, every batch triggers collections that also
# promote them, so full collections walk the whole heap (the plan pass's held items too): 256
# items per batch made ~500 collections on a 50,000-sentence NER run and cost ~20% CPU; 32 makes ~5.
BATCH_ITEMS = 32


def in_process(
    items: Iterable[Any], pipeline: Pipeline, batch_items: int = BATCH_ITEMS, counted: Any = None
) -> Iterator[list[Outcome]]:
    """Run the record steps here, a batch of items at a time, yielding each batch's outcomes.

    An error while reading or converting stops the run after the outcomes of every item before it
    were yielded, as an item-by-item loop would have. `counted(n)` is told how many items each
    batch read (the run's `report.read` when there was no plan pass)."""
    it = iter(items)
    run_batch = pipeline.run_batch
    while True:
        chunk: list[Any] = []
        append = chunk.append
        read_error: Exception | None = None
        try:
            for item in it:
                append(item)
                if len(chunk) >= batch_items:
                    break
        except Exception as exc:  # raised once the items read before it are done
            read_error = exc
        if counted is not None:
            counted(len(chunk))
        if chunk:
            outs, error = run_batch(chunk)
            yield outs
            if error is not None:
                raise error
        if read_error is not None:
            raise read_error
        if len(chunk) < batch_items:
            return


class Run:
    """One run of a task over a source: iterate it for records and rejections in input order.

    `build(plan)` makes the `Pipeline` (the parent's copy; executors build their own per worker
    from the same arguments). `plan(items)` reads the whole input once (None: no plan pass). After
    construction `report.read` is already the input's size when there was a plan pass (a progress
    bar's total). `observe(outcome, result)` lets the task keep its own counts (labels written).
    With `from_row`, `source` is a table (a `datasets.Dataset`) whose rows become items; an
    executor with `reads_source` (`DatasetsMap`) is then given the table itself. `prepare(item)`,
    with a plan, is applied to each item on both passes (see `TwoPass`): work the plan needs that
    the convert step can reuse (classification's checked row) is done once per read, not twice.
    """

    def __init__(
        self,
        task: str,
        source: Any,
        build: Callable[[Any], Pipeline],
        *,
        plan: Callable[[Iterable[Any]], Any] | None = None,
        executor: Executor | None = None,
        observe: Callable[[Outcome, Result], None] | None = None,
        shown: str | None = None,
        result: Result | None = None,
        from_row: Callable[[dict[str, Any], int | None], Any] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> None:
        self.result = result if result is not None else Result(report=Report(task=task))
        self.report = self.result.report
        self.task = task
        self._observe = observe
        self._executor = executor
        self._build = build
        self._rows: Any = None
        self._planned = False
        if from_row is not None:  # a table (a datasets.Dataset): rows become the task's items
            rows = source
            source = lambda: (from_row(row, i) for i, row in enumerate(rows, 1))  # noqa: E731
            self._rows = rows
        if plan is not None:
            passes = TwoPass(source, prepare, shown=shown)
            self.result.plan = plan(passes.first())
            self.report.read += passes.count
            self._planned = True
            self._items: Iterable[Any] = passes.second()
        else:
            self._items = source() if callable(source) else source
        self.pipeline = build(self.result.plan)
        self.stats = self.pipeline.step_stats()
        self.report.steps = self.stats
        # called once the run has been iterated to its end (a task's notes: `registry.stream`)
        self.on_finish: list[Callable[[], None]] = []

    @property
    def total(self) -> int | None:
        """The number of items the run will account for, when a plan pass counted them."""
        return self.report.read if self._planned else None

    def _count_read(self, n: int) -> None:
        self.report.read += n

    def _counted_items(self) -> Iterator[Any]:
        report = self.report
        for item in self._items:
            if not self._planned:
                report.read += 1
            yield item

    def _batches(self) -> Iterable[list[Outcome]]:
        """Outcome lists in input order, from whichever executor runs the record steps."""
        executor = self._executor
        if executor is None:
            counted = None if self._planned else self._count_read
            return in_process(self._items, self.pipeline, counted=counted)
        if getattr(executor, "reads_source", False):  # Dataset.map: it is given the dataset itself
            table = self._rows
            if not self._planned:
                self.report.read += len(table)
            return executor(table, self.pipeline, self._build, self.result.plan)
        return executor(self._counted_items(), self.pipeline, self._build, self.result.plan)

    def _outcomes(self) -> Iterator[Outcome]:
        return chain.from_iterable(self._batches())

    def __iter__(self) -> Iterator[Record | Rejected]:
        batches: Iterable[Iterable[Outcome]] = self._batches()
        sequential = self.pipeline.sequential
        if sequential:  # steps that see the whole stream in order: one stream through them
            stream: Iterable[Outcome] = chain.from_iterable(batches)
            for step in sequential:
                stream = step(stream)
            batches = (stream,)
        report, result, observe = self.report, self.result, self._observe
        by_step = {s.name: s for s in self.stats}
        templates, languages, tallies = report.templates, report.languages, result.tallies
        for outs in batches:
            for o in outs:
                item = o.item
                if isinstance(item, Record):
                    report.written += 1
                    example = o.example
                    tid = example.get("template_id")
                    if tid is not None:
                        templates[tid] += 1
                    lang = example.get("instruction_lang")
                    if lang is not None:
                        languages[lang] += 1
                else:
                    report.reject(item)
                    stat = by_step.get(o.step)
                    if stat is not None:
                        stat.rejected[item.reason] += 1
                if o.tally:
                    tallies.update(o.tally)
                if observe is not None:
                    observe(o, result)
                yield item
        self._finish_stats()
        for finish in self.on_finish:
            finish()

    def _finish_stats(self) -> None:
        """Fill in items in / kept per step from the rejections each step made (exact for any
        executor) and the seconds the parent's pipeline measured (executors add their workers')."""
        seen = self.report.read
        later_rejections = sum(sum(s.rejected.values()) for s in self.stats[2:])
        for i, s in enumerate(self.stats):
            s.items_in = seen
            if s.kind == "convert":
                s.kept = self.report.written + later_rejections
            else:
                s.kept = s.items_in - sum(s.rejected.values())
            if i >= 2:
                later_rejections -= sum(s.rejected.values())
            seen = s.kept
            secs = self.pipeline.seconds.get(s.name)
            if secs:
                s.merge_seconds(secs)

    def collect(self) -> Result:
        """Run to the end and keep everything in memory (the Python API's form)."""
        for item in self:
            self.result.add(item)
        return self.result
