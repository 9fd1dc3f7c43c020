"""The Ray Data engine: a registered task's record steps on a Ray cluster, over input shards, with
sharded, resumable output that concatenates to the in-process bytes.

How a run goes (`run_sharded`):

1. The driver reads the input once with the task's own reader: the task's plan pass when it has
   one (NER scheme and labels, classification options; the plan is then broadcast to the workers
   as a constructor argument), a counting pass otherwise. Malformed input therefore stops the run
   with the in-process error (file, line, field) before any worker starts.
2. The items are cut into contiguous shards of `shard_rows` items (`shards.plan_shards`); a shard
   whose marker says it is complete for this configuration is not converted again.
3. The missing shards go through `Dataset.map_batches` (one row per shard, batch size 1) to Ray
   tasks (`map_shards`) running `ShardWorker`: a callable class whose constructor gets `build`,
   the plan and the picklable input opener, so template pools, the language-ID model or the
   tokenizer are built once per worker process and run, never pickled per batch. A worker reads
   its shard's items with the same reader (reaching its range by reading past the earlier items:
   line numbers, file names and errors are those of the in-process run), runs the record steps
   through the batched adapter (`BatchFn`) and stores the outcome columns under `_work/`. Each
   task asks for `SHARD_TASK_CPUS` (< 1) of a CPU, so the shard tasks never hold every CPU and Ray's
   own read/write tasks can always be scheduled.
4. Sequential steps, two ways, both giving the in-process kept set whatever order Ray finished in:
   - **keyed** (the only sequential step is exact dedup: translation, classification, NER without
     a quota): actors also store each shard's dedup keys; the driver passes over the keys in shard
     order, keeping the first occurrence by (shard, position) (16 bytes per record, the in-process
     dedup's own state) and writes which positions of each shard repeat; a second `map_batches`
     (`ShardFinisher`) applies those decisions and writes the output shard, its rejections and its
     counts; the driver merges the counts. The driver never decodes a record: decoding every
     outcome cost it ~50 us per row, a ceiling of ~17k rows/s for any cluster size.
   - **ordered** (a quota, or any step that must see every outcome in order): the driver replays
     the stored outcomes in shard order through the in-process `Run` and writes each shard as its
     outcomes come through. Correct for any step; bounded by the driver's speed.
   A keyed pass only is not enough in general: quotas decide on the ordered stream of outcomes.
5. Each output shard is written atomically (`part-00000-of-00012.jsonl`), then its marker under
   `_work/`; `--rejects` is written whole; `manifest.json` gets per-shard counts.

Ray is optional (`pip install 'instructgen[ray]'`); `RAY_ADDRESS` or `address=` joins an existing
cluster (the output folder must then be on storage every node sees), otherwise a local Ray starts
with the CPUs this process may use.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InstructgenError
from ..io.atomic import atomic_path, write_text_atomic
from ..io.writers import JsonlSink, RecordWriter
from ..quality.report import Report
from ..schema import Record, Rejected
from .executors import CHUNK_ITEMS, BatchFn, default_num_proc
from .outcome import Outcome, outcomes_from_rows, outcomes_to_columns, replace_with_rejection
from .run import BATCH_ITEMS, Pipeline, Result, Run
from .shards import (
    DEFAULT_SHARD_ROWS,
    LINE_FORMATS,
    Shard,
    ShardFolder,
    configuration,
    describe_inputs,
    describe_reader,
    plan_shards,
    read_keys,
    read_outcome_rows,
    write_keys,
    write_outcome_rows,
)
from .steps import NEW, ExactDedup, SeenKeys

INSTALL_HINT = "--engine ray needs Ray Data: pip install 'instructgen[ray]' (it pins ray[data]==2.60.0)"
# CPUs each shard task asks for: below one, so that N tasks on N CPUs leave room for Ray's own.
SHARD_TASK_CPUS = 0.9
# A shard task whose worker died runs again this many times (its output is written atomically
# and marked by the driver); Ray Data's default, forever, would loop on a crash that repeats.
TASK_RETRIES = 2
# Outcomes the driver decodes and hands on at a time (a shard is never held whole).
REPLAY_CHUNK = 2048
# Keys of a shard's seconds (marker "seconds") that are the actor's totals, not pipeline steps.
WORKER_WALL, WORKER_CPU = "worker_wall", "worker_cpu"


def require_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[float]:
    """Use the running Ray, join `address` (or RAY_ADDRESS), or start a local one; yields the
    seconds start-up took (0 when Ray was already up) and shuts down only a Ray it started."""
    ray = require_ray()
    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
        }
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or default_num_proc(0), **kwargs)
        started = True
    _quiet_ray_data()
    startup = time.perf_counter() - t0 if started else 0.0
    try:
        yield startup
    finally:
        if started:
            ray.shutdown()


def _quiet_ray_data() -> None:
    """No progress bars or per-operator INFO lines on stderr: the run's summary is the report."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


