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
from typing import Any

from ..converters.twopass import TwoPass
from ..quality.report import Report
from ..schema import Record, Rejected
from .outcome import Outcome, replace_with_rejection
from .steps import Check, ConvertStep, SequentialStep, StepStats


@dataclass
class Pipeline:
    """The steps of one run, built once per process from a task's options and plan.

    `record_outcomes(item)` is the pure part (convert, then checks) that any executor may run in a
    worker; `sequential` runs in the parent. `seconds` accumulates the time each record step took
    in this process, for the per-step stats.
    """

    task: str
    convert: ConvertStep
    checks: tuple[Check, ...] = ()
    sequential: tuple[SequentialStep, ...] = ()
    seconds: Counter = field(default_factory=Counter)

    def record_outcomes(self, item: Any) -> list[Outcome]:
        if isinstance(item, Rejected):  # the reader already refused it (on_error=skip)
            return [Outcome(item, source_file=item.source_file, line=item.line, example=item.example, step="read")]
        clock = time.perf_counter
        t0 = clock()
        outs = self.convert(item)
        t1 = clock()
        seconds = self.seconds
        name = self.convert.name
        seconds[name] += t1 - t0
        for o in outs:
            if not o.step and not isinstance(o.item, Record):
                o.step = name
        for check in self.checks:
            for i, o in enumerate(outs):
                if isinstance(o.item, Record):
                    problem = check(o)
                    if problem is not None:
                        outs[i] = replace_with_rejection(o, problem[0], problem[1], check.name)
            t2 = clock()
            seconds[check.name] += t2 - t1
            t1 = t2
        return outs

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


def in_process(items: Iterable[Any], pipeline: Pipeline) -> Iterator[list[Outcome]]:
    """Run the record steps here, item by item."""
    record_outcomes = pipeline.record_outcomes
    for item in items:
        yield record_outcomes(item)


class Run:
    """One run of a task over a source: iterate it for records and rejections in input order.

    `build(plan)` makes the `Pipeline` (the parent's copy; executors build their own per worker
    from the same arguments). `plan(items)` reads the whole input once (None: no plan pass). After
    construction `report.read` is already the input's size when there was a plan pass (a progress
    bar's total). `observe(outcome, result)` lets the task keep its own counts (labels written).
    With `from_row`, `source` is a table (a `datasets.Dataset`) whose rows become items; an
    executor with `reads_source` (`DatasetsMap`) is then given the table itself.
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
            passes = TwoPass(source, shown=shown)
            self.result.plan = plan(passes.first())
            self.report.read += passes.count
            self._planned = True
            self._items: Iterable[Any] = passes.second()
        else:
            self._items = source() if callable(source) else source
        self.pipeline = build(self.result.plan)
        self.stats = self.pipeline.step_stats()
        self.report.steps = self.stats

    @property
    def total(self) -> int | None:
        """The number of items the run will account for, when a plan pass counted them."""
        return self.report.read if self._planned else None

    def _counted_items(self) -> Iterator[Any]:
        report = self.report
        for item in self._items:
            if not self._planned:
                report.read += 1
            yield item

    def _outcomes(self) -> Iterator[Outcome]:
        executor = self._executor
        if executor is None:
            batches = in_process(self._counted_items(), self.pipeline)
        elif getattr(executor, "reads_source", False):  # Dataset.map: it is given the dataset itself
            table = self._rows
            if not self._planned:
                self.report.read += len(table)
            batches = executor(table, self.pipeline, self._build, self.result.plan)
        else:
            batches = executor(self._counted_items(), self.pipeline, self._build, self.result.plan)
        for outs in batches:
            yield from outs

    def __iter__(self) -> Iterator[Record | Rejected]:
        stream: Iterable[Outcome] = self._outcomes()
        for step in self.pipeline.sequential:
            stream = step(stream)
        report, result, observe = self.report, self.result, self._observe
        by_step = {s.name: s for s in self.stats}
        templates, languages, tallies = report.templates, report.languages, result.tallies
        for o in stream:
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
