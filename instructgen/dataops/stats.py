"""What a dataset looks like before it goes to a trainer: sizes, lengths, languages, templates, labels.

Two inputs, one report:

- records (any layout, JSONL / JSON / parquet / save_to_disk): lengths in characters of the
  prompt (system, earlier turns, instruction and input) and the response, and with a tokenizer the
  same in tokens (the texts alone, without a prompt format: `tokenize` adds the format); the
  languages of prompt and response (from `meta.lang` where we wrote it, else detected with the
  project's fastText language ID); templates (`meta.template_id`), labels (`meta.label`), entity types
  (`meta.entities`), identity categories (`meta.category`); rejected reasons from a rejects file.
- a tokenized folder (`instructgen tokenize` output): sequence lengths, trained tokens (labels that
  are not -100) and their share, truncated rows, how full the rows are against `max_length`, and for
  unpacked data how full they would be if packed (the same best-fit-decreasing plan `--pack` uses).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.readers import iter_jsonl
from .rows import RowSet, load_rows

LANGID_LIMIT = 20000  # rows whose language is detected when meta does not say (34 us per text)


def describe(values: Sequence[float]) -> dict[str, float]:
    """count, mean, min, p50, p90, p99, max (nearest-rank percentiles)."""
    if not values:
        return {"count": 0}
    s = sorted(values)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))]

    return {
        "count": n,
        "mean": sum(s) / n,
        "min": s[0],
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": s[-1],
    }


@dataclass
class Stats:
    """Everything `stats` prints or plots; `to_json()` for machines."""

    source: str
    kind: str  # records | tokenized
    rows: int = 0
    layouts: Counter = field(default_factory=Counter)
    with_system: int = 0
    multi_turn: int = 0
    lengths: dict[str, list[int]] = field(default_factory=dict)  # "chars prompt" -> values
    tokenizer: str | None = None
    languages: Counter = field(default_factory=Counter)
    languages_from: str = ""
    counters: dict[str, Counter] = field(default_factory=dict)  # templates, labels, entity types, ...
    rejects: Counter = field(default_factory=Counter)
    rejects_file: str | None = None
    tokenized: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "rows": self.rows,
            "layouts": dict(self.layouts),
            "with_system": self.with_system,
            "multi_turn": self.multi_turn,
            "lengths": {k: describe(v) for k, v in self.lengths.items()},
            "tokenizer": self.tokenizer,
            "languages": dict(self.languages.most_common()),
            "counters": {k: dict(c.most_common()) for k, c in self.counters.items()},
            "rejects": dict(self.rejects.most_common()),
            "tokenized": self.tokenized,
            "notes": self.notes,
        }

    def table(self) -> str:
        """The compact text report printed on stdout."""
        out: list[str] = []
        if self.kind == "records":
            layouts = ", ".join(f"{k} {v}" for k, v in self.layouts.most_common())
            out.append(
                f"{self.source}: {self.rows} records ({layouts}); "
                f"{self.with_system} with a system prompt, {self.multi_turn} multi-turn"
            )
        else:
            t = self.tokenized
            out.append(
                f"{self.source}: tokenized, {self.rows} rows"
                + (f" packing {t['examples']} examples" if t.get("packed") else "")
                + f", format {t.get('format')}, max_length {t.get('max_length')}"
            )
        if self.lengths:
            out.append(f"  {'length':<22}{'mean':>8}{'min':>7}{'p50':>7}{'p90':>7}{'p99':>8}{'max':>8}")
            for name, values in self.lengths.items():
                d = describe(values)
                if not d["count"]:
                    continue
                out.append(
                    f"  {name:<22}{d['mean']:>8.1f}{d['min']:>7}{d['p50']:>7}{d['p90']:>7}{d['p99']:>8}{d['max']:>8}"
                )
        if self.kind == "tokenized":
            t = self.tokenized
            out.append(
                f"  trained tokens: {t['trained_tokens']} of {t['tokens']} ({t['trained_share']:.1%}); "
                f"truncated rows: {t['truncated']}; rows without a trained token: {t['no_trained']}"
            )
            if t.get("packed"):
                out.append(f"  packing efficiency: {t['fill']:.1%} of {t['rows']} x {t['max_length']} tokens")
            else:
                out.append(
                    f"  fill of max_length: {t['fill']:.1%}; packed it would be {t['pack_rows']} rows "
                    f"at {t['pack_efficiency']:.1%} (--pack)"
                )
        if self.languages:
            shown = ", ".join(f"{k} {v}" for k, v in self.languages.most_common(8))
            more = len(self.languages) - 8
            out.append(
                f"  languages ({self.languages_from}): {shown}" + (f", {more} more" if more > 0 else "")
            )
        for name, counter in self.counters.items():
            if not counter:
                continue
            top = ", ".join(f"{k} {v}" for k, v in counter.most_common(6))
            more = len(counter) - 6
            out.append(f"  {name}: {len(counter)} distinct; {top}" + (f", {more} more" if more > 0 else ""))
        if self.rejects_file is not None:
            total = sum(self.rejects.values())
            reasons = ", ".join(f"{k} {v}" for k, v in self.rejects.most_common())
            out.append(f"  rejected ({self.rejects_file}): {total}" + (f": {reasons}" if reasons else ""))
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


def _prompt_text(row_record: Any) -> str:
    parts = [row_record.system or ""]
    for turn in row_record.history:
        parts += [turn.user, turn.assistant]
    parts.append(row_record.prompt_text())
    return "\n".join(p for p in parts if p)


def read_rejects(path: str | Path) -> Counter:
    """Reason counts of a rejects file (JSONL objects with a 'reason' field, as every command writes)."""
    counts: Counter = Counter()
    for _line, _text, row in iter_jsonl(path):
        if isinstance(row, Exception):
            raise row
        reason = row.get("reason") if isinstance(row, dict) else None
        counts[str(reason) if reason else "(no reason field)"] += 1
    return counts


def record_stats(
    rowset: RowSet, *, tokenizer: str | None = None, langid: bool = True, rejects: str | None = None
) -> Stats:
    """Stats over a records file."""
    st = Stats(rowset.path, "records", rows=len(rowset.rows), layouts=Counter(rowset.layouts))
    prompts: list[str] = []
    responses: list[str] = []
    templates: Counter = Counter()
    labels: Counter = Counter()
    entity_types: Counter = Counter()
    categories: Counter = Counter()
    meta_langs: list[str | None] = []
    for record in rowset.records():
        prompts.append(_prompt_text(record))
        responses.append(record.output)
        st.with_system += bool(record.system)
        st.multi_turn += bool(record.history)
        meta = record.meta
        if meta.get("template_id"):
            templates[str(meta["template_id"])] += 1
        if meta.get("label") is not None:
            labels[str(meta["label"])] += 1
        for ent in meta.get("entities") or []:
            if isinstance(ent, (list, tuple)) and len(ent) == 2:
                entity_types[str(ent[1])] += 1
        if meta.get("category"):
            categories[str(meta["category"])] += 1
        if meta.get("lang"):
            meta_langs.append(str(meta["lang"]))
        elif meta.get("src_code") and meta.get("tgt_code"):  # translate --meta: the direction
            meta_langs.append(f"{meta['src_code']}->{meta['tgt_code']}")
        else:
            meta_langs.append(None)
    st.lengths["chars prompt"] = [len(p) for p in prompts]
    st.lengths["chars response"] = [len(r) for r in responses]
    st.lengths["chars total"] = [len(p) + len(r) for p, r in zip(prompts, responses)]
    if tokenizer:
        from ..tokenize.tokenizers import load_tokenizer

        tok = load_tokenizer(tokenizer)
        p_ids = tok.encode_texts(prompts, specials=False) if prompts else []
        r_ids = tok.encode_texts(responses, specials=False) if responses else []
        st.tokenizer = str(tokenizer)
        st.lengths["tokens prompt"] = [len(x) for x in p_ids]
        st.lengths["tokens response"] = [len(x) for x in r_ids]
        st.lengths["tokens total"] = [len(a) + len(b) for a, b in zip(p_ids, r_ids)]
        st.notes.append("token lengths are of the texts alone; `tokenize` adds the prompt format's tokens")
    st.languages, st.languages_from = _languages(prompts, responses, meta_langs, langid)
    st.counters = {"templates": templates, "labels": labels, "entity types": entity_types, "categories": categories}
    if rejects:
        st.rejects = read_rejects(rejects)
        st.rejects_file = str(rejects)
    return st


def _languages(
    prompts: list[str], responses: list[str], meta_langs: list[str | None], langid: bool
) -> tuple[Counter, str]:
    """'zh' when prompt and response are in one language, 'en->zh' when not; meta.lang first."""
    counts: Counter = Counter()
    if all(meta_langs) and meta_langs:
        return Counter(meta_langs), "meta"
    if not langid:
        known = Counter(x for x in meta_langs if x)
        return known, "meta" if known else ""
    from ..quality.langid import make_backend

    backend = make_backend("fasttext")
    if backend is None:
        return Counter(x for x in meta_langs if x), "meta"
    detected = 0
    for prompt, response, lang in zip(prompts, responses, meta_langs):
        if lang:
            counts[lang] += 1
            continue
        if detected >= LANGID_LIMIT:
            continue
        detected += 1
        a, b = detect_language(backend, prompt), detect_language(backend, response)
        counts[a if a == b else f"{a}->{b}"] += 1
    where = "prompt->response, detected" + (", meta where it says" if any(meta_langs) else "")
    if detected >= LANGID_LIMIT:
        where += f" on the first {LANGID_LIMIT} rows"
    return counts, where


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
SHORT = 12  # letters below which fastText guesses (the language check's own limit)


def detect_language(backend: Any, text: str) -> str:
    """A language for one text, with the language check's corrections (quality/langid.py).

    Japanese/Korean verdicts on text without kana/Hangul and Chinese varieties (wuu, yue, ...) count
    as 'zh'; a text with fewer than 12 letters is 'zh' when it has Han characters, else 'short'
    (fastText guesses on "Hi."); a verdict under 0.6 confidence is 'und'.
    """
    from ..quality.langid import COMPATIBLE as _COMPATIBLE
    from ..quality.langid import DISTINCTIVE as _DISTINCTIVE
    from ..quality.langid import letter_count

    letters = letter_count(text, cap=SHORT)
    if letters == 0:
        return "none"
    han = bool(_HAN.search(text))
    if letters < SHORT:
        return "zh" if han and not any(p.search(text) for p in _DISTINCTIVE.values()) else "short"
    code, confidence = backend.detect(text.replace("\n", " "))
    distinctive = _DISTINCTIVE.get(code)
    if code in _COMPATIBLE["zh"] or (distinctive is not None and not distinctive.search(text) and han):
        return "zh"
    if code == "und" or confidence < 0.6:
        return "und"
    return code


TOKENIZED_BATCH = 4096  # rows per Arrow slice read by `tokenized_stats`
TOKEN_BUDGET = 1 << 18  # labels counted at once: ~9 bytes each in numpy, so ~2.4 MB at a time


def _list_lengths(column: Any) -> Any:
    """Lengths of an Arrow list column as an int64 numpy array (a null list counts 0)."""
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _trained_per_row(labels: Any, per_row: Any) -> Any:
    """Labels that are not -100, per row, from the flattened values of a few rows (no Python lists)."""
    import numpy as np
    import pyarrow.compute as pc

    keep = pc.not_equal(pc.list_flatten(labels), -100).to_numpy(zero_copy_only=False)
    cum = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=cum[1:])
    ends = np.cumsum(per_row)
    return cum[ends] - cum[ends - per_row]


def _token_slices(per_row: Any, budget: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges holding at most `budget` tokens each (one longer row is alone)."""
    out, start, held = [], 0, 0
    for i, n in enumerate(per_row.tolist()):
        if held and held + n > budget:
            out.append((start, i))
            start, held = i, 0
        held += n
    if start < len(per_row):
        out.append((start, len(per_row)))
    return out