class ShardWorker:
    """The callable class the shard tasks run: one instance per worker process and run, its
    pipeline built once.

    A batch is rows of shard specs (`index`, `count`, `start`, `stop`); for each, the actor reads
    the shard's items, runs the record steps and stores the outcome columns in the folder's
    `_work/`, answering the shard's index, its number of outcomes and the seconds per step (or the
    error that stopped it, re-raised by the driver).
    """

    def __init__(
        self,
        build: Callable[[Any], Pipeline],
        plan: Any,
        openers: list[Callable[[], Iterable[Any]]],
        folder: str,
        cwd: str | None = None,
    ) -> None:
        # relative input paths (and the file names records cite) resolve as in the driver
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        self.fn = BatchFn(build, plan)
        self.openers = openers
        self.folder = ShardFolder(folder)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"index": [], "outcomes": [], "seconds": [], "error": []}
        for shard in shard_specs(batch):
            n, seconds, error = self.convert(shard)
            out["index"].append(shard.index)
            out["outcomes"].append(n)
            out["seconds"].append(pickle.dumps(seconds))
            out["error"].append(error)
        return out

    def convert(self, shard: Shard) -> tuple[int, dict[str, float], bytes]:
        pipeline = self.fn.pipeline  # built on first use, then kept by this actor
        before = Counter(pipeline.seconds)
        wall, cpu = time.perf_counter(), time.process_time()
        keys: list[tuple[int, str, int | None]] = []
        try:
            items = islice(self.openers[shard.source](), shard.start, shard.stop)
            n = write_outcome_rows(self.folder.outcomes(shard), self._columns(pipeline, items, keys))
            write_keys(self.folder.keys(shard), keys)
        except InstructgenError as exc:
            return 0, {}, pickled_error(exc)
        spent = Counter(pipeline.seconds)
        spent.subtract(before)
        # the whole shard in this actor (reading past earlier items, steps, storing outcomes): what a
        # worker costs per row, for sizing a cluster (README "Running on a cluster")
        spent[WORKER_WALL] = time.perf_counter() - wall
        spent[WORKER_CPU] = time.process_time() - cpu
        return n, dict(spent), b""

    @staticmethod
    def _columns(
        pipeline: Pipeline, items: Iterable[Any], keys: list[tuple[int, str, int | None]]
    ) -> Iterator[dict[str, list]]:
        """Outcome column batches; `keys` gets (position, key, line) of each kept record with a key."""
        it = iter(items)
        outcomes_of = pipeline.outcomes_of
        position = 0
        while chunk := list(islice(it, CHUNK_ITEMS)):
            # the record steps batched as in-process (BATCH_ITEMS at a time: few young GC collections)
            outcomes = [
                o for i in range(0, len(chunk), BATCH_ITEMS) for o in outcomes_of(chunk[i : i + BATCH_ITEMS])
            ]
            for o in outcomes:
                if o.dedup_key and isinstance(o.item, Record):
                    keys.append((position, o.dedup_key.hex(), o.line))
                position += 1
            yield outcomes_to_columns(outcomes)


