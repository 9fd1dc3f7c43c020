"""The Python entry points. The CLI calls exactly these, so both give the same bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .converters.translation import (
    Outcome,
    TranslationConverter,
    TranslationOptions,
    finalize,
    outcomes_from_rows,
)
from .io.readers import Item, iter_pairs, read_parallel
from .quality.report import Report
from .schema import Example, Record, Rejected


@dataclass
class Result:
    """What a conversion produced: kept records, rejected examples and the counts."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    report: Report = field(default_factory=lambda: Report(task="translation"))


def run_items(
    items: Iterable[Item],
    convert: Callable[[Example], list[Outcome]],
    *,
    report: Report,
    dedup: bool = True,
) -> Iterator[Record | Rejected]:
    """Convert a stream of read items, count everything, and yield records and rejections in order."""

    def outcomes() -> Iterator[Outcome]:
        for item in items:
            report.read += 1
            if isinstance(item, Rejected):  # the reader already refused it (on_error=skip)
                yield Outcome(item, source_file=item.source_file, line=item.line, example=item.example)
            else:
                yield from convert(item)

    return _count(finalize(outcomes(), dedup=dedup), report)


def _count(stream: Iterable[Outcome], report: Report) -> Iterator[Record | Rejected]:
    """Count what is written (by template and instruction language) and what is rejected (by reason)."""
    for o in stream:
        if isinstance(o.item, Record):
            report.written += 1
            report.templates[o.example.get("template_id", "?")] += 1
            report.languages[o.example.get("instruction_lang", "?")] += 1
        else:
            report.reject(o.item)
        yield o.item


def _split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(TranslationOptions)}
    opts = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    if "templates" in opts:
        opts["templates"] = tuple(str(t) for t in opts["templates"])
    return opts, rest


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
    converter = TranslationConverter(TranslationOptions(src_lang=src_lang, tgt_lang=tgt_lang, **opts))
    report = Report(task="translation")
    result = Result(report=report)

    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        datasets = None
    if datasets is not None and isinstance(data, datasets.Dataset):
        stream = _count(
            finalize(_map_dataset(data, converter, num_proc, report), dedup=converter.options.dedup), report
        )
    else:
        if isinstance(data, (str, Path)):
            items = read_parallel(
                data,
                src_lang=src_lang,
                tgt_lang=tgt_lang,
                src_col=converter.options.src_col,
                tgt_col=converter.options.tgt_col,
                on_error=on_error,
            )
        else:
            items = iter_pairs(
                data,
                src_lang=src_lang,
                tgt_lang=tgt_lang,
                src_col=converter.options.src_col,
                tgt_col=converter.options.tgt_col,
                on_error=on_error,
            )
        stream = run_items(items, converter.convert, report=report, dedup=converter.options.dedup)
    for item in stream:
        (result.records if isinstance(item, Record) else result.rejected).append(item)
    return result


def _map_dataset(
    ds: Any, converter: TranslationConverter, num_proc: int | None, report: Report
) -> Iterator[Outcome]:
    report.read += len(ds)
    mapped = ds.map(
        converter,
        batched=True,
        with_indices=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=ds.column_names,
        load_from_cache_file=False,
        desc="translate",
    )
    return outcomes_from_rows(mapped)


def translation_batch_fn(src_lang: str, tgt_lang: str, **options: Any) -> TranslationConverter:
    """A picklable `fn(batch, indices)` for `Dataset.map(batched=True, with_indices=True)`.

    Its output columns (`kind`, `payload`, `dedup_key`) go back through
    `instructgen.collect(mapped)` for the duplicate pass, so the result equals `translate()`.
    """
    opts, rest = _split_options(options)
    if rest:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(rest))}")
    return TranslationConverter(TranslationOptions(src_lang=src_lang, tgt_lang=tgt_lang, **opts))


def collect(mapped: Iterable[dict[str, Any]], *, dedup: bool = True) -> Result:
    """Finish a `Dataset.map` of a batch function: duplicate pass, split, counts."""
    report = Report(task="translation")
    result = Result(report=report)
    for item in _count(finalize(outcomes_from_rows(mapped), dedup=dedup), report):
        (result.records if isinstance(item, Record) else result.rejected).append(item)
    report.read = len(result.records) + len(result.rejected)
    return result
