"""Hand records to a trainer in the shape it reads without any mapping code.

LLaMA-Factory (checked against v0.9.5, `src/llamafactory/data/parser.py`, `converter.py`,
`loader.py`, `extras/constants.py`, `data/README.md`):
- a dataset is an entry of `dataset_info.json` in `dataset_dir`: `file_name` (json, jsonl, parquet,
  csv, arrow and txt by extension: FILEEXT2TYPE), `formatting` (`alpaca` | `sharegpt`), `columns`
  and, for sharegpt, `tags`.
- alpaca columns default to prompt=instruction, query=input, response=output; `system` and
  `history` have NO default (`DatasetAttr.system = None`), so they must be named when present, and
  the converter reads them from every row (rows without get "" / []).
- sharegpt: `messages` column (default `conversations`) with role/content tags (default
  from/value, human/gpt, system); a system prompt in its own column or as a first `system` turn.

TRL (`SFTTrainer`, trl 1.x `trainer/sft_trainer.py` `_prepare_dataset`): a `messages` column
(conversational language modelling: the chat template is applied), or `prompt` + `completion`
(conversational lists of messages, or plain strings), where only the completion is trained
(`completion_only_loss` defaults to on for prompt-completion data). Other columns are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.writers import record_to_row
from ..schema import Record
from .outputs import guard_outputs
from .rows import RowSet, write_rows, write_text_atomic

TARGETS = ("llamafactory", "trl", "parquet")
TRL_LAYOUTS = ("messages", "prompt-completion", "prompt-completion-text")
FILE_FORMATS = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet"}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}


@dataclass
class Exported:
    """What one input became: the data file, its row count, and the trainer-side description."""

    source: str
    path: Path
    rows: int
    name: str
    entry: dict[str, Any] = field(default_factory=dict)
    layout: str = ""


def _records(rowset: RowSet) -> list[Record]:
    return list(rowset.records())


def llamafactory_rows(records: list[Record], formatting: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows in LLaMA-Factory's alpaca or sharegpt layout, and the dataset_info.json entry minus file_name."""
    has_system = any(r.system for r in records)
    has_history = any(r.history for r in records)
    rows = []
    for r in records:
        row = record_to_row(r, formatting)
        if formatting == "alpaca":
            if has_system:
                row.setdefault("system", "")
            if has_history:
                row.setdefault("history", [])
        elif has_system:
            row.setdefault("system", "")
        rows.append(row)
    if formatting == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        if has_system:
            columns["system"] = "system"
        if has_history:
            columns["history"] = "history"
        entry: dict[str, Any] = {"formatting": "alpaca", "columns": columns}
    else:
        columns = {"messages": "conversations"}
        if has_system:
            columns["system"] = "system"
        entry = {"formatting": "sharegpt", "columns": columns, "tags": dict(SHAREGPT_TAGS)}
    return rows, entry


def trl_rows(records: list[Record], layout: str) -> list[dict[str, Any]]:
    """Rows TRL's SFTTrainer reads as they are."""
    if layout == "messages":
        return [record_to_row(r, "messages") for r in records]
    if layout == "prompt-completion":
        out = []
        for r in records:
            msgs = record_to_row(r, "messages")["messages"]
            out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
        return out
    if layout == "prompt-completion-text":
        bad = next((i for i, r in enumerate(records) if r.system or r.history), None)
        if bad is not None:
            raise ConfigError(
                f"row {bad + 1} has a system prompt or earlier turns, which plain-text prompt/completion "
                "cannot carry; use --trl-layout messages or prompt-completion"
            )
        return [{"prompt": r.prompt_text(), "completion": r.output} for r in records]
    raise ConfigError(f"unknown TRL layout '{layout}' (choose {', '.join(TRL_LAYOUTS)})")


def read_dataset_info(out_dir: Path) -> dict[str, Any]:
    """The entries of an existing `dataset_info.json` ({} when there is none); a damaged one is a
    ConfigError, raised before any data file is written."""
    path = out_dir / "dataset_info.json"
    info: dict[str, Any] = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}); fix or remove it") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); fix or remove it") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        if not isinstance(info, dict):
            raise ConfigError(f"{path}: expected a JSON object of dataset entries")
    return info


def update_dataset_info(out_dir: Path, entries: dict[str, dict[str, Any]]) -> Path:
    """Add or replace our entries in `dataset_info.json`, keeping every other entry as it was."""
    path = out_dir / "dataset_info.json"
    info = read_dataset_info(out_dir)
    info.update(entries)
    write_text_atomic(path, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return path


def export(
    rowsets: list[RowSet],
    to: str,
    out_dir: str | Path,
    *,
    name: str | None = None,
    formatting: str = "auto",
    trl_layout: str = "messages",
    file_format: str | None = None,
    keep_meta: bool = False,
) -> list[Exported]:
    """Write every input for `to` under `out_dir`; returns what was written (and LF entries)."""
    if to not in TARGETS:
        raise ConfigError(f"--to {to}: choose {', '.join(TARGETS)}")
    file_format = file_format or ("parquet" if to == "parquet" else "jsonl")
    if file_format not in FILE_FORMATS:
        raise ConfigError(f"--file-format {file_format}: choose {', '.join(FILE_FORMATS)}")
    out = Path(out_dir)
    names = _names(rowsets, name)
    targets = [out / f"{entry_name}{FILE_FORMATS[file_format]}" for entry_name in names]
    info = [out / "dataset_info.json"] if to == "llamafactory" else []
    guard_outputs([r.path for r in rowsets], [*targets, *info])
    if info:
        read_dataset_info(out)  # a damaged one stops the run before the data files are written
    done: list[Exported] = []
    for rowset, entry_name, target in zip(rowsets, names, targets):
        if to == "parquet":
            rows = [dict(r) for r in rowset.rows] if keep_meta else [_without_meta(r) for r in rowset.rows]
            layout, entry = rowset.layout, {}
        else:
            records = _records(rowset)
            if to == "llamafactory":
                layout = formatting
                if layout == "auto":
                    layout = "sharegpt" if rowset.layout in ("sharegpt", "messages") else "alpaca"
                if layout not in ("alpaca", "sharegpt"):
                    raise ConfigError(f"--formatting {layout}: LLaMA-Factory export writes alpaca or sharegpt")
                rows, entry = llamafactory_rows(records, layout)
                entry = {"file_name": target.name, **entry}
            else:
                layout, entry = trl_layout, {}
                rows = trl_rows(records, trl_layout)
            if keep_meta:
                for row, rec in zip(rows, records):
                    if rec.meta:  # a JSON string: a column both trainers ignore and Arrow always accepts
                        row["meta"] = json.dumps(rec.meta, ensure_ascii=False, sort_keys=True)
        write_rows(rows, target, file_format)
        done.append(Exported(rowset.path, target, len(rows), entry_name, entry, layout))
    if to == "llamafactory":
        update_dataset_info(out, {d.name: d.entry for d in done})
    return done


def _without_meta(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "meta"}


def _names(rowsets: list[RowSet], name: str | None) -> list[str]:
    """One input: NAME (or its file stem); several (e.g. a split's files): NAME_stem each."""
    stems = [Path(r.path).name.split(".")[0] or "data" for r in rowsets]
    if len(rowsets) == 1:
        return [name or stems[0]]
    names = [f"{name}_{s}" if name else s for s in stems]
    if len(set(names)) != len(names):
        raise ConfigError(f"inputs would share an entry name ({', '.join(names)}); rename the files")
    return names
