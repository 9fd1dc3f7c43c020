"""Precision and recall of `scan` per category on a labelled sample.

The sample (`tests/data/scan_labelled.jsonl`) holds written lines in seven languages and rows
of LLaMA-Factory's alpaca demo files (`{"source": "alpaca_en_demo.json", "row": 408}`, 1-based),
read from a data directory when it is there (rows are skipped, and counted as skipped, when not).

    python -m instructgen.identity.scan_eval [SAMPLE] [--data DIR]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .scan import CATEGORIES, scan_hits

DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "scan_labelled.jsonl"
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, text)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def load_sample(sample: Path, data_dir: Path) -> tuple[list[tuple[str, str, set[str]]], int]:
    """(id, text, labels) for every line whose text is available, and how many were skipped."""
    files: dict[str, list[dict]] = {}
    items, skipped = [], 0
    for n, line in enumerate(sample.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        labels = set(row["labels"])
        unknown = labels - set(CATEGORIES)
        if unknown:
            raise ValueError(f"{sample}:{n}: field 'labels': unknown category {sorted(unknown)[0]}")
        if row["source"] == "written":
            items.append((row["id"], row["text"], labels))
            continue
        path = data_dir / row["source"]
        if not path.exists():
            skipped += 1
            continue
        if row["source"] not in files:
            files[row["source"]] = json.loads(path.read_text(encoding="utf-8"))
        items.append((row["id"], files[row["source"]][row["row"] - 1]["output"], labels))
    return items, skipped


def evaluate(items: list[tuple[str, str, set[str]]]) -> dict[str, Score]:
    scores = {c: Score() for c in CATEGORIES}
    for ident, text, labels in items:
        found = {h.category for h in scan_hits(text)}
        for cat, score in scores.items():
            if cat in found and cat in labels:
                score.tp += 1
            elif cat in found:
                score.fp += 1
                score.errors.append(("fp", ident, text))
            elif cat in labels:
                score.fn += 1
                score.errors.append(("fn", ident, text))
    return scores


def table(scores: dict[str, Score], lines: int, skipped: int) -> str:
    out = [
        f"scan on {lines} labelled lines ({skipped} skipped: data file absent)",
        "",
        "| category | positives | flagged | true hits | precision | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for cat, s in scores.items():
        out.append(f"| {cat} | {s.tp + s.fn} | {s.tp + s.fp} | {s.tp} | {s.precision:.3f} | {s.recall:.3f} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    args = list(argv)
    data = DEFAULT_DATA
    if "--data" in args:
        i = args.index("--data")
        data = Path(args[i + 1])
        del args[i : i + 2]
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    sample = Path(args[0]) if args else DEFAULT_SAMPLE
    items, skipped = load_sample(sample, data)
    scores = evaluate(items)
    print(table(scores, len(items), skipped))
    if verbose:
        for cat, s in scores.items():
            for kind, ident, text in s.errors:
                print(f"{cat}\t{kind}\t{ident}\t{text[:160]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
