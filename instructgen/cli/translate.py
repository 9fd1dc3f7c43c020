"""`instructgen translate`: parallel corpora -> translation instruction records."""

from __future__ import annotations

import functools

import click
from tqdm import tqdm

from ..converters.translation import DIRECTIONS, TranslationOptions
from ..io.readers import count_rows, read_parallel
from ..io.registry import formats
from ..pipeline import registry
from ..quality.report import Report
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

EPILOG = """\b
Examples:
  instructgen translate examples/data/zh_en.tsv --src-lang zh --tgt-lang en -o out.jsonl
  instructgen translate --src-file news.de --tgt-file news.en --src-lang de --tgt-lang en \\
      --direction both --instruction-lang mix --meta --rejects rejects.jsonl -o out.jsonl
  instructgen translate pairs.jsonl --src-lang de --tgt-lang en --src-col translation.de \\
      --tgt-col translation.en --format sharegpt -o -
"""


@click.command("translate", epilog=EPILOG)
@click.argument("input_path", metavar="INPUT", required=False, type=click.Path())
@click.option("--src-lang", required=True, help="Language of the source side (BCP-47: zh, en, de, pt-BR...).")
@click.option("--tgt-lang", required=True, help="Language of the target side.")
@click.option(
    "--src-file", type=click.Path(), help="Line-aligned source file (Moses/OPUS style), with --tgt-file."
)
@click.option("--tgt-file", type=click.Path(), help="Line-aligned target file.")
@click.option("--src-col", help="Source column: a name, a dotted path (translation.de) or a 0-based index.")
@click.option("--tgt-col", help="Target column, as --src-col.")
@click.option(
    "--input-format",
    type=click.Choice([f for f in formats("pairs") if f != "aligned"]),  # tsv, csv, jsonl, json, hf
    help="Override the format guessed from INPUT's extension (hf = a save_to_disk folder).",
)
@click.option(
    "--header",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Whether a TSV/CSV file starts with a header row (auto: a first row naming both sides).",
)
@click.option("--split", help="Split to read from a DatasetDict folder.")
@click.option(
    "--direction",
    type=click.Choice(DIRECTIONS),
    default="src2tgt",
    show_default=True,
    help="Which way to translate; 'both' writes each pair twice. It flips the data, never the template.",
)
@click.option(
    "--instruction-lang",
    default="en",
    show_default=True,
    help="Language the instruction is written in: a pool language (en, zh, ...), src, tgt or mix.",
)
@click.option(
    "--templates",
    "template_files",
    multiple=True,
    type=click.Path(),
    help="Extra template pool file (repeatable); see 'instructgen templates'.",
)
@click.option("--no-builtin-templates", is_flag=True, help="Use only the pools given with --templates.")
@click.option(
    "--langid",
    type=click.Choice(["fasttext", "langdetect", "none"]),
    default="fasttext",
    show_default=True,
    help="Language-ID backend that checks each side is in its declared language.",
)
@click.option(
    "--langid-threshold",
    type=float,
    default=0.6,
    show_default=True,
    help="Reject a side detected as another language with at least this confidence.",
)
@click.option(
    "--max-ratio",
    type=float,
    default=3.0,
    show_default=True,
    help="Reject pairs whose length ratio (CJK characters and words as units) exceeds this; 0 = off.",
)
@click.option("--no-dedup", is_flag=True, help="Keep exact duplicate pairs.")
@click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="On malformed input: stop with file and line (raise), or count it as rejected and go on (skip).",
)
@output_options
@run_options
@max_reject_option
@fail_cleanly
def translate_cmd(
    input_path,
    src_lang,
    tgt_lang,
    src_file,
    tgt_file,
    src_col,
    tgt_col,
    input_format,
    header,
    split,
    direction,
    instruction_lang,
    template_files,
    no_builtin_templates,
    langid,
    langid_threshold,
    max_ratio,
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
    """Turn parallel sentence pairs into translation instruction records.

    INPUT is a TSV/CSV file (two columns, or named ones), JSONL/JSON (fields such as
    {"translation": {"de": ..., "en": ...}}, or --src-col/--tgt-col), or a folder written
    by Dataset.save_to_disk. Each record's instruction comes from a template pool, chosen
    by --seed and the pair itself, so reruns give identical files.
    """
    options = TranslationOptions(
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        seed=seed,
        direction=direction,
        instruction_lang=instruction_lang,
        templates=tuple(template_files),
        builtin_templates=not no_builtin_templates,
        langid=langid,
        langid_threshold=langid_threshold,
        max_ratio=max_ratio or None,
        dedup=not no_dedup,
        meta=meta,
        src_col=src_col,
        tgt_col=tgt_col,
    )

    # picklable (a partial of a module-level reader): --engine ray's workers open the input with it
    opener = functools.partial(
        read_parallel,
        input_path,
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        src_file=src_file,
        tgt_file=tgt_file,
        src_col=src_col,
        tgt_col=tgt_col,
        input_format=input_format,
        header=header,
        split=split,
        on_error=on_error,
    )

    def items():
        for item in opener():
            bar.update()
            yield item

    if engine is not None and engine.ray:
        inputs = [p for p in (input_path, src_file, tgt_file) if p is not None]
        report = run_sharded(
            "translation",
            options,
            opener,
            engine,
            inputs=inputs,
            output=output,
            fmt=fmt,
            columns=columns,
            meta=meta,
            rejects=rejects,
        ).report
    else:
        run = registry.start("translation", options, items, num_proc=num_proc)  # options checked here
        report = run.report
        total = count_rows(src_file or input_path) if (src_file or input_path) else None
        show = not quiet and (total is None or total >= PROGRESS_MIN_ROWS)
        bar = tqdm(total=total, disable=not show, unit="pair", desc="translate", leave=False)
        with bar:
            write_outcomes(run, output, fmt, columns, meta, rejects)
    if rejects:
        report.notes.append(f"rejected examples written to {rejects}")
    click.echo(report.summary(verbose), err=True)
    check_outcome(report, max_reject_ratio, swapped_hint(report))


def swapped_hint(report: Report) -> str | None:
    """When most rejections say a side is not in its declared language, the usual cause is the
    languages (or columns, or files) given the wrong way round."""
    wrong = report.rejected["wrong_language_source"] + report.rejected["wrong_language_target"]
    if wrong * 2 <= report.rejected_total:
        return None
    return (
        f"{wrong} of {report.rejected_total} rejections are wrong_language_*: are --src-lang and "
        "--tgt-lang swapped? (or --src-col/--tgt-col, --src-file/--tgt-file)"
    )
