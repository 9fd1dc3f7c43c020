"""Throughput of `instructgen translate` end to end on one core (run by hand).

Reads line-aligned files built from every parallel set in ../shared/data, repeated to at
least 100,000 pairs (each repetition made unique by a suffix, so duplicate removal does not
skip work), converts, and writes Alpaca JSONL. Prints pairs/s for language checks off, and on
with each backend (langdetect on a 10,000-pair slice: it is ~40x slower).

    python benchmarks/translate.py [--pairs 100000] [--shared ../shared/data]
"""

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import contextlib
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


def run(src: Path, tgt: Path, out: Path, langid: str, limit: int | None = None) -> tuple[int, float, Report]:
    conv = TranslationConverter(TranslationOptions(src_lang="zh", tgt_lang="en", langid=langid))
    if langid != "none":
        conv.check.check("预热一下语言模型，避免把加载时间算进去。", "zh")  # load the model outside the timer
    report = Report(task="translation")
    t0 = time.perf_counter()
    items = read_parallel(src_file=src, tgt_file=tgt, src_lang="zh", tgt_lang="en")
    if limit:
        import itertools

        items = itertools.islice(items, limit)
    with RecordWriter(out, "alpaca") as w:
        for item in run_items(items, conv.convert, report=report):
            if isinstance(item, Record):
                w.write(item)
    return report.read, time.perf_counter() - t0, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    with contextlib.suppress(AttributeError, OSError):  # one core, as the target says
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src, tgt = build_files(corpus(Path(args.shared)), args.pairs, folder)
        print(f"{args.pairs} zh-en pairs, one core, read + convert + write Alpaca JSONL")
        for langid, limit in (("none", None), ("fasttext", None), ("langdetect", 10_000)):
            n, dt, report = run(src, tgt, folder / "out.jsonl", langid, limit)
            print(
                f"  checks {langid:<10} {n:>7} pairs {dt:7.2f} s {n / dt:>9,.0f} pairs/s "
                f"(wrote {report.written}, rejected {report.rejected_total})"
            )


if __name__ == "__main__":
    main()
