"""`split`, `mix`, `stats`, `export`: from records to a training run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import ConfigError
from .common import fail_cleanly

FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
ROW_FORMATS = ("alpaca", "sharegpt", "messages", "query-response")


def _kind_of_output(path: str, default: str = "jsonl") -> str:
    if path == "-":
        return "jsonl"
    return FILE_KINDS.get(Path(path).suffix.lower(), default)


@click.command("split")
@click.argument("path", type=click.Path())
@click.option("-o", "--output", required=True, help="Folder for train/validation/test files (or the DatasetDict).")
@click.option(
    "--ratios",
    default="85,10,5",
    show_default=True,
    help="Shares of the splits, in percent (85,10,5) or fractions (0.85,0.1,0.05).",
)
@click.option("--names", default=None, help="Split names, default train,validation,test (as many as ratios).")
@click.option(
    "--group-by",
    default=None,
    metavar="FIELD[,FIELD]",
    help="Keep rows with the same value of this (dotted) field together, e.g. meta.key. "
    "Default: the key our --meta records carry (meta.question_id, meta.key, meta.source_file+line).",
)
@click.option(
    "--stratify",
    default=None,
    metavar="FIELD",
    help="Keep this field's shares equal across splits, e.g. meta.label, meta.lang, meta.direction.",
)
@click.option(
    "--connect",
    default=None,
    metavar="FIELD[,FIELD]",
    help="Also keep rows together that share a value of these fields, e.g. output: translation pairs "
    "that share a sentence (one English line with two Chinese translations) stay in one split.",
)
@click.option("--save-to-disk", is_flag=True, help="Write a datasets.DatasetDict folder instead of files.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the group order.")
@fail_cleanly
def split_cmd(path, output, ratios, names, group_by, stratify, connect, save_to_disk, seed):
    """Split PATH (records in any layout) into train/validation/test without leaks between them.

    Records made from one source item (both directions of a pair, the original and inverted
    records of a sentence, every answer to one identity question) stay in one split.
    """
    from ..dataops.outputs import guard_outputs
    from ..dataops.rows import load_rows, write_rows
    from ..dataops.split import parse_ratios, split_rows

    shares = parse_ratios(ratios)
    rowset = load_rows(path)
    result = split_rows(
        rowset.rows,
        shares,
        names=[n.strip() for n in names.split(",")] if names else None,
        seed=seed,
        group_by=[f.strip() for f in group_by.split(",") if f.strip()] if group_by else None,
        stratify=stratify,
        connect=[f.strip() for f in connect.split(",") if f.strip()] if connect else None,
    )
    out = Path(output)
    parts = {name: [rowset.rows[i] for i in result.indices(k)] for k, name in enumerate(result.names)}
    kind = "jsonl" if rowset.kind == "hf" else rowset.kind
    suffix = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet"}[kind]
    if save_to_disk:
        guard_outputs([path], folders=[out])
    else:
        guard_outputs([path], [out / f"{name}{suffix}" for name in parts])
    if save_to_disk:
        import datasets

        try:
            dd = datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in parts.items()})
        except Exception as exc:
            raise ConfigError(f"{path}: these rows do not fit one Arrow schema ({exc}); write files instead") from None
        try:
            dd.save_to_disk(str(out))
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
        written = [str(out)]
    else:
        written = []
        for name, rows in parts.items():
            write_rows(rows, out / f"{name}{suffix}", kind)
            written.append(str(out / f"{name}{suffix}"))
    click.echo(result.summary(), err=True)
    click.echo(f"  wrote {', '.join(written)}", err=True)


def _legacy_mix(special, general, ratio, output, fmt, columns, meta, seed):
    """`mix SPECIAL GENERAL --ratio R`: the two-file mix identity users know, unchanged."""
    from ..dataops.outputs import guard_outputs
    from ..io.records import read_records
    from ..io.writers import RecordWriter
    from ..mix import mix
    from .common import parse_columns

    guard_outputs([special, general], [output])
    rows, note = mix(
        [r for _, r in read_records(special)], [r for _, r in read_records(general)], ratio, seed=seed
    )
    with RecordWriter(output, fmt, columns=parse_columns(columns), with_meta=meta) as writer:
        for r in rows:
            writer.write(r)
    click.echo(f"mix: {note}", err=True)


@click.command("mix")
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", default="-", show_default=True, help="Output file (.jsonl, .json, .parquet) or '-'.")
@click.option("--total", type=int, default=None, help="Rows in the output; one source without a spec takes the rest.")
@click.option("--allow-repeat", is_flag=True, help="Repeat rows of a source asked for more rows than it has.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *ROW_FORMATS, "alpaca-json"]),
    default="auto",
    show_default=True,
    help="auto keeps the rows as they are (the sources must share a layout); a layout converts every row.",
)
@click.option("--drop-meta", is_flag=True, help="Leave out the rows' 'meta' objects (kept by default).")
@click.option(
    "--manifest",
    default=None,
    metavar="FILE",
    help="Where to write the manifest (default: mix_manifest.json beside the output).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of row choice and order.")
@click.option("--ratio", type=float, default=None, help="Two-file form: share of the FIRST file (e.g. 0.1).")
@click.option("--columns", default=None, hidden=True)
@click.option("--meta", is_flag=True, hidden=True)
@click.option("--rejects", default=None, hidden=True)
@click.option("-q", "--quiet", is_flag=True, hidden=True)
@fail_cleanly
def mix_cmd(sources, output, total, allow_repeat, fmt, drop_meta, manifest, seed, ratio, columns, meta, rejects, quiet):
    """Mix record files: SOURCE is PATH:SHARE (0.1 or 10% of the output), PATH:COUNT (5000), or PATH (all).

    \b
      instructgen mix identity.jsonl:0.1 general.jsonl:5000 code.json -o mixed.jsonl
      instructgen mix a.jsonl:0.3 b.jsonl --total 10000 -o mixed.jsonl   # b fills the rest
      instructgen mix identity.jsonl general.jsonl --ratio 0.1 -o mixed.jsonl   # the two-file form

    No row is repeated unless --allow-repeat. Rows keep their fields and meta. A manifest lists
    every source's sha256, rows available and rows taken; the same inputs and seed give the same bytes.
    """
    if ratio is not None:
        if len(sources) != 2 or any(":" in s and not Path(s).exists() for s in sources):
            raise click.UsageError("--ratio is the two-file form: mix SPECIAL GENERAL --ratio R")
        legacy_fmt = "alpaca" if fmt == "auto" else fmt
        _legacy_mix(sources[0], sources[1], ratio, output, legacy_fmt, columns, meta, seed)
        return
    from ..dataops.mixing import mix_sources, parse_source
    from ..dataops.outputs import guard_outputs
    from ..dataops.rows import file_sha256, load_rows, write_rows
    from ..io.writers import close_atomic, open_atomic

    parsed = [parse_source(s) for s in sources]
    manifest_path = manifest or (None if output == "-" else str(Path(output).parent / "mix_manifest.json"))
    guard_outputs([s.path for s in parsed], [p for p in (output, manifest_path) if p])
    for s in parsed:
        s.rows = load_rows(s.path)
    result = mix_sources(parsed, total=total, seed=seed, allow_repeat=allow_repeat)
    rows = result.rows
    layouts = sorted({s.rows.layout for s in parsed if s.rows})
    if fmt == "auto" and len(layouts) > 1:
        raise ConfigError(
            f"the sources have different layouts ({', '.join(layouts)}); choose one with --format"
        )
    out_format = layouts[0] if fmt == "auto" else fmt
    if fmt != "auto":
        from ..io.records import row_to_record
        from ..io.writers import record_to_row

        layout = "alpaca" if fmt == "alpaca-json" else fmt
        rows = [record_to_row(row_to_record(r), layout, with_meta=True) for r in rows]
    if drop_meta:
        rows = [{k: v for k, v in r.items() if k != "meta"} for r in rows]
    kind = "json" if fmt == "alpaca-json" else _kind_of_output(output)
    # the manifest's temp file first: an unwritable --manifest stops the run before the output is written
    pending = open_atomic(manifest_path) if manifest_path else None
    ok = False
    try:
        if output == "-":
            encode = json.JSONEncoder(ensure_ascii=False).encode  # the writers' encoder
            for r in rows:
                sys.stdout.write(encode(r) + "\n")
        else:
            write_rows(rows, output, kind)
        if pending:
            data = result.manifest(
                None if output == "-" else output,
                None if output == "-" else file_sha256(output),
                out_format,
            )
            try:
                pending[0].write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
            except OSError as exc:
                raise ConfigError(f"cannot write {manifest_path}: {exc.strerror or type(exc).__name__}") from None
        ok = True
    finally:
        if pending:
            close_atomic(*pending, manifest_path, ok)
    click.echo(result.summary(), err=True)
    if manifest_path:
        click.echo(f"  manifest: {manifest_path}", err=True)


@click.command("stats")
@click.argument("path", type=click.Path())
@click.option("--tokenizer", default=None, help="Count tokens too (a HF tokenizer folder or a .tiktoken file).")
@click.option("--rejects", default=None, metavar="FILE", help="A rejects file to count reasons from.")
@click.option("--plots", default=None, metavar="DIR", help="Write PNG plots here (needs matplotlib).")
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write every figure as JSON too.")
@click.option("--no-langid", is_flag=True, help="Do not detect languages the records' meta does not state.")
@fail_cleanly
def stats_cmd(path, tokenizer, rejects, plots, json_out, no_langid):
    """Describe PATH: records in any layout, a split's folder, or an `instructgen tokenize` output folder.

    Counts, length distributions (characters; tokens with --tokenizer), languages, templates,
    labels and rejected reasons; for tokenized data the trained-token share and packing
    efficiency. The table goes to stdout; --plots DIR draws the same as PNGs.
    """
    from ..dataops.outputs import guard_outputs
    from ..dataops.stats import compute_stats, is_tokenized

    if json_out:
        guard_outputs([path, *([rejects] if rejects else [])], [json_out])
    paths = [path] if is_tokenized(path) else _expand_inputs((path,))
    all_stats = [compute_stats(p, tokenizer=tokenizer, langid=not no_langid, rejects=rejects) for p in paths]
    written = []
    if plots:  # before printing, so a missing matplotlib stops with nothing half-written
        from ..dataops.plots import write_plots

        for p, st in zip(paths, all_stats):
            # a split folder: one plot folder per split
            written += write_plots(st, plots if len(paths) == 1 else Path(plots) / Path(p).name.split(".")[0])
    if json_out:  # before printing too: an unwritable --json is an error, not a table then a traceback
        from ..dataops.rows import write_text_atomic

        data = all_stats[0].to_json() if len(paths) == 1 else {p: st.to_json() for p, st in zip(paths, all_stats)}
        write_text_atomic(json_out, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    click.echo("\n".join(st.table() for st in all_stats))
    if plots:
        click.echo(f"plots: {', '.join(str(p) for p in written)}", err=True)


def _expand_inputs(paths: tuple[str, ...]) -> list[str]:
    """Files as given; a folder of split files (split's output) becomes its files, train first."""
    out: list[str] = []
    order = {"train": 0, "validation": 1, "test": 2}
    for p in paths:
        folder = Path(p)
        is_saved = any((folder / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
        if folder.is_dir() and not is_saved:
            files = [
                f for f in folder.iterdir()
                if f.suffix in FILE_KINDS and f.name not in ("mix_manifest.json", "dataset_info.json")
            ]
            if not files:
                raise ConfigError(f"{p}: a folder with no .jsonl, .json or .parquet files")
            out += [str(f) for f in sorted(files, key=lambda f: (order.get(f.stem, 9), f.name))]
        else:
            out.append(p)
    return out


@click.command("export")
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "to", type=click.Choice(["llamafactory", "trl", "parquet"]), required=True,
              help="llamafactory: data + dataset_info.json; trl: SFTTrainer layouts; parquet: rows as they are.")
@click.option("-o", "--output", required=True, help="Folder to write into (LLaMA-Factory's dataset_dir).")
@click.option("--name", default=None, help="Dataset name (default: the file's stem; NAME_stem for several).")
@click.option("--formatting", type=click.Choice(["auto", "alpaca", "sharegpt"]), default="auto", show_default=True,
              help="LLaMA-Factory formatting; auto: sharegpt for chat rows, alpaca otherwise.")
@click.option("--trl-layout", type=click.Choice(["messages", "prompt-completion", "prompt-completion-text"]),
              default="messages", show_default=True,
              help="messages: chat template over the whole conversation; prompt-completion: only the answer "
              "is trained (conversational); prompt-completion-text: plain strings, no chat template.")
@click.option("--file-format", type=click.Choice(["jsonl", "json", "parquet"]), default=None,
              help="Data file format (default jsonl; parquet for --to parquet).")
@click.option("--keep-meta", is_flag=True, help="Keep each row's meta (as a JSON string column for trainers).")
@fail_cleanly
def export_cmd(paths, to, output, name, formatting, trl_layout, file_format, keep_meta):
    """Write records (any layout; a split folder exports each split) for a trainer to read as is.

    \b
      instructgen export data.jsonl --to llamafactory -o lf_data --name my_set
      instructgen export splits/ --to trl -o trl_data --trl-layout prompt-completion
      instructgen export data.jsonl --to parquet -o out
    """
    from ..dataops.export import export
    from ..dataops.rows import load_rows

    rowsets = [load_rows(p) for p in _expand_inputs(paths)]
    done = export(
        rowsets, to, output, name=name, formatting=formatting, trl_layout=trl_layout,
        file_format=file_format, keep_meta=keep_meta,
    )
    for d in done:
        click.echo(f"export: {d.source} -> {d.path} ({d.rows} rows, {d.layout})", err=True)
    if to == "llamafactory":
        names = [d.name for d in done]
        use = f"dataset: {names[0]}"
        evals = [n for n in names[1:] if n.split("_")[-1] in ("validation", "valid", "dev", "eval")]
        if evals:
            use += f", eval_dataset: {evals[0]}"
        click.echo(f"  dataset_info.json: {', '.join(names)}; train with dataset_dir: {output}, {use}", err=True)