def _scan_tokenized(ds: Any) -> dict[str, Any]:
    """One pass over a tokenized dataset, slice by slice, each slice bounded in rows and tokens.

    Only per-row (and, packed, per-example) LENGTHS are kept: the old `to_pylist()` of input_ids
    and labels held every token as a Python int, so memory grew with the tokens (issue 11 item 16).
    The Arrow slices are views of the memory-mapped files; the only per-token arrays are the
    `TOKEN_BUDGET` labels of one slice.
    """
    import numpy as np
    import pyarrow.compute as pc

    cols = set(ds.column_names)
    lengths, trained, examples = [], [], []
    truncated = 0
    for batch in ds.with_format("arrow").iter(batch_size=TOKENIZED_BATCH):
        lengths.append(_list_lengths(batch.column("input_ids")))
        labels = batch.column("labels")
        per_row = _list_lengths(labels)
        for start, stop in _token_slices(per_row, TOKEN_BUDGET):
            trained.append(_trained_per_row(labels.slice(start, stop - start), per_row[start:stop]))
        if "seq_lens" in cols:
            flat = pc.list_flatten(batch.column("seq_lens"))
            examples.append(np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.int64))
        if "truncated" in cols:
            truncated += int(pc.sum(pc.cast(batch.column("truncated"), "int64")).as_py() or 0)

    def joined(parts: list[Any]) -> Any:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return {
        "lengths": joined(lengths),
        "trained": joined(trained),
        "examples": joined(examples) if "seq_lens" in cols else None,
        "truncated": truncated,
    }


