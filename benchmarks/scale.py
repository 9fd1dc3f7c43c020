"""Throughput of `instructgen translate` in-process, with `--num-proc 2`, and on Ray with 2 CPUs (run by hand).

Builds a zh-en TSV of `--rows` pairs from ../shared/data (WMT21 both test sets and Tatoeba, cycled,
each cycle made unique by a suffix: `benchmarks/memory.py`'s builder), then runs the CLI in a child
process per engine and reports wall seconds, rows/s (input pairs per wall second, start-up
included, and for Ray also without its start-up), the driver's own peak RSS (the child's
`getrusage(RUSAGE_SELF)` at exit: Ray's workers are other processes and are not counted), and Ray's
start-up seconds (from the run's note). It also checks that the Ray shards concatenate to the
in-process output.

    python benchmarks/scale.py [--rows 2000000] [--engines local num_proc ray] [--cpus 2]
        [--shard-rows N] [--langid fasttext|none] [--keep DIR]

Defaults follow issue 15: 2,000,000 pairs. `--cpus` is `--num-proc`; the local Ray the engine starts
gets the CPUs this process may use (`taskset -c 0-3 python benchmarks/scale.py ...` limits it on a
larger machine), and shards of `--shard-rows` (default: rows / 8, so each of 2 actors gets 4 shards).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the stdlib module when this folder is first on sys.path
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import filecmp
import importlib.util
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
# The child runs the CLI and, at exit, writes its own peak RSS (kB) where RSS_FILE says.
CHILD = (
    "import atexit, os, resource\n"
    "def done():\n"
    "    u = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    open(os.environ['RSS_FILE'], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}')\n"
    "atexit.register(done)\n"
    "from instructgen.cli.main import main; main()\n"
)


def _builder():
    spec = importlib.util.spec_from_file_location("ig_bench_memory", HERE / "memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_translate


def run(args: list[str], work: Path, env_extra: dict[str, str] | None = None) -> dict[str, object]:
    rss_file = work / "rss.txt"
    rss_file.unlink(missing_ok=True)
    env = {**os.environ, "RSS_FILE": str(rss_file), **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    startup = re.search(r"Ray start-up ([\d.]+) s", proc.stderr)
    key_pass = re.search(r"key pass ([\d.]+) s", proc.stderr)
    summary = next((ln for ln in proc.stderr.splitlines() if ln.startswith("translation:")), "")
    rss_kb, cpu_s = rss_file.read_text().split() if rss_file.exists() else (None, None)
    return {
        "wall_s": round(wall, 1),
        "driver_peak_rss_mb": round(int(rss_kb) / 1024) if rss_kb else None,
        "driver_cpu_s": round(float(cpu_s), 1) if cpu_s else None,
        "ray_startup_s": float(startup.group(1)) if startup else None,
        "key_pass_s": float(key_pass.group(1)) if key_pass else None,
        "summary": summary,
    }


def worker_totals(out: Path) -> dict[str, object]:
    """The actors' own wall and CPU seconds over all shards (from the markers) and the rows per actor
    CPU second: the per-core rate a cluster's size is worked out from, whatever the machine's load."""
    markers = [json.loads(p.read_text()) for p in sorted((out / "_work").glob("*.done"))]
    cpu = sum(m["seconds"].get("worker_cpu", 0.0) for m in markers)
    wall = sum(m["seconds"].get("worker_wall", 0.0) for m in markers)
    finish = sum(m.get("finish_cpu", 0.0) for m in markers)  # the keyed path's second pass
    items = sum(m["items"] for m in markers)
    return {
        "actor_convert_cpu_s": round(cpu, 1),
        "actor_convert_wall_s": round(wall, 1),
        "actor_finish_cpu_s": round(finish, 1),
        "rows_per_actor_cpu_s": round(items / (cpu + finish)) if cpu else None,
        "shard_convert_cpu_s": [round(m["seconds"].get("worker_cpu", 0.0), 1) for m in markers],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--engines", nargs="+", default=["local", "num_proc", "ray"])
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--shard-rows", type=int, default=None)
    ap.add_argument("--langid", default="fasttext")
    ap.add_argument("--keep", type=Path, default=None)
    opts = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs {SHARED}")
    work = opts.keep or Path(tempfile.mkdtemp(prefix="ig-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "pairs.tsv"
    t0 = time.perf_counter()
    base = _builder()(SHARED, opts.rows, data)
    print(f"built {opts.rows} pairs in {time.perf_counter() - t0:.1f} s: {data}", file=sys.stderr)
    base += ["--langid", opts.langid, "-q", "--max-reject-ratio", "1"]
    shard_rows = opts.shard_rows or max(1, opts.rows // 8)
    results: dict[str, dict[str, object]] = {}
    for engine in opts.engines:
        if engine == "local":
            res = run([*base, "-o", str(work / "local.jsonl")], work)
        elif engine == "num_proc":
            res = run([*base, "--num-proc", str(opts.cpus), "-o", str(work / "num_proc.jsonl")], work)
        elif engine == "ray":
            out = work / "ray"
            args = [*base, "--engine", "ray", "--overwrite", "--shard-rows", str(shard_rows), "-o", str(out)]
            res = run(args, work)
            if (work / "local.jsonl").exists():
                joined = work / "ray_joined.jsonl"
                with open(joined, "wb") as f:
                    for p in sorted(out.glob("part-*.jsonl")):
                        f.write(p.read_bytes())
                res["same_bytes_as_local"] = filecmp.cmp(joined, work / "local.jsonl", shallow=False)
                joined.unlink()
            res.update(worker_totals(out))
        else:
            sys.exit(f"unknown engine {engine}")
        res["rows_per_s"] = round(opts.rows / float(res["wall_s"]))  # type: ignore[arg-type]
        if res.get("driver_cpu_s") and engine == "local":
            res["rows_per_cpu_s"] = round(opts.rows / float(res["driver_cpu_s"]))  # type: ignore[arg-type]
        if res.get("ray_startup_s"):
            res["rows_per_s_after_startup"] = round(
                opts.rows / (float(res["wall_s"]) - float(res["ray_startup_s"]))  # type: ignore[arg-type]
            )
        results[engine] = res
        print(engine, json.dumps(res), file=sys.stderr)
    print(
        json.dumps(
            {"rows": opts.rows, "cpus": opts.cpus, "shard_rows": shard_rows, "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
