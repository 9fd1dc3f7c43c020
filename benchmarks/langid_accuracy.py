"""Accuracy and speed of the language-ID backends on real parallel data (run by hand).

For each backend: how many sides of clean parallel data it wrongly rejects (false
rejections; lower is better), how many sides with the wrong declared language it catches
(recall on swapped labels; higher is better), and microseconds per check.

    python benchmarks/langid_accuracy.py [--shared ../shared/data]
"""

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import time
from pathlib import Path

from instructgen.quality.langid import LanguageCheck, make_backend


def load(shared: Path) -> list[tuple[str, str]]:
    """(text, true language) from every parallel set in shared/data."""
    out: list[tuple[str, str]] = []

    def lines(p: Path) -> list[str]:
        return [t.strip() for t in p.read_text(encoding="utf-8-sig").splitlines()]

    w = shared / "wmt21_newstest_zh_en"
    out += [(t, "zh") for t in lines(w / "newstest2021.zh-en.src.zh")]
    out += [(t, "en") for t in lines(w / "newstest2021.zh-en.ref.A.en")]
    out += [(t, "en") for t in lines(w / "newstest2021.en-zh.src.en")]
    out += [(t, "zh") for t in lines(w / "newstest2021.en-zh.ref.A.zh")]
    d = shared / "wmt21_newstest_de_en"
    out += [(t, "de") for t in lines(d / "newstest2021.de-en.src.de")]
    out += [(t, "en") for t in lines(d / "newstest2021.de-en.ref.A.en")]
    for lang in ("en", "de", "fr", "cs"):
        out += [(t, lang) for t in lines(shared / "multi30k" / f"val.{lang}")]
    for row in lines(shared / "tatoeba_cmn_eng" / "cmn.head5000.txt"):
        parts = row.split("\t")
        if len(parts) >= 2:
            out += [(parts[0], "en"), (parts[1], "zh")]
    return [(t, lang) for t, lang in out if t]


# A wrong declared language for each true one: same script where possible (the hard case).
SWAP = {"en": "de", "de": "en", "fr": "en", "cs": "de", "zh": "ja"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    data = load(Path(args.shared))
    print(f"{len(data)} texts from {args.shared}")
    print(f"{'backend':<11} {'false rejections':>22} {'caught (swapped)':>22} {'us/check':>9}")
    for name in ("fasttext", "langdetect"):
        check = LanguageCheck(make_backend(name))
        sample = data if name == "fasttext" else data[::5]
        t0 = time.perf_counter()
        false_rej = sum(1 for text, lang in sample if check.check(text, lang))
        dt = (time.perf_counter() - t0) / len(sample) * 1e6
        caught = sum(1 for text, lang in sample if check.check(text, SWAP[lang]))
        n = len(sample)
        print(
            f"{name:<11} {false_rej:>7} / {n:<6} ({false_rej / n:6.2%}) {caught:>7} / {n:<6} ({caught / n:6.2%}) {dt:9.1f}"
        )


if __name__ == "__main__":
    main()
