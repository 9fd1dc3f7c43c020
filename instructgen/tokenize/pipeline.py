"""`tokenize`: record files -> an Arrow dataset of input_ids / attention_mask / labels on disk.

The input is streamed: windows of records are read, encoded in `num_proc` worker processes
(order preserved, so the output does not depend on the process count) and written as Arrow
shards at once, so memory does not grow with the input (`--pack` keeps only the lengths).
The output folder doubles as a cache: its `instructgen_meta.json` holds a key over the input
bytes, every tokenizer file, the format, the options and the versions of instructgen and the
tokenizer libraries, plus the size and sha256 of every file it wrote; a rerun with the same key
whose files check out reuses it, while any change or damage rebuilds it. The folder is written
beside its final path and renamed into place, and never replaces a folder of someone else's
files (see `OutputFolder`).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the run writes Arrow in any case: importing pyarrow with this module (0.1-0.3 s) keeps it out of
# the first chunk's write, where a benchmark of the call counts it and a progress bar stalls on it
import pyarrow  # noqa: F401

from .. import __version__
from ..errors import ConfigError, InputError
from ..formats import PromptFormat, get_format
from ..io.atomic import remove_stale_folders, stage_folder, swap_folder_in
from ..io.records import read_records
from ..io.writers import JsonlSink
from ..pipeline.shards import MANIFEST, WORK
from ..schema import Record, Rejected
from .columnar import ChunkPlan, ColumnarEncoder
from .encode import IGNORE, ChatTemplateEncoder, Encoded, EncodeOptions, Encoder
from .engines import engine_for, limit_engine_threads, select_engine, start_build
from .packing import pack_rows, packing_efficiency, plan_bfd_arrays
from .tokenizers import HFTokenizer, load_tokenizer, tokenizer_fingerprint

META_FILE = "instructgen_meta.json"
REJECTS_FILE = "instructgen_rejects.jsonl"
CHUNK = 1000


@dataclass
class TokenizeReport:
    format: str = ""
    rows_in: int = 0
    rows_out: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    rejected: Counter = field(default_factory=Counter)
    audited: int = 0
    boundary_mismatch: int = 0
    packed_rows: int | None = None
    packing_efficiency: float | None = None
    fast_path: str = ""
    cache: str = "miss"
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        share = self.trained_tokens / self.tokens if self.tokens else 0.0
        lines = [
            f"tokenize ({self.format}): {self.rows_in} rows in, {self.rows_out} out, {self.tokens} tokens, "
            f"{share:.1%} trained",
            f"  truncated: {self.truncated}",
        ]
        lines += [f"  rejected {k}: {v}" for k, v in sorted(self.rejected.items())]
        if self.audited:
            lines.append(
                f"  boundary audit: {self.boundary_mismatch} of {self.audited} audited records differ from "
                "one-pass tokenization"
            )
        if self.packed_rows is not None:
            lines.append(f"  packed into {self.packed_rows} rows, efficiency {self.packing_efficiency:.1%}")
        if self.fast_path:
            lines.append(f"  {self.fast_path}")
        lines.append(f"  cache: {self.cache}; {self.seconds:.1f}s")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejected"] = dict(self.rejected)
        return data


# --- workers ----------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _make_encoder(tokenizer: Any, fmt: PromptFormat | None, options: EncodeOptions):
    if fmt is None:
        return ChatTemplateEncoder(tokenizer, options)
    return Encoder(tokenizer, fmt, options)


def _init_worker(
    tokenizer_path: str, fmt: PromptFormat | None, options: EncodeOptions, engine: tuple[str, bool]
) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tok = engine_for(load_tokenizer(tokenizer_path), engine[0])  # the parent proved it on the sample
    _WORKER["encoder"] = _make_encoder(tok, fmt, options)
    _WORKER["columnar"] = ColumnarEncoder(_WORKER["encoder"]) if engine[1] else None


def _encode_chunk(records: list[Record]) -> tuple[list[Encoded | Rejected], dict[str, Any]]:
    enc = _WORKER["encoder"]
    before = asdict(enc.stats)
    out = enc.encode_batch(records)
    after = asdict(enc.stats)
    delta = {k: after[k] - before[k] for k in ("truncated", "audited", "boundary_mismatch")}
    return out, delta


def _encode_range(bounds: tuple[int, int]) -> tuple[bytes, bytes, bytes, bytes, list, dict[str, Any]]:
    """Worker side: encode records[start:end] (inherited, not sent) and return compact buffers.

    Pickling pydantic records out and per-row int lists back cost more than the encoding.
    """
    start, end = bounds
    columnar = _WORKER.get("columnar")
    if columnar is not None:  # rows assembled with array operations (columnar.py), same output
        records = _WORKER["records"][start:end]
        plan = _WORKER["plans"].pop(start, None) if _WORKER.get("plans") else None
        if plan is not None:  # routed and rendered while the engine loaded (encode_windows)
            lengths_b, ids_b, labels_b, flags_b, rej, delta = columnar.finish(records, plan)
        else:
            lengths_b, ids_b, labels_b, flags_b, rej, delta = columnar.encode(records)
        return lengths_b, ids_b, labels_b, flags_b, [(start + k, r, d) for k, r, d in rej], delta
    out, delta = _encode_chunk(_WORKER["records"][start:end])
    lengths, ids, labels = array("i"), array("i"), array("i")
    flags = bytearray()
    rejected = []
    for k, r in enumerate(out):
        if isinstance(r, Rejected):
            lengths.append(-1)
            rejected.append((start + k, r.reason, r.detail))
        else:
            lengths.append(len(r.input_ids))
            ids.extend(r.input_ids)
            labels.extend(r.labels)
            flags.append(1 if r.truncated else 0)
    return lengths.tobytes(), ids.tobytes(), labels.tobytes(), bytes(flags), rejected, delta


def _init_spawned(
    tokenizer_path: str,
    fmt: PromptFormat | None,
    options: EncodeOptions,
    engine: tuple[str, bool],
    records: list[Record],
) -> None:
    _init_worker(tokenizer_path, fmt, options, engine)
    _WORKER["records"] = records


# --- the run -------------------------------------------------------------------------------------------


def cache_key(
    input_bytes_hash: str, tokenizer_fp: str, fmt: PromptFormat | None, options: EncodeOptions, pack: bool
) -> str:
    payload = {
        "input": input_bytes_hash,
        "tokenizer": tokenizer_fp,
        "format": fmt.to_dict() if fmt else "chat_template",
        "options": asdict(options),
        "pack": pack,
        "version": __version__,
        "libraries": _library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _library_versions() -> dict[str, str | None]:
    """Versions of the libraries that turn text into ids: a new release can change the ids
    (transformers 5 rebuilds LLaMA's tokenizer pipeline), so they belong in the cache key."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in ("tokenizers", "transformers", "tiktoken"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_records(
    records: Sequence[Record],
    tokenizer_path: str,
    fmt_name: str,
    options: EncodeOptions,
    *,
    num_proc: int = 1,
    fast: bool = True,
    progress: Any = None,
    tokenizer: Any = None,
) -> tuple[list[Encoded | Rejected], TokenizeReport]:
    """Encode records in order; one Encoded or Rejected per record, and the report (the Python-object
    view of `encode_columns`, for the API)."""
    chunks, report = encode_columns(
        records,
        tokenizer_path,
        fmt_name,
        options,
        num_proc=num_proc,
        fast=fast,
        progress=progress,
        tokenizer=tokenizer,
    )
    results: list[Encoded | Rejected] = []
    for c in chunks:
        ids, labels = c.ids.tolist(), c.labels.tolist()
        reasons = iter(c.rejected)
        pos = kept = 0
        for n in c.lengths.tolist():
            if n < 0:
                _, reason, detail = next(reasons)
                results.append(Rejected(reason=reason, detail=detail))
                continue
            results.append(
                Encoded(ids[pos : pos + n], labels[pos : pos + n], truncated=bool(c.truncated[kept]))
            )
            pos += n
            kept += 1
    return results, report