class ShardFinisher:
    """The second `map_batches` of a keyed run: one instance per worker process and run, the
    task's pipeline built once.

    For each shard it replays the stored outcomes, rejects the positions the driver's key pass found
    repeated (as the task's `ExactDedup` words it), and writes the output shard, the shard's
    rejections and its counts (report, tallies, the task's own counts) under `_work/`; the driver
    only merges those. Answers the shard's index and counts as JSON, or the error that stopped it.
    """

    def __init__(
        self,
        name: str,
        options: Any,
        plan: Any,
        folder: str,
        cwd: str | None,
        output: dict[str, Any],
    ) -> None:
        from . import registry

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        task = registry.get(name)
        self.report_name = task.report_name or task.name
        self.task, self.options = task, options
        self.pipeline = task.build(options, plan)
        self.plan = plan
        self.folder = ShardFolder(folder)
        self.output = output

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return answer_shards(batch, self.finish)

    def finish(self, shard: Shard) -> dict[str, Any]:
        cpu = time.process_time()
        folder, p = self.folder, self.pipeline
        repeated = {int(k): v for k, v in json.loads(folder.duplicates(shard).read_text()).items()}
        sequential = tuple(_Decided(step, repeated) for step in p.sequential)
        pipeline = Pipeline(p.task, p.convert, p.checks, sequential)
        result = Result(report=Report(task=self.report_name), plan=self.plan)
        run = Run(
            self.report_name,
            (),
            lambda _plan: pipeline,
            executor=_Stored(folder.outcomes(shard)),
            # a fresh observer per shard: a task's observer belongs to one run (it may cache that
            # run's counters)
            observe=self.task.observer(self.options) if self.task.observer is not None else None,
            result=result,
        )
        run.report.read = shard.items
        out = self.output
        with (
            RecordWriter(
                folder.output(shard), out["format"], columns=out["columns"], with_meta=out["meta"]
            ) as w,
            JsonlSink(str(folder.rejects(shard))) as sink,
        ):
            for item in run:
                if isinstance(item, Record):
                    w.write(item)
                else:
                    sink.write(item.model_dump())
        report = run.report
        with atomic_path(folder.counted(shard)) as tmp, open(tmp, "wb") as f:
            pickle.dump((report, result.tallies, result.info), f)
        return {
            "written": report.written,
            "rejected": report.rejected_total,
            "reasons": dict(sorted(report.rejected.items())),
            "finish_cpu": time.process_time() - cpu,  # this pass's actor CPU seconds (sizing)
        }


