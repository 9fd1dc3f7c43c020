"""`instructgen tokenize`, `instructgen inspect` and `instructgen formats`."""

from __future__ import annotations

import json
import sys

import click

from ..formats import FORMATS
from ..tokenize.encode import TRUNCATION, EncodeOptions
from .common import PROGRESS_MIN_ROWS, engine_options, fail_cleanly

TOKENIZE_EPILOG = """\b
Examples:
  instructgen tokenize data.jsonl --tokenizer ./qwen-tokenizer --format qwen --max-length 1024 -o tok/
  instructgen tokenize chats.jsonl --tokenizer ./tok --format chat_template --mask-history -o tok/
  instructgen tokenize data.json --tokenizer ./tok --format my_alpaca_lora_template.json --pack -o packed/
  instructgen tokenize big.jsonl --tokenizer ./tok --format qwen --engine ray --shard-rows 100000 -o tok/
  instructgen inspect tok/ -n 3 --audit
"""


@click.command("tokenize", epilog=TOKENIZE_EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option(
    "--tokenizer",
    "tokenizer_path",
    required=True,
    type=click.Path(),
    help="A local HF tokenizer directory, or a .tiktoken BPE rank file.",
)
@click.option(
    "--format",
    "fmt",
    default="alpaca",
    show_default=True,
    help=f"Prompt format: {', '.join(sorted(FORMATS))}, chat_template (the tokenizer's own), or a "
    ".yaml/.json format file (alpaca-lora templates too).",
)
@click.option("--max-length", type=int, default=2048, show_default=True, help="Longest row, in tokens.")
@click.option(
    "--truncation",
    type=click.Choice(TRUNCATION),
    default="drop",
    show_default=True,
    help="Over-long rows: drop them, cut the prompt from the left (whole earlier turns first), or cut the "
    "end of the response. Role headers and the final end-of-turn are never cut.",
)
@click.option(
    "--train-on-inputs", is_flag=True, help="Train on the prompt too (labels everywhere but padding)."
)
@click.option(
    "--mask-history", is_flag=True, help="Train only the last assistant turn of multi-turn records."
)
@click.option(
    "--no-escape", is_flag=True, help="Let special-token strings in user text act as control tokens."
)
@click.option(
    "--pack", is_flag=True, help="Pack rows (best-fit-decreasing, whole dataset) up to --max-length."
)
@click.option("--num-proc", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--no-fast",
    is_flag=True,
    help="Encode with the tokenizer itself, row by row (no fastokens/tiktoken engine, no columnar rows).",
)
@click.option(
    "--audit-sample",
    type=int,
    default=1000,
    show_default=True,
    help="Records compared with one-pass tokenization (boundary audit); 0 = none, -1 = all.",
)
@click.option(
    "--system",
    "system",
    default=None,
    metavar="TEXT|none|default",
    help="System prompt of records that have none: TEXT, 'none', or 'default' (the format's own). "
    "Unset: the format's default, refused when the records carry an identity it contradicts.",
)
@click.option("--rejects", default=None, metavar="FILE", help="Write dropped records with their reason here.")
@engine_options(
    engine_help="Where records are encoded: here (with --num-proc processes), or on Ray Data actors (pip install "
    "'instructgen[ray]'), one Arrow file per shard of --shard-rows records: data-00000-of-000NN.arrow, "
    "the same rows as local, resumable.",
    max_shards_help="--engine ray: tokenize at most this many missing shards, then stop (run again to resume).",
    resume_help="--overwrite: rebuild instructgen's own output even when it holds a matching cached result or "
    "its metadata file is damaged; with --engine ray, start over instead of skipping the shards a "
    "previous run of the same configuration completed (--resume, the default). A folder holding any "
    "file instructgen did not write is refused, --overwrite or not: nothing of yours is deleted.",
    shard_rows_default=None,
    shard_rows_help="--engine ray: records per shard [default: 250000] (a resumed run must use the same value).",
    ray_address_help="--engine ray: the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray on this "
    "machine's CPUs; on a cluster -o must be on storage every node sees).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Output folder (Arrow dataset). Created if new; an existing one is used only when it is empty or "
    "holds a previous tokenize output and nothing else (never a folder of your files, even with "
    "--overwrite). Written beside, then renamed into place.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@fail_cleanly
def tokenize_cmd(
    input_path,
    tokenizer_path,
    fmt,
    max_length,
    truncation,
    train_on_inputs,
    mask_history,
    no_escape,
    pack,
    num_proc,
    no_fast,
    audit_sample,
    system,
    rejects,
    resume,
    engine,
    ray_address,
    shard_rows,
    max_shards,
    out_dir,
    quiet,
):
    """Tokenize an Alpaca / ShareGPT / OpenAI-messages file into input_ids, attention_mask and labels.

    Labels are -100 on the prompt and on padding; every assistant turn and its end-of-turn
    token are trained. The output folder is an Arrow dataset (datasets.load_from_disk) and a
    cache: rerunning with the same input, tokenizer, format and options reuses it.
    """
    from tqdm import tqdm

    from ..tokenize.pipeline import tokenize_file

    options = EncodeOptions(
        max_length=max_length,
        truncation=truncation,
        train_on_inputs=train_on_inputs,
        mask_history=mask_history,
        escape_special=not no_escape,
        audit_sample=audit_sample,
        system_mode="auto" if system is None else system if system in ("none", "default") else "text",
        system_text=system if system not in (None, "none", "default") else "",
    )

    class LazyBar:
        """The row count is unknown while streaming: a bar appears once PROGRESS_MIN_ROWS rows are
        done, so small runs print only their summary."""

        def __init__(self) -> None:
            self.done = 0
            self.bar = None

        def update(self, n: int) -> None:
            self.done += n
            if self.bar is not None:
                self.bar.update(n)
            elif not quiet and self.done >= PROGRESS_MIN_ROWS:
                self.bar = tqdm(unit="row", desc="tokenize", leave=False, initial=self.done)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()

    def bar(total: int | None):
        return LazyBar()

    report = tokenize_file(
        input_path,
        tokenizer_path,
        out_dir,
        fmt=fmt,
        options=options,
        num_proc=num_proc,
        pack=pack,
        fast=not no_fast,
        rejects=rejects,
        overwrite=not resume,
        progress_factory=bar,
        engine=engine,
        ray_address=ray_address if engine == "ray" else None,
        shard_rows=shard_rows,
        max_shards=max_shards,
    )
    click.echo(report.summary(), err=True)


@click.command("inspect")
@click.argument("out_dir", type=click.Path())
@click.option("-n", "count", type=int, default=3, show_default=True, help="Rows to show.")
@click.option(
    "--audit", "do_audit", is_flag=True, help="Check every row (masks, BOS/EOS, decoded responses)."
)
@click.option(
    "--tokenizer", default=None, help="Tokenizer to decode with (default: the one used to tokenize)."
)
@click.option(
    "--source", default=None, help="Source records for the decode check (default: the tokenized input)."
)
@click.option("--no-color", is_flag=True, help="Mark trained tokens with [brackets] instead of colour.")
@fail_cleanly
def inspect_cmd(out_dir, count, do_audit, tokenizer, source, no_color):
    """Show tokenized rows token by token: trained tokens highlighted, masked ones dimmed."""
    from ..tokenize.inspect import audit, load_output, render_row
    from ..tokenize.pipeline import read_meta
    from ..tokenize.tokenizers import load_tokenizer

    read_meta(out_dir)  # a missing or damaged metadata file is an error line, not a traceback
    ds, meta = load_output(out_dir)
    tok = load_tokenizer(tokenizer or meta["tokenizer"])
    fmt = meta["format"]["name"] if isinstance(meta["format"], dict) else meta["format"]
    click.echo(f"{out_dir}: {len(ds)} rows, format {fmt}, tokenizer {meta['tokenizer']}")
    for i in range(min(count, len(ds))):
        row = ds[i]
        trained = sum(1 for x in row["labels"] if x != -100)
        click.echo(f"--- row {i}: {len(row['input_ids'])} tokens, {trained} trained")
        click.echo(render_row(row, tok, color=not no_color))
    if do_audit:
        report = audit(out_dir, tokenizer=tokenizer, source=source)
        click.echo(report.summary())
        if not report.ok:
            sys.exit(1)


@click.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print the full declarations as JSON.")
def formats_cmd(as_json):
    """List the built-in prompt formats."""
    for name, fmt in sorted(FORMATS.items()):
        if as_json:
            click.echo(json.dumps(fmt.to_dict(), ensure_ascii=False))
        else:
            click.echo(f"{name}\t{fmt.description}")
    if not as_json:
        click.echo("chat_template\tthe tokenizer's own Jinja chat template (one-pass, spans from sentinels)")