@dataclass
class ColumnChunk:
    """One chunk's output as flat arrays: what workers send back, and what becomes Arrow."""

    start: int  # index of the chunk's first record
    lengths: Any  # np.int32, -1 for a rejected record
    ids: Any  # np.int32, all kept rows concatenated
    labels: Any
    truncated: Any  # np.bool_, one per kept row
    rejected: list  # (record index, reason, detail)
    delta: dict = field(default_factory=dict)  # the worker's truncated / audited / mismatch counts


def _chunk_from_payload(base: int, start: int, payload: tuple) -> ColumnChunk:
    """A worker's buffers as arrays; `base` turns window-relative record indexes into global ones."""
    import numpy as np

    lengths_b, ids_b, labels_b, flags, rejected, _ = payload
    return ColumnChunk(
        base + start,
        np.frombuffer(lengths_b, dtype=np.int32),
        np.frombuffer(ids_b, dtype=np.int32),
        np.frombuffer(labels_b, dtype=np.int32),
        np.frombuffer(flags, dtype=np.uint8).astype(bool),
        [(base + i, reason, detail) for i, reason, detail in rejected],
        payload[-1],
    )


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """itertools.batched (Python 3.12) for 3.10."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def window_size(num_proc: int) -> int:
    """Records held in memory at once: enough for every worker to take several chunks per pool,
    and at least 64 chunks, since each window forks a pool (~0.1 s of the parent's CPU, as much
    as encoding 10 chunks of columnar rows): 52k rows at 2 processes are one window, not two."""
    return CHUNK if num_proc <= 1 else CHUNK * max(num_proc * 16, 64)


def encode_windows(
    windows: Iterable[list[Record]],
    tokenizer_path: str,
    fmt_name: str,
    options: EncodeOptions,
    report: TokenizeReport,
    *,
    num_proc: int = 1,
    fast: bool = True,
    progress: Any = None,
    tokenizer: Any = None,
) -> Iterator[list[ColumnChunk]]:
    """Encode windows of records in order, yielding each window's chunks as soon as they are done.

    Only one window of records and its encoded chunks are in memory: the caller writes them out
    before asking for the next (what keeps `tokenize` flat in memory at millions of rows). With
    several processes, each window is handed to a fresh forked pool (records inherited, not
    pickled: pickling pydantic records cost more than encoding them). Chunk boundaries do not
    depend on the process count, so neither does the output.
    """
    fmt = None if fmt_name == "chat_template" else get_format(fmt_name)
    tok = tokenizer or load_tokenizer(tokenizer_path)
    it = iter(windows)
    # with 2+ cores the engine starts loading while the first window is read
    started = start_build(tok, num_proc) if fast and fmt is not None else None
    first = next(it, None)
    if first is None:
        return
    engine = ("tokenizers", False)
    # limit_engine_threads sets RAYON_NUM_THREADS for this run (workers inherit it); the caller's
    # process gets its own setting back when the run ends, however it ends
    rayon = os.environ.get("RAYON_NUM_THREADS")
    plans: dict[int, ChunkPlan] = {}
    if fmt is not None and isinstance(tok, HFTokenizer):
        # the fastest engine that reproduces the tokenizer's ids and this encoder's output on the
        # first records (engines.py); one line in the report says which runs and why others not
        limit_engine_threads(num_proc)
        try:
            ahead = _plan_ahead(tok, fmt, options, first, plans) if fast and num_proc > 1 else None
            choice = select_engine(
                tok, first, fmt, options, fast=fast, threads=num_proc, while_loading=ahead, started=started
            )
        except BaseException:
            _restore_env("RAYON_NUM_THREADS", rayon)
            raise
        tok, engine, report.fast_path = choice.tok, (choice.name, choice.columnar), choice.line
    encoder = _make_encoder(tok, fmt, options)
    if isinstance(encoder, Encoder) and tok.pad_id is not None and tok.pad_id == encoder.eot_id:
        report.warnings.append(
            "pad token == end-of-turn token: padding is masked by position, so the real "
            "end-of-turn keeps its label"
        )
    _WORKER["encoder"] = encoder
    _WORKER["columnar"] = ColumnarEncoder(encoder) if engine[1] else None
    _WORKER["plans"] = plans if engine[1] else {}
    base = 0
    try:
        for window in itertools.chain([first], it):
            chunks = _encode_window(window, base, encoder, tokenizer_path, fmt, options, engine, num_proc)
            _WORKER["plans"] = {}  # only the first window's chunks were planned ahead
            for c in chunks:
                _count(report, c)
                if progress is not None:
                    progress.update(len(c.lengths))
            base += len(window)
            yield chunks
    finally:
        _WORKER.pop("records", None)
        _WORKER.pop("plans", None)
        _restore_env("RAYON_NUM_THREADS", rayon)


def _plan_ahead(
    tok: HFTokenizer, fmt: PromptFormat, options: EncodeOptions, window: list[Record], plans: dict[int, ChunkPlan]
) -> Callable[[Callable[[], bool]], None] | None:
    """With more than one core, the engine loads on a thread (~1.4 CPU s for fastokens on a
    150k vocabulary, whatever the input size); meanwhile the main thread routes and renders the
    first window's chunks (`ColumnarEncoder.plan`: no engine needed) into `plans`, which the
    chunks' encoding then finishes. The plans use the user's own tokenizer for the template's
    constant ids (the reference ids), and only the rows' strings wait for the engine."""
    planner = ColumnarEncoder(Encoder(tok, fmt, options))
    if planner.off:
        return None

    def plan(done: Callable[[], bool]) -> None:
        for start in range(0, len(window), CHUNK):
            if done():
                return
            plans[start] = planner.plan(window[start : start + CHUNK], ahead=True)

    return plan


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _encode_window(
    window: list[Record],
    base: int,
    encoder: Any,
    tokenizer_path: str,
    fmt: PromptFormat | None,
    options: EncodeOptions,
    engine: tuple[str, bool],
    num_proc: int,
) -> list[ColumnChunk]:
    bounds = [(i, min(i + CHUNK, len(window))) for i in range(0, len(window), CHUNK)]
    _WORKER["records"] = window
    if num_proc <= 1 or len(bounds) <= 1 or _WORKER.get("plans"):
        # a window planned while the engine loaded (`_plan_ahead`) needs only the engine and
        # array assembly: forking a pool for it cost more than it saved (the records, the
        # engine's tables and the plans are copied into the children as they are touched)
        payloads = [_encode_range(b) for b in bounds]
    else:
        forking = "fork" in mp.get_all_start_methods()
        ctx = mp.get_context("fork" if forking else "spawn")
        init, initargs = (
            (None, ()) if forking else (_init_spawned, (tokenizer_path, fmt, options, engine, window))
        )
        # with columnar rows (a few microseconds a row) the parent encodes every num_proc-th chunk
        # itself instead of waiting: N processes in all, one fork fewer per window
        own = forking and _WORKER.get("columnar") is not None
        mine = set(range(0, len(bounds), num_proc)) if own else set()
        theirs = [b for k, b in enumerate(bounds) if k not in mine]
        with ctx.Pool(min(num_proc - own, len(theirs)), initializer=init, initargs=initargs) as pool:
            pending = pool.map_async(_encode_range, theirs)
            done = {bounds[k]: _encode_range(bounds[k]) for k in sorted(mine)}
            done.update(zip(theirs, pending.get()))
        payloads = [done[b] for b in bounds]
        audited = sum(done[b][-1]["audited"] for b in theirs)  # the parent's own count is in place
        if hasattr(encoder, "_audited"):  # the next window's workers inherit how many were audited
            encoder._audited += audited
    return [_chunk_from_payload(base, start, payload) for (start, _), payload in zip(bounds, payloads)]


