"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, InstructgenError
from ..io.writers import JsonlSink, RecordWriter
from ..pipeline.run import Result
from ..pipeline.shards import DEFAULT_SHARD_ROWS, ShardFolder
from ..quality.report import Report
from ..schema import Record, Rejected

PROGRESS_MIN_ROWS = 2000

# A converting run that finished but whose output should not be trusted (it wrote nothing, or
# rejected more than --max-reject-ratio) exits with this status; errors that stop a run exit 2.
EXIT_REJECTED = 3
MAX_REJECT_RATIO = 0.5
# Drops the user asked for (a quota on sentences without entities), not signs of bad input: left out of
# --max-reject-ratio, so a per-type NER run over a corpus with many entity-less sentences exits 0.
PLANNED_DROPS = frozenset({"too_many_empty"})


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print an InstructgenError as one line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InstructgenError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-o, --format, --columns, --meta, --rejects, --seed, --quiet: the same for every converter."""
    decorators = [
        click.option(
            "-o",
            "--output",
            default="-",
            show_default=True,
            help="Output file; '-' writes to stdout. Files are written atomically. With --engine ray, a "
            "folder of shards: new, empty, or a previous sharded run's with nothing else in it (a folder "
            "holding any other file is refused, even with --overwrite).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["alpaca", "alpaca-json", "sharegpt", "messages", "query-response"]),
            default="alpaca",
            show_default=True,
            help="alpaca = Alpaca JSONL; alpaca-json = one JSON array; sharegpt / messages = chat JSONL; "
            "query-response = query/response/tag JSONL.",
        ),
        click.option(
            "--columns",
            default=None,
            metavar="I,Q,A",
            help="Alpaca JSONL with your own column names, e.g. instruct,query,answer.",
        ),
        click.option(
            "--meta",
            is_flag=True,
            help="Add a 'meta' object to every record (template id and hash, "
            "languages, direction, source file and line).",
        ),
        click.option(
            "--rejects",
            default=None,
            metavar="FILE",
            help="Write every rejected example, with its reason code, to this JSONL file (with --engine "
            "ray: a file outside the -o folder).",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=int,
            help="Seed for every random choice; with the record's key it fixes the output.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ]
    for deco in reversed(decorators):
        fn = deco(fn)
    return fn


@dataclass(frozen=True)
class EngineChoice:
    """Where a command's record steps run, as `run_options` parsed it (the command's `engine` argument).

    `local` is the in-process engine (with `--num-proc` processes); `ray` runs them on Ray Data and
    writes `-o` as a folder of shards (see `instructgen.pipeline.ray_engine`).
    """

    name: str = "local"
    ray_address: str | None = None
    shard_rows: int = DEFAULT_SHARD_ROWS
    max_shards: int | None = None
    overwrite: bool = False

    @property
    def ray(self) -> bool:
        return self.name == "ray"


ENGINE_PARAMS = ("engine", "ray_address", "shard_rows", "max_shards", "resume")


def _engine_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Pack the engine options into one `engine: EngineChoice` argument. A command that does not take
    `engine` yet runs locally only, and says so when asked for another engine."""
    takes_engine = "engine" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name, address, rows, max_shards, resume = (kwargs.pop(k) for k in ENGINE_PARAMS)
        choice = EngineChoice(name, address, rows, max_shards, not resume)
        if takes_engine:
            kwargs["engine"] = choice
        elif choice.ray:
            click.echo("error: this command does not run on --engine ray yet (only local)", err=True)
            sys.exit(2)
        return fn(*args, **kwargs)

    return wrapper


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--num-proc, -v/--verbose and the engine: how the record steps run, and the per-step report.

    The engine options (`--engine`, `--ray-address`, `--shard-rows`, `--max-shards`,
    `--resume/--overwrite`) reach the command as one `engine: EngineChoice` argument."""
    fn = _ENGINE_OPTIONS(_engine_argument(fn))
    fn = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="After the summary, one line per pipeline step: items in, kept, rejected by reason, seconds.",
    )(fn)
    return click.option(
        "--num-proc",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        help="Worker processes for the record steps (0 = one per CPU). The output is byte-identical "
        "for any value.",
    )(fn)


def engine_options(
    *,
    engine_help: str,
    max_shards_help: str,
    resume_help: str,
    shard_rows_default: int | None = DEFAULT_SHARD_ROWS,
    shard_rows_help: str = "--engine ray: input items per shard (a resumed run must use the same value).",
    ray_address_help: str = "Ray cluster to join (default: $RAY_ADDRESS, else a local Ray on this machine's CPUs).",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding the options of a command that runs on `--engine ray` (in this order:
    `--engine`, `--ray-address`, `--shard-rows`, `--max-shards`, `--resume/--overwrite`), so that
    every such command parses them alike: the record tasks (`run_options`) and tokenize. A command
    words the help for what it makes; `shard_rows_default=None` lets it tell an unset `--shard-rows`
    apart (its help then names the default)."""
    options = (
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help=engine_help,
        ),
        click.option(
            "--ray-address", envvar="RAY_ADDRESS", default=None, metavar="ADDR", help=ray_address_help
        ),
        click.option(
            "--shard-rows",
            type=click.IntRange(min=1),
            default=shard_rows_default,
            show_default=shard_rows_default is not None,
            help=shard_rows_help,
        ),
        click.option("--max-shards", type=click.IntRange(min=0), default=None, help=max_shards_help),
        click.option("--resume/--overwrite", "resume", default=True, show_default=True, help=resume_help),
    )

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return add