def tokenized_stats(folder: str | Path) -> Stats:
    """Stats over an `instructgen tokenize` output folder (read batch by batch, see `_scan_tokenized`)."""
    from ..tokenize.inspect import load_output
    from ..tokenize.packing import plan_bfd_arrays

    ds, meta = load_output(folder)
    options = meta.get("options") or {}
    max_length = int(options.get("max_length") or 0)
    st = Stats(str(folder), "tokenized", rows=len(ds))
    scan = _scan_tokenized(ds)
    lengths: list[int] = scan["lengths"].tolist()
    trained: list[int] = scan["trained"].tolist()
    no_trained = int((scan["trained"] == 0).sum())
    packed = scan["examples"] is not None
    per_example: list[int] = scan["examples"].tolist() if packed else lengths
    st.lengths["tokens per row"] = lengths
    st.lengths["trained per row"] = trained
    if packed:
        st.lengths["tokens per example"] = per_example
    tokens, trained_total = int(scan["lengths"].sum()), int(scan["trained"].sum())
    capacity = max_length or max(lengths, default=0)
    used = sum(per_example)  # what packing_efficiency sums over seq_lens
    info: dict[str, Any] = {
        "format": (meta.get("format") or {}).get("name"),
        "max_length": max_length or None,
        "packed": packed,
        "rows": len(ds),
        "examples": len(per_example),
        "tokens": tokens,
        "trained_tokens": trained_total,
        "trained_share": trained_total / tokens if tokens else 0.0,
        "truncated": scan["truncated"],
        "no_trained": no_trained,
        "fill": used / (capacity * len(ds)) if capacity and len(ds) else 0.0,
    }
    if not packed and capacity:
        _rows, starts = plan_bfd_arrays(scan["lengths"], capacity)
        bins = len(starts) - 1
        info["pack_rows"] = bins
        info["pack_efficiency"] = tokens / (capacity * bins) if bins else 0.0
    st.tokenized = info
    rejects_path = Path(folder) / "instructgen_rejects.jsonl"
    rejected = (meta.get("report") or {}).get("rejected") or {}
    if rejects_path.is_file():
        st.rejects = read_rejects(rejects_path)
        st.rejects_file = rejects_path.name
    elif rejected:
        st.rejects = Counter(rejected)
        st.rejects_file = "instructgen_meta.json"
    return st


def is_tokenized(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "instructgen_meta.json").is_file()


def compute_stats(
    path: str | Path, *, tokenizer: str | None = None, langid: bool = True, rejects: str | None = None
) -> Stats:
    if is_tokenized(path):
        if tokenizer:
            raise ConfigError(f"{path}: a tokenized folder already has token counts; --tokenizer is for records")
        st = tokenized_stats(path)
        if rejects:
            st.rejects = read_rejects(rejects)
            st.rejects_file = str(rejects)
        return st
    return record_stats(load_rows(path), tokenizer=tokenizer, langid=langid, rejects=rejects)


def save_json(st: Stats, path: str | Path) -> None:
    from .rows import write_text_atomic

    write_text_atomic(path, json.dumps(st.to_json(), ensure_ascii=False, indent=2) + "\n")