def _count(report: TokenizeReport, c: ColumnChunk) -> None:
    report.rows_in += len(c.lengths)
    for _, reason, _ in c.rejected:
        report.rejected[reason] += 1
    report.rows_out += int((c.lengths >= 0).sum())
    report.tokens += int(c.ids.size)
    report.trained_tokens += int((c.labels != IGNORE).sum())
    delta = c.delta
    report.truncated += delta["truncated"]
    report.audited += delta["audited"]
    report.boundary_mismatch += delta["boundary_mismatch"]


def encode_columns(
    records: Sequence[Record],
    tokenizer_path: str,
    fmt_name: str,
    options: EncodeOptions,
    *,
    num_proc: int = 1,
    fast: bool = True,
    progress: Any = None,
    tokenizer: Any = None,
) -> tuple[list[ColumnChunk], TokenizeReport]:
    """Like `encode_records`, but the rows stay in flat int32 arrays from the workers to Arrow:
    with 2 cores, rebuilding per-row Python lists in the parent cost more than the encoding.
    (All in memory: `tokenize_file` streams through `encode_windows` instead.)"""
    report = TokenizeReport(format=fmt_name)
    records = list(records)
    size = window_size(num_proc)
    windows = (records[i : i + size] for i in range(0, len(records), size))
    chunks = [
        c
        for w in encode_windows(
            windows,
            tokenizer_path,
            fmt_name,
            options,
            report,
            num_proc=num_proc,
            fast=fast,
            progress=progress,
            tokenizer=tokenizer,
        )
        for c in w
    ]
    return chunks, report


# --- writing Arrow in shards, as `datasets.Dataset.save_to_disk` lays them out ---------------------------

SHARD_BYTES = 500 << 20  # datasets' default max_shard_size
ARROW_BATCH_ROWS = 1000  # datasets.config.DEFAULT_MAX_BATCH_SIZE: ArrowWriter's record batch size
# datasets releases whose Arrow metadata and dataset_info.json for our column types are written
# here without importing datasets (checked byte for byte against datasets' ArrowWriter in
# tests/test_speed_arrow.py with the installed release, and by hand with 4.0.0): importing datasets
# costs ~0.6 s (pandas, huggingface_hub), a third of a 52k-row run
DIRECT_ARROW_DATASETS = ("4.", "5.")


def _direct_arrow() -> bool:
    from importlib import metadata

    try:
        return metadata.version("datasets").startswith(DIRECT_ARROW_DATASETS)
    except metadata.PackageNotFoundError:
        return False


def _datasets_features(table: Any) -> Any:
    import datasets

    return datasets.Features.from_arrow_schema(table.schema)


def _hf_feature(arrow_type: Any, *, full: bool) -> dict[str, Any]:
    """datasets' dict of a Value or List feature (`full`: as `dataclasses.asdict` spells it in
    dataset_info.json, with `id` and `length`; else as the Arrow schema metadata has it)."""
    import pyarrow as pa

    if pa.types.is_list(arrow_type):
        inner = _hf_feature(arrow_type.value_type, full=full)
        extra = {"length": -1, "id": None} if full else {}
        return {"feature": inner, **extra, "_type": "List"}
    dtype = str(arrow_type)
    if not (pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)):
        raise TypeError(f"no direct datasets feature for {dtype}")
    return {"dtype": dtype, "id": None, "_type": "Value"} if full else {"dtype": dtype, "_type": "Value"}


def _hf_features(schema: Any) -> dict[str, Any]:
    return {f.name: _hf_feature(f.type, full=False) for f in schema}


def _hf_dataset_info(features: dict[str, Any]) -> dict[str, Any]:
    """`dataclasses.asdict(datasets.DatasetInfo(features=...))` for our integer columns."""
    import pyarrow as pa

    def full(feature: dict[str, Any]) -> dict[str, Any]:
        if feature["_type"] == "List":
            return {"feature": full(feature["feature"]), "length": -1, "id": None, "_type": "List"}
        return _hf_feature(pa.type_for_alias(feature["dtype"]), full=True)

    info: dict[str, Any] = dict.fromkeys(
        (
            "builder_name",
            "config_name",
            "dataset_name",
            "dataset_size",
            "download_checksums",
            "download_size",
            "post_processed",
            "post_processing_size",
            "size_in_bytes",
            "splits",
            "supervised_keys",
            "version",
        )
    )
    info.update(citation="", description="", homepage="", license="")
    info["features"] = {name: full(f) for name, f in features.items()}
    return info


