"""Text (or text pair) + label -> classification instruction records.

Labels are strings, integers, or digit strings with names from `label_names` (or a datasets
ClassLabel). Each label is verbalised in the pool's language (`verbalise`, default: the
label's name). Templates with `{{ options }}` show the choices in a seeded style (header x
marker); when the markers are letters or numbers the answer repeats the same marker and text
("B. positive"), so options and answers never disagree.

Every record lets the model know the label set (issue 13 item 9): a template whose prompt shows
neither the options nor every label's words is refused before anything is written, and labels
that are all integers with no names (SST-2's "0"/"1") stop the run instead of becoming the
answers "0" and "1".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..determinism import choose_index, content_key, stable_hash
from ..errors import ConfigError, InputError
from ..io.readers import json_type, not_an_object  # not_an_object: re-exported for old importers
from ..io.registry import open_input
from ..pipeline.run import Result
from ..quality.report import Report
from ..schema import Record, Rejected
from ..templates.pool import PoolSet
from .twopass import Source

TASK = "classification"

Row = tuple[int, Any] | Rejected  # (line, row) from a reader, or the reader's rejection

# The options header and the inline list separator of each language are pool data: the tables
# `option_headers` and `list_separator` of task_templates/classification/<lang>.yaml (TaskSpec.tables).
# (name, marker for option i) ; lettered/numbered markers are repeated in the answer
MARKERS = [
    ("dash", lambda i: "- ", False),
    ("letter_dot", lambda i: f"{chr(65 + i)}. ", True),
    ("letter_paren", lambda i: f"({chr(65 + i)}) ", True),
    ("number_dot", lambda i: f"{i + 1}. ", True),
    ("inline", None, False),
]
NAMES_HINT = "give the names in id order with --label-names, or a dataset whose label column is a ClassLabel"


@dataclass(frozen=True)
class ClassifyOptions:
    seed: int = 0
    instruction_lang: str = "en"
    text_col: str = "text"
    text2_col: str | None = None
    label_col: str = "label"
    label_names: tuple[str, ...] | None = None
    verbalise: tuple[tuple[str, str], ...] = ()  # (label name, words)
    templates: tuple[str, ...] = ()
    builtin_templates: bool = True
    inverted_ratio: float = 0.0
    meta: bool = False
    # "shuffled": each record shows the options in its own seeded order, so a letter is not a
    # proxy for a label (with a fixed order every "negative" is "A"); "fixed": label-name order.
    option_order: str = "shuffled"
    dedup: bool = True  # drop records that repeat an earlier one exactly (duplicate_record)
    # where the rows come from, for rejections, meta and errors (the CLI's INPUT; None for a list)
    source_file: str | None = None


def iter_rows(
    path: str | Path, *, input_format: str | None = None, on_error: str = "raise", split: str | None = None
) -> Iterator[tuple[int, dict[str, Any]] | Rejected]:
    """(line, row) from CSV/TSV with a header, JSONL, a JSON array, or a save_to_disk folder: the reader
    registry's `rows` kind (quoting checked against physical lines, encodings detected, a row that is not
    an object a counted `malformed_json`, skip-or-raise handled once)."""
    yield from open_input("rows", path, input_format=input_format, on_error=on_error, split=split)


class ClassifyRun(Result):
    """The pipeline's one `Result`, with classification's report name by default (kept for older
    callers). `labels_in` (every checked row's label, from the planning pass) and `labels_out`
    (labels of the records written, counted as they are) read as attributes from `info`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("report", Report(task=TASK))
        super().__init__(*args, **kwargs)


class ClassificationConverter:
    def __init__(self, options: ClassifyOptions) -> None:
        self.options = options
        self.pools = PoolSet.load(TASK, options.templates, include_builtin=options.builtin_templates)
        self.lang = self.pools.resolve_language(options.instruction_lang)
        templates = self.pools.by_language[self.lang]
        self.headers: list[str] = self.pools.table("option_headers", self.lang)
        self.list_sep: str = self.pools.table("list_separator", self.lang)
        self.originals = [t for t in templates if t.spec.kind == "original"]
        self.inverted = [t for t in templates if t.spec.kind == "inverted"]
        if options.option_order not in ("shuffled", "fixed"):
            raise ConfigError(f"option_order must be 'shuffled' or 'fixed', not '{options.option_order}'")
        self.verbal = dict(options.verbalise)
        self.names: list[str] | None = list(options.label_names) if options.label_names else None
        self._shown_checked: set[tuple[str, ...]] = set()
        self._names_text: dict[tuple[str, ...], str] = {}  # the `label_names` value, per label list

    def label_name(self, value: Any, path: str | None, line: int | None) -> str:
        """The label's name: index into label_names for ints (and digit strings), else the string.

        Text is the common case and is tested first: this runs for every row of both passes."""
        names = self.names
        if type(value) is str:
            text = value.strip()
            if not text:  # "" and "   " alike: a whitespace label is no label
                raise self._label_error("empty label", path, line, "missing_label")
            if names and text.lstrip("-").isdigit():
                return self._indexed(int(text), path, line)
            if names is not None and text not in names:
                raise self._label_error(
                    f"label '{text}' is not one of {', '.join(names)}", path, line, "unknown_label"
                )
            return text
        if isinstance(value, bool) or value is None:
            raise self._label_error("empty label", path, line, "missing_label")
        if isinstance(value, int):
            return self._indexed(value, path, line)
        if isinstance(value, str):  # a str subclass: as text
            return self.label_name(str(value), path, line)
        # a list or object would become a new class "['a', 'b']" shown in every option list
        raise self._label_error(
            f"expected a label (text or integer), found {json_type(value)}", path, line, "bad_field"
        )

    def _indexed(self, idx: int, path: str | None, line: int | None) -> str:
        names = self.names
        if names is None:
            raise self._label_error(
                f"integer labels need their names (--label-names neg,pos): {NAMES_HINT}",
                path,
                line,
                "missing_label_names",
            )
        if not 0 <= idx < len(names):
            raise self._label_error(
                f"label {idx} is outside the {len(names)} label names", path, line, "unknown_label"
            )
        return names[idx]

    def _label_error(self, message: str, path: str | None, line: int | None, reason: str) -> InputError:
        return InputError(message, path=path, line=line, field=self.options.label_col, reason=reason)

    def run(self, rows: Source[Row], source: str | None = None) -> ClassifyRun:
        """Every record and rejection in memory: the Python API's form (see `stream`)."""
        return run_classification(replace(self.options, source_file=source), rows)

    def stream(
        self, rows: Source[Row], run: ClassifyRun, source: str | None = None
    ) -> Iterator[Record | Rejected]:
        """Check every row on a first read (the option list is the set of labels in the whole
        file), then return an iterator that reads again and converts row by row, yielding records
        and rejections in input order, so memory does not grow with the input. Both go through the
        pipeline core: the `classification` task (tasks/classification.py) on `registry.start`.

        `rows` is best a function that opens the input afresh (see `TwoPass`). `run` gets the
        counts; after this call `run.report.read` is what the iterator accounts for.
        """
        return stream_classification(replace(self.options, source_file=source), rows, run)

    def _refuse_unnamed_integers(self, labels: Counter, source: str | None) -> None:
        """Labels that are all integers ("0", "1" in a CSV) with no names would be the answers
        "0"/"1" and the options "0, 1": a model learns nothing from them. A label with --verbalise
        words (a rating "5" -> "5 stars") has a meaning and passes."""
        if self.names is not None or not labels:
            return
        if all(n.lstrip("-").isdigit() and n not in self.verbal for n in labels):
            shown = ", ".join(sorted(labels, key=lambda n: int(n))[:6])
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}the labels are integers ({shown}) with no names, so the answers would be "
                f"numbers: {NAMES_HINT}"
            )

    def check_templates_show_labels(self, names: list[str]) -> None:
        """Refuse an original template whose prompt shows neither the options nor every label's
        words ("Categorize this text." -> "positive": the model cannot know the label set). Checked
        once per label set, with an empty text, before a record is written."""
        if tuple(names) in self._shown_checked:
            return
        words = [self.words(n) for n in names]
        for t in self.originals:
            block, _, _, _ = self.options_block(names, "")
            values = {
                "text": "",
                "text2": "",
                "label": words[0] if words else "",
                "options": block,
                "label_names": self.list_sep.join(words),
            }
            rendered = t.render(values)
            prompt = f"{rendered['instruction']}\n{rendered['input']}"
            hidden = [w for w in words if w not in prompt]
            if hidden:
                where = f"{t.path}:{t.line}" if t.line else t.path
                raise ConfigError(
                    f"{where}: template {t.id} does not show the label set (no '{hidden[0]}' in its "
                    "prompt): use {{ options }} or {{ label_names }}, or name every label"
                )
        self._shown_checked.add(tuple(names))

    def _check(
        self, item: tuple[int | None, Any], source: str | None, *, first: bool = False
    ) -> str | Rejected:
        """The row's label name, or the rejection of a row without a usable text and label. A
        missing column on the first row is a wrong --text-col/--label-col, so it is raised."""
        opts = self.options
        line, row = item
        if type(row) is dict:  # the usual row (both passes check every row): text columns and a text label
            text, label = row.get(opts.text_col), row.get(opts.label_col)
            text2 = row.get(opts.text2_col) if opts.text2_col else None
            if (
                type(text) is str
                and type(label) is str
                and (text2 is None or type(text2) is str)
                and text.strip()
            ):
                try:
                    return self.label_name(label, source, line)
                except InputError as exc:
                    return self._rejected(exc, row, source, line, first)
        try:
            if not isinstance(row, dict):
                raise not_an_object(row, source, line)
            for what, col in (("text", opts.text_col), ("label", opts.label_col)):
                if col not in row:
                    raise InputError(
                        f"no {what} column '{col}' (the row has {', '.join(map(str, row))})",
                        path=source,
                        line=line,
                        field=col,
                        reason="missing_field",
                    )
            name = self.label_name(row[opts.label_col], source, line)
            text = row[opts.text_col]
            for col in (opts.text_col, opts.text2_col):
                value = row.get(col) if col else None
                if value is not None and not isinstance(value, str):  # would be written as its Python repr
                    raise InputError(
                        f"expected text, found {json_type(value)}",
                        path=source,
                        line=line,
                        field=col,
                        reason="bad_field",
                    )
            if not (text or "").strip():
                raise InputError(
                    "empty text", path=source, line=line, field=opts.text_col, reason="empty_text"
                )
        except InputError as exc:
            return self._rejected(exc, row, source, line, first)
        return name

    def _rejected(
        self, exc: InputError, row: Any, source: str | None, line: int | None, first: bool
    ) -> Rejected:
        """The row's rejection; on the first row a missing column or label names stop the run instead."""
        if first and exc.reason in ("missing_field", "missing_label_names"):
            raise exc
        opts = self.options
        return Rejected(
            reason=exc.reason,
            detail=exc.message,
            source_file=source,
            line=line,
            example=(
                {k: row.get(k) for k in (opts.text_col, opts.label_col)}
                if isinstance(row, dict)
                else {"raw": row}
            ),
        )

    def words(self, name: str) -> str:
        return self.verbal.get(name, name)

    def names_text(self, names: list[str]) -> str:
        """Every label's words, joined (the `label_names` variable): one label list per run, so
        joined once rather than per record."""
        key = tuple(names)
        text = self._names_text.get(key)
        if text is None:
            text = self._names_text[key] = self.list_sep.join(self.words(n) for n in names)
        return text

    def option_order(self, names: list[str], key: str) -> list[str]:
        if self.options.option_order == "fixed":
            return names
        seed = self.options.seed
        return sorted(names, key=lambda n: stable_hash(seed, TASK, key, "order", n))

    def options_block(self, names: list[str], key: str) -> tuple[str, str, Any, bool]:
        headers = self.headers
        header = headers[choose_index(len(headers), self.options.seed, TASK, key, "header")]
        style, marker, lettered = MARKERS[choose_index(len(MARKERS), self.options.seed, TASK, key, "marker")]
        if marker is None:
            block = header + " " + self.list_sep.join(self.words(n) for n in names)
        else:
            block = header + "\n" + "\n".join(marker(i) + self.words(n) for i, n in enumerate(names))
        return block, style, marker, lettered

    def convert(
        self, row: dict[str, Any], name: str, names: list[str], line: int | None, source: str | None
    ) -> Record:
        return self.render(row, name, names, line, source)[0]

    def render(
        self, row: dict[str, Any], name: str, names: list[str], line: int | None, source: str | None
    ) -> tuple[Record, tuple[str, ...]]:
        """The row's record, and every value rendered into its template (the text, the answer, the
        options, the label names): the data, for the placeholder check."""
        opts = self.options
        text = str(row[opts.text_col]).strip()
        text2 = str(row.get(opts.text2_col) or "").strip() if opts.text2_col else ""
        key = content_key(text, text2, name)
        label_words = self.words(name)
        inverted = (
            self.inverted
            and opts.inverted_ratio > 0
            and stable_hash(opts.seed, TASK, key, "inverted") / 2**64 < opts.inverted_ratio
        )
        pool = self.inverted if inverted else self.originals
        template = pool[choose_index(len(pool), opts.seed, TASK, key, "template")]
        style = None
        answer = label_words
        block = ""
        shown: list[str] | None = None
        if "options" in template.variables() and not inverted:
            shown = self.option_order(names, key)
            block, style, marker, lettered = self.options_block(shown, key)
            if lettered:
                answer = marker(shown.index(name)) + label_words
        full_text = f"{text}\n{text2}" if text2 else text
        values = {
            "text": full_text,
            "text2": text2,
            "label": answer,
            "options": block,
            "label_names": self.names_text(names),
        }
        rendered = template.render(values)
        meta = {
            "template_id": template.id,
            "label": name,
            "answer": answer,
            "options_style": style,
            "options": shown,  # label names in the order shown, None when the prompt has no options
            "inverted": bool(inverted),
            "source_file": source,
            "line": line,
        }
        record = Record(
            instruction=rendered["instruction"], input=rendered["input"], output=rendered["output"], meta=meta
        )
        return record, tuple(values.values())