class _Decided:
    """Exact dedup with the decisions already made: the driver's key pass over every earlier shard
    said which positions of this shard repeat a key, and the line of its first occurrence."""

    def __init__(self, step: Any, repeated: dict[int, int | None]) -> None:
        self.step, self.repeated, self.name = step, repeated, step.name

    def __call__(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        step, repeated = self.step, self.repeated
        for position, o in enumerate(outcomes):
            if position in repeated:
                yield replace_with_rejection(o, step.reason, step.describe(repeated[position]), step.name)
            else:
                yield o


class _Stored:
    """A `Run` executor that replays one shard's stored outcomes (it never reads items)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, items: Any, pipeline: Pipeline, build: Any, plan: Any) -> Iterator[list[Outcome]]:
        rows = read_outcome_rows(self.path)
        while chunk := list(islice(rows, REPLAY_CHUNK)):
            yield list(outcomes_from_rows(chunk))


def keyed(pipeline: Pipeline) -> bool:
    """Whether the sequential steps are exact dedup only: then the driver needs just the keys (a
    key pass in shard order) and the actors write the output shards; otherwise (a quota, any
    other step that must see every outcome in order) the driver runs them over every outcome."""
    return all(type(step) is ExactDedup for step in pipeline.sequential) and len(pipeline.sequential) <= 1


def shard_specs(batch: dict[str, Any]) -> list[Shard]:
    """The shard specs of a `map_batches` batch (numpy columns)."""
    cols = zip(batch["index"], batch["count"], batch["start"], batch["stop"], batch["source"], strict=True)
    return [Shard(int(i), int(n), int(a), int(b), int(src)) for i, n, a, b, src in cols]


def answer_shards(
    batch: dict[str, Any],
    work: Callable[[Shard], dict[str, Any]],
    wrap: Callable[[Shard, Exception], Any] | None = None,
) -> dict[str, list]:
    """An actor's answer to a `map_batches` batch of shard specs: per shard its index, `work(shard)`'s
    counts as JSON, or the error the driver raises again (`wrap` words errors beyond instructgen's)."""
    out: dict[str, list] = {"index": [], "counts": [], "error": []}
    caught = (InstructgenError, OSError) if wrap is not None else InstructgenError
    for shard in shard_specs(batch):
        try:
            counts, error = json.dumps(work(shard)), b""
        except caught as exc:
            counts, error = "", pickled_error(wrap(shard, exc) if wrap is not None else exc)
        out["index"].append(shard.index)
        out["counts"].append(counts)
        out["error"].append(error)
    return out


def pickled_error(exc: InstructgenError) -> bytes:
    """The error as the driver can raise it again: itself when it survives pickling, else its text."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(InstructgenError(str(exc)))


@dataclass
class ShardedRun:
    """What `run_sharded` did: the run's result (report, plan, tallies) and the shard bookkeeping."""

    result: Result
    folder: Path
    shards: int
    converted: int  # shards whose record steps ran in this run
    skipped: int  # shards complete from an earlier run (replayed, not converted or rewritten)
    remaining: int  # shards left for a later run (--max-shards)
    ray_startup_seconds: float | None = None


class _ShardFeed:
    """The `Run` executor of a sharded run: the outcomes of every shard, in shard order.

    Completed shards are replayed from their stored outcomes; the others wait for Ray's answer for
    that shard (Ray finishes shards in any order). Before handing on a shard's outcomes it queues
    `(shard, number of outcomes, fresh)` for the sink, which cuts the output at those counts.
    """

    def __init__(self, folder: ShardFolder) -> None:
        self.folder = folder
        self.shards: list[Shard] = []
        self.done: dict[int, dict[str, Any]] = {}
        self.todo: set[int] = set()
        self.report: Any = None
        self.answers: Iterator[dict[str, Any]] = iter(())
        self.started: deque[tuple[Shard, int, bool, dict[str, float]]] = deque()

    def __call__(self, items: Any, pipeline: Pipeline, build: Any, plan: Any) -> Iterator[list]:
        ready: dict[int, tuple[int, dict[str, float]]] = {}
        for shard in self.shards:
            if shard.index in self.done:
                marker = self.done[shard.index]
                n, seconds, fresh = marker["outcomes"], marker.get("seconds", {}), False
            elif shard.index in self.todo:
                while shard.index not in ready:
                    answer = self._next_answer()
                    ready[answer[0]] = answer[1:]
                n, seconds = ready.pop(shard.index)
                fresh = True
            else:  # beyond --max-shards: the run stops at the first shard nobody converted, and
                # its report counts what it read up to there
                self.report.read = sum(s.items for s in self.shards[: shard.index])
                return
            pipeline.seconds.update({k: v for k, v in seconds.items() if k not in (WORKER_WALL, WORKER_CPU)})
            self.started.append((shard, n, fresh, seconds))
            rows = read_outcome_rows(self.folder.outcomes(shard))
            while chunk := list(islice(rows, REPLAY_CHUNK)):
                yield list(outcomes_from_rows(chunk))

    def _next_answer(self) -> tuple[int, int, dict[str, float]]:
        try:
            row = next(self.answers)
        except StopIteration:
            raise InstructgenError("Ray returned fewer shards than it was given") from None
        if row["error"]:
            raise pickle.loads(row["error"])
        return int(row["index"]), int(row["outcomes"]), pickle.loads(row["seconds"])


class _ShardSink:
    """Writes records to the current output shard (only for shards converted in this run), every
    rejection to --rejects, and each finished shard's marker with its counts."""

    def __init__(
        self, folder: ShardFolder, feed: _ShardFeed, digest: str, fmt: str, columns: Any, meta: bool
    ):
        self.folder, self.feed, self.digest = folder, feed, digest
        self.fmt, self.columns, self.meta = fmt, columns, meta
        self.markers: dict[int, dict[str, Any]] = dict(feed.done)
        self._shard: tuple[Shard, int, bool, dict[str, float]] | None = None
        self._writer: RecordWriter | None = None
        self._left = 0
        self._counts: Counter = Counter()

    def consume(self, items: Iterable[Record | Rejected], rejects: str | None) -> None:
        with JsonlSink(rejects) as sink:
            for item in items:
                while self._left == 0:
                    self._next()
                self._left -= 1
                if isinstance(item, Record):
                    self._counts["written"] += 1
                    if self._writer is not None:
                        self._writer.write(item)
                else:
                    self._counts["rejected:" + item.reason] += 1
                    sink.write(item.model_dump())
            while self._shard is not None or self.feed.started:
                if self._left:
                    raise ConfigError(
                        "a sequential step changed the number of outcomes; sharded output needs one "
                        "outcome out per outcome in"
                    )
                self._next(last=not self.feed.started)

    def _next(self, last: bool = False) -> None:
        if self._shard is not None:
            self._finish()
        if last or not self.feed.started:
            self._shard = None
            if not last:
                raise ConfigError("outcomes arrived for no shard (a sequential step added outcomes)")
            return
        self._shard = self.feed.started.popleft()
        shard, n, fresh, _ = self._shard
        self._left = n
        self._counts = Counter()
        if fresh:
            self._writer = RecordWriter(
                self.folder.output(shard), self.fmt, columns=self.columns, with_meta=self.meta
            )
            self._writer.__enter__()

    def _finish(self) -> None:
        assert self._shard is not None
        shard, n, fresh, seconds = self._shard
        if self._writer is not None:
            self._writer.__exit__(None, None, None)
            self._writer = None
        if fresh:
            reasons = {
                k.split(":", 1)[1]: v for k, v in sorted(self._counts.items()) if k.startswith("rejected:")
            }
            counts = {
                "items": shard.items,
                "outcomes": n,
                "written": self._counts["written"],
                "rejected": sum(reasons.values()),
                "reasons": reasons,
                "seconds": seconds,
            }
            self.markers[shard.index] = self.folder.mark_done(shard, self.digest, counts)
        self._shard = None

    def abort(self) -> None:
        """Drop a half-written shard (its temp file goes; no marker)."""
        if self._writer is not None:
            self._writer.__exit__(RuntimeError, None, None)
            self._writer = None


def run_sharded(
    name: str,
    options: Any,
    opener: Callable[[], Iterable[Any]] | list[Callable[[], Iterable[Any]]],
    out_dir: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    fmt: str = "alpaca",
    columns: list[str] | None = None,
    meta: bool = False,
    rejects: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    max_shards: int | None = None,
    overwrite: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    workers: int | None = None,
    shown: str | None = None,
) -> ShardedRun:
    """Run task `name` over the input `opener()` reads, on Ray, into shards under `out_dir`.

    `opener` must be picklable (a module-level function or a `functools.partial` of one: workers
    call it to read their shard); a list of openers (one per file) is read as their concatenation,
    each file cut into its own shards (on a cluster, many files scale: a worker reaches its range of
    one file by reading past that file's earlier items). `inputs` are the files hashed into the manifest. `max_shards`
    converts at most that many missing shards and stops (a later run resumes); `overwrite` clears
    the folder's shards first instead of resuming. `workers` caps the actors (default: one per CPU
    of the cluster, each asking for `SHARD_TASK_CPUS`).
    """
    from . import registry

    if fmt not in LINE_FORMATS:
        raise ConfigError(
            f"--engine ray writes JSONL shards: --format {fmt} cannot be split ({', '.join(LINE_FORMATS)})"
        )
    if str(out_dir) == "-":
        raise ConfigError("--engine ray writes shards to a folder: give -o FOLDER, not stdout")
    task = registry.get(name)
    folder = ShardFolder(out_dir, sole=True)
    folder.check()  # a folder of files instructgen did not write: refused before the input is read
    feed = _ShardFeed(folder)
    # the task's plan pass (when it has one) reads the input here, in the driver; the feed then
    # stands in for the executor and never reads the items the run would hand it
    openers = list(opener) if isinstance(opener, (list, tuple)) else [opener]
    source = openers[0] if len(openers) == 1 else functools.partial(_chained, openers)
    run = registry.start(
        name, options, source if task.plan is not None else (), executor=feed, shown=shown, table=False
    )
    described = describe_inputs(inputs)
    readers = [describe_reader(op) for op in openers]
    session = RaySession(address, num_cpus)
    try:
        if run.total is not None and len(openers) == 1:
            totals = [run.total]
        else:  # a counting pass (and the reader's checks) per input, unless a run here counted these files
            totals = (None if overwrite else folder.counted_before(described, readers)) or _count(
                openers, session
            )
            run.report.read = sum(totals)
        shards = plan_shards(totals, shard_rows)
        output = {"format": fmt, "columns": columns, "meta": meta}
        config = configuration(task.name, options, described, readers, output, shard_rows, totals)
        folder.prepare(config, overwrite=overwrite)
        job = _Job(task, options, openers, folder, config["config_digest"], output, session, workers)
        return _run_shards(job, config, shards, run, feed, rejects, max_shards)
    finally:
        session.close()


def _run_shards(
    job: _Job,
    config: dict[str, Any],
    shards: list[Shard],
    run: Run,
    feed: _ShardFeed,
    rejects: str | None,
    max_shards: int | None,
) -> ShardedRun:
    """The part of `run_sharded` after the shards are planned: which are done, the run, the manifest."""
    from . import registry

    folder, digest, session, name = job.folder, job.digest, job.session, job.task.name
    parallel = keyed(run.pipeline)
    needs = (lambda s: (folder.keys(s), folder.rejects(s), folder.counted(s))) if parallel else (lambda s: ())
    done, missing, todo = folder.progress(shards, digest, needs, max_shards)
    if parallel:
        markers = _run_keyed(job, run, shards, done, todo, rejects)
    else:
        markers = _run_ordered(job, run, feed, shards, done, todo, rejects)
    startup = session.startup
    remaining = len(missing) - len(todo)
    config.update(
        shards=len(shards),
        per_shard=[markers.get(s.index, {"shard": s.name, "complete": False}) for s in shards],
    )
    folder.write_manifest(config)
    result = run.result
    result.info["ray_startup_seconds"] = startup
    notes = result.report.notes
    notes.append(
        f"ray: {len(shards)} shard(s) of up to {config['shard_rows']} items in {folder.root}: {len(todo)} converted now, "
        f"{len(done)} complete from an earlier run"
        + (f"; Ray start-up {startup:.1f} s" if startup else "")
        + (f"; key pass {result.info['key_pass_seconds']:.1f} s" if "key_pass_seconds" in result.info else "")
    )
    if remaining:
        notes.append(
            f"stopped after --max-shards {max_shards}: {remaining} shard(s) left; run the same command again to resume"
        )
    registry.finished(name, job.options, run)
    return ShardedRun(result, folder.root, len(shards), len(todo), len(done), remaining, startup)


def _chained(openers: list[Callable[[], Iterable[Any]]]) -> Iterator[Any]:
    """The inputs one after another: what the in-process run over the same files reads."""
    for op in openers:
        yield from op()


@dataclass
class _Job:
    """What both paths hand to Ray: the task, its options and opener, the folder and the cluster."""

    task: Any
    options: Any
    openers: list[Callable[[], Iterable[Any]]]
    folder: ShardFolder
    digest: str
    output: dict[str, Any]
    session: RaySession
    workers: int | None


class RaySession:
    """Ray for one run, started on first need (a fully resumed run needs none), shut down at the end
    when this run started it."""

    def __init__(self, address: str | None, num_cpus: int | None) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.startup: float | None = None
        self._cm: Any = None

    def start(self) -> None:
        if self._cm is None:
            cm = ray_session(self.address, self.num_cpus)
            self.startup = cm.__enter__()
            self._cm = cm

    def close(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)


def _count_items(opener: Callable[[], Iterable[Any]], cwd: str | None) -> tuple[int, bytes]:
    """Items one input yields (a Ray task when there are several inputs), or the error reading it."""
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        return sum(1 for _ in opener()), b""
    except InstructgenError as exc:
        return 0, pickled_error(exc)


def _count(openers: list[Callable[[], Iterable[Any]]], session: RaySession) -> list[int]:
    """Items per input: here for one input; as Ray tasks for several (the driver's one serial pass
    over the data is otherwise the longest part of a large run), the first error in input order."""
    if len(openers) == 1:
        return [sum(1 for _ in openers[0]())]
    session.start()
    import ray

    counter = ray.remote(num_cpus=SHARD_TASK_CPUS)(_count_items)
    try:
        answers = ray.get([counter.remote(op, os.getcwd()) for op in openers])
    except ray.exceptions.RayError as exc:
        raise InstructgenError(f"Ray failed: {str(exc).splitlines()[0]}") from None
    for _, error in answers:
        if error:
            raise pickle.loads(error)
    return [n for n, _ in answers]


def _run_ordered(
    job: _Job,
    run: Run,
    feed: _ShardFeed,
    shards: list[Shard],
    done: dict[int, dict[str, Any]],
    todo: list[Shard],
    rejects: str | None,
) -> dict[int, dict[str, Any]]:
    """Sequential steps that must see every outcome (a quota): the driver runs them over the shards'
    outcomes in shard order, writing each output shard as its outcomes come through."""
    feed.shards, feed.done, feed.todo, feed.report = shards, done, {s.index for s in todo}, run.report
    out = job.output
    sink = _ShardSink(job.folder, feed, job.digest, out["format"], out["columns"], out["meta"])
    try:
        if todo:
            job.session.start()
            answers = _convert_on_ray(job, todo, run.result.plan)
            feed.answers = answers
            try:
                sink.consume(run, rejects)
            finally:
                answers.close()
        else:
            sink.consume(run, rejects)
    except BaseException:
        sink.abort()
        raise
    return sink.markers


def _run_keyed(
    job: _Job,
    run: Run,
    shards: list[Shard],
    done: dict[int, dict[str, Any]],
    todo: list[Shard],
    rejects: str | None,
) -> dict[int, dict[str, Any]]:
    """Exact dedup only: actors convert; the driver passes over the keys in shard order (16 bytes per
    record, the in-process dedup's own state) and writes which positions repeat; actors then write
    the output shards and count them; the driver merges the counts in shard order."""
    folder = job.folder
    todo_ids = {s.index for s in todo}
    # the run covers the shards up to the first one neither complete nor converted now
    active: list[Shard] = []
    for s in shards:
        if s.index not in done and s.index not in todo_ids:
            break
        active.append(s)
    markers = dict(done)
    if todo:
        job.session.start()
        converted: dict[int, tuple[int, dict[str, float]]] = {}
        answers = _convert_on_ray(job, todo, run.result.plan)
        for row in answers:
            if row["error"]:
                raise pickle.loads(row["error"])
            converted[int(row["index"])] = (int(row["outcomes"]), pickle.loads(row["seconds"]))
        t0 = time.perf_counter()
        _key_pass(folder, active, todo_ids)
        run.result.info["key_pass_seconds"] = time.perf_counter() - t0
        for row in _finish_on_ray(job, todo, run.result.plan):
            if row["error"]:
                raise pickle.loads(row["error"])
            shard = shards[int(row["index"])]
            n, seconds = converted[shard.index]
            counts = {"items": shard.items, "outcomes": n, **json.loads(row["counts"])}
            markers[shard.index] = folder.mark_done(shard, job.digest, {**counts, "seconds": seconds})
    _merge_counts(run, folder, active, markers)
    if rejects is not None:
        _join(rejects, [folder.rejects(s) for s in active])
    return markers


def _join(target: str, pieces: list[Path]) -> None:
    """--rejects: the shards' rejection pieces in shard order, written atomically (or to stderr)."""
    if target == "-":
        for piece in pieces:
            sys.stderr.write(piece.read_text(encoding="utf-8"))
        return
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as f:
                shutil.copyfileobj(f, out)


def _key_pass(folder: ShardFolder, active: list[Shard], todo: set[int]) -> None:
    """First occurrence by (shard, position): for each shard converted now, the positions whose key
    an earlier position (this shard or an earlier one) had, with that first occurrence's line."""
    seen = SeenKeys()  # ~24 bytes a key, as in-process ExactDedup
    for s in active:
        repeated: dict[int, int | None] = {}
        rows = read_keys(folder.keys(s))
        while batch := list(islice(rows, 4096)):
            firsts = seen.check([(key, line) for _, key, line in batch])
            for (position, _, _), first in zip(batch, firsts):
                if first is not NEW:
                    repeated[position] = first
        if s.index in todo:
            write_text_atomic(folder.duplicates(s), json.dumps(repeated))


def _merge_counts(
    run: Run, folder: ShardFolder, active: list[Shard], markers: dict[int, dict[str, Any]]
) -> None:
    """Add each shard's report, tallies and task counts (numbers and Counters in `info` are summed;
    anything else comes from the first shard that has it) into the driver's run, then its step stats."""
    report, result = run.report, run.result
    by_name = {st.name: st for st in run.stats}
    for s in active:
        with open(folder.counted(s), "rb") as f:
            part, tallies, info = pickle.load(f)
        report.written += part.written
        report.rejected.update(part.rejected)
        report.templates.update(part.templates)
        report.languages.update(part.languages)
        for st in part.steps:
            if st.name in by_name:
                by_name[st.name].rejected.update(st.rejected)
        result.tallies.update(tallies)
        for key, value in info.items():
            mine = result.info.get(key)
            if isinstance(value, Counter):
                result.info[key] = total = Counter(mine or ())
                total.update(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                result.info[key] = (mine or 0) + value
            elif key not in result.info:
                result.info[key] = value
        seconds = markers[s.index].get("seconds", {})
        run.pipeline.seconds.update({k: v for k, v in seconds.items() if k not in (WORKER_WALL, WORKER_CPU)})
    report.read = sum(s.items for s in active)
    run._finish_stats()


def _shard_tasks(n_shards: int, workers: int | None) -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(n_shards, workers or cpus))


def _shard_rows(todo: list[Shard]) -> Any:
    import ray.data

    rows = [
        {"index": s.index, "count": s.count, "start": s.start, "stop": s.stop, "source": s.source}
        for s in todo
    ]
    return ray.data.from_items(rows, override_num_blocks=len(rows))


def _answers(ds: Any) -> Iterator[dict[str, Any]]:
    import ray

    try:
        yield from ds.iter_rows()
    except ray.exceptions.RayError as exc:  # a worker died (instructgen errors come back as rows)
        raise InstructgenError(f"Ray failed: {str(exc).splitlines()[0]}") from None


# Per Ray worker process: the shard callable of the run it last served, by run id (`map_shards`).
_BUILT: dict[str, Any] = {}


def _serve(batch: dict[str, Any], run_id: str, spec: bytes) -> dict[str, list]:
    """One `map_batches` task: the run's shard callable (`spec`: its pickled class and arguments),
    built once per worker process and run, then reused for the run's later shards there. Only
    the last run's callable is kept: a new run id replaces it, since a later run may find other
    files at the same paths (a rewritten packing plan, an edited tokenizer)."""
    fn = _BUILT.get(run_id)
    if fn is None:
        from ray import cloudpickle

        _BUILT.clear()
        cls, args = cloudpickle.loads(spec)
        fn = _BUILT[run_id] = cls(*args)
    return fn(batch)


def map_shards(
    session: RaySession, todo: list[Shard], worker: type, args: tuple, workers: int | None = None
) -> Iterator[dict[str, Any]]:
    """The answer rows of `worker` (a callable class) for each shard of `todo`, as Ray finishes
    them (any order): `map_batches` over one row per shard (batch size 1), at most one task per CPU (or `workers`),
    each asking for `SHARD_TASK_CPUS`; the callable is built once per worker process with `args`
    (`_serve`); a worker that died is an InstructgenError.

    Tasks, not an actor pool: an actor is a fresh process each run (~3 s to start and import
    ray.data on a warm Ray, whatever the shard), where tasks run in Ray's idle workers, already
    started and imported; within a run a worker keeps its callable as an actor would."""
    session.start()
    import uuid
    import warnings

    import ray.data
    from ray import cloudpickle

    with warnings.catch_warnings():
        # Ray 2.60 (pinned) names no max_retries parameter and flags the **ray_remote_args that
        # carries it as deprecated from 2.64; unsilenced, the warning lands on the user's stderr
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = _shard_rows(todo).map_batches(
            _serve,
            fn_args=(uuid.uuid4().hex, cloudpickle.dumps((worker, args))),
            batch_size=1,
            compute=ray.data.TaskPoolStrategy(size=_shard_tasks(len(todo), workers)),
            num_cpus=SHARD_TASK_CPUS,
            max_retries=TASK_RETRIES,
        )
    return _answers(ds)


def _convert_on_ray(job: _Job, todo: list[Shard], plan: Any) -> Iterator[dict[str, Any]]:
    """Shard answers as Ray finishes them (any order): the record steps in `ShardWorker`."""
    args = (
        functools.partial(job.task.build, job.options),
        plan,
        job.openers,
        str(job.folder.root),
        os.getcwd(),
    )
    return map_shards(job.session, todo, ShardWorker, args, job.workers)


def _finish_on_ray(job: _Job, todo: list[Shard], plan: Any) -> Iterator[dict[str, Any]]:
    """The keyed run's second pass: actors write the output shards from the stored outcomes."""
    args = (job.task.name, job.options, plan, str(job.folder.root), os.getcwd(), job.output)
    return map_shards(job.session, todo, ShardFinisher, args, job.workers)
