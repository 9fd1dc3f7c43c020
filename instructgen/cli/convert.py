"""`instructgen convert`: instruction data people already have -> any layout, through the same checks."""

from __future__ import annotations

import functools

import click
from tqdm import tqdm

from ..pipeline import registry
from ..tasks.convert import NAME, ConvertOptions, read_items
from .common import (
    EngineChoice,
    check_outcome,
    fail_cleanly,
    max_reject_option,
    output_options,
    run_options,
    run_sharded,
    write_outcomes,
)

EPILOG = """\b
Examples:
  instructgen convert alpaca_data.json --format sharegpt -o data_sharegpt.jsonl
  instructgen convert chats.jsonl --format alpaca --rejects rejects.jsonl -o data.jsonl
  instructgen convert mixed.jsonl --on-error skip --check-placeholders --format messages -o -
"""


@click.command("convert", epilog=EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path())
@output_options
@click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="raise: stop at the first malformed row (file, line, field); skip: count it as rejected.",
)
@click.option("--no-dedup", is_flag=True, help="Keep exact duplicate conversations.")
@click.option(
    "--check-placeholders",
    is_flag=True,
    help="Reject records holding template placeholders ({{ x }}, [src_lang]); off by default, since "
    "answers about templates contain them legitimately.",
)
@run_options
@max_reject_option
@fail_cleanly
def convert_cmd(
    input_path,
    output,
    fmt,
    columns,
    meta,
    rejects,
    seed,
    quiet,
    on_error,
    no_dedup,
    check_placeholders,
    num_proc,
    verbose,
    max_reject_ratio,
    engine: EngineChoice | None = None,
):
    """Convert Alpaca (JSON/JSONL), ShareGPT, OpenAI messages or query-response rows into any layout.

    The layout is recognised per row; every record passes the empty-field checks and exact dedup,
    and each dropped row is counted by reason (and written to --rejects).
    """
    del seed  # converting chooses nothing at random; the option is shared with the other commands
    options = ConvertOptions(dedup=not no_dedup, placeholders=check_placeholders)
    # picklable (a partial of a module-level reader): --engine ray's workers open the input with it
    opener = functools.partial(read_items, input_path, on_error=on_error)
    sink = dict(output=output, fmt=fmt, columns=columns, meta=meta, rejects=rejects)
    if engine is not None and engine.ray:
        report = run_sharded(NAME, options, opener, engine, inputs=[input_path], **sink).report
    else:
        run = registry.start(NAME, options, opener, num_proc=num_proc, table=False)
        report = run.report
        write_outcomes(tqdm(run, disable=quiet, unit="row", desc="convert", leave=False, delay=2), **sink)
    if rejects:
        report.notes.append(f"rejected examples written to {rejects}")
    click.echo(report.summary(verbose), err=True)
    check_outcome(report, max_reject_ratio)