def classify(
    data: Any,
    *,
    input_format: str | None = None,
    on_error: str = "raise",
    num_proc: int | None = None,
    **options: Any,
) -> ClassifyRun:
    """Classification records from a file (CSV/TSV/JSONL/JSON/save_to_disk), a list of dicts, or a
    datasets.Dataset (ClassLabel names are used when `label_names` is not given).

    Other keyword arguments are `ClassifyOptions` fields (`dedup=False` keeps exact duplicate
    records); `num_proc` runs the record steps in that many processes, with the same result."""
    opts, rows = classification_input(data, input_format=input_format, on_error=on_error, **options)
    return run_classification(opts, rows, num_proc=num_proc)


def classification_input(
    data: Any, *, input_format: str | None = None, on_error: str = "raise", **options: Any
) -> tuple[ClassifyOptions, Source[Row]]:
    """The task's options (a Dataset's ClassLabel names, the file as `source_file`) and the numbered
    rows of `data` (a function that reads them afresh, so that the run reads twice in flat memory)."""
    if "label_names" in options and options["label_names"] is not None:
        options["label_names"] = tuple(options["label_names"])
    if "verbalise" in options and isinstance(options["verbalise"], dict):
        options["verbalise"] = tuple(options["verbalise"].items())
    if "templates" in options:
        options["templates"] = tuple(options["templates"])
    if hasattr(data, "features") and hasattr(data, "column_names"):
        label_col = options.get("label_col", "label")
        feat = data.features.get(label_col)
        if options.get("label_names") is None and hasattr(feat, "names"):
            options["label_names"] = tuple(feat.names)
        return ClassifyOptions(**options), lambda: _numbered(data)
    if isinstance(data, (str, Path)):
        opts = ClassifyOptions(**{**options, "source_file": str(data)})
        return opts, lambda: iter_rows(data, input_format=input_format, on_error=on_error)
    if iter(data) is not data:  # a list: it can be read twice
        return ClassifyOptions(**options), lambda: _numbered(data)
    return ClassifyOptions(**options), _numbered(data)


