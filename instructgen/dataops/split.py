"""Train / validation / test splits that never put one source item on both sides.

A random row split leaks: `translate --direction both` writes every pair twice, and a model that
trained on "A -> B" is not being tested on "B -> A" (issue 14 measured 323 of 380 validation rows
with their reverse in train). So rows are split by GROUP, a key shared by every record made from
one source item. What we write (with `--meta`) gives the group without options:

- `meta.group`, when a producer states one;
- `meta.question_id` (identity: every answer to one question, and every `other` it names);
- `meta.key` (translate: both directions of a pair share the pair's key);
- `meta.source_file` + `meta.line` (ner, classify: original and inverted records of one sentence).

`--group-by FIELD[,FIELD]` names the key instead. A row with no key is its own group, keyed by its
content (so exact duplicate rows still land together), and the report counts those rows.

Which split a group goes to: groups (per stratum with `--stratify`) are put in the order of
`stable_hash(seed, group key)` and laid end to end; a group goes to the split whose share of the
line its midpoint falls in. Each split then holds its target count to within one group, and the
result depends on the seed and the keys only, never on the order of the file.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..determinism import content_key, stable_hash
from ..errors import ConfigError
from .rows import field_value

DEFAULT_NAMES = ("train", "validation", "test")
# (rule shown in the report, meta fields that must all be present)
AUTO_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("meta.group", ("group",)),
    ("meta.question_id", ("question_id",)),
    ("meta.key", ("key",)),
    ("meta.source_file+line", ("source_file", "line")),
)
NO_KEY = "no key"
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def parse_ratios(text: str) -> list[float]:
    """'85,10,5' or '0.85,0.1,0.05' -> [0.85, 0.1, 0.05]; the parts must add up to 100 or to 1."""
    try:
        parts = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--ratios: '{text}' is not a list of numbers like 85,10,5 or 0.85,0.1,0.05") from None
    if not 2 <= len(parts) <= len(DEFAULT_NAMES) + 7 or any(p < 0 for p in parts):
        raise ConfigError(f"--ratios: give two or more non-negative shares, like 85,10,5 (got '{text}')")
    total = sum(parts)
    if abs(total - 100) < 1e-6:
        return [p / 100 for p in parts]
    if abs(total - 1) < 1e-6:
        return parts
    raise ConfigError(f"--ratios: '{text}' adds up to {total:g}; shares must add up to 100 (or to 1)")


def group_key(row: dict[str, Any], group_by: Sequence[str] | None) -> tuple[str | None, str]:
    """(group key or None, the rule that gave it) for one row."""
    if group_by:
        values = [field_value(row, f) for f in group_by]
        rule = "+".join(group_by)
        if all(v is None for v in values):
            return None, NO_KEY
        return _dumps(values), rule
    meta = row.get("meta")
    if isinstance(meta, dict):
        for rule, fields in AUTO_RULES:
            values = [meta.get(f) for f in fields]
            if all(v is not None and v != "" for v in values):
                return _dumps([rule, *values]), rule
    return None, NO_KEY


@dataclass
class SplitResult:
    """Which split each row went to, and the counts the report shows."""

    names: list[str]
    ratios: list[float]
    assignment: list[int]
    rules: Counter = field(default_factory=Counter)
    groups: list[int] = field(default_factory=list)
    stratify: str | None = None
    strata: dict[str, list[int]] = field(default_factory=dict)
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def indices(self, split: int) -> list[int]:
        return [i for i, s in enumerate(self.assignment) if s == split]

    @property
    def counts(self) -> list[int]:
        c = Counter(self.assignment)
        return [c[i] for i in range(len(self.names))]

    def summary(self) -> str:
        n = len(self.assignment)
        keyed = ", ".join(f"{rule} {k}" for rule, k in self.rules.most_common() if rule != NO_KEY)
        lines = [f"split: {n} records, {sum(self.groups)} groups ({keyed or 'no group key'}), seed {self.seed}"]
        width = max(len(x) for x in self.names)
        for name, count, groups, ratio in zip(self.names, self.counts, self.groups, self.ratios):
            share = count / n if n else 0.0
            lines.append(
                f"  {name:<{width}}  {count:>7} records ({share:6.1%}, target {ratio:.1%})  {groups:>6} groups"
            )
        if self.rules[NO_KEY]:
            lines.append(
                f"  no group key: {self.rules[NO_KEY]} records, split one by one (write them with --meta, "
                "or name the field that ties them together with --group-by)"
            )
        lines += [f"  {note}" for note in self.notes]
        if self.stratify:
            lines.append(f"  by {self.stratify}:")
            sw = max([len(s) for s in self.strata] + [8])
            for stratum, per in sorted(self.strata.items(), key=lambda kv: (-sum(kv[1]), kv[0])):
                cells = []
                for name, c, total in zip(self.names, per, self.counts):
                    cells.append(f"{name} {c} ({c / total if total else 0:.1%})")
                lines.append(f"    {stratum:<{sw}}  " + "  ".join(cells))
        return "\n".join(lines)


def _stratum(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else _dumps(value)


def split_rows(
    rows: Sequence[dict[str, Any]],
    ratios: Sequence[float],
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    group_by: Sequence[str] | None = None,
    stratify: str | None = None,
    connect: Sequence[str] | None = None,
) -> SplitResult:
    """Assign every row to a split; rows of one group always share it.

    `connect` names fields whose equal values also tie groups together (union-find): with
    `output`, two translation pairs that share a sentence ("Hi." -> 嗨。 and "Hi." -> 你好。) land in
    one split, so the shared sentence is never seen in training and tested again.
    """
    names = list(names or DEFAULT_NAMES[: len(ratios)])
    if len(names) != len(ratios):
        raise ConfigError(f"--names gives {len(names)} names for {len(ratios)} ratios")
    if len(set(names)) != len(names):
        raise ConfigError(f"--names: split names must differ ({', '.join(names)})")
    rules: Counter = Counter()
    members: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        key, rule = group_key(row, group_by)
        rules[rule] += 1
        if key is None:  # its own group, by content: exact duplicates stay together
            key = "row:" + content_key(_dumps(row))
        members[key].append(i)
    merged = 0
    if connect:
        members, merged = _connect(rows, members, connect)
    # one stratum per group: its most common value (ties: the smallest, so no order dependence)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for key, idx in members.items():
        if stratify:
            votes = Counter(_stratum(field_value(rows[i], stratify)) for i in idx)
            best = max(votes.values())
            by_stratum[min(v for v, c in votes.items() if c == best)].append(key)
        else:
            by_stratum[""].append(key)
    assignment = [0] * len(rows)
    groups = [0] * len(names)
    cumulative = [sum(ratios[: k + 1]) for k in range(len(ratios))]
    for keys in by_stratum.values():
        keys.sort(key=lambda k: (stable_hash(seed, "split", k), k))
        total = sum(len(members[k]) for k in keys)
        pos = 0
        for k in keys:
            size = len(members[k])
            mid = (pos + size / 2) / total
            split = next((s for s, edge in enumerate(cumulative) if mid < edge), len(names) - 1)
            while ratios[split] == 0 and split > 0:  # a zero share never receives a group
                split -= 1
            for i in members[k]:
                assignment[i] = split
            groups[split] += 1
            pos += size
    strata: dict[str, list[int]] = {}
    if stratify:
        for i, row in enumerate(rows):
            strata.setdefault(_stratum(field_value(row, stratify)), [0] * len(names))[assignment[i]] += 1
    result = SplitResult(names, list(ratios), assignment, rules, groups, stratify, strata, seed)
    if connect:
        largest = max((len(v) for v in members.values()), default=0)
        result.notes.append(
            f"connected by {'+'.join(connect)}: {merged} groups merged into others; largest group {largest} records"
        )
    return result


def _connect(
    rows: Sequence[dict[str, Any]], members: dict[str, list[int]], fields: Sequence[str]
) -> tuple[dict[str, list[int]], int]:
    """Merge groups that share a value of any of `fields`; a merged group is named by its smallest key."""
    parent = {k: k for k in members}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first_with: dict[str, str] = {}
    for key, idx in members.items():
        for i in idx:
            for f in fields:
                value = field_value(rows[i], f)
                if value is None or value == "":
                    continue
                tag = f + "\x1f" + (value if isinstance(value, str) else _dumps(value))
                other = first_with.setdefault(tag, key)
                a, b = find(key), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    out: dict[str, list[int]] = defaultdict(list)
    for key, idx in members.items():
        out[find(key)].extend(idx)
    for idx in out.values():
        idx.sort()
    return dict(out), len(members) - len(out)