def chunk_table(c: ColumnChunk) -> Any:
    """One chunk's kept rows as an Arrow table (the unpacked columns)."""
    import numpy as np
    import pyarrow as pa

    kept = c.lengths >= 0
    offsets = np.zeros(int(kept.sum()) + 1, dtype=np.int32)
    np.cumsum(c.lengths[kept], out=offsets[1:])
    off = arrow_array(offsets)
    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(off, arrow_array(c.ids)),
            "attention_mask": pa.ListArray.from_arrays(off, arrow_array(np.ones(c.ids.size, dtype=np.int8))),
            "labels": pa.ListArray.from_arrays(off, arrow_array(c.labels)),
            "row": arrow_array((np.nonzero(kept)[0] + c.start).astype(np.int64)),
            "truncated": arrow_array(np.asarray(c.truncated, dtype=bool)),
        }
    )


def arrow_array(values: Any) -> Any:
    """A numpy integer or bool array as an Arrow array over the same memory (bools bit-packed),
    what `pa.array` gives for it, without `pa.array`'s first-call import of pandas (~0.2 s)."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(
            pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))]
        )
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


class ShardWriter:
    """Streams Arrow tables into `data-XXXXX-of-NNNNN.arrow` shards of at most ~500 MB and writes
    the `state.json` / `dataset_info.json` that `datasets.load_from_disk` reads: memory stays at
    one table, whatever the dataset's size.

    With `file`, every table goes to that one Arrow file, whatever its size (`--engine ray`: one
    file per input shard, named by the driver), and `finish` closes it without writing the state.
    """

    def __init__(self, out_dir: str | Path, fingerprint: str = "", *, file: str | Path | None = None) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.file = Path(file) if file is not None else None
        self.shards: list[Path] = []
        self.features: Any = None  # datasets' Features, or their dict when written directly
        self.direct = False
        self._writer: Any = None
        self._bytes = 0
        self.rows = 0

    def set_features(self, table: Any) -> None:
        """The datasets features of `table`'s schema (written into each shard and dataset_info.json)."""
        try:
            self.features = _hf_features(table.schema) if _direct_arrow() else None
        except TypeError:  # a column type not spelled out here
            self.features = None
        self.direct = self.features is not None
        self.features = self.features or _datasets_features(table)

    def write(self, table: Any) -> None:
        if self.features is None:
            self.set_features(table)
        if self._writer is not None and self._bytes >= SHARD_BYTES and self.file is None:
            self._close_shard()
        if self._writer is None:
            path = self.file or self.dir / f".data-{len(self.shards):05d}.arrow.part"
            self.shards.append(path)
            self._writer = self._open(path, table.schema)
            self._bytes = 0
        if isinstance(self._writer, tuple):  # direct: what ArrowWriter.write_table does for our tables
            self._writer[1].write_table(table.combine_chunks(), ARROW_BATCH_ROWS)
        else:
            self._writer.write_table(table)
        self._bytes += table.nbytes
        self.rows += table.num_rows

    def _open(self, path: Path, schema: Any) -> Any:
        """A shard writer: pyarrow's stream writer with the schema metadata datasets would write,
        or datasets' own ArrowWriter for a datasets version whose layout is not checked here."""
        if not self.direct:
            from datasets.arrow_writer import ArrowWriter

            return ArrowWriter(features=self.features, path=str(path), embed_local_files=True)
        import pyarrow as pa

        meta = {"huggingface": json.dumps({"info": {"features": self.features}})}
        stream = open(path, "wb")  # noqa: SIM115 (closed in _close_shard)
        return stream, pa.RecordBatchStreamWriter(stream, schema.with_metadata(meta))

    def _close_shard(self) -> None:
        if isinstance(self._writer, tuple):
            stream, writer = self._writer
            writer.close()
            stream.close()
        else:
            self._writer.finalize()
            self._writer.close()
        self._writer = None

    def finish(self) -> None:
        """Close the open shard file."""
        if self._writer is not None:
            self._close_shard()

    def close(self) -> None:
        """Name the shards and write the dataset's state and info files."""
        self.finish()
        if self.features is None:
            raise ConfigError("nothing to write: no row survived")
        n = len(self.shards)
        names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        for path, name in zip(self.shards, names):
            os.replace(path, self.dir / name)
        self.write_state(names)

    def write_state(self, names: Sequence[str]) -> None:
        """`state.json` and `dataset_info.json` for the Arrow files `names` (in order) of this folder."""
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": (self.fingerprint or hashlib.sha256(repr(names).encode()).hexdigest())[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (self.dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        if self.direct:
            info = _hf_dataset_info(self.features)
        else:
            import datasets

            info = asdict(datasets.DatasetInfo(features=self.features))
        info = {key: info[key] for key in sorted(info)}
        (self.dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def save_chunks(chunks: Iterable[ColumnChunk], out_dir: str | Path, fingerprint: str = "") -> None:
    """Write columnar chunks as an Arrow dataset folder (`datasets.load_from_disk`)."""
    writer = ShardWriter(out_dir, fingerprint)
    for c in chunks:
        if (c.lengths >= 0).any():
            writer.write(chunk_table(c))
    writer.close()


# --- the output folder: checked before any work, written beside, swapped in at the end --------------------

TMP_TAG = ".instructgen-"  # hidden siblings `.NAME.instructgen-tmp-HOST-PID-RANDOM` are ours
OWN_FILES = ("dataset_info.json", "state.json")
# what tokenize writes at the top of its folder: Arrow shards named as datasets.save_to_disk names them
_SHARD = re.compile(r"data-\d{5,}-of-\d{5,}\.arrow")
# what a `--engine ray` run keeps under `_work/`: per-shard markers, rejects and spools
# (`data-…` / `tokens-…` + a suffix), the packing plan, a top-level file parked by
# `sharded.placed`, and an atomic writer's temporary (`.NAME.ig-HOST-PID-HEX.tmp`, io.atomic)
_WORK_FILE = re.compile(
    r"(?:data|tokens)-\d{5,}-of-\d{5,}\.[A-Za-z0-9._]+|pack\.plan\.npz|\..+\.ig-[A-Za-z0-9]+-\d+-[0-9a-f]+\.tmp|"
    + "|".join(re.escape(n) for n in (META_FILE, REJECTS_FILE, MANIFEST, *OWN_FILES))
)
_TEMP = re.compile(r"\.(?P<name>.+)\.ig-[A-Za-z0-9]+-\d+-[0-9a-f]+\.tmp")


def _is_own_file(name: str) -> bool:
    """A name tokenize writes at the top of its output folder (the name alone: see `foreign_entries`)."""
    return name in (META_FILE, REJECTS_FILE, *OWN_FILES) or _SHARD.fullmatch(name) is not None


def _plain_file(path: Path) -> bool:
    """A regular file, not a symbolic link (instructgen never writes a link)."""
    return path.is_file() and not path.is_symlink()


def foreign_entries(folder: Path) -> list[str]:
    """The entries of an existing output folder that instructgen did not write (sorted), for the
    rule that `-o` (with or without --overwrite) never replaces, deletes or moves a user's file.

    A folder is a tokenize output when it holds `instructgen_meta.json` (read or not: a damaged
    one is ours by name) or the manifest of a `tokenize --engine ray` run (finished or stopped
    part-way). Then its own entries are regular files named as tokenize names them
    (`_is_own_file`, the manifest, an atomic writer's temporary of one of those) and, for a Ray
    run, a real `_work/` folder whose entries are all Ray run files (`_WORK_FILE`); anything
    else, a symbolic link or a sub-folder included, is foreign. A folder with neither marker
    (an unrelated folder, or a plain `save_to_disk` dataset with the same file names) is all
    foreign. `_work/NAME` is reported as `_work/NAME`.
    """
    entries = sorted(os.listdir(folder))
    sharded = sharded_output(folder)
    if not (_plain_file(folder / META_FILE) or sharded):
        return entries

    def own_top(name: str) -> bool:
        m = _TEMP.fullmatch(name)
        base = m["name"] if m else name
        return (_is_own_file(base) or (sharded and base == MANIFEST)) and _plain_file(folder / name)

    foreign = []
    for name in entries:
        if name == WORK and sharded and (folder / name).is_dir() and not (folder / name).is_symlink():
            work = folder / name
            foreign += [
                f"{WORK}/{n}"
                for n in sorted(os.listdir(work))
                if not (_WORK_FILE.fullmatch(n) and _plain_file(work / n))
            ]
        elif not own_top(name):
            foreign.append(name)
    return foreign


def _listed_names(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def sharded_output(folder: str | Path) -> bool:
    """Whether `folder` holds a `tokenize --engine ray` run's manifest (finished or not)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("task") == "tokenize"


def _listed(folder: Path) -> list[str]:
    """The entries of an output folder its metadata covers: all but the metadata itself and the
    `_work/` folder of a sharded run (markers and spools, rewritten by a resumed run)."""
    return sorted(
        n for n in os.listdir(folder) if n != META_FILE and not (n == WORK and (folder / n).is_dir())
    )


def read_meta(out_dir: str | Path) -> dict[str, Any]:
    """The metadata of a tokenize output; a clear error when it is missing or damaged."""
    path = Path(out_dir) / META_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{out_dir}: not an instructgen tokenize output (no {META_FILE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: damaged (not valid JSON at line {exc.lineno}, column {exc.colno}); "
            "tokenize again with --overwrite to rebuild the folder"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("cache_key"), str):
        raise ConfigError(f"{path}: damaged (no cache_key); tokenize again with --overwrite to rebuild it")
    return meta


class OutputFolder:
    """The folder `tokenize -o` writes: never removes, moves or renames anything instructgen did not write.

    A new path is created; an existing folder is used when it is empty, and replaced when it holds
    instructgen's own output alone (`foreign_entries`: the metadata file or a Ray manifest marks
    it; a finished, damaged or part-way output). A folder holding anything else is refused,
    with or without `overwrite`: `overwrite` only rebuilds our own output (a damaged metadata file
    needs it, and it skips the cache). A folder that holds the current directory, the input or
    the tokenizer is never replaced. The dataset is written to a hidden temporary folder beside it
    and swapped into place, so an interrupted run leaves the old output intact; temporary folders
    left by a killed run are removed by the next one.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False, protect: Sequence[str | Path] = ()):
        self.shown = str(out_dir)
        self.path = Path(out_dir)  # Path drops a trailing slash: `-o tok/` is `tok`
        self.overwrite = overwrite
        self.protect = [Path(p) for p in protect]
        self.ours = False  # the existing folder is a previous instructgen output (nothing else in it)

    def check(self) -> None:
        """Refuse, before any work, an output path that cannot be written without losing files."""
        p, shown = self.path, self.shown
        if p.is_symlink():
            raise ConfigError(f"-o {shown}: is a symbolic link; name a real folder")
        if p.exists() and not p.is_dir():
            raise ConfigError(f"-o {shown}: exists and is not a folder; name a new folder for the dataset")
        target = p.resolve()
        for name, q in [("the current directory", Path.cwd())] + [(str(x), x) for x in self.protect]:
            q = q.resolve()
            if q == target or target in q.parents:
                raise ConfigError(
                    f"-o {shown}: refusing to replace a folder that holds {name}; "
                    "name a new folder for the dataset (e.g. -o tokenized/)"
                )
        if not p.is_dir():
            above = p.parent
            while not above.exists() and above != above.parent:
                above = above.parent
            if not above.is_dir():
                raise ConfigError(f"-o {shown}: {above} is a file, not a folder")
            return
        self.refuse_foreign()
        if not os.listdir(p):
            return
        if _plain_file(p / META_FILE) and not self.overwrite:
            try:
                read_meta(p)
            except ConfigError:
                raise ConfigError(
                    f"-o {shown}: {META_FILE} is damaged; pass --overwrite to rebuild the folder "
                    "(it holds nothing but instructgen's own output)"
                ) from None
        self.ours = True

    def refuse_foreign(self) -> None:
        """A ConfigError naming (up to 5 of) the entries instructgen did not write, if any."""
        foreign = foreign_entries(self.path)
        if foreign:
            raise ConfigError(
                f"-o {self.shown}: the folder holds files instructgen did not write "
                f"({_listed_names(foreign)}); --overwrite replaces only instructgen's own output and "
                "never deletes them: name a new folder, or move those files out of it"
            )

    def remove_stale(self, *, now: float | None = None) -> list[str]:
        """Remove temporary folders of ours whose run is gone (a killed or crashed run): see
        `io.atomic.folder_is_stale`. Names: `.NAME.instructgen-{tmp,old}-[HOST-]PID-RANDOM`; an
        `old` one (a replaced output moved aside) only when it holds nothing but our own files."""
        removed = remove_stale_folders(
            self.path, TMP_TAG, now=now, removable=lambda old: not foreign_entries(old)
        )
        # what versions before 0.x left after a kill: only a folder that is recognisably a
        # tokenize output (our metadata file, nothing but our files), never any `save_to_disk`
        legacy = Path(str(self.path) + ".tmp")
        if legacy.is_dir() and not legacy.is_symlink():
            names = os.listdir(legacy)
            if META_FILE in names and all(_is_own_file(n) and _plain_file(legacy / n) for n in names):
                shutil.rmtree(legacy, ignore_errors=True)
                removed.append(legacy.name)
        return removed

    def stage(self) -> Path:
        """A new empty folder `.NAME.instructgen-tmp-HOST-PID-RANDOM` beside the output, made
        0777 less the umask by mkdir itself: no chmod, no reading the umask (os.umask sets the
        whole process's mask for a moment, unsafe beside threads creating files)."""
        parent = self.path.parent
        try:
            return stage_folder(self.path, TMP_TAG)
        except OSError as exc:
            raise ConfigError(f"-o {self.shown}: cannot write in {parent}: {exc.strerror}") from None

    def commit(self, tmp: Path) -> None:
        """Swap the finished temporary folder in; the old output is moved aside, then removed.

        The old folder is checked again first (`check`): a file put in it while the run was going
        (a long run) makes the swap a refusal, not a deletion. What is moved aside is then our own output
        alone, and `swap_folder_in` removes it only if it still holds nothing else."""
        self.check()  # the same rules as before the run (a link or a file in its place is refused too)

        def removable_kind(old: Path) -> bool:
            return old.is_dir() and not old.is_symlink()

        def removable(old: Path) -> bool:
            return removable_kind(old) and not foreign_entries(old)

        try:
            kept = swap_folder_in(tmp, self.path, TMP_TAG, removable=removable)
        except OSError as exc:
            raise ConfigError(
                f"-o {self.shown}: cannot move the finished dataset into place: {exc}"
            ) from None
        if kept is not None:
            what = _listed_names(foreign_entries(kept)) if removable_kind(kept) else "not a folder"
            raise ConfigError(
                f"-o {self.shown}: the dataset is in place, but what was there changed during the swap "
                f"({what}); it is kept, untouched, as {kept}"
            )


