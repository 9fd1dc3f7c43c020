"""NER as a registered task: tagged sentences -> records, checked, quota on empties, exact dedup.

- **prepare** (each read, in input order, only when a quota is possible): each sentence numbered
  with how many sentences before it surely have no entity (`Numbered`), so the convert step can
  reject a sentence over the quota without rendering it (what c4f1698 did; rendering it first cost
  per-type ~6% of its CPU on CoNLL).
- **plan** (a first read of the whole input): the tag scheme by vote, the input's label set (its
  words checked against the answer syntax), how many sentences have an entity, and the empty quota:
  how many sentences without entities may be kept (`--max-empty-ratio`, or per-type's empty share)
  and how often a per-type record asks about a type its sentence lacks (`absent_rate`).
- **convert** (per sentence, pure): decode the tags (repairs travel as the outcome's `tally`), then
  render one record (`NerConverter.convert`), or reject the sentence as `bad_tag` / `ambiguous_target`.
- **checks**: `EmptyFields`, `Placeholders` (every value rendered into the template is data: the
  sentence, the answer, the type list, the format hint; a placeholder only the template brings in is
  a defect).
- **sequential**: the empty quota (`too_many_empty`), then exact dedup (`duplicate_record`: CoNLL
  repeats whole sentences, 5.5% of testa's records were exact copies of an earlier one).

The semantics (linearisation, template choice, label words) stay in `converters/ner.py`.
"""

from __future__ import annotations

import copy
import functools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..converters.ner import AmbiguousTarget, NerConverter, NerOptions, sentence_entities
from ..converters.ner_tags import SchemeVote
from ..errors import InputError
from ..gcpause import collector_paused
from ..io.tagged import TaggedSentence, row_to_sentence
from ..pipeline.outcome import Outcome, rejection
from ..pipeline.registry import Task, register
from ..pipeline.run import Pipeline, Result
from ..pipeline.steps import EmptyFields, ExactDedup, Placeholders, record_digest
from ..schema import Record, Rejected
from .common import cached

NAME = "ner"
# In an outcome's `example` (never in a Rejected's: `outcome.rejection` drops "_" keys): the sentence
# had no entity, so the empty quota counts it. Set by the convert step where the sentence was decoded
# (any process), read in the parent.
NO_ENTITIES = "_no_entities"
REPAIRED = "repaired:"  # tally prefix of a tag repair ("repaired:i_starts_entity")


@dataclass(frozen=True)
class NerPlan:
    """What the first read decided, for every worker: nothing here changes during the run."""

    scheme: str
    labels: tuple[str, ...]  # the input's entity types, sorted; empty: not NER data
    sentences_with_entities: int = 0
    # sentences without entities that may be kept (None: all); the rest are `too_many_empty`
    empties_allowed: int | None = None
    # per-type: the chance a sentence with entities is asked about a type it lacks
    absent_rate: float = 0.0


def converter(options: NerOptions) -> NerConverter:
    return cached(NerConverter, options)


# --- prepare -----------------------------------------------------------------------------------


class Numbered(NamedTuple):
    """A read sentence and how many sentences before it surely have no entity (every tag "O", or no
    span): they all count in the empty quota, so once `empties_before` reaches the quota's
    allowance, this sentence, if it has no entity, is over the quota whatever comes between."""

    empties_before: int
    sent: TaggedSentence


make_numbered = functools.partial(tuple.__new__, Numbered)  # without NamedTuple's Python __new__


class NumberEmpties:
    """`prepare` for a run with an empty quota: numbers sentences in input order (restarted by
    `TwoPass` at the start of each read); a reader's rejection passes as it is."""

    def __init__(self) -> None:
        self.count = 0

    def restart(self) -> None:
        self.count = 0

    def __call__(self, item: Any) -> Any:
        if isinstance(item, Rejected):
            return item
        n = self.count
        spans = item.char_spans
        if (not spans) if spans is not None else item.tags.count("O") == len(item.tags):
            self.count = n + 1
        return make_numbered((n, item))


def prepare(options: NerOptions) -> NumberEmpties | None:
    """Number the sentences when the options allow a quota (none: nothing to skip)."""
    if options.max_empty_ratio is not None or (
        options.target == "per-type" and options.empty_share is not None
    ):
        return NumberEmpties()
    return None


# --- plan ------------------------------------------------------------------------------------


