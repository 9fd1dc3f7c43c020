"""`inspect`: show tokenized rows token by token, and audit a whole dataset.

The audit proves the masks instead of trusting them: for every row, each run of trained
tokens must decode to exactly one response followed by its end-of-turn token; labels must be
-100 or equal to input_ids; at most one BOS (one per turn for formats that open every turn
with BOS); no row without a trained token; and a warning when pad == end-of-turn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats import PromptFormat
from ..io.records import read_records
from .encode import IGNORE, label_runs
from .pipeline import read_meta
from .tokenizers import load_tokenizer


@dataclass
class AuditReport:
    rows: int = 0
    violations: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decoded_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [
            f"audit: {self.rows} rows, {sum(self.violations.values())} violations"
            + (
                f", trained text checked against the source on {self.decoded_checked} rows"
                if self.decoded_checked
                else ""
            )
        ]
        lines += [f"  {k}: {v}" for k, v in sorted(self.violations.items())]
        lines += [f"  e.g. {e}" for e in self.examples[:5]]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def load_output(out_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The rows (memory-mapped) and metadata of a tokenize output; damage is a ConfigError naming it.

    The metadata goes through `pipeline.read_meta` (a truncated `instructgen_meta.json` gave a
    JSONDecodeError traceback in `stats` and `inspect`), and a folder whose Arrow files are missing
    or cut short says so instead of raising from `datasets`.
    """
    import datasets

    meta = read_meta(out_dir)
    try:
        ds = datasets.load_from_disk(str(out_dir))
    except Exception as exc:  # FileNotFoundError, ArrowInvalid on a truncated shard, ...
        raise ConfigError(
            f"{out_dir}: cannot load the tokenized rows ({type(exc).__name__}: {exc}); "
            "tokenize again with --overwrite to rebuild the folder"
        ) from None
    return ds, meta


def audit(out_dir: str | Path, *, tokenizer: str | None = None, source: str | None = None) -> AuditReport:
    ds, meta = load_output(out_dir)
    tok = load_tokenizer(tokenizer or meta["tokenizer"])
    fmt = PromptFormat(**meta["format"]) if isinstance(meta["format"], dict) else None
    opts = meta["options"]
    report = AuditReport()
    eot_id = tok.token_id(fmt.eot) if fmt and fmt.eot else tok.eos_id
    if tok.pad_id is not None and tok.pad_id == eot_id:
        report.warnings.append(
            "pad == end-of-turn token: pad by position (instructgen's collator does), "
            "never by id, or the real end-of-turn loses its label"
        )
    src_path = source or meta.get("input")
    records = None
    if src_path and Path(src_path).is_file() and not meta.get("pack") and not opts.get("train_on_inputs"):
        records = [r for _, r in read_records(src_path)]
    eot_text = tok.token_text(eot_id) if eot_id is not None else ""
    # ChatGLM3: the next turn's role token ends a turn, EOS ends the last one
    last_eot_id = tok.eos_id if fmt is not None and fmt.eot_opens_next_turn else eot_id
    last_eot_text = tok.token_text(last_eot_id) if last_eot_id is not None else ""
    special_ids = {tok.token_id(s) for s in tok.special_tokens()}

    def bad(kind: str, row: int, detail: str) -> None:
        report.violations[kind] += 1
        if len(report.examples) < 20:
            report.examples.append(f"row {row}: {kind}: {detail}")

    for i, row in enumerate(ds):
        report.rows += 1
        ids, labels = row["input_ids"], row["labels"]
        if len(ids) != len(labels):
            bad("length_mismatch", i, f"{len(ids)} ids vs {len(labels)} labels")
            continue
        if any(lab != IGNORE and lab != x for x, lab in zip(ids, labels)):
            bad("label_not_input", i, "a label is neither -100 nor its input id")
        if all(lab == IGNORE for lab in labels):
            bad("all_masked", i, "no trained token")
            continue
        if len(ids) > opts["max_length"]:
            bad("too_long", i, f"{len(ids)} > {opts['max_length']}")
        rec = records[row["row"]] if records is not None and "row" in row else None
        if tok.bos_id is not None:
            n_bos = sum(1 for x in ids if x == tok.bos_id)
            allowed = len(row.get("seq_lens") or [1])  # one per packed example
            if fmt is not None and fmt.bos_each_turn:
                allowed = len(rec.history) + 1 if rec is not None else n_bos  # one per turn (Llama-2)
            elif fmt is None:  # a chat template may open every turn with BOS (Llama-2's does)
                allowed = max(allowed, _template_bos(tok, rec) if rec is not None else n_bos)
            if n_bos > allowed:
                bad("duplicate_bos", i, f"{n_bos} BOS tokens, at most {allowed} expected")
        runs = label_runs(labels)
        if (
            fmt is not None
            and not opts.get("train_on_inputs")
            and eot_id is not None
            and any(run[-1] not in (eot_id, last_eot_id) for run in runs)
        ):
            bad("missing_eot", i, "a trained run does not end with the end-of-turn token")
        if rec is not None and not row.get("truncated"):
            responses = [t.assistant for t in rec.history] + [rec.output]
            if opts.get("mask_history"):
                responses = responses[-1:]
            decoded = [tok.decode(run) for run in runs]
            if fmt is None:  # chat template: the end-of-turn is whatever special token closed the span,
                # and the span holds the template's own whitespace around the answer (Llama-2: " {a} </s>")
                expected = [" ".join(r.split()) for r in responses]
                got = [
                    " ".join(_strip_special_suffix(d, run, tok, special_ids).split())
                    for d, run in zip(decoded, runs)
                ]
            else:  # the response wrapper's whitespace (Llama-2: " {a} ") is trained with the answer
                eots = [eot_text] * (len(responses) - 1) + [last_eot_text]
                expected = [fmt.response.replace("{content}", r) + e for r, e in zip(responses, eots)]
                # SentencePiece decoders drop the space a sequence starts with
                got = [e if d == e.removeprefix(" ") else d for d, e in zip(decoded, expected)]
            report.decoded_checked += 1
            if got != expected:
                bad("decoded_mismatch", i, f"trained tokens decode to {got[:2]!r}, expected {expected[:2]!r}")
    return report


def _template_bos(tok: Any, rec: Any) -> int:
    """How many BOS tokens the tokenizer's chat template itself renders for a record."""
    from ..templates.env import render_chat_template
    from .encode import record_messages

    if getattr(tok, "hf", None) is None or not getattr(tok, "chat_template", None) or tok.bos_id is None:
        return 1
    text = render_chat_template(tok.hf, record_messages(rec), path=getattr(tok, "path", None))
    return max(1, text.count(tok.token_text(tok.bos_id)))


def _strip_special_suffix(text: str, run: list[int], tok: Any, special_ids: set) -> str:
    if run and run[-1] in special_ids:
        tail = tok.token_text(run[-1])
        if text.endswith(tail):
            return text[: -len(tail)]
    return text


def render_row(row: dict[str, Any], tok: Any, *, color: bool = True) -> str:
    """Tokens of one row: trained ones highlighted, masked ones dimmed (brackets when no colour)."""
    import click

    parts = []
    for x, lab in zip(row["input_ids"], row["labels"]):
        text = tok.token_text(x).replace("\n", "\\n")
        if lab != IGNORE:
            parts.append(click.style(text, fg="green", bold=True) if color else f"[{text}]")
        else:
            parts.append(click.style(text, dim=True) if color else text)
    return "|".join(parts) if not color else "".join(parts)