def to_columns(
    results: Sequence[Encoded | Rejected], *, pack: bool, max_length: int, report: TokenizeReport
) -> dict[str, list]:
    kept = [(i, r) for i, r in enumerate(results) if isinstance(r, Encoded)]
    if pack:
        cols = pack_rows([r.input_ids for _, r in kept], [r.labels for _, r in kept], max_length)
        report.packed_rows = len(cols["input_ids"])
        report.packing_efficiency = packing_efficiency(cols["seq_lens"], max_length)
        return cols
    return {
        "input_ids": [r.input_ids for _, r in kept],
        "labels": [r.labels for _, r in kept],
        "row": [i for i, _ in kept],
        "truncated": [r.truncated for _, r in kept],
    }


def columns_table(cols: dict[str, list]) -> Any:
    """Columns of Python lists as an Arrow table (built with pyarrow directly: datasets' per-row
    feature encoding costs more than the tokenization of short rows)."""
    import numpy as np
    import pyarrow as pa

    def list_column(rows: list[list[int]], dtype, value: int | None = None) -> pa.Array:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        if value is None:
            flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=total)
        else:
            flat = np.full(total, value, dtype=dtype)
        return pa.ListArray.from_arrays(arrow_array(offsets), arrow_array(flat))

    arrays = {
        "input_ids": list_column(cols["input_ids"], np.int32),
        "attention_mask": list_column(cols["input_ids"], np.int8, value=1),
        "labels": list_column(cols["labels"], np.int32),
    }
    for name, rows in cols.items():  # position_ids, seq_lens and whatever else packing adds
        if name not in ("input_ids", "labels", "row", "truncated"):
            arrays[name] = list_column(rows, np.int32)
    if "row" in cols:
        arrays["row"] = arrow_array(np.asarray(cols["row"], dtype=np.int64))
        arrays["truncated"] = arrow_array(np.asarray(cols["truncated"], dtype=bool))
    return pa.table(arrays)


