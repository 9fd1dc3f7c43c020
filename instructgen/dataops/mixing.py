"""Mixing N record files at stated shares or counts, seeded, without repeating a row.

`instructgen mix a.jsonl:0.1 b.jsonl:5000 c.json` takes 10% of the OUTPUT from a, 5,000 rows
from b and every row of c. The output size is `--total N`, or, without it, what the counts and
the "all" sources make once the shares are added on top (fixed / (1 - sum of shares)). With
`--total`, one source without a spec takes whatever rows are left.

Which rows of a source are taken, and where they land in the output, are hashes of (seed, the
source file's sha256, row position): renaming a file or listing the sources in another order does
not change the mix, and the same inputs and seed give the same bytes. A source asked for more rows
than it has is an error, unless `--allow-repeat`, which repeats whole passes over the source in
the same hashed order and says how many rows were repeats.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..determinism import stable_hash
from ..errors import ConfigError
from .rows import RowSet


@dataclass
class MixSource:
    """One `PATH[:SPEC]` argument: a share of the output, a row count, 'all' or 'rest'."""

    path: str
    kind: str  # share | count | all | rest
    value: float = 0.0
    rows: RowSet | None = None
    taken: int = 0
    repeated: int = 0

    @property
    def spec(self) -> str:
        if self.kind == "share":
            return f"{self.value:g}"
        if self.kind == "count":
            return str(int(self.value))
        return self.kind


def parse_source(arg: str) -> MixSource:
    """'a.jsonl:0.1' (share), 'a.jsonl:5000' (count), 'a.jsonl:25%', 'a.jsonl' or 'a.jsonl:all'."""
    path, sep, spec = arg.rpartition(":")
    if not sep or not path or "/" in spec or "\\" in spec or (Path(arg).exists() and not Path(path).exists()):
        return MixSource(arg, "all")
    spec = spec.strip().lower()
    if spec in ("all", ""):
        return MixSource(path, "all")
    if spec == "rest":
        return MixSource(path, "rest")
    try:
        if spec.endswith("%"):
            value, kind = float(spec[:-1]) / 100, "share"
        elif spec.isdigit():
            value, kind = float(int(spec)), "count"
        else:
            value, kind = float(spec), "share"
    except ValueError:
        raise ConfigError(
            f"{arg}: after ':' give a share of the output (0.1 or 10%), a row count (5000), 'all' or 'rest'"
        ) from None
    if kind == "share" and not 0 < value < 1:
        raise ConfigError(f"{arg}: a share must be between 0 and 1 (or 0% and 100%), not {spec}")
    return MixSource(path, kind, value)


def _largest_remainder(wants: list[float], total: int) -> list[int]:
    """Round `wants` to integers that add up to `total` (largest fractional parts get the spare rows)."""
    floors = [math.floor(w) for w in wants]
    spare = total - sum(floors)
    order = sorted(range(len(wants)), key=lambda i: (-(wants[i] - floors[i]), i))
    for i in order[: max(0, spare)]:
        floors[i] += 1
    return floors


def plan_counts(sources: list[MixSource], total: int | None) -> int:
    """Set `taken` on every source from its spec and the total; returns the output size."""
    shares = [s for s in sources if s.kind == "share"]
    rest = [s for s in sources if s.kind == "rest" or (s.kind == "all" and total is not None)]
    share_sum = sum(s.value for s in shares)
    if share_sum > 1 + 1e-9 or (share_sum >= 1 - 1e-9 and total is None):
        raise ConfigError(
            f"the shares add up to {share_sum:g}; they must leave room for the other sources "
            "(or add up to 1 with --total)"
        )
    if total is not None and len(rest) > 1:
        names = ", ".join(s.path for s in rest)
        raise ConfigError(
            f"with --total only one source may go without a count or share (it takes the rest): {names}"
        )
    for s in sources:
        available = len(s.rows.rows) if s.rows else 0
        if s.kind == "count":
            s.taken = int(s.value)
        elif s.kind == "all" and total is None:
            s.taken = available
    fixed = sum(s.taken for s in sources if s.kind in ("count", "all") and s not in rest)
    if total is None:
        if rest:
            raise ConfigError("a source marked ':rest' needs --total")
        if not fixed:
            raise ConfigError("only shares were given: say how many rows in all with --total N")
        total = round(fixed / (1 - share_sum))
    share_rows = _largest_remainder([s.value * total for s in shares], round(share_sum * total))
    for s, n in zip(shares, share_rows):
        s.taken = n
    left = total - fixed - sum(share_rows)
    if rest:
        if left < 0:
            raise ConfigError(f"counts and shares already make {fixed + sum(share_rows)} rows, over --total {total}")
        rest[0].taken = left
    elif left != 0:
        raise ConfigError(
            f"counts and shares make {fixed + sum(share_rows)} rows, not --total {total}; "
            "leave one source without a spec (or mark it ':rest') to take the remaining rows"
        )
    return total


@dataclass
class MixResult:
    rows: list[dict[str, Any]]
    sources: list[MixSource]
    total: int
    seed: int
    allow_repeat: bool
    layouts: Counter = field(default_factory=Counter)

    @property
    def repeated(self) -> int:
        return sum(s.repeated for s in self.sources)

    def summary(self) -> str:
        lines = [f"mix: wrote {len(self.rows)} rows from {len(self.sources)} sources, seed {self.seed}"]
        width = max(len(s.path) for s in self.sources)
        for s in self.sources:
            avail = len(s.rows.rows) if s.rows else 0
            share = s.taken / len(self.rows) if self.rows else 0.0
            extra = f", {s.repeated} repeated" if s.repeated else ""
            lines.append(
                f"  {s.path:<{width}}  {s.spec:>6}  took {s.taken} of {avail} ({share:.1%} of the output{extra})"
            )
        if self.allow_repeat:
            lines.append(f"  repeated rows: {self.repeated}")
        return "\n".join(lines)

    def manifest(self, output: str | None, output_sha256: str | None, fmt: str) -> dict[str, Any]:
        from .. import __version__

        return {
            "instructgen": __version__,
            "seed": self.seed,
            "total": len(self.rows),
            "allow_repeat": self.allow_repeat,
            "repeated": self.repeated,
            "output": {"path": output, "sha256": output_sha256, "rows": len(self.rows), "format": fmt},
            "sources": [
                {
                    "path": s.path,
                    "sha256": s.rows.sha256 if s.rows else None,
                    "spec": s.spec,
                    "layout": s.rows.layout if s.rows else None,
                    "rows_available": len(s.rows.rows) if s.rows else 0,
                    "rows_taken": s.taken,
                    "rows_repeated": s.repeated,
                }
                for s in self.sources
            ],
        }


def mix_sources(
    sources: list[MixSource], *, total: int | None = None, seed: int = 0, allow_repeat: bool = False
) -> MixResult:
    """Choose the rows of every (loaded) source and interleave them in a seeded order."""
    if not sources:
        raise ConfigError("give at least one source")
    shas: dict[str, str] = {}
    for s in sources:
        assert s.rows is not None
        twin = shas.setdefault(s.rows.sha256, s.path)
        if twin != s.path and not allow_repeat:
            raise ConfigError(
                f"{twin} and {s.path} are the same file: their rows would repeat; pass --allow-repeat "
                "to oversample on purpose"
            )
    total = plan_counts(sources, total)
    chosen: list[tuple[int, int, int]] = []  # (order hash, source index, row index)
    seen: Counter = Counter()
    of_total = f" of {total} output rows"
    used: set[tuple[str, int]] = set()
    for si, s in enumerate(sources):
        assert s.rows is not None
        n = len(s.rows.rows)
        # identical files listed twice draw different rows (and still never repeat one)
        tag = f"{s.rows.sha256}:{seen[s.rows.sha256]}"
        seen[s.rows.sha256] += 1
        if s.taken > n and not allow_repeat:
            raise ConfigError(
                f"{s.path}: {s.taken} rows asked ({s.spec}{of_total if s.kind == 'share' else ''}), it has {n}; "
                "lower the share or count, "
                "or pass --allow-repeat to repeat rows"
            )
        if s.taken and not n:
            raise ConfigError(f"{s.path}: has no rows, {s.taken} asked")
        order = sorted(range(n), key=lambda i: (stable_hash(seed, "mix", tag, i), i))
        s.repeated = 0
        for k in range(s.taken):
            i = order[k % n] if n else 0
            copy = k // n
            # a repeat: a second pass, or a row an identical file listed earlier already gave
            s.repeated += (s.rows.sha256, i) in used
            used.add((s.rows.sha256, i))
            chosen.append((stable_hash(seed, "mix-order", tag, i, copy), si, i))
    chosen.sort()
    rows = [sources[si].rows.rows[i] for _, si, i in chosen]  # type: ignore[union-attr]
    layouts = Counter(s.rows.layout for s in sources if s.rows)
    return MixResult(rows, sources, total, seed, allow_repeat, layouts)
