"""tokenize writes its Arrow shards without importing `datasets` (issue 16: the import is ~0.6 s,
a third of a 52k-row run), and the files must be the bytes `datasets`' own `ArrowWriter` writes.

Reference: huggingface/datasets `src/datasets/arrow_writer.py` (`ArrowWriter._build_schema`,
`_build_metadata`, `write_table`: a RecordBatchStream whose schema carries
`{"huggingface": {"info": {"features": ...}}}`, record batches of `config.DEFAULT_MAX_BATCH_SIZE`
rows) and `DatasetInfo` for `dataset_info.json`. Each test writes the same tables through both
paths (the direct one, and `ArrowWriter` with the installed datasets) and compares every file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instructgen.tokenize import pipeline
from instructgen.tokenize.packing import pack_rows
from instructgen.tokenize.pipeline import ColumnChunk, ShardWriter, chunk_table, columns_table

datasets = pytest.importorskip("datasets")


def _chunks(n_chunks: int = 3, rows: int = 1500, seed: int = 0) -> list[ColumnChunk]:
    """Chunks with rejected rows, truncated flags and more rows than one record batch holds."""
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for _ in range(n_chunks):
        lengths = rng.integers(1, 40, size=rows).astype(np.int32)
        lengths[rng.random(rows) < 0.05] = -1  # rejected records
        total = int(lengths[lengths >= 0].sum())
        ids = rng.integers(0, 151_000, size=total).astype(np.int32)
        labels = np.where(rng.random(total) < 0.3, -100, ids).astype(np.int32)
        kept = int((lengths >= 0).sum())
        out.append(ColumnChunk(start, lengths, ids, labels, rng.random(kept) < 0.1, [], {}))
        start += rows
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _write(folder: Path, tables, direct: bool, monkeypatch) -> dict[str, bytes]:
    monkeypatch.setattr(pipeline, "_direct_arrow", lambda: direct)
    w = ShardWriter(folder, "fp")
    for t in tables:
        w.write(t)
    w.close()
    assert w.direct is direct  # the path under test was the one taken
    return _files(folder)


def test_unpacked_shards_are_the_bytes_datasets_writes(tmp_path, monkeypatch):
    tables = [chunk_table(c) for c in _chunks()]
    direct = _write(tmp_path / "direct", tables, True, monkeypatch)
    reference = _write(tmp_path / "datasets", tables, False, monkeypatch)
    assert sorted(direct) == ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]
    assert direct == reference
    ds = datasets.load_from_disk(str(tmp_path / "direct"))
    c = _chunks()[1]
    first = int((_chunks()[0].lengths >= 0).sum())
    assert ds[first]["input_ids"] == c.ids[: c.lengths[c.lengths >= 0][0]].tolist()
    assert ds.num_rows == sum(int((c.lengths >= 0).sum()) for c in _chunks())


def test_packed_shards_and_rolled_over_shards_match_too(tmp_path, monkeypatch):
    rows = [list(range(n)) for n in (5, 700, 300, 1000, 12, 999, 1)]
    labels = [[-100, *r[1:]] for r in rows]
    packed = columns_table(pack_rows(rows, labels, 1024))
    tables = [packed, packed]
    monkeypatch.setattr(pipeline, "SHARD_BYTES", 1)  # every table after the first opens a shard
    direct = _write(tmp_path / "direct", tables, True, monkeypatch)
    reference = _write(tmp_path / "datasets", tables, False, monkeypatch)
    assert "data-00001-of-00002.arrow" in direct
    assert direct == reference
    ds = datasets.load_from_disk(str(tmp_path / "direct"))
    assert ds.column_names == ["input_ids", "attention_mask", "labels", "position_ids", "seq_lens"]
    assert ds[0]["seq_lens"] == packed.column("seq_lens")[0].as_py()


def test_writing_a_tokenize_output_imports_neither_datasets_nor_pandas(tmp_path):
    """The direct path is what runs with the installed datasets (4.x and 5.x checked)."""
    code = (
        "import sys, numpy as np; from instructgen.tokenize.pipeline import ColumnChunk, save_chunks; "
        "c = ColumnChunk(0, np.array([2, -1, 1], np.int32), np.array([5, 6, 7], np.int32), "
        "np.array([-100, 6, 7], np.int32), np.array([False, True]), [], {{}}); "
        "save_chunks([c], {!r}); print('datasets' in sys.modules, 'pandas' in sys.modules)"
    ).format(str(tmp_path / "out"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False False"  # pa.array's first call would import pandas
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert ds.to_dict() == {
        "input_ids": [[5, 6], [7]],
        "attention_mask": [[1, 1], [1]],
        "labels": [[-100, 6], [7]],
        "row": [0, 2],
        "truncated": [False, True],
    }


def _ipc(table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_tables_are_those_pa_array_builds(monkeypatch):
    """chunk_table / columns_table build arrays over numpy buffers (`arrow_array`) instead of
    `pa.array`: the same tables, down to the IPC bytes (bools bit-packed the same way)."""
    import pyarrow as pa

    for c in _chunks(2, 1003, seed=3):
        kept = c.lengths >= 0
        offsets = np.zeros(int(kept.sum()) + 1, dtype=np.int32)
        np.cumsum(c.lengths[kept], out=offsets[1:])
        off = pa.array(offsets)
        want = pa.table(
            {
                "input_ids": pa.ListArray.from_arrays(off, pa.array(c.ids)),
                "attention_mask": pa.ListArray.from_arrays(off, pa.array(np.ones(c.ids.size, np.int8))),
                "labels": pa.ListArray.from_arrays(off, pa.array(c.labels)),
                "row": pa.array((np.nonzero(kept)[0] + c.start).astype(np.int64)),
                "truncated": pa.array(c.truncated),
            }
        )
        got = chunk_table(c)
        assert got.equals(want)
        assert _ipc(got) == _ipc(want)
    cols = {"input_ids": [[1, 2], [3]], "labels": [[-100, 2], [3]], "row": [4, 9], "truncated": [True, False]}
    got = columns_table(cols)
    assert got.column("truncated").to_pylist() == [True, False]
    assert got.column("row").type == pa.int64() and got.column("row").to_pylist() == [4, 9]
    assert got.column("attention_mask").to_pylist() == [[1, 1], [1]]