def save_columns(cols: dict[str, list], out_dir: str | Path, fingerprint: str = "") -> None:
    """Write columns of Python lists as an Arrow dataset folder."""
    writer = ShardWriter(out_dir, fingerprint)
    writer.write(columns_table(cols))
    writer.close()


class PackSpool:
    """Packing with only the lengths in memory: the encoded rows go to two flat int32 files on
    disk as they come; `write_packed` plans best-fit-decreasing over the lengths and reads each
    bin's rows back with positioned reads (not a memory map, whose touched pages would count
    against the process), a batch of bins at a time."""

    BINS_PER_TABLE = 256  # a batch of packed rows is built as Python lists: ~0.3 MB per bin

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # kept open across add() calls, closed by write_packed (or with the temporary folder)
        self._ids = open(folder / ".ids.bin", "wb")  # noqa: SIM115
        self._labels = open(folder / ".labels.bin", "wb")  # noqa: SIM115
        self.lengths = array("i")

    def add(self, c: ColumnChunk) -> None:
        self._ids.write(c.ids.tobytes())
        self._labels.write(c.labels.tobytes())
        self.lengths.extend(int(n) for n in c.lengths[c.lengths >= 0])

    def close(self) -> None:
        self._ids.close()
        self._labels.close()

    def write_packed(self, writer: ShardWriter, capacity: int, report: TokenizeReport) -> None:
        import numpy as np

        self.close()
        lengths = np.frombuffer(self.lengths, dtype=np.int32)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        plan, starts = plan_bfd_arrays(lengths, capacity)  # flat: no Python list per bin
        nbins = len(starts) - 1
        report.packed_rows = nbins
        report.packing_efficiency = int(offsets[-1]) / (capacity * nbins) if nbins else 0.0
        with open(self.folder / ".ids.bin", "rb") as fi, open(self.folder / ".labels.bin", "rb") as fl:

            def read(i: int) -> tuple[list[int], list[int]]:
                size, at = int(lengths[i]) * 4, int(offsets[i]) * 4
                ids = np.frombuffer(os.pread(fi.fileno(), size, at), dtype=np.int32).tolist()
                return ids, np.frombuffer(os.pread(fl.fileno(), size, at), dtype=np.int32).tolist()

            write_bins(writer, plan, starts, range(nbins), read, capacity)
        (self.folder / ".ids.bin").unlink()
        (self.folder / ".labels.bin").unlink()


