"""`instructgen ner` and `instructgen classify`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import click
from tqdm import tqdm

from ..converters.classification import classification_input, iter_rows
from ..converters.ner import TARGETS
from ..errors import InputError
from ..io.registry import formats
from ..pipeline import registry
from ..pipeline.run import Result, Run
from .common import (
    PROGRESS_MIN_ROWS,
    EngineChoice,
    check_outcome,
    fail_cleanly,
    max_reject_option,
    output_options,
    run_options,
    run_sharded,
    write_outcomes,
)

NER_EPILOG = """\b
Examples:
  instructgen ner eng.train --scheme iob1 --target list -o ner.jsonl
  instructgen ner msra/test_data --instruction-lang zh --target json --label PER=人物 -o ner_zh.jsonl
  instructgen ner data.jsonl --tag-names O,B-PER,I-PER,B-LOC,I-LOC --target per-type -o out.jsonl
"""
CLASSIFY_EPILOG = """\b
Examples:
  instructgen classify reviews.csv --text-col review --label-col label --label-names negative,positive -o out.jsonl
  instructgen classify sst2.tsv --text-col sentence --label-names negative,positive --inverted-ratio 0.1 -o out.jsonl
"""


def _pairs(values: tuple[str, ...], flag: str) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        key, sep, words = v.partition("=")
        if not sep or not key or not words:
            raise click.BadParameter(f"expected LABEL=words, got '{v}'", param_hint=flag)
        out.append((key.strip(), words.strip()))
    return tuple(out)


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",")] if value else None


def _start(
    task: str,
    options: Any,
    open_items: Callable[[], Iterable[Any]],
    *,
    desc: str,
    unit: str,
    quiet: bool,
    num_proc: int,
    shown: str | None = None,
) -> Run:
    """Start the task's run: its plan pass reads the input once (a counter shows only if that takes
    a while); the run then reads it again as it converts (see `TwoPass`), so a large input is read
    twice instead of held. `run.total` is the number of items it will account for."""
    bars: list[tqdm] = []

    def opened() -> Iterable[Any]:
        items = open_items()
        if bars:  # the second read: the writing bar counts outcomes
            return items
        bars.append(tqdm(items, desc=f"{desc}: reading", unit=unit, disable=quiet, delay=1.0, leave=False))
        return bars[0]

    try:
        return registry.start(task, options, opened, num_proc=num_proc, shown=shown)
    finally:
        for bar in bars:
            bar.close()


def _write(run: Run, *, desc: str, unit: str, quiet: bool, sink: dict[str, Any]) -> None:
    """Records to the output and rejections to --rejects as the run makes them, under a bar."""
    total = run.total or 0
    show = not quiet and total >= PROGRESS_MIN_ROWS
    with tqdm(run, total=total, disable=not show, unit=unit, desc=desc, leave=False) as bar:
        write_outcomes(bar, **sink)


def _convert(
    task: str,
    options: Any,
    opener: Callable[[], Iterable[Any]],
    *,
    engine: EngineChoice | None,
    num_proc: int,
    desc: str,
    unit: str,
    quiet: bool,
    sink: dict[str, Any],
    input_path: str,
    shown: str | None = None,
    planned: Callable[[Result], None] | None = None,
) -> Result:
    """Run `task` over the input and write what it makes (`sink`: output, fmt, columns, meta, rejects);
    the task's `finish` has run on the returned result. Locally the plan is looked at (`planned`)
    before anything is written; `--engine ray` plans and writes in one call, so it is looked at after.
    `opener` reads the input afresh and is picklable (Ray's workers call it)."""
    if engine is not None and engine.ray:
        result = run_sharded(task, options, opener, engine, inputs=[input_path], shown=shown, **sink)
        if planned is not None:
            planned(result)
        return result
    run = _start(task, options, opener, desc=desc, unit=unit, quiet=quiet, num_proc=num_proc, shown=shown)
    if planned is not None:
        planned(run.result)
    _write(run, desc=desc, unit=unit, quiet=quiet, sink=sink)
    return registry.finished(task, options, run)


@click.command("ner", epilog=NER_EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option(
    "--scheme",
    type=click.Choice(["auto", "iob1", "bio", "bioes"]),
    default="auto",
    show_default=True,
    help="Tag scheme; auto reads the whole file (IOB1 when most entities start with I-).",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="list",
    show_default=True,
    help="How the answer lists entities: 'type: span; ...', JSON, inline [span](type), one type per record.",
)
@click.option(
    "--input-format",
    type=click.Choice(formats("tagged")),  # the registered NER readers: conll, jsonl, hf
    help="conll = token/tag columns or character-per-line; jsonl = tokens+tags or text+entities.",
)
@click.option(
    "--tag-col",
    type=int,
    default=-1,
    show_default=True,
    help="Tag column of CoNLL files (0-based; -1 = last).",
)
@click.option("--tag-names", default=None, help="Names of integer tags, in id order: O,B-PER,I-PER,...")
@click.option("--label", "labels", multiple=True, metavar="TYPE=WORDS", help="Verbalise a type (PER=人物).")
@click.option(
    "--instruction-lang", default="en", show_default=True, help="Language of the instructions (pool)."
)
@click.option(
    "--templates", "template_files", multiple=True, type=click.Path(), help="Extra NER pool (repeatable)."
)
@click.option(
    "--max-empty-ratio", type=float, default=None, help="At most this share of records without entities."
)
@click.option(
    "--empty-share",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=None,
    help="--target per-type: target share of empty answers (None / 无), default 0.15; entity-less "
    "sentences beyond it are dropped and counted as too_many_empty.",
)
@click.option(
    "--inverted-ratio",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of records from inverted templates ('write a sentence that mentions X').",
)
@click.option("--no-dedup", is_flag=True, help="Keep records that repeat an earlier one exactly.")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@click.option("--split", default=None, help="Split of a DatasetDict folder.")
@output_options
@run_options
@max_reject_option
@fail_cleanly
def ner_cmd(
    input_path,
    scheme,
    target,
    input_format,
    tag_col,
    tag_names,
    labels,
    instruction_lang,
    template_files,
    max_empty_ratio,
    empty_share,
    inverted_ratio,
    no_dedup,
    on_error,
    split,
    output,
    fmt,
    columns,
    meta,
    rejects,
    seed,
    quiet,
    num_proc,
    verbose,
    max_reject_ratio,
    engine: EngineChoice | None = None,
):
    """Turn NER data (CoNLL, MSRA character-per-line, token/tag or span JSONL) into instruction records.

    Tags are decoded to spans in Python (IOB1, BIO, BIOES; malformed sequences follow one
    documented repair rule and are counted), then phrased by the NER template pool.
    """
    from ..converters.ner import NerOptions
    from ..io.tagged import read_tagged

    options = NerOptions(
        seed=seed,
        target=target,
        scheme=scheme,
        instruction_lang=instruction_lang,
        labels=_pairs(labels, "--label"),
        templates=tuple(template_files),
        max_empty_ratio=max_empty_ratio,
        inverted_ratio=inverted_ratio,
        meta=meta,
        dedup=not no_dedup,
        **({} if empty_share is None else {"empty_share": empty_share}),
    )

    # picklable (a partial of the reader): --engine ray's workers open the input with it
    opener = functools.partial(
        read_tagged,
        input_path,
        input_format=input_format,
        tag_col=tag_col,
        tag_names=_names(tag_names),
        on_error=on_error,
        split=split,
    )

    def planned(result: Result) -> None:
        """A last look at the plan: a file without typed tags is not NER data."""
        n = result.report.read
        if n and not result.plan.labels:
            raise InputError(
                f"no entity tags: no B-, I-, E- or S- tag with a type in the {n} sentence{'s' * (n != 1)} "
                "read (is this NER data? the tag column is --tag-col, -1 = the last)",
                path=str(input_path),
            )

    sink = dict(output=output, fmt=fmt, columns=columns, meta=meta, rejects=rejects)
    result = _convert(
        "ner", options, opener, engine=engine, num_proc=num_proc, desc="ner", unit="sentence", quiet=quiet,
        sink=sink, input_path=input_path, planned=planned,
    )  # fmt: skip
    report = result.report
    report.notes.insert(0, f"scheme: {result.scheme}")
    for kind, n in sorted(result.repairs.items()):
        report.notes.append(f"repaired {kind}: {n}")
    click.echo(report.summary(verbose), err=True)
    check_outcome(report, max_reject_ratio)


@click.command("classify", epilog=CLASSIFY_EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("--text-col", default="text", show_default=True, help="Column with the text.")
@click.option("--text2-col", default=None, help="Second text of a pair (NLI, paraphrase).")
@click.option("--label-col", default="label", show_default=True, help="Column with the label.")
@click.option(
    "--label-names", default=None, help="Label names in id order, for integer labels: negative,positive."
)
@click.option(
    "--verbalise", multiple=True, metavar="LABEL=WORDS", help="Words for a label in the pool language."
)
@click.option(
    "--instruction-lang", default="en", show_default=True, help="Language of the instructions (pool)."
)
@click.option(
    "--templates", "template_files", multiple=True, type=click.Path(), help="Extra pool (repeatable)."
)
@click.option(
    "--inverted-ratio",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of records from inverted templates ('write a text labelled X').",
)
@click.option(
    "--option-order",
    type=click.Choice(["shuffled", "fixed"]),
    default="shuffled",
    show_default=True,
    help="Order of the options shown: seeded per record, or the label-name order (every 'A' the same label).",
)
@click.option("--input-format", type=click.Choice(formats("rows")))  # csv, tsv, jsonl, json, hf
@click.option("--no-dedup", is_flag=True, help="Keep records that repeat an earlier one exactly.")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True)
@output_options
@run_options
@max_reject_option
@fail_cleanly
def classify_cmd(
    input_path,
    text_col,
    text2_col,
    label_col,
    label_names,
    verbalise,
    instruction_lang,
    template_files,
    inverted_ratio,
    option_order,
    input_format,
    no_dedup,
    on_error,
    output,
    fmt,
    columns,
    meta,
    rejects,
    seed,
    quiet,
    num_proc,
    verbose,
    max_reject_ratio,
    engine: EngineChoice | None = None,
):
    """Turn labelled texts (CSV/TSV/JSONL/JSON/save_to_disk) into classification instruction records.

    Options are shown in a seeded order and style per record; lettered options give lettered answers.
    """
    names = _names(label_names)
    options, _ = classification_input(
        input_path,
        input_format=input_format,
        on_error=on_error,
        seed=seed,
        text_col=text_col,
        text2_col=text2_col,
        label_col=label_col,
        label_names=tuple(names) if names else None,
        verbalise=_pairs(verbalise, "--verbalise"),
        instruction_lang=instruction_lang,
        templates=tuple(template_files),
        inverted_ratio=inverted_ratio,
        option_order=option_order,
        meta=meta,
        dedup=not no_dedup,
    )
    # the same rows classification_input reads, as a picklable partial for --engine ray's workers
    opener = functools.partial(iter_rows, input_path, input_format=input_format, on_error=on_error)
    sink = dict(output=output, fmt=fmt, columns=columns, meta=meta, rejects=rejects)
    report = _convert(
        "classification", options, opener, engine=engine, num_proc=num_proc, desc="classify", unit="row",
        quiet=quiet, sink=sink, input_path=input_path, shown=options.source_file,
    ).report  # fmt: skip
    click.echo(report.summary(verbose), err=True)
    check_outcome(report, max_reject_ratio)
