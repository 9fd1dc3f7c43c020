"""Throughput of `ner` and `classify` on one core (run by hand): read, convert, write JSONL.

NER: CoNLL-2003 testa+testb and the MSRA test file; classification: SST-2 dev and ChnSentiCorp,
each repeated to at least 50,000 rows. Targets: >= 20,000 rows/s per core.

    python benchmarks/ner_classify.py [--rows 50000] [--repeats 3]
"""

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import contextlib
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


def write(outcomes, tmp: Path) -> None:
    """As the CLI does: records stream to the output, rejections to a rejects file."""
    with RecordWriter(tmp / "out.jsonl") as w, JsonlSink(tmp / "rejects.jsonl") as sink:
        for item in outcomes:
            if isinstance(item, Record):
                w.write(item)
            else:
                sink.write(item.model_dump())


def timed(label: str, fn, repeats: int) -> None:
    """Median and slowest of `repeats` runs: single runs on a shared machine vary by a third."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    rates.sort()
    print(
        f"  {label:<34} {n:>7} rows  median {statistics.median(rates):>9,.0f} rows/s  slowest {rates[0]:>9,.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"one core, >= {args.rows} rows each, read + convert + write Alpaca JSONL")
        for name, rel, lang in (
            ("conll", "conll2003_en/eng.testa", "en"),
            ("msra", "msra_ner_zh/test_data", "zh"),
        ):
            src = tmp / name
            repeat_file(SHARED / rel, src, args.rows, header=False, blocks=True)
            for target in ("list", "json", "inline", "per-type"):

                def go(src=src, target=target, lang=lang) -> int:
                    run = NerRun()
                    conv = NerConverter(NerOptions(target=target, instruction_lang=lang))
                    write(conv.stream(lambda: read_tagged(src), run), tmp)  # as the CLI: a reopenable input
                    return run.report.read

                timed(f"ner {name} --target {target}", go, args.repeats)
        for name, rel, kw in (
            (
                "sst2",
                "sst2/glue_sst2_dev.tsv",
                dict(text_col="sentence", label_names=("negative", "positive")),
            ),
            (
                "chnsenticorp",
                "chnsenticorp_htl/ChnSentiCorp_htl_all.head2556pos_all2444neg.csv",
                dict(text_col="review", label_names=("负面", "正面"), instruction_lang="zh"),
            ),
        ):
            src = tmp / (name + Path(rel).suffix)
            repeat_file(SHARED / rel, src, args.rows, header=True, blocks=False)

            def go(src=src, kw=kw) -> int:
                run = ClassifyRun()
                conv = ClassificationConverter(ClassifyOptions(**kw))
                write(conv.stream(lambda: iter_rows(src), run, str(src)), tmp)
                return run.report.read

            timed(f"classify {name}", go, args.repeats)


if __name__ == "__main__":
    main()