def write_bins(
    writer: ShardWriter,
    plan: Any,
    starts: Any,
    bins: range,
    read: Any,
    capacity: int,
    per_table: int = PackSpool.BINS_PER_TABLE,
) -> int:
    """Write the packed rows of `bins` (of the `plan_bfd_arrays` plan) to `writer`, `per_table` bins
    at a time; `read(i)` gives row i's (input_ids, labels). Returns the tokens written."""
    tokens = 0
    for k in range(bins.start, bins.stop, per_table):
        cols: dict[str, list] = {}
        for j in range(k, min(k + per_table, bins.stop)):
            b = plan[starts[j] : starts[j + 1]].tolist()
            rows = [read(i) for i in b]
            # one bin packed alone is the bin the whole-dataset plan made (its rows in order)
            one = pack_rows([r[0] for r in rows], [r[1] for r in rows], capacity)
            for name, values in one.items():
                cols.setdefault(name, []).extend(values)
            tokens += sum(len(r[0]) for r in rows)
        if cols:
            writer.write(columns_table(cols))
    return tokens


def check_input(input_path: str | Path) -> None:
    """A clear error for an input that is not a readable file (before any work)."""
    shown = str(input_path)
    if shown == "-":
        raise InputError(
            "tokenize reads a file, not standard input (the input's hash keys the cache); "
            "save the records to a .jsonl or .json file and pass its path",
            path="-",
        )
    p = Path(input_path)
    if p.is_dir():
        raise InputError("is a folder; give a .jsonl or .json file of records", path=shown)
    if not p.is_file():
        raise InputError("file not found", path=shown)


def input_hash(input_path: str | Path) -> str:
    try:
        return file_hash(input_path)
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror or exc}", path=str(input_path)) from None


@dataclass
class RunSetup:
    """What both engines settle before any work (`set_up_run`)."""

    folder: OutputFolder  # checked, a killed run's temporary folders removed
    fmt: PromptFormat | None  # None: the tokenizer's chat template
    tokenizer_fp: str
    input_sha256: str
    key: str  # the cache key (`cache_key`)


def set_up_run(
    input_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    *,
    fmt: str,
    options: EncodeOptions,
    pack: bool,
    rejects: str | None,
    overwrite: bool,
) -> RunSetup:
    """The checks and the cache key of a tokenize run, in-process or on Ray, before any work: the
    input a readable file, the tokenizer there, the output folder writable without losing a file
    (`OutputFolder.check`: never the folder holding the input, the tokenizer or `--rejects`, never
    one holding files instructgen did not write), a killed run's leftovers beside it removed."""
    check_input(input_path)
    if not Path(tokenizer_path).exists():
        raise ConfigError(f"--tokenizer {tokenizer_path}: not found (a tokenizer folder or a .tiktoken file)")
    protect = [input_path, tokenizer_path] + ([rejects] if rejects and rejects != "-" else [])
    folder = OutputFolder(out_dir, overwrite=overwrite, protect=protect)
    folder.check()
    folder.remove_stale()  # on a cache hit too: a killed run's leftovers go on the next run
    fmt_obj = None if fmt == "chat_template" else get_format(fmt)
    tok_fp = tokenizer_fingerprint(tokenizer_path)
    in_hash = input_hash(input_path)
    return RunSetup(folder, fmt_obj, tok_fp, in_hash, cache_key(in_hash, tok_fp, fmt_obj, options, pack))


