"""Classification as a registered task: labelled rows -> records, checked, exact duplicates dropped.

- **plan** (a first read of every row): each row's label checked (a missing text or label column
  on the first row is a wrong --text-col/--label-col and stops the run), integer labels without
  names refused, the option list (`--label-names`, else the sorted labels of the whole file), and
  every original template checked to show that list.
- **prepare** (each row, on both passes): the row's checks, once per read: the plan counts the
  checked labels and the convert step takes the checked row (`Checked`) as it is; a row that did
  not come through a planned run (the batched adapter, Ray's workers) is checked by the convert step.
- **convert** (per row, pure): a bad row is rejected with its reason, else one record
  (`ClassificationConverter.convert`).
- **checks**: `EmptyFields`, `Placeholders` (every value rendered into the template is data).
- **sequential**: exact dedup (`duplicate_record`).

The semantics (options block, verbalisation, template choice) stay in `converters/classification.py`.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..converters.classification import ClassificationConverter, ClassifyOptions, Row
from ..gcpause import collector_paused
from ..pipeline.outcome import Outcome
from ..pipeline.registry import Task, register
from ..pipeline.run import Pipeline, Result
from ..pipeline.steps import EmptyFields, ExactDedup, Placeholders, record_digest
from ..schema import Record, Rejected
from .common import cached

NAME = "classification"


@dataclass(frozen=True)
class ClassifyPlan:
    """What the first read decided, for every worker."""

    names: tuple[str, ...]  # the option list, in the order options are numbered
    labels_in: tuple[tuple[str, int], ...] = ()  # every checked row's label, counted


class Checked(NamedTuple):
    """A read row with its check done (`prepare`): the label's name, or the row's rejection."""

    line: int | None
    row: Any
    got: str | Rejected


def converter(options: ClassifyOptions) -> ClassificationConverter:
    return cached(ClassificationConverter, options)


def prepare(options: ClassifyOptions):
    """(line, row) -> `Checked`, for both passes of a planned run (a reader's rejection passes as it
    is). The first row checked raises on a missing column (a wrong --text-col/--label-col), as the
    plan's own check does; the second pass only ever sees rows the first one accepted that way."""
    conv = converter(options)
    check, source = conv._check, options.source_file
    first = [True]

    def checked(item: Any) -> Any:
        if isinstance(item, Rejected):  # the reader's: the next row is still the first one
            return item
        if first[0]:
            got = check(item, source, first=True)
            first[0] = False
        else:
            got = check(item, source)
        return make_checked((item[0], item[1], got))

    return checked


# Checked(line, row, got) without NamedTuple's Python-level __new__ (~0.2 us a row)
make_checked = functools.partial(tuple.__new__, Checked)


def plan(options: ClassifyOptions, items: Iterable[Row | Checked]) -> ClassifyPlan:
    """Check every row (counting labels; a `Checked` row was checked already), then fix and check
    the option list."""
    conv = converter(options)  # option and pool errors before anything is read
    source = options.source_file
    labels_in: Counter = Counter()
    first = True
    with collector_paused():
        for item in items:
            if isinstance(item, Rejected):  # the reader's: the next row is still the first one
                continue
            got = item.got if type(item) is Checked else conv._check(item, source, first=first)
            first = False
            if not isinstance(got, Rejected):
                labels_in[got] += 1
    conv._refuse_unnamed_integers(labels_in, source)
    names = conv.names or sorted(labels_in)
    conv.check_templates_show_labels(names)
    return ClassifyPlan(tuple(names), tuple(labels_in.items()))


class ConvertRows:
    """The convert step: one (line, row) -> its record, or its rejection (picklable by options + plan)."""

    name = "convert"

    def __init__(self, options: ClassifyOptions, plan: ClassifyPlan) -> None:
        self.options, self.plan = options, plan
        self.conv = converter(options)
        self.names = list(plan.names)
        # checked once per label set; the batched form has no plan pass that did it
        self.conv.check_templates_show_labels(self.names)

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "plan": self.plan}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"], state["plan"])

    def __call__(self, item: tuple[int | None, Any] | Checked) -> list[Outcome]:
        opts, source = self.options, self.options.source_file
        if type(item) is Checked:  # checked on this read already (the run's prepare)
            line, row, got = item
        else:
            got = self.conv._check(item, source)
            line, row = item
        if isinstance(got, Rejected):
            return [Outcome(got, b"", got.source_file, got.line, got.example)]
        record, data = self.conv.render(row, got, self.names, line, source)
        example = {
            opts.text_col: row[opts.text_col],
            opts.label_col: row[opts.label_col],
            "template_id": record.meta["template_id"],
        }
        key = record_digest(record) if opts.dedup else b""
        return [Outcome(record, key, source, line, example, "", data)]


def build(options: ClassifyOptions, plan: ClassifyPlan | None = None) -> Pipeline:
    if plan is None:
        plan = ClassifyPlan(tuple(options.label_names or ()))
    return Pipeline(
        NAME,
        ConvertRows(options, plan),
        checks=(EmptyFields(), Placeholders()),
        sequential=(ExactDedup("duplicate_record"),) if options.dedup else (),
    )


def from_row(options: ClassifyOptions, row: dict[str, Any], line: int | None) -> tuple[int | None, Any]:
    """A dataset row -> the (line, row) the convert step takes (its checks run there)."""
    return line, row


def init_info(result: Result) -> None:
    """`result.labels_in` from the plan; `result.labels_out` counted as records are kept."""
    info = result.info
    info.setdefault("labels_out", Counter())
    p = result.plan
    if "labels_in" not in info:
        info["labels_in"] = Counter(dict(p.labels_in)) if isinstance(p, ClassifyPlan) else Counter()


def observer(options: ClassifyOptions):
    """Labels of the records kept (`result.labels_out`)."""
    counts: list[Counter] = []  # the run's Counter, looked up once

    def observe(o: Outcome, result: Result) -> None:
        item = o.item
        if type(item) is Record:
            if not counts:
                counts.append(result.info.setdefault("labels_out", Counter()))
            counts[0][item.meta["label"]] += 1

    return observe


def finish(options: ClassifyOptions, result: Result) -> None:
    init_info(result)
    dist = ", ".join(f"{k} {v}" for k, v in sorted(result.info["labels_out"].items()))
    result.report.notes.append(f"labels written: {dist}")


TASK = register(
    Task(NAME, build, plan=plan, from_row=from_row, observer=observer, finish=finish, prepare=prepare)
)
