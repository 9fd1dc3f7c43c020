"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from ..errors import InstructgenError
from ..io.writers import JsonlSink, RecordWriter
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
            help="Output file; '-' writes to stdout. Files are written atomically.",
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
            help="Write every rejected example, with its reason code, to this JSONL file.",
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


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--num-proc and -v/--verbose: how the record steps run, and the per-step report."""
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
