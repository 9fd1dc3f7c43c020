"""Paths and small readers shared by the tests (imported as a plain module)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def trained_runs(labels: list[int]) -> list[list[int]]:
    """Runs of trained tokens (labels != -100): the tests' own reading, independent of the package's."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for x in labels:
        if x != -100:
            cur.append(x)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])
