"""The task registry: what a converting task is, in one place, and how any caller runs one.

A task is a registry entry, not a command wired by hand: its name (the report's and the template
contract's, see `templates.tasks.TaskSpec`), `build(options, plan) -> Pipeline` (its convert step,
its checks and its sequential steps), an optional `plan(options, items)` (a first read of the whole
input, returning a frozen plan), `from_row(options, row, line)` (a dataset row -> the item its convert
step takes, for `Dataset.map` and Ray) and an optional `observe`/`finish` pair for the task's own
counts and summary notes, and an optional `prepare` (work on each read item that the plan and the
convert step share, done once per read). `start()` runs any registered task on any executor; the CLI commands,
the Python API and the batched adapter all go through it, so a task added from outside the package
(see tests/test_pipeline_toy_task.py) gets all of them.

`build`, `plan` and `from_row` must be module-level functions and `options` picklable: workers
rebuild the pipeline from them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..schema import Record, Rejected
from .executors import BatchFn, DatasetsMap, ProcessPool, default_num_proc
from .outcome import COLUMNS, Outcome, outcomes_from_rows
from .run import Executor, Pipeline, Result, Run


@dataclass(frozen=True)
class Task:
    name: str
    build: Callable[[Any, Any], Pipeline]
    plan: Callable[[Any, Iterable[Any]], Any] | None = None
    from_row: Callable[[Any, dict[str, Any], int | None], Any] | None = None
    # (options) -> observe(outcome, result): the task's own counts, in the parent (labels written)
    observer: Callable[[Any], Callable[[Outcome, Result], None]] | None = None
    # (options, result) -> None: after the run, the task's notes for the summary
    finish: Callable[[Any, Result], None] | None = None
    report_name: str | None = None  # the summary's first word, when it is not `name`
    # (options) -> prepare(item): applied to each read item on both passes of a planned run, so work
    # the plan and the convert step both need is done once per read (classification's row check);
    # the plan and the convert step then take prepared items as well as plain ones
    prepare: Callable[[Any], Callable[[Any], Any]] | None = None


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add (or replace) a task; returns it, so a module can write `TASK = register(Task(...))`."""
    _TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    _load_builtin()
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (known: {', '.join(sorted(_TASKS))})") from None


def names() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def _load_builtin() -> None:
    """The built-in tasks register themselves when their modules are imported."""
    from .. import tasks  # noqa: F401


def executor_for(task: Task, options: Any, *, num_proc: int | None, table: bool) -> Executor | None:
    """In-process for one process; a process pool over read items, or `Dataset.map` over a table."""
    n = default_num_proc(num_proc)
    if table:
        if task.from_row is None:
            raise ConfigError(f"task '{task.name}' cannot read dataset rows (it has no from_row)")
        from_row = functools.partial(task.from_row, options)
        return DatasetsMap(n, from_row, desc=task.name) if n > 1 else None
    return ProcessPool(n) if n > 1 else None


def start(
    name: str,
    options: Any,
    source: Any,
    *,
    num_proc: int | None = None,
    executor: Executor | None = None,
    shown: str | None = None,
    table: bool | None = None,
    result: Result | None = None,
) -> Run:
    """A `Run` of task `name` over `source` (a function that opens the input afresh, a collection of
    read items, a one-shot iterator, or a `datasets.Dataset` when `table`). Iterate it for records
    and rejections in input order; `run.result` holds the report (and `task.finish` adds its notes
    once the iteration ends, see `finished`). `result` gives the Result to count into (a task's own
    subclass, such as `NerRun`, that older callers hold before the run starts)."""
    task = get(name)
    if table is None:
        table = is_dataset(source)
    if executor is None:
        executor = executor_for(task, options, num_proc=num_proc, table=table)
    return Run(
        task.report_name or task.name,
        source,
        functools.partial(task.build, options),
        plan=functools.partial(task.plan, options) if task.plan is not None else None,
        executor=executor,
        observe=task.observer(options) if task.observer is not None else None,
        shown=shown,
        result=result,
        from_row=functools.partial(task.from_row, options) if table and task.from_row is not None else None,
        prepare=task.prepare(options) if task.prepare is not None and task.plan is not None else None,
    )


def finished(name: str, options: Any, run: Run) -> Result:
    """Add the task's summary notes once a run has been iterated to its end."""
    task = get(name)
    if task.finish is not None:
        task.finish(options, run.result)
    return run.result


def stream(
    name: str, options: Any, source: Any, *, before: Callable[[Result], None] | None = None, **kwargs: Any
) -> Iterator[Record | Rejected]:
    """Start a run now (its plan pass included), call `before(result)`, and return an iterator over
    its records and rejections that adds the task's notes (`finished`) once it is exhausted."""
    started = start(name, options, source, **kwargs)
    if before is not None:
        before(started.result)
    # the run's own iterator, not one wrapped around it (a generator layer per item)
    started.on_finish.append(functools.partial(finished, name, options, started))
    return iter(started)


def run_task(name: str, options: Any, source: Any, **kwargs: Any) -> Result:
    """Run a task to the end in memory: the Python API's form."""
    run = start(name, options, source, **kwargs)
    run.collect()
    return finished(name, options, run)


def batch_fn(name: str, options: Any, plan: Any = None) -> BatchFn:
    """The batched adapter for `Dataset.map(fn, batched=True, with_indices=True)`: the dataset's rows
    in, the outcome columns (`kind`, `payload`, `dedup_key`) out; finish with `collect`."""
    task = get(name)
    if task.from_row is None:
        raise ConfigError(f"task '{name}' cannot read dataset rows (it has no from_row)")
    return BatchFn(functools.partial(task.build, options), plan, functools.partial(task.from_row, options))


class _Premapped:
    """An 'executor' over rows some engine already mapped with `batch_fn`: only decoding is left."""

    reads_source = True

    def __call__(self, rows: Any, pipeline: Pipeline, build: Any, plan: Any):
        for row in rows:
            yield list(outcomes_from_rows([row]))


def collect(
    name: str, options: Any, mapped: Any, plan: Any = None, pipeline: Pipeline | None = None
) -> Result:
    """Finish rows mapped with `batch_fn`: the sequential steps (dedup, quotas), counts, notes.

    `mapped` is a mapped Dataset or any sized iterable of dicts with the outcome columns. Only the
    pipeline's sequential steps run here; `pipeline` gives them directly (else `build(options, plan)`).
    """
    task = get(name)
    rows = mapped if hasattr(mapped, "__len__") else list(mapped)
    missing = [c for c in COLUMNS if rows and c not in _first(rows)]
    if missing:
        raise ConfigError(f"collect() needs the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    run = Run(
        task.report_name or task.name,
        rows,
        lambda _plan: pipeline if pipeline is not None else task.build(options, plan),
        executor=_Premapped(),
        observe=task.observer(options) if task.observer is not None else None,
        from_row=lambda row, line: row,
    )
    run.result.plan = plan
    run.collect()
    return finished(name, options, run)


def _first(rows: Any) -> dict[str, Any]:
    for row in rows:
        return row
    return {}


def is_dataset(obj: Any) -> bool:
    """Whether `obj` is a `datasets.Dataset`, without importing `datasets` (seconds of start-up for
    every `ner`/`classify`/`translate` run over a file): an object can only be a Dataset once the
    module that defines the class has been imported."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)
