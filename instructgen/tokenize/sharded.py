"""`tokenize --engine ray`: the input cut into shards of records, each tokenized by a Ray task into
its own Arrow file of the output dataset; deterministic and resumable.

The output folder is at once a `datasets.load_from_disk` dataset and a sharded run:

- `data-00000-of-00012.arrow` ...: input shard k's kept rows in input order (the in-process rows,
  `row` = the record's index in the whole input), datasets' own shard names; with `--pack`, the
  k-th run of bins of the whole-dataset best-fit-decreasing plan. Written atomically, by actors.
- `state.json` (the files in order), `dataset_info.json`, `instructgen_meta.json` and
  `instructgen_rejects.jsonl`: what the in-process run writes, once every shard is done, so
  `read_meta`, `verify_output`, `inspect --audit` and the cache work on the folder as on any output.
- `manifest.json`: the configuration (input bytes, tokenizer files, format, options, shard size)
  and its digest, then per-shard counts; a re-run with another configuration is refused, naming
  what changed (`shards.ShardFolder`).
- `_work/`: per shard a completion marker (its counts: rows, tokens, rejected by reason) and its
  rejections; with `--pack` also its rows as flat int32 spool files (`tokens-*.ids.bin`, labels,
  lengths) and the plan. Deleting `_work/` only costs a resume its shortcut.

Who does what:

- The driver counts the records (a JSON-lines file by its non-blank lines, without parsing them;
  a malformed record then stops the run when its actor reads it, with the in-process error: the
  first in input order), plans shards of `shard_rows` records, and proves the fast
  engine (fastokens/tiktoken, `engines.select_engine`) once on the first records, as the in-process
  run does; actors trust that proof (`engine_for`), so the report's fast-path line is the in-process
  one. The boundary audit (`--audit-sample N`) checks the first N auditable records of the input:
  the driver encodes those itself (a thousand records by default) and the actors audit nothing,
  so the audited and mismatch counts are the in-process ones (with -1, every actor audits all).
- Each actor (`ShardTokenizer`, a callable class built once per actor: tokenizer, engine, format,
  encoder, columnar assembly) reads its shard's records with the in-process reader (reaching its
  range by reading past the earlier records, so line numbers are the in-process ones), encodes
  them in the in-process chunks (`pipeline._encode_window`, one process) and writes its Arrow file.
- `--pack`: actors write each shard's rows to the spool; the driver reads only the lengths (4 bytes
  a row), makes the in-process plan over all of them (`packing.plan_bfd_arrays`), splits the bins
  into as many output files as there are input shards, and `ShardPacker` actors write those, each
  bin packed as `PackSpool` packs it; the rows equal the in-process `--pack` rows.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InstructgenError
from ..formats import get_format
from ..io.atomic import atomic_path, remove_stale_temps
from ..io.layouts import row_to_record
from ..io.readers import guard_lines, iter_jsonl, iter_lines
from ..io.records import read_records
from ..io.registry import detect
from ..pipeline.ray_engine import (
    RaySession,
    answer_shards,
    map_shards,
    require_ray,
)
from ..pipeline.shards import (
    DEFAULT_SHARD_ROWS,
    MANIFEST,
    WORK,
    Shard,
    ShardFolder,
    configuration,
    describe_reader,
    plan_shards,
)
from .encode import EncodeOptions, Encoder
from .engines import limit_engine_threads, select_engine
from .packing import plan_bfd_arrays
from .pipeline import (
    _WORKER,
    CHUNK,
    META_FILE,
    REJECTS_FILE,
    ColumnChunk,
    ShardWriter,
    TokenizeReport,
    _batched,
    _count,
    _encode_window,
    _init_worker,
    _is_own_file,
    _library_versions,
    _make_encoder,
    _plain_file,
    _restore_env,
    chunk_table,
    columns_table,
    export_rejects,
    output_files,
    output_meta,
    set_up_run,
    sharded_output,
    trainer_info,
    write_bins,
)
from .tokenizers import HFTokenizer, load_tokenizer

TASK = "tokenize"
DATA = "data"  # output shards: data-00000-of-00012.arrow, as datasets.save_to_disk names its files
SPOOL = "tokens"  # --pack: each input shard's rows as flat int32 files under _work/
PLAN_FILE = "pack.plan.npz"
REPORT_FIELDS = tuple(f.name for f in fields(TokenizeReport))
TOP_FILES = (META_FILE, REJECTS_FILE, MANIFEST, "state.json", "dataset_info.json")


@contextmanager
def placed(target: Path) -> Iterator[str]:
    """A temp file name under `_work/` (beside the target's folder) renamed onto `target` when the
    block ends well: a killed writer leaves its temporary in `_work/`, never a stray file among the
    dataset's own (which would make the folder look like someone else's)."""
    work = target.parent / WORK
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(work / target.name) as tmp:
        yield tmp
    os.replace(work / target.name, target)


@dataclass
class ShardedTokenizeReport(TokenizeReport):
    """The in-process report (counts over every shard, in shard order) and what the shards did."""

    folder: str = ""
    shards: int = 0
    shard_rows: int = 0
    tokenized_now: int = 0
    skipped: int = 0  # complete from an earlier run of the same configuration
    remaining: int = 0  # left for a later run (--max-shards)
    packed_shards: int = 0
    packed_now: int = 0
    ray_startup_seconds: float | None = None

    def summary(self) -> str:
        lines = [super().summary()]
        line = (
            f"  ray: {self.shards} shard(s) of up to {self.shard_rows} records in {self.folder}: "
            f"{self.tokenized_now} tokenized now, {self.skipped} complete from an earlier run"
        )
        if self.packed_shards:
            line += f"; packed into {self.packed_shards} file(s), {self.packed_now} written now"
        if self.ray_startup_seconds:
            line += f"; Ray start-up {self.ray_startup_seconds:.1f} s"
        lines.append(line)
        if self.remaining:
            lines.append(
                f"  stopped after --max-shards: {self.remaining} shard(s) left; run the same command "
                "again to resume (the dataset files are written when every shard is done)"
            )
        return "\n".join(lines)

    def base_json(self) -> dict[str, Any]:
        """The fields the in-process report has (what the metadata file stores)."""
        data = self.to_json()
        return {k: data[k] for k in REPORT_FIELDS}


def tokenize_sharded(
    input_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "alpaca",
    options: EncodeOptions | None = None,
    pack: bool = False,
    fast: bool = True,
    rejects: str | None = None,
    overwrite: bool = False,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    max_shards: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    workers: int | None = None,
) -> ShardedTokenizeReport:
    """`tokenize_file` on Ray: the same rows, report counts and files, written shard by shard.

    A re-run of the same configuration skips the shards complete in `out_dir`; another
    configuration is refused (naming what changed) unless `overwrite`, which starts over. As
    in-process, `out_dir` must be new, empty or instructgen's own output (`OutputFolder`): a
    folder holding any file instructgen did not write is refused, `overwrite` or not.
    `max_shards` tokenizes at most that many missing shards and stops (a later run resumes).
    """
    require_ray()
    options = options or EncodeOptions()
    t0 = time.perf_counter()
    out = Path(out_dir)
    for name in TOP_FILES:  # a killed run's temporaries of the files written at the top level
        remove_stale_temps(out / name)
    # the in-process checks and rules: a folder holding any file we did not write is refused
    run = set_up_run(
        input_path,
        tokenizer_path,
        out,
        fmt=fmt,
        options=options,
        pack=pack,
        rejects=rejects,
        overwrite=overwrite,
    )
    guard, fmt_obj, tok_fp, in_hash, key = run.folder, run.fmt, run.tokenizer_fp, run.input_sha256, run.key
    shown = str(Path(input_path))
    described = [{"path": shown, "bytes": Path(input_path).stat().st_size, "sha256": in_hash}]
    readers = [describe_reader(functools.partial(read_records, shown))]
    data = ShardFolder(out, prefix=DATA, suffix=".arrow", outcomes=False)
    totals = None if overwrite else data.counted_before(described, readers)
    if totals is None:
        totals = [count_records(input_path)]
    if totals[0] == 0:
        raise ConfigError(f"{input_path}: no record survived tokenization ({{}})")
    settings = {
        **asdict(options),
        "format": fmt_obj.to_dict() if fmt_obj else "chat_template",
        "pack": pack,
        "fast": fast,
        "tokenizer_sha256": tok_fp,
        "libraries": _library_versions(),
    }
    layout = {"files": f"{DATA}-NNNNN-of-NNNNN.arrow", "packed": pack}
    config = configuration(TASK, settings, described, readers, layout, shard_rows, totals, pools=False)
    if guard.ours and (overwrite or not sharded_output(out)):
        # our files of an earlier output (in-process, or Ray with --overwrite), by name: the check
        # above refused the folder if it held anything else, --overwrite or not
        guard.refuse_foreign()  # again, right before removing: a file may have come since
        for name in os.listdir(out):
            if _is_own_file(name) and _plain_file(out / name):
                (out / name).unlink()
    data.prepare(config, overwrite=overwrite)
    digest = config["config_digest"]

    tok = load_tokenizer(tokenizer_path)
    report = ShardedTokenizeReport(format=fmt, folder=str(out_dir), shard_rows=shard_rows)
    engine, actor_options = _prove(tok, input_path, fmt_obj, options, fast, report)

    shards = plan_shards(totals, shard_rows)
    spool = ShardFolder(out, prefix=SPOOL, suffix=".ids.bin", outputs=out / WORK, outcomes=False)
    first = spool if pack else data

    def needs(s: Shard) -> tuple[Path, ...]:
        extra = (_spool_file(spool, s, ".labels.bin"), _spool_file(spool, s, ".lengths.bin")) if pack else ()
        return (first.rejects(s), *extra)

    markers, missing, todo = first.progress(shards, digest, needs, max_shards)
    report.shards, report.skipped = len(shards), len(markers)
    report.tokenized_now, report.remaining = len(todo), len(missing) - len(todo)
    session = RaySession(address, num_cpus)
    try:
        if todo:
            args = (
                str(tokenizer_path),
                fmt,
                actor_options,
                engine,
                str(input_path),
                str(out),
                pack,
                os.getcwd(),
            )
            pending, errors = {s.index for s in todo}, {}
            for row in map_shards(session, todo, ShardTokenizer, args, workers):
                index = int(row["index"])
                pending.discard(index)
                if row["error"]:
                    errors[index] = row["error"]
                else:
                    markers[index] = first.mark_done(shards[index], digest, json.loads(row["counts"]))
                # a malformed record stops the run with the error the in-process run gives: the first
                # in input order, raised once no earlier shard is still being read
                if errors and min(errors) < min(pending, default=len(shards)):
                    raise pickle.loads(errors[min(errors)])
        _merge(report, [markers[s.index] for s in shards if s.index in markers], options)
        config["shards"] = len(shards)
        config["per_shard"] = [markers.get(s.index, {"shard": s.index, "complete": False}) for s in shards]
        if report.remaining:
            data.write_manifest(config)
            report.ray_startup_seconds = session.startup
            report.seconds = time.perf_counter() - t0
            return report
        if report.rows_out == 0:
            raise ConfigError(f"{input_path}: no record survived tokenization ({dict(report.rejected)})")
        if pack:
            names = _pack(report, session, data, spool, shards, options.max_length, digest, config, workers)
        else:
            names = [data.output(s).name for s in shards]
        report.ray_startup_seconds = session.startup
    finally:
        session.close()
    _finish(out, report, data, first, shards, names, key, config, pack)
    report.seconds = time.perf_counter() - t0
    _write_meta(out, report, key, input_path, tokenizer_path, fmt_obj, options, pack, tok, tok_fp)
    export_rejects(out, rejects, input_path)
    return report


def _prove(
    tok: Any,
    input_path: str | Path,
    fmt: Any,
    options: EncodeOptions,
    fast: bool,
    report: TokenizeReport,
) -> tuple[tuple[str, bool], EncodeOptions]:
    """The engine the actors build (proven here on the first records, as the in-process run proves
    it), the report's fast-path line and warnings, and the boundary audit of the first
    `audit_sample` records; returns the engine and the options the actors encode with."""
    first = [r for _, r in islice(read_records(input_path), CHUNK)]
    engine = ("tokenizers", False)
    rayon = os.environ.get("RAYON_NUM_THREADS")
    try:
        if fmt is not None and isinstance(tok, HFTokenizer):
            limit_engine_threads(1)
            choice = select_engine(tok, first, fmt, options, fast=fast, threads=1)
            tok, engine, report.fast_path = choice.tok, (choice.name, choice.columnar), choice.line
        encoder = _make_encoder(tok, fmt, options)
        if isinstance(encoder, Encoder) and tok.pad_id is not None and tok.pad_id == encoder.eot_id:
            report.warnings.append(
                "pad token == end-of-turn token: padding is masked by position, so the real "
                "end-of-turn keeps its label"
            )
        n = options.audit_sample
        if n <= 0:  # none, or all (every actor audits all of its records)
            return engine, options
        # the in-process run audits the first n auditable records in input order, whatever the
        # chunking: encode chunks here until that many were audited, and let the actors audit none
        for batch in _batched(read_records(input_path), CHUNK):
            if encoder._audited >= n:
                break
            encoder.encode_batch([rec for _, rec in batch])
        report.audited, report.boundary_mismatch = encoder.stats.audited, encoder.stats.boundary_mismatch
    finally:
        _restore_env("RAYON_NUM_THREADS", rayon)
    return engine, replace(options, audit_sample=0)


def count_records(path: str | Path) -> int:
    """The records `read_records(path)` yields, for the shard plan. A JSON-lines file: its non-blank
    lines (~2 us a line, where parsing and validating a record costs ~15 us: at 100M rows, 25 min of
    serial driver time), each of which is a record or an error that the actor reading it raises
    (the driver re-raises the first in input order: the in-process error). Other layouts: read."""
    if detect("records", path).name != "jsonl":
        return sum(1 for _ in read_records(path))
    return sum(1 for _, text, _ in iter_lines(path, newlines="any") if text.strip())


def shard_records(path: str | Path, start: int, stop: int) -> Iterator[tuple[int, Any]]:
    """(line, Record) of records [start, stop) of `path`: `islice(read_records(path), start, stop)`.

    A JSON-lines file's earlier records are skipped as lines (`iter_jsonl(path, start, stop)`), then
    the shard's own lines go through the reader's own steps (`row_to_record`, the raise-on-error guard), so
    the records, their line numbers and any error are the reader's. Other layouts (a JSON array)
    are read whole by their reader and sliced.
    """
    if detect("records", path).name != "jsonl":
        return islice(read_records(path), start, stop)
    shown = str(path)
    rows = iter_jsonl(path, start, stop)
    return guard_lines(rows, lambda line, row: row_to_record(row, path=shown, line=line), "raise")


def _spool_file(spool: ShardFolder, shard: Shard, suffix: str) -> Path:
    return spool.outputs / f"{SPOOL}-{shard.index:05d}-of-{shard.count:05d}{suffix}"


def _merge(report: TokenizeReport, markers: list[dict[str, Any]], options: EncodeOptions) -> None:
    """The shards' counts added up in shard order (rejection reasons in first-seen order, as the
    in-process run counts them)."""
    for m in markers:
        report.rows_in += m["rows_in"]
        report.rows_out += m["rows_out"]
        report.tokens += m["tokens"]
        report.trained_tokens += m["trained_tokens"]
        report.truncated += m["truncated"]
        for reason, n in m["rejected"]:
            report.rejected[reason] += n
        if options.audit_sample < 0:
            report.audited += m["audited"]
            report.boundary_mismatch += m["boundary_mismatch"]


def _pack(
    report: ShardedTokenizeReport,
    session: RaySession,
    data: ShardFolder,
    spool: ShardFolder,
    shards: list[Shard],
    capacity: int,
    digest: str,
    config: dict[str, Any],
    workers: int | None,
) -> list[str]:
    """--pack: the whole-dataset plan from the spooled lengths, its bins cut into as many output
    files as there are input shards, the missing files written by `ShardPacker` actors."""
    import numpy as np

    lengths = [np.fromfile(_spool_file(spool, s, ".lengths.bin"), dtype=np.int32) for s in shards]
    kept = np.asarray([len(x) for x in lengths], dtype=np.int64)
    flat = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)
    rows, starts = plan_bfd_arrays(flat, capacity)
    nbins = len(starts) - 1
    report.packed_rows = nbins
    report.packing_efficiency = int(flat.sum(dtype=np.int64)) / (capacity * nbins) if nbins else 0.0
    outputs = plan_shards(nbins, max(1, -(-nbins // len(shards))))
    plan = data.work / PLAN_FILE
    with atomic_path(plan) as tmp, open(tmp, "wb") as f:
        np.savez(f, rows=rows, starts=starts, lengths=flat, kept=kept)
    done = {s.index: m for s in outputs if (m := data.complete(s, digest)) is not None}
    todo = [s for s in outputs if s.index not in done]
    report.packed_shards, report.packed_now = len(outputs), len(todo)
    if todo:
        spools = [
            (str(_spool_file(spool, s, ".ids.bin")), str(_spool_file(spool, s, ".labels.bin")))
            for s in shards
        ]
        args = (str(data.root), str(plan), spools, capacity)
        for row in map_shards(session, todo, ShardPacker, args, workers):
            if row["error"]:
                raise pickle.loads(row["error"])
            s = outputs[int(row["index"])]
            done[s.index] = data.mark_done(s, digest, json.loads(row["counts"]))
    config["packed"] = [done[s.index] for s in outputs]
    return [data.output(s).name for s in outputs]


def _finish(
    out: Path,
    report: ShardedTokenizeReport,
    data: ShardFolder,
    first: ShardFolder,
    shards: list[Shard],
    names: list[str],
    key: str,
    config: dict[str, Any],
    pack: bool,
) -> None:
    """The dataset's own files once every shard is done: the rejections joined in shard order,
    state.json listing the Arrow files in order, dataset_info.json, and the manifest."""
    target = out / REJECTS_FILE
    if report.rejected:
        with placed(target) as tmp, open(tmp, "wb") as f:
            for s in shards:
                with open(first.rejects(s), "rb") as piece:
                    shutil.copyfileobj(piece, f)
    else:
        target.unlink(missing_ok=True)
    writer = ShardWriter(out, key)
    writer.set_features(_empty_table(pack))
    writer.write_state(names)
    data.write_manifest(config)


def _write_meta(
    out: Path,
    report: ShardedTokenizeReport,
    key: str,
    input_path: str | Path,
    tokenizer_path: str | Path,
    fmt: Any,
    options: EncodeOptions,
    pack: bool,
    tok: Any,
    tok_fp: str,
) -> None:
    """The in-process metadata file (cache key, options, report, trainer info, file hashes), plus
    how the shards were laid out; written last, so a folder with it is a finished dataset."""
    info = trainer_info(tok, tok_fp, fmt, options, pack)
    meta = output_meta(out, key, input_path, tokenizer_path, fmt, options, pack, report.base_json(), info)
    meta["engine"] = {"name": "ray", "shards": report.shards, "shard_rows": report.shard_rows}
    meta["files"] = output_files(out)
    with placed(out / META_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")


def _empty_table(pack: bool) -> Any:
    """A table with no rows and the output's columns (the schema every shard file carries)."""
    if pack:
        return columns_table({"input_ids": [], "labels": [], "position_ids": [], "seq_lens": []})
    import numpy as np

    none = np.zeros(0, dtype=np.int32)
    return chunk_table(ColumnChunk(0, none, none, none, np.zeros(0, dtype=bool), []))


