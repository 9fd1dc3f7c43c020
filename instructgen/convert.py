"""Instruction data people already have (Alpaca, ShareGPT, OpenAI messages, query-response) into any layout.

The records go through the same checks as generated ones: empty fields, leftover template placeholders
(off by default: answers about Jinja or prompt templates contain them legitimately) and exact dedup,
counted by reason in the same `Report`, with the same rejects file. The run is the pipeline core's
(`pipeline.registry.start("convert", ...)`, the task in `tasks/convert.py`); this module is the
Python entry point that the CLI calls.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from .pipeline import registry
from .pipeline.run import Run
from .pipeline.steps import record_digest  # the dedup key; kept importable from here (tests, callers)
from .quality.report import Report
from .schema import Record, Rejected
from .tasks.convert import NAME, ConvertOptions, read_items

TASK = NAME

__all__ = ["TASK", "convert", "record_digest", "start"]


def start(
    path: str | Path,
    *,
    on_error: str = "raise",
    dedup: bool = True,
    placeholders: bool = False,
    num_proc: int | None = None,
) -> Run:
    """A run of the `convert` task over an instruction-data file (layout recognised per row): iterate
    it for records and rejections in input order; `run.report` counts them."""
    options = ConvertOptions(dedup=dedup, placeholders=placeholders)
    source = functools.partial(read_items, path, on_error=on_error)  # picklable: the CLI's opener too
    return registry.start(NAME, options, source, num_proc=num_proc, table=False)


def convert(
    path: str | Path, *, on_error: str = "raise", dedup: bool = True, placeholders: bool = False
) -> tuple[Iterator[Record | Rejected], Report]:
    """Read an instruction-data file (layout recognised per row) and check it; records stream lazily."""
    run = start(path, on_error=on_error, dedup=dedup, placeholders=placeholders)
    return iter(run), run.report