def tokenize_file(
    input_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "alpaca",
    options: EncodeOptions | None = None,
    num_proc: int = 1,
    pack: bool = False,
    fast: bool = True,
    rejects: str | None = None,
    overwrite: bool = False,
    progress_factory: Any = None,
    engine: str = "local",
    ray_address: str | None = None,
    shard_rows: int | None = None,
    max_shards: int | None = None,
) -> TokenizeReport:
    """Tokenize an Alpaca / ShareGPT / messages file into `out_dir` (reused when nothing changed).

    `out_dir` is created, or replaced when it holds a previous instructgen output and nothing
    else; a folder holding anything else is refused before any work, `overwrite` or not (see
    OutputFolder). `overwrite` rebuilds our own output even when the cache matches or its
    metadata file is damaged.
    `engine="ray"` tokenizes shards of `shard_rows` records on Ray actors (`ray_address` or
    RAY_ADDRESS, else a local Ray) into the same rows, resumably (see `sharded.tokenize_sharded`;
    `max_shards` stops after that many, `overwrite` starts over).
    """
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be local or ray, not {engine!r}")
    if engine == "ray":
        if num_proc != 1:
            raise ConfigError(
                "--num-proc is for --engine local; on Ray the shard tasks are the workers (one per CPU)"
            )
        from ..pipeline.shards import DEFAULT_SHARD_ROWS
        from .sharded import tokenize_sharded

        return tokenize_sharded(
            input_path,
            tokenizer_path,
            out_dir,
            fmt=fmt,
            options=options,
            pack=pack,
            fast=fast,
            rejects=rejects,
            overwrite=overwrite,
            shard_rows=shard_rows or DEFAULT_SHARD_ROWS,
            max_shards=max_shards,
            address=ray_address,
        )
    if max_shards is not None or shard_rows is not None:
        raise ConfigError("--shard-rows and --max-shards are for --engine ray")
    options = options or EncodeOptions()
    t0 = time.perf_counter()
    run = set_up_run(
        input_path,
        tokenizer_path,
        out_dir,
        fmt=fmt,
        options=options,
        pack=pack,
        rejects=rejects,
        overwrite=overwrite,
    )
    folder, fmt_obj, tok_fp, key = run.folder, run.fmt, run.tokenizer_fp, run.key
    stale = ""
    if folder.ours and not overwrite and (Path(out_dir) / META_FILE).is_file():
        meta = read_meta(out_dir)
        if meta.get("cache_key") == key:
            stale = verify_output(out_dir, meta)
            try:
                report = TokenizeReport(
                    **{k: v for k, v in meta["report"].items() if k != "rejected"},
                    rejected=Counter(meta["report"]["rejected"]),
                )
            except (KeyError, TypeError, AttributeError):
                stale = stale or f"{META_FILE} has no readable report"
            if not stale:
                report.cache = (
                    "hit (nothing changed: input, tokenizer, format, options, version; files verified)"
                )
                export_rejects(out_dir, rejects, input_path)
                report.seconds = time.perf_counter() - t0
                return report
    tmp = folder.stage()
    try:
        report = _build(
            input_path,
            tokenizer_path,
            load_tokenizer(tokenizer_path),  # not held here: _build frees it before packing
            tmp,
            fmt,
            fmt_obj,
            options,
            key,
            tok_fp,
            num_proc=num_proc,
            pack=pack,
            fast=fast,
            rejects=rejects,
            progress_factory=progress_factory,
        )
        folder.commit(tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    export_rejects(out_dir, rejects, input_path)
    if stale:
        report.cache = f"miss (the cached output was damaged: {stale}; rebuilt)"
    report.seconds = time.perf_counter() - t0
    return report


def output_meta(
    out_dir: Path,
    key: str,
    input_path: str | Path,
    tokenizer_path: str | Path,
    fmt: PromptFormat | None,
    options: EncodeOptions,
    pack: bool,
    report: dict[str, Any],
    info: dict[str, Any],
) -> dict[str, Any]:
    """The metadata file's body (cache key, inputs, options, report, trainer info with the written
    columns) shared by the in-process and the Ray run; the caller adds `files` last (and Ray its
    shard layout)."""
    return {
        "cache_key": key,
        "instructgen_version": __version__,
        "input": str(input_path),
        "tokenizer": str(tokenizer_path),
        "format": fmt.to_dict() if fmt else "chat_template",
        "options": asdict(options),
        "pack": pack,
        "report": report,
        "trainer": {
            **info,
            "columns": list(json.loads((out_dir / "dataset_info.json").read_text("utf-8"))["features"]),
        },
    }


def trainer_info(
    tok: Any, tok_fp: str, fmt: PromptFormat | None, options: EncodeOptions, pack: bool
) -> dict[str, Any]:
    """What a trainer needs besides the ids: the special ids to pad and stop with, the vocabulary
    size the embedding must cover, and the tokenizer's hash to check it loads the same one."""

    def token(tid: int | None) -> dict[str, Any] | None:
        return None if tid is None else {"id": tid, "text": tok.token_text(tid)}

    if hasattr(tok, "vocab_len"):  # not len(tok.hf): that would load transformers just for this
        vocab_size = tok.vocab_len()  # base vocabulary plus added tokens: the ids the data can hold
    elif hasattr(tok, "hf"):
        vocab_size = len(tok.hf)
    elif hasattr(tok, "enc"):
        vocab_size = tok.enc.n_vocab
    else:
        vocab_size = None
    eot = None
    if fmt is not None:
        eot = tok.token_id(fmt.eot) if fmt.eot else tok.eos_id
    return {
        "pad": token(tok.pad_id),
        "eos": token(tok.eos_id),
        "bos": token(tok.bos_id),
        "end_of_turn": token(eot),
        "vocab_size": vocab_size,
        "tokenizer_sha256": tok_fp,
        "format": fmt.name if fmt is not None else "chat_template",
        "max_length": options.max_length,
        "packed": pack,
        "label_ignore_index": IGNORE,
    }


def output_files(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file of an output folder but the metadata (which lists them)."""
    folder = Path(out_dir)
    return {
        name: {"bytes": (folder / name).stat().st_size, "sha256": file_hash(folder / name)}
        for name in _listed(folder)
    }


def verify_output(out_dir: str | Path, meta: dict[str, Any]) -> str:
    """Why a cached output cannot be reused ('' when every file is what the metadata lists)."""
    listed = meta.get("files")
    if not isinstance(listed, dict):
        return f"{META_FILE} lists no file hashes (written by an older version)"
    folder = Path(out_dir)
    present = _listed(folder)
    for name in sorted(set(listed) | set(present)):
        want = listed.get(name)
        if want is None:
            return f"{name} is not in {META_FILE}"
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{name} is {size} bytes, {META_FILE} says {want.get('bytes')}"
        if file_hash(path) != want.get("sha256"):
            return f"{name} differs from its sha256 in {META_FILE}"
    return ""


def export_rejects(out_dir: str | Path, rejects: str | None, input_path: str | Path) -> None:
    """Copy the output's stored rejects to `--rejects` (on a cache hit too), naming this input."""
    if not rejects:
        return
    stored = Path(out_dir) / REJECTS_FILE
    try:
        with JsonlSink(rejects) as sink:
            if stored.is_file():
                with open(stored, encoding="utf-8") as f:
                    for line in f:
                        row = json.loads(line)
                        row["source_file"] = str(input_path)
                        sink.write(row)
    except OSError as exc:
        raise ConfigError(
            f"--rejects {rejects}: cannot write it ({exc.strerror or exc}); the dataset itself is in {out_dir}"
        ) from None


def _build(
    input_path: str | Path,
    tokenizer_path: str | Path,
    tok: Any,
    out_dir: Path,
    fmt: str,
    fmt_obj: PromptFormat | None,
    options: EncodeOptions,
    key: str,
    tok_fp: str,
    *,
    num_proc: int,
    pack: bool,
    fast: bool,
    rejects: str | None,
    progress_factory: Any,
) -> TokenizeReport:
    """Encode the input and write the dataset and its metadata into the (temporary) `out_dir`.

    Streams: one window of records at a time is read, encoded and written (Arrow shards, the
    rejects file, or the packing spool), so memory does not grow with the input.
    """
    report = TokenizeReport(format=fmt)
    pending: collections.deque = collections.deque()  # line numbers of the windows handed out

    def windows() -> Iterator[list[Record]]:
        for batch in _batched(read_records(input_path), window_size(num_proc)):
            pending.append([line for line, _ in batch])
            yield [rec for _, rec in batch]

    bar = progress_factory(None) if progress_factory else None
    writer = ShardWriter(out_dir, key)
    spool = PackSpool(out_dir) if pack else None
    base = 0
    try:
        with open(out_dir / REJECTS_FILE, "w", encoding="utf-8", newline="\n") as rej:
            for chunks in encode_windows(
                windows(),
                str(tokenizer_path),
                fmt,
                options,
                report,
                num_proc=num_proc,
                fast=fast,
                progress=bar,
                tokenizer=tok,
            ):
                lines = pending.popleft()
                for c in chunks:
                    for i, reason, detail in c.rejected:
                        row = {"reason": reason, "detail": detail, "source_file": str(input_path)}
                        row["line"] = lines[i - base]
                        rej.write(json.dumps(row, ensure_ascii=False) + "\n")
                    if spool is not None:
                        spool.add(c)
                    elif (c.lengths >= 0).any():
                        writer.write(chunk_table(c))
                base += len(lines)
    finally:
        if bar is not None:
            bar.close()
        if spool is not None:
            spool.close()
    if report.rows_out == 0:
        raise ConfigError(f"{input_path}: no record survived tokenization ({dict(report.rejected)})")
    info = trainer_info(tok, tok_fp, fmt_obj, options, pack)
    del tok  # a large vocabulary costs hundreds of MB: free it before the packing plan needs room
    _WORKER.pop("encoder", None)
    _WORKER.pop("columnar", None)
    if not report.rejected:  # kept only when there are some, so that a cache hit can write --rejects
        (out_dir / REJECTS_FILE).unlink()
    if spool is not None:
        spool.write_packed(writer, options.max_length, report)
    writer.close()
    meta = output_meta(
        out_dir, key, input_path, tokenizer_path, fmt_obj, options, pack, report.to_json(), info
    )
    meta["files"] = output_files(out_dir)
    (out_dir / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return report