class ShardTokenizer:
    """The callable class the shard tasks run for tokenize: one per worker process and run, holding the tokenizer, the
    engine the driver proved, the format and the encoder (built once here, never pickled per
    batch). A batch is rows of shard specs; for each shard it writes the shard's Arrow file (or,
    with --pack, its spool) and its rejections, and answers the shard's counts as JSON (or the
    error that stopped it, re-raised by the driver)."""

    def __init__(
        self,
        tokenizer_path: str,
        fmt: str,
        options: EncodeOptions,
        engine: tuple[str, bool],
        input_path: str,
        folder: str,
        pack: bool,
        cwd: str | None = None,
    ) -> None:
        if cwd and os.path.isdir(cwd):  # relative paths (and the file name rejections cite) as in the driver
            os.chdir(cwd)
        os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one engine thread per actor (~one CPU each)
        self.fmt = None if fmt == "chat_template" else get_format(fmt)
        self.tokenizer_path, self.options, self.engine = tokenizer_path, options, engine
        _init_worker(tokenizer_path, self.fmt, options, engine)
        self.encoder = _WORKER["encoder"]
        self.input = input_path
        self.pack = pack
        self.data = ShardFolder(folder, prefix=DATA, suffix=".arrow", outcomes=False)
        self.spool = ShardFolder(
            folder, prefix=SPOOL, suffix=".ids.bin", outputs=Path(folder) / WORK, outcomes=False
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return answer_shards(batch, self.tokenize)

    def _chunks(self, shard: Shard, report: TokenizeReport, rejects: Any):
        """The shard's encoded chunks in order (global record indexes), rejections written as the
        in-process run writes them."""
        base = shard.start
        records = shard_records(self.input, shard.start, shard.stop)
        for window in _batched(records, CHUNK):
            lines = [line for line, _ in window]
            chunks = _encode_window(
                [rec for _, rec in window],
                base,
                self.encoder,
                self.tokenizer_path,
                self.fmt,
                self.options,
                self.engine,
                1,
            )
            for c in chunks:
                _count(report, c)
                for i, reason, detail in c.rejected:
                    row = {
                        "reason": reason,
                        "detail": detail,
                        "source_file": self.input,
                        "line": lines[i - base],
                    }
                    rejects.write(json.dumps(row, ensure_ascii=False) + "\n")
                yield c
            base += len(window)

    def tokenize(self, shard: Shard) -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        report = TokenizeReport()
        first = self.spool if self.pack else self.data
        with (
            atomic_path(first.rejects(shard)) as rej_tmp,
            open(rej_tmp, "w", encoding="utf-8", newline="\n") as rej,
        ):
            if self.pack:
                self._spool(shard, self._chunks(shard, report, rej))
            else:
                self._arrow(shard, self._chunks(shard, report, rej))
        _WORKER.pop("records", None)
        return {
            "rows_in": report.rows_in,
            "rows_out": report.rows_out,
            "tokens": report.tokens,
            "trained_tokens": report.trained_tokens,
            "truncated": report.truncated,
            "rejected": list(report.rejected.items()),
            "audited": report.audited,
            "boundary_mismatch": report.boundary_mismatch,
            "seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu,
        }

    def _arrow(self, shard: Shard, chunks: Any) -> None:
        target = self.data.output(shard)
        with placed(target) as tmp:
            writer = ShardWriter(target.parent, file=tmp)
            for c in chunks:
                if (c.lengths >= 0).any():
                    writer.write(chunk_table(c))
            if writer.features is None:  # every record dropped: an empty file with the columns
                writer.write(_empty_table(False))
            writer.finish()

    def _spool(self, shard: Shard, chunks: Any) -> None:
        ids_path = self.spool.output(shard)
        labels_path = _spool_file(self.spool, shard, ".labels.bin")
        lengths_path = _spool_file(self.spool, shard, ".lengths.bin")
        with (
            atomic_path(ids_path) as ids_tmp,
            atomic_path(labels_path) as labels_tmp,
            atomic_path(lengths_path) as lengths_tmp,
            open(ids_tmp, "wb") as ids,
            open(labels_tmp, "wb") as labels,
            open(lengths_tmp, "wb") as lengths,
        ):
            for c in chunks:
                ids.write(c.ids.tobytes())
                labels.write(c.labels.tobytes())
                lengths.write(c.lengths[c.lengths >= 0].astype("int32").tobytes())


class ShardPacker:
    """--pack's second `map_batches`: one per actor, the plan loaded once; for each output shard (a
    range of bins) it reads the bins' rows from the spool and writes the packed Arrow file."""

    def __init__(self, folder: str, plan: str, spools: list[tuple[str, str]], capacity: int) -> None:
        import numpy as np

        with np.load(plan) as z:
            self.rows, self.starts = z["rows"], z["starts"]
            lengths, kept = z["lengths"], z["kept"]
        self.lengths = lengths
        self.source = np.repeat(np.arange(len(kept), dtype=np.int32), kept)  # row -> input shard
        ends = np.cumsum(lengths, dtype=np.int64)
        first_row = np.concatenate([[0], np.cumsum(kept)])[:-1]  # each shard's first row
        shard_base = np.concatenate([[0], ends])[first_row]  # tokens before each shard's first row
        self.offset = ends - lengths - shard_base[self.source]  # row's first token in its shard's spool
        self.spools = spools
        self.capacity = capacity
        self.data = ShardFolder(folder, prefix=DATA, suffix=".arrow", outcomes=False)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return answer_shards(batch, self.write, self._packing_error)

    @staticmethod
    def _packing_error(shard: Shard, exc: Exception) -> InstructgenError:
        return InstructgenError(f"packing {shard.index}: {exc}")

    def write(self, shard: Shard) -> dict[str, Any]:
        import numpy as np

        files: dict[int, tuple[Any, Any]] = {}

        def read(i: int) -> tuple[list[int], list[int]]:
            src = int(self.source[i])
            if src not in files:
                files[src] = (open(self.spools[src][0], "rb"), open(self.spools[src][1], "rb"))  # noqa: SIM115
            size, at = int(self.lengths[i]) * 4, int(self.offset[i]) * 4
            fi, fl = files[src]
            ids = np.frombuffer(os.pread(fi.fileno(), size, at), dtype=np.int32).tolist()
            return ids, np.frombuffer(os.pread(fl.fileno(), size, at), dtype=np.int32).tolist()

        target = self.data.output(shard)
        try:
            with placed(target) as tmp:
                writer = ShardWriter(target.parent, file=tmp)
                bins = range(shard.start, shard.stop)
                tokens = write_bins(writer, self.rows, self.starts, bins, read, self.capacity)
                if writer.features is None:
                    writer.write(_empty_table(True))
                writer.finish()
        finally:
            for fi, fl in files.values():
                fi.close()
                fl.close()
        return {"rows": shard.items, "tokens": tokens}