def plan(options: NerOptions, items: Iterable[TaggedSentence | Rejected]) -> NerPlan:
    """The scheme, label set and empty quota, from one read of every sentence."""
    conv = converter(options)  # option and pool errors before anything is read
    vote = SchemeVote() if options.scheme == "auto" else None
    tags: set[str] = set()
    labels: set[str] = set()
    non_empty = sentences = 0
    with collector_paused():
        for sent in items:
            if isinstance(sent, Rejected):
                continue
            if type(sent) is Numbered:
                sent = sent[1]
            sentences += 1
            if sent.char_spans is not None:
                labels.update(lab for _, _, lab in sent.char_spans)
                non_empty += bool(sent.char_spans)
                continue
            sent_tags = sent.tags
            if sent_tags.count("O") == len(sent_tags):
                continue
            non_empty += 1
            tags.update(sent_tags)
            if vote is not None:
                vote.add(sent_tags)
    scheme = vote.scheme() if vote is not None else options.scheme
    # types from well-formed tags only: a file that is not NER data ("Hello world." in the tag
    # column) has no types, rather than one per line
    labels.update(tag[2:] for tag in tags if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESLU")
    label_set = sorted(labels)
    conv._check_label_words(label_set)
    empties_allowed = None
    if options.max_empty_ratio is not None:
        r = options.max_empty_ratio
        empties_allowed = int(non_empty * r / (1 - r)) if r < 1 else None
    absent_rate = options.empty_share or 0.0
    share = options.empty_share
    if options.target == "per-type" and share is not None:
        empties_allowed, absent_rate = plan_empty_share(
            options, share, sentences - non_empty, non_empty, empties_allowed
        )
    return NerPlan(scheme, tuple(label_set), non_empty, empties_allowed, absent_rate)


def plan_empty_share(
    options: NerOptions, share: float, without: int, with_entities: int, cap: int | None
) -> tuple[int | None, float]:
    """Per-type: how many sentences without entities to keep, and how often to ask a sentence with
    entities about a type it lacks, so that `share` of the records answer "None". Sentences without
    entities beyond the share are the ones rejected, unless --max-empty-ratio is given: it then
    decides (1 keeps them all). Returns (the cap, None: keep them all; the absent rate)."""
    fits = int(with_entities * share / (1 - share))  # empties that `share` of the records allows
    if options.max_empty_ratio is None and without > fits:
        cap = fits
    kept = without if cap is None else min(without, cap)
    total = kept + with_entities
    absent_rate = max(0.0, (share * total - kept) / with_entities) if with_entities else 0.0
    return cap, absent_rate


def batch_plan(options: NerOptions, label_set: Iterable[str]) -> NerPlan:
    """A plan without a first read (the batched adapter over rows it sees a batch at a time): the
    scheme must be explicit, the label set given; every sentence without entities is kept and a
    sentence with entities is asked about a type it lacks at `empty_share`."""
    return NerPlan(options.scheme, tuple(label_set), absent_rate=options.empty_share or 0.0)


# --- record steps ----------------------------------------------------------------------------


class ConvertSentences:
    """The convert step: one sentence -> its record, or its rejection (picklable by options + plan)."""

    name = "convert"

    def __init__(self, options: NerOptions, plan: NerPlan) -> None:
        self.options, self.plan = options, plan
        conv = copy.copy(converter(options))  # shares the loaded pools; the plan's rate is its own
        conv.absent_rate = plan.absent_rate
        conv._check_label_words(list(plan.labels))
        self.conv = conv
        self.labels = list(plan.labels)
        self.dedup = options.dedup
        self._repairs: Counter = Counter()
        # a `Numbered` sentence without entities with at least this many sure empties before it is
        # over the quota (EmptyQuota would reject it): rejected here, before rendering
        self.allowed = plan.empties_allowed
        self.quota_detail = quota_detail(options) if self.allowed is not None else ""

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "plan": self.plan}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"], state["plan"])

    def _tally(self) -> tuple[str, ...]:
        repairs = self._repairs
        if not repairs:
            return ()
        out = tuple(REPAIRED + kind for kind in repairs.elements())
        repairs.clear()
        return out

    def __call__(self, item: TaggedSentence | Numbered) -> list[Outcome]:
        if type(item) is Numbered:
            before, sent = item
        else:
            before, sent = -1, item
        source_file, line = sent.source_file, sent.line
        try:
            text, entities = sentence_entities(sent, self.plan.scheme, self._repairs)
        except ValueError as exc:  # an unknown tag: the repairs decoded before it still count
            tally = self._tally()
            return [
                rejection(
                    "bad_tag", str(exc), step=self.name, source_file=source_file, line=line, tally=tally
                )
            ]
        tally = self._tally() if self._repairs else ()
        if not entities and self.allowed is not None and before >= self.allowed:
            out = over_quota(text, self.quota_detail, source_file, line, tally)
            # the outcome's own example (not the rejection's): EmptyQuota sees it over the quota and
            # rejects it alike
            out.example = {"text": text, NO_ENTITIES: True}
            return [out]
        try:
            record, data = self.conv.render(text, entities, self.labels, sent)
        except AmbiguousTarget as exc:
            ex = {"text": text}
            item = Rejected(
                reason="ambiguous_target", detail=str(exc), source_file=source_file, line=line, example=ex
            )
            example = {"text": text, NO_ENTITIES: True} if not entities else ex
            return [Outcome(item, b"", source_file, line, example, self.name, tally=tally)]
        example: dict[str, Any] = {"text": text, "template_id": record.meta["template_id"]}
        if not entities:
            example[NO_ENTITIES] = True
        key = record_digest(record) if self.dedup else b""
        return [Outcome(record, key, source_file, line, example, "", data, tally)]


