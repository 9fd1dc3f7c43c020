"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import InstructgenError

PROGRESS_MIN_ROWS = 2000


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


def parse_columns(value: str | None) -> list[str] | None:
    if value is None:
        return None
    cols = [c.strip() for c in value.split(",") if c.strip()]
    if len(cols) < 3:
        raise click.BadParameter(
            "give at least three names: instruction,input,output", param_hint="--columns"
        )
    return cols