_ENGINE_OPTIONS = engine_options(
    engine_help="Where the record steps run: here (with --num-proc processes), or on Ray Data (pip install "
    "'instructgen[ray]'), which writes -o as a folder of shards part-00000-of-000NN.jsonl whose "
    "concatenation is the local output.",
    max_shards_help="--engine ray: convert at most this many missing shards, then stop (run again to resume).",
    resume_help="--engine ray: skip shards a previous run of the same configuration completed, or clear the "
    "folder's shards and start over. Shards of another configuration are never mixed in. A folder "
    "holding any file instructgen did not write is refused, --overwrite or not: nothing of yours is "
    "deleted.",
)


def run_sharded(
    task: str,
    options: Any,
    opener: Callable[[], Iterable[Any]],
    engine: EngineChoice,
    *,
    inputs: Iterable[str],
    output: str,
    fmt: str,
    columns: str | None,
    meta: bool,
    rejects: str | None,
    shown: str | None = None,
) -> Result:
    """The `--engine ray` sink of a converting command: shards under the `-o` folder, --rejects whole.

    `opener` reads the input afresh and must be picklable (a `functools.partial` of a reader):
    every worker calls it. Returns the run's result (its report has a note on shards converted and
    skipped; the task's `finish` has run, so `result.scheme` and the like are there).

    The folder is checked before any work (before the input is read or Ray starts): it must be new,
    empty or instructgen's own sharded output (`ShardFolder.check`), --overwrite or not, and
    --rejects must not lie inside it (the folder holds the run's own files alone).
    """
    from ..pipeline.ray_engine import require_ray
    from ..pipeline.ray_engine import run_sharded as run_on_ray

    if output != "-":
        folder = ShardFolder(output)
        if rejects is not None and _inside(Path(rejects), folder.root):
            raise ConfigError(
                f"--rejects {rejects}: inside the -o folder {folder.root}, which holds only the run's "
                "shards (--engine ray); name a file outside it"
            )
        folder.check()
    require_ray()
    done = run_on_ray(
        task,
        options,
        opener,
        output,
        inputs=inputs,
        fmt=fmt,
        columns=parse_columns(columns),
        meta=meta,
        rejects=rejects,
        shard_rows=engine.shard_rows,
        max_shards=engine.max_shards,
        overwrite=engine.overwrite,
        address=engine.ray_address,
        shown=shown,
    )
    return done.result


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is (or would be) in `folder` or below it, links resolved."""
    return path.resolve().is_relative_to(folder.resolve())


def write_outcomes(
    items: Iterable[Record | Rejected],
    output: str,
    fmt: str,
    columns: str | None,
    meta: bool,
    rejects: str | None,
) -> None:
    """The sink every converting command ends in: records to the output layout, rejections to --rejects.

    Both files are written atomically and in input order (a rejection sits where its row was read).
    """
    with (
        RecordWriter(output, fmt, columns=parse_columns(columns), with_meta=meta) as writer,
        JsonlSink(rejects) as sink,
    ):
        for item in items:
            if isinstance(item, Record):
                writer.write(item)
            else:
                sink.write(item.model_dump())


def parse_columns(value: str | None) -> list[str] | None:
    if value is None:
        return None
    cols = [c.strip() for c in value.split(",") if c.strip()]
    if len(cols) < 3:
        raise click.BadParameter(
            "give at least three names: instruction,input,output", param_hint="--columns"
        )
    return cols


def max_reject_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--max-reject-ratio, for the commands that convert records (translate, ner, classify)."""
    return click.option(
        "--max-reject-ratio",
        type=click.FloatRange(0.0, 1.0),
        default=MAX_REJECT_RATIO,
        show_default=True,
        help=f"Exit with status {EXIT_REJECTED} (files still written) when more than this share of the "
        "outcomes is rejected, or when nothing is written; 1 checks only the latter.",
    )(fn)


def check_outcome(report: Report, max_reject_ratio: float, hint: str | None = None) -> None:
    """Exit with EXIT_REJECTED when a run wrote nothing or rejected too much, naming the top reasons.

    A run that rejects 4,998 of 5,000 pairs because the languages were swapped used to exit 0;
    a pipeline went on to train on nothing. The summary has been printed already.
    """
    rejected = report.rejected_total - sum(report.rejected.get(r, 0) for r in PLANNED_DROPS)
    total = report.written + rejected
    if report.read == 0:
        problem = "the input has no rows: nothing to convert"
    elif report.written == 0:
        problem = f"wrote nothing: all {report.rejected_total} outcomes were rejected"
    elif rejected / total > max_reject_ratio:
        problem = (
            f"rejected {rejected} of {total} outcomes ({rejected / total:.0%}), "
            f"over --max-reject-ratio {max_reject_ratio:g}"
        )
    else:
        return
    top = sorted(report.rejected.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    if top:
        problem += "; top reasons: " + ", ".join(f"{reason} {n}" for reason, n in top)
    click.echo(f"error: {problem}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(EXIT_REJECTED)
