"""Where record steps run: here, in a pool of processes, or in `datasets.Dataset.map`.

Every executor returns outcomes in input order, so the sequential steps in the parent (dedup,
quotas) and the sink see exactly what the in-process run sees: output is byte-identical for any
number of processes. Workers never receive a pipeline: they get the picklable `build` function and
the frozen plan, and build their own (template pools, language-ID model) once.

The one batched adapter, `BatchFn`, is what crosses a process boundary in every engine: column
batch in (`dict[str, list]`: the dataset's own columns, or read items under `ITEM_COLUMN`), the
three outcome columns out (`kind`, `payload`, `dedup_key`, see `outcome.py`) where Arrow carries
them (`Dataset.map`, Ray). The process pool has Python on both ends of its pipe, so it sends items
and outcomes as plain tuples instead (`pack_items`, `pack_outcomes`): the parent, which also reads
and writes, otherwise spent ~18 us per outcome decoding JSON and validating records.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from pydantic import BaseModel

from .outcome import COLUMNS, Outcome, outcomes_from_columns, outcomes_to_columns
from .run import Pipeline

# Read items sent to a worker travel as pickled bytes in this column (readers make Python objects:
# Example, TaggedSentence, (line, row)); a dataset's own rows come as its columns.
ITEM_COLUMN = "__instructgen_item__"
SECONDS_COLUMN = "__instructgen_seconds__"
CHUNK_ITEMS = 512


class BatchFn:
    """`fn(batch, indices=None) -> columns`: the record steps over one column batch, picklable.

    `build(plan) -> Pipeline` and `plan` are all it holds; the pipeline is built on first use in
    each process. `from_row(row, line) -> item` turns a dataset row into what the task's convert
    step takes (the reader's item), so `Dataset.map(fn, batched=True, with_indices=True, num_proc=N)`
    gives the same outcomes as the in-process run over the same rows.
    """

    def __init__(
        self,
        build: Callable[[Any], Pipeline],
        plan: Any = None,
        from_row: Callable[[dict[str, Any], int | None], Any] | None = None,
        *,
        with_seconds: bool = False,
    ) -> None:
        self.build, self.plan, self.from_row = build, plan, from_row
        self.with_seconds = with_seconds
        self._pipeline: Pipeline | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "plan": self.plan,
            "from_row": self.from_row,
            "with_seconds": self.with_seconds,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["build"], state["plan"], state["from_row"], with_seconds=state["with_seconds"])

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = self.build(self.plan)
        return self._pipeline

    def items(self, batch: dict[str, list], indices: list[int] | None = None) -> Iterator[Any]:
        if ITEM_COLUMN in batch:
            return (pickle.loads(b) for b in batch[ITEM_COLUMN])
        names = list(batch)
        n = len(batch[names[0]]) if names else 0
        if self.from_row is None:
            raise TypeError("this task's batch function needs read items (no from_row for dataset rows)")
        from_row = self.from_row
        return (
            from_row({name: batch[name][i] for name in names}, (indices[i] + 1) if indices is not None else None)
            for i in range(n)
        )

    def outcomes(self, batch: dict[str, list], indices: list[int] | None = None) -> list[Outcome]:
        return self.pipeline.outcomes_of(list(self.items(batch, indices)))

    def __call__(self, batch: dict[str, list], indices: list[int] | None = None) -> dict[str, list]:
        before = Counter(self.pipeline.seconds) if self.with_seconds else None
        cols = outcomes_to_columns(self.outcomes(batch, indices))
        if before is not None:
            spent = Counter(self.pipeline.seconds)
            spent.subtract(before)
            # JSON text, like the payload: Arrow cannot infer a struct from an empty dict
            cols[SECONDS_COLUMN] = [json.dumps(dict(spent))] + [None] * (len(cols["kind"]) - 1) if cols["kind"] else []
        return cols


def item_batch(items: list[Any]) -> dict[str, list]:
    """Read items as a column batch for `BatchFn` (pickled: readers' objects are not Arrow types)."""
    return {ITEM_COLUMN: [pickle.dumps(it, protocol=pickle.HIGHEST_PROTOCOL) for it in items]}


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# --- a pool of processes (the CLI's --num-proc over a file) -----------------------------------

_WORKER_FN: BatchFn | None = None


def _init_worker(fn: BatchFn) -> None:
    global _WORKER_FN
    _WORKER_FN = fn


def _run_chunk(packed: list[Any]) -> tuple[list[tuple], dict[str, float]]:
    fn = _WORKER_FN
    assert fn is not None
    pipeline = fn.pipeline
    before = Counter(pipeline.seconds)
    rows = pack_outcomes(pipeline.outcomes_of(unpack_items(packed)))
    spent = Counter(pipeline.seconds)
    spent.subtract(before)
    return rows, dict(spent)


# Between the pool's parent and its workers a pydantic model (Record, Rejected, the readers' Example)
# travels as (class, __dict__, fields set): exactly the state pickling it sends, rebuilt the way
# pickle rebuilds it (`BaseModel.__setstate__`) without pickle's per-object reconstructor and
# __setstate__ call: ~5 us per outcome in the parent where JSON + validation took ~18 us, and ~3 us
# per outcome in the worker instead of ~12 us. No validation runs on either side, as with pickle:
# the objects are the ones the steps made. Models with extra fields or private attributes, and
# anything else, travel as themselves.
_new = object.__new__
_set = object.__setattr__


_PLAIN_MODELS: dict[type, bool] = {}


def _plain_model(cls: type) -> bool:
    """A pydantic model class that pickles as BaseModel does (no __getstate__/__reduce__ of its own)."""
    plain = _PLAIN_MODELS.get(cls)
    if plain is None:
        plain = issubclass(cls, BaseModel) and all(
            getattr(cls, name) is getattr(BaseModel, name)
            for name in ("__getstate__", "__setstate__", "__reduce__", "__reduce_ex__")
        )
        _PLAIN_MODELS[cls] = plain
    return plain


def _state(obj: Any) -> tuple[Any, Any, Any]:
    cls = type(obj)
    if _plain_model(cls) and obj.__pydantic_extra__ is None and obj.__pydantic_private__ is None:
        return cls, obj.__dict__, obj.__pydantic_fields_set__
    return None, obj, None


def _rebuilt(cls: Any, state: Any, fields_set: Any) -> Any:
    if cls is None:
        return state
    obj = _new(cls)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    _set(obj, "__dict__", state)
    return obj


def pack_items(items: list[Any]) -> list[tuple[Any, Any, Any]]:
    """Read items for a pool worker (`unpack_items` rebuilds them there)."""
    return [_state(item) for item in items]


def unpack_items(packed: list[tuple[Any, Any, Any]]) -> list[Any]:
    return [_rebuilt(cls, state, fields_set) for cls, state, fields_set in packed]


def pack_outcomes(outcomes: list[Outcome]) -> list[tuple]:
    """Outcomes as plain tuples for the pipe to the parent: every field `outcomes_to_columns` carries
    (item, key, file, line, example, step, tallies); `data` stays behind (the checks ran here)."""
    return [
        (*_state(o.item), o.dedup_key, o.source_file, o.line, o.example, o.step, o.tally) for o in outcomes
    ]


def unpack_outcomes(rows: list[tuple]) -> list[Outcome]:
    return [
        Outcome(_rebuilt(cls, state, fields_set), key, source_file, line, example, step, (), tally)
        for cls, state, fields_set, key, source_file, line, example, step, tally in rows
    ]


class ProcessPool:
    """Record steps in `num_proc` worker processes, chunk by chunk, results in input order.

    At most `2 * num_proc` chunks are in flight, so a large input is read as it is converted
    rather than queued whole (`Pool.imap` would read the entire iterator ahead). Workers start by
    spawn: the same on every platform, and no lock copied mid-use from a parent with threads.
    """

    def __init__(self, num_proc: int, chunk_items: int = CHUNK_ITEMS) -> None:
        self.num_proc = max(1, num_proc)
        self.chunk_items = chunk_items

    def __call__(self, items: Iterable[Any], pipeline: Pipeline, build: Callable[[Any], Pipeline], plan: Any):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        fn = BatchFn(build, plan)
        with ctx.Pool(self.num_proc, initializer=_init_worker, initargs=(fn,)) as pool:
            pending: deque = deque()
            for chunk in _chunks(items, self.chunk_items):
                pending.append(pool.apply_async(_run_chunk, (pack_items(chunk),)))
                if len(pending) >= 2 * self.num_proc:
                    yield self._take(pending.popleft(), pipeline)
            while pending:
                yield self._take(pending.popleft(), pipeline)

    @staticmethod
    def _take(async_result: Any, pipeline: Pipeline) -> list[Outcome]:
        rows, seconds = async_result.get()
        pipeline.seconds.update(seconds)
        return unpack_outcomes(rows)


def default_num_proc(requested: int | None) -> int:
    """`--num-proc 0` means every CPU this process may use."""
    if requested is None:
        return 1
    if requested <= 0:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return requested


# --- datasets.Dataset.map ---------------------------------------------------------------------


class DatasetsMap:
    """Record steps through `Dataset.map(batched=True, with_indices=True, num_proc=N)` over the run's
    source, a `datasets.Dataset` (`reads_source`: it is given the dataset, not read items).
    `from_row(row, line)` makes the task's item from a row; mapped rows come back in dataset order."""

    reads_source = True

    def __init__(self, num_proc: int | None, from_row: Callable[[dict[str, Any], int | None], Any], desc: str):
        self.num_proc, self.from_row, self.desc = num_proc, from_row, desc

    def __call__(self, ds: Any, pipeline: Pipeline, build: Callable[[Any], Pipeline], plan: Any):
        fn = BatchFn(build, plan, self.from_row, with_seconds=True)  # -v shows the workers' seconds
        mapped = ds.map(
            fn,
            batched=True,
            with_indices=True,
            num_proc=self.num_proc if self.num_proc and self.num_proc > 1 else None,
            remove_columns=ds.column_names,
            load_from_cache_file=False,
            desc=self.desc,
        )
        for batch in mapped.iter(batch_size=1000):
            for spent in batch[SECONDS_COLUMN]:
                if spent:
                    pipeline.seconds.update(json.loads(spent))
            yield list(outcomes_from_columns({c: batch[c] for c in COLUMNS}))