# --- sequential steps ------------------------------------------------------------------------


class EmptyQuota:
    """At most `allowed` sentences without entities, the first ones in input order; the rest are
    rejected as `too_many_empty`. A sentence takes its place in the quota before it is rendered,
    so one rejected later (an ambiguous inline answer, a failed check) still used its place."""

    name = "empty_quota"

    def __init__(self, allowed: int, detail: str) -> None:
        self.allowed, self.detail = allowed, detail

    def __call__(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        kept, allowed, detail = 0, self.allowed, self.detail
        for o in outcomes:
            if o.example.get(NO_ENTITIES):
                if kept >= allowed:
                    yield over_quota(o.example["text"], detail, o.source_file, o.line, o.tally)
                    continue
                if o.step == self.name:  # the convert step decided it was over (see Numbered)
                    raise RuntimeError(f"line {o.line}: rejected as over the empty quota while within it")
                kept += 1
            yield o


def over_quota(text: str, detail: str, source_file: str | None, line: int | None, tally: tuple) -> Outcome:
    """The `too_many_empty` rejection of a sentence without entities over the quota."""
    return rejection(
        "too_many_empty",
        detail,
        step=EmptyQuota.name,
        source_file=source_file,
        line=line,
        example={"text": text},
        tally=tally,
    )


def quota_detail(options: NerOptions) -> str:
    if options.max_empty_ratio is not None or options.target != "per-type":
        return "sentence without entities over --max-empty-ratio"
    return f"sentence without entities over the per-type empty share {options.empty_share:g}"


def build(options: NerOptions, plan: NerPlan | None = None) -> Pipeline:
    if plan is None:
        plan = batch_plan(options, ())
    sequential: tuple[Any, ...] = ()
    if plan.empties_allowed is not None:
        sequential += (EmptyQuota(plan.empties_allowed, quota_detail(options)),)
    if options.dedup:
        sequential += (ExactDedup("duplicate_record"),)
    return Pipeline(
        NAME, ConvertSentences(options, plan), checks=(EmptyFields(), Placeholders()), sequential=sequential
    )


def from_row(options: NerOptions, row: dict[str, Any], line: int | None) -> TaggedSentence | Rejected:
    """A dataset row ({"tokens", "tags"}, {"text", "entities"}; integer tags named by
    `options.tag_names`) -> the sentence the convert step takes, or the row's rejection."""
    try:
        return row_to_sentence(row, tag_names=options.tag_names, line=line)
    except InputError as exc:
        return Rejected(
            reason=exc.reason,
            detail=exc.message,
            line=line,
            example={"raw": json.dumps(row, ensure_ascii=False, default=str)},
        )


# --- the task's own counts and notes -----------------------------------------------------------


def init_info(result: Result) -> None:
    """`result.scheme`, `.labels`, `.sentences_with_entities` from the plan; `.repairs` counted live."""
    info = result.info
    info.setdefault("repairs", Counter())
    info.setdefault("empty_answers", 0)
    p = result.plan
    if isinstance(p, NerPlan):
        info.setdefault("scheme", p.scheme)
        info.setdefault("labels", list(p.labels))
        info.setdefault("sentences_with_entities", p.sentences_with_entities)


def observer(options: NerOptions):
    """Tag repairs (from every outcome's tally, kept or not) and empty answers of the records kept."""

    def observe(o: Outcome, result: Result) -> None:
        info = result.info
        if o.tally:
            repairs = info.get("repairs")
            if repairs is None:
                repairs = info["repairs"] = Counter()
            repairs.update(t[len(REPAIRED) :] for t in o.tally if t.startswith(REPAIRED))
        item = o.item
        if type(item) is Record:
            meta = item.meta
            if meta["target"] == "inverted":
                return
            asked, entities = meta["asked_type"], meta["entities"]
            # empty: no entity at all, or (per-type) none of the asked type (a loop, not a generator)
            empty = True
            for _, lab in entities:
                if asked is None or lab == asked:
                    empty = False
                    break
            if empty:
                info["empty_answers"] = info.get("empty_answers", 0) + 1

    return observe


def finish(options: NerOptions, result: Result) -> None:
    init_info(result)
    report = result.report
    if report.written:
        empty = result.info["empty_answers"]
        target = options.empty_share if options.target == "per-type" else None
        report.notes.append(
            f"empty answers: {empty} of {report.written} ({empty / report.written:.1%})"
            + (f", per-type target {target:.0%}" if target is not None else "")
        )


TASK = register(
    Task(NAME, build, plan=plan, from_row=from_row, observer=observer, finish=finish, prepare=prepare)
)
