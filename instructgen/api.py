"""The Python entry points. The CLI calls exactly these, so both give the same bytes.

Every task runs through the pipeline core (`instructgen.pipeline`): these functions only turn
their arguments into a task's options and a source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from .converters.translation import TranslationOptions
from .io.readers import iter_pairs, read_parallel
from .pipeline import registry
from .pipeline.executors import BatchFn
from .pipeline.run import Pipeline, Result, Run
from .pipeline.steps import Check
from .quality.report import Report
from .schema import Record, Rejected

__all__ = ["Result", "collect", "run_items", "translate", "translation_batch_fn"]


def run_items(
    items: Iterable[Any],
    convert: Callable[[Any], list[Any]],
    *,
    report: Report,
    dedup: bool = True,
) -> Iterator[Record | Rejected]:
    """Translation outcomes for read items through the core's run loop (kept for older callers:
    `convert` is a `TranslationConverter.convert`)."""
    from .tasks.translation import dedup_step

    class _Convert:
        name = "convert"

        def __call__(self, item: Any) -> list[Any]:
            return convert(item)

    from .pipeline.steps import EmptyFields, Placeholders

    checks: tuple[Check, ...] = (EmptyFields(), Placeholders())
    pipeline = Pipeline("translation", _Convert(), checks, (dedup_step(),) if dedup else ())
    return iter(Run("translation", items, lambda _plan: pipeline, result=Result(report=report)))


def _split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(TranslationOptions)}
    opts = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    if "templates" in opts:
        opts["templates"] = tuple(str(t) for t in opts["templates"])
    return opts, rest


def translation_options(src_lang: str, tgt_lang: str, **options: Any) -> TranslationOptions:
    opts, rest = _split_options(options)
    if rest:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(rest))}")
    return TranslationOptions(src_lang=src_lang, tgt_lang=tgt_lang, **opts)


def translation_source(data: Any, options: TranslationOptions, on_error: str = "raise", **read: Any) -> Any:
    """What `translate` reads: a function that opens a file afresh, the pairs of an iterable, or a Dataset."""
    if registry.is_dataset(data):
        return data
    if isinstance(data, (str, Path)) or read.get("src_file"):
        return lambda: read_parallel(
            data,
            src_lang=options.src_lang,
            tgt_lang=options.tgt_lang,
            src_col=options.src_col,
            tgt_col=options.tgt_col,
            on_error=on_error,
            **read,
        )
    return iter_pairs(
        data,
        src_lang=options.src_lang,
        tgt_lang=options.tgt_lang,
        src_col=options.src_col,
        tgt_col=options.tgt_col,
        on_error=on_error,
    )


def translate(
    data: Any,
    src_lang: str,
    tgt_lang: str,
    *,
    num_proc: int | None = None,
    on_error: str = "raise",
    **options: Any,
) -> Result:
    """Turn parallel data into translation instruction records.

    `data` is a file path (any format `instructgen translate` reads), an iterable of
    `(source, target)` tuples or dicts, or a `datasets.Dataset` (mapped with `num_proc`
    workers; the output is identical for any `num_proc`). Other keyword arguments are the
    fields of `TranslationOptions` (seed, direction, instruction_lang, templates, langid,
    max_ratio, dedup, meta, ...).
    """
    opts, rest = _split_options(options)
    if rest:
        raise TypeError(f"translate() got unexpected option(s): {', '.join(sorted(rest))}")
    task_options = TranslationOptions(src_lang=src_lang, tgt_lang=tgt_lang, **opts)
    source = translation_source(data, task_options, on_error)
    return registry.run_task("translation", task_options, source, num_proc=num_proc)


def translation_batch_fn(src_lang: str, tgt_lang: str, **options: Any) -> BatchFn:
    """A picklable `fn(batch, indices)` for `Dataset.map(batched=True, with_indices=True)`.

    Its output columns (`kind`, `payload`, `dedup_key`) go back through
    `instructgen.collect(mapped)` for the duplicate pass, so the result equals `translate()`.
    """
    return registry.batch_fn("translation", translation_options(src_lang, tgt_lang, **options))


def collect(mapped: Iterable[dict[str, Any]], *, dedup: bool = True, task: str = "translation") -> Result:
    """Finish a `Dataset.map` of a batch function: duplicate pass, split, counts.

    `dedup=False` skips the duplicate pass (the options of the mapped function decide the rest).
    """
    if task != "translation":
        raise TypeError("collect(task=...) is for translation; use pipeline.registry.collect for others")
    from .tasks.translation import dedup_step

    pipeline = Pipeline("translation", _NoConvert(), sequential=(dedup_step(),) if dedup else ())
    return registry.collect("translation", None, mapped, pipeline=pipeline)


class _NoConvert:
    """The convert step of a run whose record steps already ran elsewhere (`collect`)."""

    name = "convert"

    def __call__(self, item: Any) -> list[Any]:
        raise AssertionError("collect() only runs the sequential steps")