def _numbered(rows: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    return ((i + 1, row) for i, row in enumerate(rows))


def stream_classification(
    options: ClassifyOptions, rows: Source[Row], run: ClassifyRun, *, num_proc: int | None = None
) -> Iterator[Record | Rejected]:
    """The `classification` task started on `rows` (the plan pass happens here), counting into
    `run`; the returned iterator adds the task's note once it is exhausted."""
    from ..pipeline import registry
    from ..tasks.classification import NAME, init_info

    return registry.stream(
        NAME, options, rows, before=init_info, num_proc=num_proc, shown=options.source_file, result=run
    )


def run_classification(
    options: ClassifyOptions, rows: Source[Row], *, num_proc: int | None = None
) -> ClassifyRun:
    """Every record and rejection of a `classification` task run, in memory."""
    run = ClassifyRun()
    for item in stream_classification(options, rows, run, num_proc=num_proc):
        run.add(item)
    return run


class ClassifyBatchFn:
    """A picklable `fn(batch) -> columns` for Dataset.map(batched=True); `label_names` fixes the
    option list so every worker renders the same options. A `rejected` column holds None for a
    record and "reason: detail" for a row that could not become one (empty texts then), as the
    converter would have rejected it: one bad row does not stop a long map.

    A thin alias kept for older callers: the record steps are the `classification` task's, run by
    the one batched adapter (`pipeline.registry.batch_fn`, whose own columns are `kind`/`payload`/
    `dedup_key` for `registry.collect`); this only renames its outcomes."""

    def __init__(self, options: ClassifyOptions) -> None:
        if not options.label_names:
            raise ConfigError("the batched classification function needs label_names (the option order)")
        self.options = options
        self._fn: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from ..tasks.common import record_columns

        if self._fn is None:
            from ..pipeline import registry
            from ..tasks.classification import NAME, ClassifyPlan

            plan = ClassifyPlan(tuple(self.options.label_names or ()))
            self._fn = registry.batch_fn(NAME, self.options, plan)
            self._fn.pipeline  # noqa: B018 - build now: a template hiding the labels fails the first batch
        return record_columns(self._fn.outcomes(batch))
