"""Peak memory of `instructgen translate`, `ner` and `classify` as the input grows (run by hand).

Builds inputs of each size from the sets in ../shared/data, cycled (translate pairs made unique
by a suffix so duplicate removal does not skip them), runs the CLI in a child process and reads
the child's peak resident set size from `os.wait4` (the kernel's ru_maxrss, as `/usr/bin/time -v`
prints it). Memory that does not grow with the input gives about the same figure at every size;
the target is under 500 MB at 2M rows.

    python benchmarks/memory.py [--rows 200000 2000000] [--commands translate ner classify]
        [--langid none|fasttext] [--keep DIR]
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py is named like the stdlib module `tokenize`; a script run from this
# folder has the folder first on sys.path, which would shadow it: drop that entry first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLI = [sys.executable, "-c", "from instructgen.cli.main import main; main()"]


def _lines(p: Path) -> list[str]:
    return p.read_text(encoding="utf-8-sig").splitlines()


def build_translate(shared: Path, rows: int, dst: Path) -> list[str]:
    """A zh-en TSV: WMT21 (both test sets) and Tatoeba, cycled, each cycle made unique."""
    w = shared / "wmt21_newstest_zh_en"
    pairs = list(zip(_lines(w / "newstest2021.zh-en.src.zh"), _lines(w / "newstest2021.zh-en.ref.A.en")))
    pairs += list(zip(_lines(w / "newstest2021.en-zh.ref.A.zh"), _lines(w / "newstest2021.en-zh.src.en")))
    for row in _lines(shared / "tatoeba_cmn_eng" / "cmn.head5000.txt"):
        en, zh = row.split("\t")[:2]
        pairs.append((zh, en))
    pairs = [(s.replace("\t", " "), t.replace("\t", " ")) for s, t in pairs if s.strip() and t.strip()]
    with open(dst, "w", encoding="utf-8") as f:
        for i in range(rows):
            s, t = pairs[i % len(pairs)]
            rep = i // len(pairs)
            suffix = f" #{rep}" if rep else ""
            f.write(f"{s}{suffix}\t{t}{suffix}\n")
    return ["translate", str(dst), "--src-lang", "zh", "--tgt-lang", "en"]


def build_ner(shared: Path, rows: int, dst: Path) -> list[str]:
    """CoNLL-2003 (testa, testb, the train head) sentences, cycled to `rows` sentences."""
    blocks: list[str] = []
    for name in ("eng.testa", "eng.testb", "eng.train.head5000"):
        text = (shared / "conll2003_en" / name).read_text(encoding="utf-8")
        blocks += [b.strip("\n") for b in text.split("\n\n") if b.strip() and "-DOCSTART-" not in b]
    with open(dst, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(blocks[i % len(blocks)] + "\n\n")
    # cycled sentences are exact repeats: with dedup on they would be rejected, not converted and
    # written (exit 3); dedup's own memory is what translate (unique pairs) measures
    return ["ner", str(dst), "--no-dedup"]


def build_classify(shared: Path, rows: int, dst: Path) -> list[str]:
    """SST-2 dev rows, cycled under one header."""
    head, *body = _lines(shared / "sst2" / "glue_sst2_dev.tsv")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(head + "\n")
        for i in range(rows):
            f.write(body[i % len(body)] + "\n")
    return [
        "classify",
        str(dst),
        "--text-col",
        "sentence",
        "--label-names",
        "negative,positive",
        "--no-dedup",
    ]


BUILDERS = {"translate": build_translate, "ner": build_ner, "classify": build_classify}
SUFFIX = {"translate": ".tsv", "ner": ".conll", "classify": ".tsv"}


def peak_rss(cmd: list[str]) -> tuple[int, float, int, str]:
    """Run `cmd`; return its peak RSS in bytes, wall seconds, exit status and stderr's last line."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()
    return usage.ru_maxrss * 1024, time.perf_counter() - t0, proc.returncode, (tail[0] if tail else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    ap.add_argument("--commands", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    ap.add_argument("--langid", default="none", help="translate's --langid (fasttext adds its model, ~2 MB)")
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--keep", default=None, help="build inputs here and keep them (default: a temp folder)")
    args = ap.parse_args()
    shared = Path(args.shared)
    with tempfile.TemporaryDirectory() as t:
        folder = Path(args.keep or t)
        folder.mkdir(parents=True, exist_ok=True)
        print(
            "peak RSS of the CLI in a child process (os.wait4 ru_maxrss); output to a file in the same folder"
        )
        for command in args.commands:
            for rows in args.rows:
                src = folder / f"{command}_{rows}{SUFFIX[command]}"
                argv = BUILDERS[command](shared, rows, src)
                if command == "translate":
                    argv += ["--langid", args.langid]
                out = folder / f"{command}_{rows}.out.jsonl"
                rss, wall, rc, summary = peak_rss([*CLI, *argv, "-q", "-o", str(out)])
                print(
                    f"  {command:<9} {rows:>9,} rows  peak RSS {rss / 2**20:7.0f} MB  {wall:7.1f} s  "
                    f"{rows / wall:>8,.0f} rows/s  exit {rc}  [{summary}]",
                    flush=True,
                )
                out.unlink(missing_ok=True)
                if not args.keep:
                    src.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
