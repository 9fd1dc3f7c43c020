"""Throughput of `instructgen translate` end to end on one core (run by hand).

Reads line-aligned files built from every parallel set in ../shared/data, repeated to at
least 100,000 pairs (each repetition made unique by a suffix, so duplicate removal does not
skip work), converts, and writes Alpaca JSONL. Prints pairs/s for language checks off, and on
with each backend (langdetect on a 10,000-pair slice: it is ~40x slower), for two paths:

- `run_items`: `instructgen.api.run_items` with a `TranslationConverter` (kept for older callers);
- `start`: the registry path the CLI uses, `pipeline.registry.start("translation", ...)`. On a
  checkout from before the pipeline core (no `instructgen.pipeline`) this path is what the CLI
  ran then, `run_items`, so the same command compares the CLI's path before and after the core:
  `PYTHONPATH=/path/to/old/checkout python benchmarks/translate.py`.

`--num-proc 1,2` instead times the registry path with that many worker processes (no core
pinning), wall and CPU seconds (this process and its workers) of the whole call, building the
run and starting the workers included, and the parent's CPU per pair (reading, handing items to
the workers and taking their outcomes back, dedup, writing: the serial part).

    python benchmarks/translate.py [--pairs 100000] [--shared ../shared/data] [--langid none,fasttext]
        [--paths run_items,start] [--repeat 3] [--num-proc 1,2]
"""

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import contextlib
import itertools
import resource
import statistics
import tempfile
import time
from pathlib import Path

from instructgen.api import run_items
from instructgen.converters.translation import TranslationConverter, TranslationOptions
from instructgen.io.readers import read_parallel
from instructgen.io.writers import RecordWriter
from instructgen.quality.report import Report
from instructgen.schema import Record


def corpus(shared: Path) -> list[tuple[str, str]]:
    """zh-en pairs (WMT21 both test sets and Tatoeba), Chinese first."""

    def lines(p: Path) -> list[str]:
        return p.read_text(encoding="utf-8-sig").splitlines()

    w = shared / "wmt21_newstest_zh_en"
    pairs = list(zip(lines(w / "newstest2021.zh-en.src.zh"), lines(w / "newstest2021.zh-en.ref.A.en")))
    pairs += list(zip(lines(w / "newstest2021.en-zh.ref.A.zh"), lines(w / "newstest2021.en-zh.src.en")))
    for row in lines(shared / "tatoeba_cmn_eng" / "cmn.head5000.txt"):
        en, zh = row.split("\t")[:2]
        pairs.append((zh, en))
    return pairs


def build_files(pairs: list[tuple[str, str]], n: int, folder: Path) -> tuple[Path, Path]:
    src, tgt = folder / "bench.zh", folder / "bench.en"
    with open(src, "w", encoding="utf-8") as fs, open(tgt, "w", encoding="utf-8") as ft:
        for i in range(n):
            s, t = pairs[i % len(pairs)]
            rep = i // len(pairs)
            suffix = f" #{rep}" if rep else ""
            fs.write(s + suffix + "\n")
            ft.write(t + suffix + "\n")
    return src, tgt


def _items(src: Path, tgt: Path, limit: int | None):
    items = read_parallel(src_file=src, tgt_file=tgt, src_lang="zh", tgt_lang="en")
    return itertools.islice(items, limit) if limit else items


def _warm(conv: TranslationConverter, langid: str) -> None:
    if langid != "none":
        conv.check.check("预热一下语言模型，避免把加载时间算进去。", "zh")  # load the model outside the timer


def run_legacy(
    src: Path, tgt: Path, out: Path, langid: str, limit: int | None = None
) -> tuple[int, float, float, Report]:
    """`api.run_items` over a TranslationConverter: the API kept for older callers."""
    conv = TranslationConverter(TranslationOptions(src_lang="zh", tgt_lang="en", langid=langid))
    _warm(conv, langid)
    report = Report(task="translation")
    c0, t0 = time.process_time(), time.perf_counter()
    with RecordWriter(out, "alpaca") as w:
        for item in run_items(_items(src, tgt, limit), conv.convert, report=report):
            if isinstance(item, Record):
                w.write(item)
    return report.read, time.perf_counter() - t0, time.process_time() - c0, report


def run_start(
    src: Path, tgt: Path, out: Path, langid: str, limit: int | None = None, num_proc: int | None = None
) -> tuple[int, float, float, Report]:
    """The CLI's path: `pipeline.registry.start("translation", options, source)` (before the core: run_items).

    The run (pipeline, template pools) is built before the timer starts, as `run_legacy` builds its
    converter before it; the worker processes of `num_proc > 1` build theirs inside it.
    """
    if not has_core():  # a checkout from before the pipeline core: the CLI ran run_items then
        if num_proc not in (None, 1):
            raise SystemExit("--num-proc needs the pipeline core")
        return run_legacy(src, tgt, out, langid, limit)
    from instructgen.pipeline import registry

    options = TranslationOptions(src_lang="zh", tgt_lang="en", langid=langid)
    run = registry.start("translation", options, lambda: _items(src, tgt, limit), num_proc=num_proc)
    _warm(run.pipeline.convert.converter, langid)
    c0, t0 = time.process_time(), time.perf_counter()
    with RecordWriter(out, "alpaca") as w:
        for item in run:
            if isinstance(item, Record):
                w.write(item)
    return run.report.read, time.perf_counter() - t0, time.process_time() - c0, run.report


