"""Throughput of `ner` and `classify` on one core (run by hand): read, convert, write JSONL.

NER: CoNLL-2003 testa and the MSRA test file; classification: SST-2 dev and ChnSentiCorp, each
repeated to at least `--rows` rows. Target: >= 20,000 rows/s per core.

The inputs are the small files cycled, so 94-98% of their records are exact copies of an earlier
one. With exact dedup on (the default since the pipeline core) most of them are rejected as
`duplicate_record` and never written, which is not the same work as writing them: the row to
compare with older code (which had no dedup) is **dedup off**; dedup on is reported on its own row.
Each row gives CPU seconds (user + system of this process, `resource.getrusage`), rows/s by CPU
time (the figure to compare on a shared machine) and wall seconds, median of `--repeats`.

The script runs against older checkouts too (`PYTHONPATH=/tmp/wt-before python
benchmarks/ner_classify.py`, c4f1698 and later): options the code lacks (dedup) are left out and
their rows skipped.

    python benchmarks/ner_classify.py [--rows 50000] [--repeats 3] [--only ner-conll-list,classify-sst2]
        [--dedup off|on|both]
"""

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import contextlib
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path

from instructgen.converters.classification import (
    ClassificationConverter,
    ClassifyOptions,
    ClassifyRun,
    iter_rows,
)
from instructgen.converters.ner import NerConverter, NerOptions, NerRun
from instructgen.io.tagged import read_tagged
from instructgen.io.writers import JsonlSink, RecordWriter
from instructgen.schema import Record

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

NER_INPUTS = (("conll", "conll2003_en/eng.testa", "en"), ("msra", "msra_ner_zh/test_data", "zh"))
NER_TARGETS = ("list", "json", "inline", "per-type")
CLASSIFY_INPUTS = (
    ("sst2", "sst2/glue_sst2_dev.tsv", {"text_col": "sentence", "label_names": ("negative", "positive")}),
    (
        "chnsenticorp",
        "chnsenticorp_htl/ChnSentiCorp_htl_all.head2556pos_all2444neg.csv",
        {"text_col": "review", "label_names": ("负面", "正面"), "instruction_lang": "zh"},
    ),
)


def repeat_file(src: Path, dst: Path, rows: int, header: bool, blocks: bool) -> None:
    text = src.read_text(encoding="utf-8-sig")
    head, body = text.split("\n", 1) if header else ("", text)
    unit = body.rstrip("\n") + ("\n\n" if blocks else "\n")
    n_unit = (body.count("\n\n") + 1) if blocks else body.count("\n")
    with open(dst, "w", encoding="utf-8") as f:
        if header:
            f.write(head + "\n")
        for _ in range(-(-rows // max(1, n_unit))):
            f.write(unit)


def write(outcomes, tmp: Path) -> int:
    """As the CLI does: records stream to the output, rejections to a rejects file. Returns the
    number of records written."""
    n = 0
    with RecordWriter(tmp / "out.jsonl") as w, JsonlSink(tmp / "rejects.jsonl") as sink:
        for item in outcomes:
            if isinstance(item, Record):
                w.write(item)
                n += 1
            else:
                sink.write(item.model_dump())
    return n


def has_dedup(options_cls: type) -> bool:
    return "dedup" in {f.name for f in dataclasses.fields(options_cls)}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(label: str, fn, repeats: int) -> None:
    """Median of `repeats` runs by CPU time (rows/s) and wall: a single run on a shared machine
    varies by a third in wall time, much less in CPU time."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        read, written = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
    c, w = statistics.median(cpu), statistics.median(wall)
    print(
        f"  {label:<38} {read:>7} rows {written:>7} written  cpu {c:6.2f} s  {read / c:>8,.0f} rows/s(cpu)"
        f"  wall {w:6.2f} s  {read / w:>8,.0f} rows/s(wall)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated labels, e.g. ner-conll-list,classify-sst2")
    ap.add_argument("--dedup", choices=("off", "on", "both"), default="both")
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.dedup]
    print(
        f"one core, >= {args.rows} rows each, read + convert + write Alpaca JSONL; median of {args.repeats}"
    )
    if load := getattr(os, "getloadavg", None):
        print("load average at start: " + " ".join(f"{x:.2f}" for x in load()))

    def wanted(label: str) -> bool:
        return not only or label in only

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, rel, lang in NER_INPUTS:
            labels = [f"ner-{name}-{target}" for target in NER_TARGETS]
            if not any(map(wanted, labels)):
                continue
            src = tmp / name
            repeat_file(SHARED / rel, src, args.rows, header=False, blocks=True)
            for target, label in zip(NER_TARGETS, labels, strict=True):
                if not wanted(label):
                    continue
                for dedup in modes:
                    if dedup and not has_dedup(NerOptions):
                        continue
                    kw = {"dedup": dedup} if has_dedup(NerOptions) else {}
                    opts = NerOptions(target=target, instruction_lang=lang, **kw)

                    def go(src=src, opts=opts) -> tuple[int, int]:
                        run = NerRun()
                        # as the CLI: a reopenable input
                        written = write(NerConverter(opts).stream(lambda: read_tagged(src), run), tmp)
                        return run.report.read, written

                    timed(f"{label} dedup {'on' if dedup else 'off'}", go, args.repeats)
        for name, rel, kw in CLASSIFY_INPUTS:
            label = f"classify-{name}"
            if not wanted(label):
                continue
            src = tmp / (name + Path(rel).suffix)
            repeat_file(SHARED / rel, src, args.rows, header=True, blocks=False)
            for dedup in modes:
                if dedup and not has_dedup(ClassifyOptions):
                    continue
                extra = {"dedup": dedup} if has_dedup(ClassifyOptions) else {}
                opts = ClassifyOptions(**kw, **extra)

                def go(src=src, opts=opts) -> tuple[int, int]:
                    run = ClassifyRun()
                    written = write(
                        ClassificationConverter(opts).stream(lambda: iter_rows(src), run, str(src)), tmp
                    )
                    return run.report.read, written

                timed(f"{label} dedup {'on' if dedup else 'off'}", go, args.repeats)


if __name__ == "__main__":
    main()
