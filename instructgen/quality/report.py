"""Counts of what a run read, wrote and rejected (by reason), and the rejects file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..schema import Rejected


@dataclass
class Report:
    task: str
    read: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)  # instruction language -> records
    notes: list[str] = field(default_factory=list)
    # per-step stats (pipeline.steps.StepStats), filled by the run loop; shown by summary(verbose=True)
    steps: list[Any] = field(default_factory=list)

    def reject(self, item: Rejected) -> None:
        self.rejected[item.reason] += 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "read": self.read,
            "written": self.written,
            "rejected": dict(sorted(self.rejected.items())),
            "templates_used": len(self.templates),
            "instruction_languages": dict(sorted(self.languages.items())),
            "notes": list(self.notes),
        }

    def summary(self, verbose: bool = False) -> str:
        lines = [f"{self.task}: read {self.read}, wrote {self.written}, rejected {self.rejected_total}"]
        for reason, n in sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  rejected {reason}: {n}")
        if self.languages:
            langs = ", ".join(f"{k} {v}" for k, v in sorted(self.languages.items()))
            lines.append(f"  instruction languages: {langs}")
        if self.templates:
            lines.append(f"  templates used: {len(self.templates)}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if verbose:
            lines.extend(step.line() for step in self.steps)
        return "\n".join(lines)