def has_core() -> bool:
    """Whether the imported instructgen has the pipeline core. Asked of the package folder, not by
    importing: an editable install's finder would resolve `instructgen.pipeline` to its own checkout
    even when PYTHONPATH puts an older one first."""
    import instructgen

    return (Path(instructgen.__file__).parent / "pipeline").is_dir()


PATHS = {"run_items": run_legacy, "start": run_start}


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (pool workers)."""
    return sum(cpu_split())


def cpu_split() -> tuple[float, float]:
    """(this process, its finished children): the parent's share is what `--num-proc` must keep
    small, since the parent alone reads, receives the workers' outcomes, deduplicates and writes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def bench_paths(src: Path, tgt: Path, out: Path, langids: list[str], paths: list[str], repeat: int) -> None:
    """Each path and check, `repeat` times alternating the paths, medians of pairs/s: per wall second,
    and per CPU second of this process (on a shared machine the CPU figure moves far less)."""
    limits = {"none": None, "fasttext": None, "langdetect": 10_000}
    for langid in langids:
        rates: dict[str, list[float]] = {p: [] for p in paths}
        cpu_rates: dict[str, list[float]] = {p: [] for p in paths}
        last: dict[str, Report] = {}
        n = 0
        for _ in range(repeat):
            for name in paths:
                n, dt, cpu, last[name] = PATHS[name](src, tgt, out, langid, limits.get(langid))
                rates[name].append(n / dt)
                cpu_rates[name].append(n / cpu)
        for name in paths:
            r = last[name]
            print(
                f"  checks {langid:<10} {name:<9} {n:>7} pairs {statistics.median(rates[name]):>9,.0f} pairs/s "
                f"{statistics.median(cpu_rates[name]):>9,.0f} pairs/cpu-s, median of {repeat} "
                f"(wall {', '.join(f'{x:,.0f}' for x in rates[name])}; wrote {r.written}, rejected {r.rejected_total})"
            )


def bench_num_proc(
    src: Path, tgt: Path, out: Path, langids: list[str], procs: list[int], repeat: int
) -> None:
    """The registry path with N worker processes: wall and CPU seconds (this process and its
    workers, and the parent's share per pair), medians of `repeat` runs that alternate the process counts."""
    for langid in langids:
        walls: dict[int, list[float]] = {p: [] for p in procs}
        cpus: dict[int, list[float]] = {p: [] for p in procs}
        parents: dict[int, list[float]] = {p: [] for p in procs}
        written: dict[int, int] = {}
        n = 0
        for _ in range(repeat):
            for n_proc in procs:  # the whole call: building the run and starting workers count too
                (own0, kids0), t0 = cpu_split(), time.perf_counter()
                n, _, _, report = run_start(src, tgt, out, langid, None, num_proc=n_proc)
                walls[n_proc].append(time.perf_counter() - t0)
                own1, kids1 = cpu_split()
                cpus[n_proc].append(own1 - own0 + kids1 - kids0)
                parents[n_proc].append(own1 - own0)
                written[n_proc] = report.written
        for n_proc in procs:
            print(
                f"  checks {langid:<10} num_proc {n_proc} {n:>7} pairs wall {statistics.median(walls[n_proc]):7.2f} s "
                f"cpu {statistics.median(cpus[n_proc]):7.2f} s, parent {statistics.median(parents[n_proc]) / n * 1e6:5.1f} "
                f"us/pair (median of {repeat}; walls {', '.join(f'{w:.2f}' for w in walls[n_proc])}; cpus "
                f"{', '.join(f'{c:.2f}' for c in cpus[n_proc])}; parent cpus "
                f"{', '.join(f'{c:.2f}' for c in parents[n_proc])}; wrote {written[n_proc]})"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--langid", default="none,fasttext,langdetect", help="comma-separated checks to time")
    ap.add_argument("--paths", default="run_items,start", help="comma-separated: run_items, start")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--num-proc", default=None, help="e.g. 1,2: time the registry path with N workers instead"
    )
    args = ap.parse_args()
    langids = args.langid.split(",")
    if args.num_proc is None:
        with contextlib.suppress(AttributeError, OSError):  # one core, as the target says
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src, tgt = build_files(corpus(Path(args.shared)), args.pairs, folder)
        out = folder / "out.jsonl"
        if args.num_proc is not None:
            procs = [int(x) for x in args.num_proc.split(",")]
            print(f"{args.pairs} zh-en pairs, registry path, read + convert + write Alpaca JSONL")
            bench_num_proc(src, tgt, out, langids, procs, args.repeat)
            return
        print(f"{args.pairs} zh-en pairs, one core, read + convert + write Alpaca JSONL")
        bench_paths(src, tgt, out, langids, args.paths.split(","), args.repeat)


if __name__ == "__main__":
    main()
