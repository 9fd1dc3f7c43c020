"""Prompt formats: how a Record becomes ordered segments `(text, trainable)` for one model family.

Each format is one small declarative entry. Wrappers are `str.format` strings whose slots
(`{content}`, `{system}`, `{instruction}`, `{input}`, `{idx}`) are filled with user data;
everything outside the slots is template text, which may contain the model's special tokens.
The end-of-turn token is added by id after every assistant turn, never as text, so it cannot
be split into `</`, `s`, `>` and is trained whenever its turn is.

Users add formats in a YAML/JSON file with the same fields, or import an alpaca-lora style
template (`prompt_input`, `prompt_no_input`, `response_split`).
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..schema import Record

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
BAYLING_SYSTEM = (
    "I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
    "Below is a dialog consisting of instructions and responses. Write a response that completes the request.\n"
)


@dataclass(frozen=True)
class PromptFormat:
    name: str
    description: str = ""
    prefix: str = ""  # template text at the very start (e.g. "[gMASK]<sop>")
    bos: bool = False  # put the tokenizer's BOS id first (when it has one)
    bos_each_turn: bool = False  # Llama-2 opens every turn with BOS
    system: str = "{system}"  # wrapper for the system prompt, used only when there is one
    default_system: str | None = None
    system_in_first_user: bool = False  # Llama-2 puts <<SYS>> inside the first [INST]
    first_user: str | None = None  # wrapper for the first user turn when it differs (needs {system})
    user: str = "{content}"  # wrapper for a user turn, including the assistant header that follows it
    prompt_input: str | None = None  # Alpaca-style: the last turn uses instruction and input separately
    prompt_no_input: str | None = None
    eot: str | None = None  # end-of-turn token; None means the tokenizer's EOS
    eot_trained: bool = True
    turn_separator: str = ""  # untrained text after each end-of-turn token but the last
    separator_after_last: bool = False  # ChatML-like templates also end the last turn with it
    idx_start: int = 1  # first value of {idx}
    source: str = "builtin"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra", None)
        return data


class Segment(NamedTuple):
    """One piece of an encoded conversation (built as a plain tuple in the hot path: same fields).

    kind: "text" (template text: special tokens in it are control tokens), "content" (user
    data: special-token strings in it stay plain text), "system" (content that repeats across
    records, so its encoding is cached), or "bos" / "eot" (added by id).
    """

    kind: str
    text: str
    trainable: bool
    turn: int = -1  # the conversation turn a piece belongs to (-1: prefix and system)


# Field positions, for code that reads segments as plain tuples.
KIND, TEXT, TRAINABLE, TURN = range(4)


@lru_cache(maxsize=256)
def _parse(wrapper: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, name) for literal, name, _spec, _conv in string.Formatter().parse(wrapper))


def _fill(
    out: list[tuple],
    wrapper: str,
    values: dict[str, str],
    trainable: bool,
    turn: int,
    content_kind: str = "content",
) -> None:
    """Append a wrapper's template text and content slots, in order."""
    for literal, name in _parse(wrapper):
        if literal:
            out.append(("text", literal, trainable, turn))
        if name is None:
            continue
        value = values.get(name)
        if value is None:
            raise ConfigError(f"format slot '{{{name}}}' is not one of: {', '.join(sorted(values))}")
        if name == "idx":
            out.append(("text", value, trainable, turn))
        elif value:
            out.append((content_kind, value, trainable, turn))


def segments(
    fmt: PromptFormat, record: Record, *, mask_history: bool = False, train_on_inputs: bool = False
) -> list[Segment]:
    """The record as ordered segments; trainable = assistant content and its end-of-turn token."""
    segs: list[Segment] = []
    if fmt.bos:
        segs.append(("bos", "", train_on_inputs, -1))
    if fmt.prefix:
        segs.append(("text", fmt.prefix, train_on_inputs, -1))
    system = record.system if record.system is not None else fmt.default_system
    if system and not fmt.system_in_first_user:
        _fill(segs, fmt.system, {"system": system}, train_on_inputs, -1, "system")
    turns = [(t.user, t.assistant, None) for t in record.history]
    turns.append((record.prompt_text(), record.output, record))
    last = len(turns) - 1
    for i, (user, assistant, rec) in enumerate(turns):
        if fmt.bos_each_turn and i > 0:
            segs.append(("bos", "", train_on_inputs, i))
        idx = str(fmt.idx_start + i)
        if rec is not None and fmt.prompt_input is not None:
            wrapper = fmt.prompt_input if rec.input else (fmt.prompt_no_input or fmt.prompt_input)
            values = {"instruction": rec.instruction, "input": rec.input, "idx": idx, "system": system or ""}
        else:
            wrapper = fmt.user
            if fmt.prompt_no_input is not None and fmt.user == "{content}":
                wrapper = fmt.prompt_no_input.replace("{instruction}", "{content}")
            if i == 0 and fmt.first_user is not None and system:
                wrapper = fmt.first_user
            values = {"content": user, "idx": idx, "system": system or "", "instruction": user, "input": ""}
        _fill(segs, wrapper, values, train_on_inputs, i)
        trained = train_on_inputs or not mask_history or i == last
        if assistant:
            segs.append(("content", assistant, trained, i))
        segs.append(("eot", fmt.eot or "", trained and (fmt.eot_trained or train_on_inputs), i))
        if fmt.turn_separator and (i < last or fmt.separator_after_last):
            segs.append(("text", fmt.turn_separator, train_on_inputs, i))
    return segs


FORMATS: dict[str, PromptFormat] = {}


def register(fmt: PromptFormat) -> PromptFormat:
    FORMATS[fmt.name] = fmt
    return fmt


register(
    PromptFormat(
        name="alpaca",
        description="Stanford Alpaca, with and without an Input section; EOS after the response.",
        prompt_input=ALPACA_PROMPT_INPUT,
        prompt_no_input=ALPACA_PROMPT_NO_INPUT,
        turn_separator="\n\n",
    )
)
register(
    PromptFormat(
        name="chatglm",
        description="ChatGLM: [gMASK]<sop>, then [Round N] / 问： / 答： turns, <eop> after each answer.",
        prefix="[gMASK]<sop>",
        user="[Round {idx}]\n问：{content}\n答：",
        eot="<eop>",
        turn_separator="\n",
    )
)
register(
    PromptFormat(
        name="bloom",
        description="BLOOM/BELLE style: 'Human: \\n...\\n\\nAssistant: \\n', EOS after the answer.",
        user="Human: \n{content}\n\nAssistant: \n",
        turn_separator="\n\n",
    )
)
register(
    PromptFormat(
        name="bayling",
        description="BayLing: its system text, '### Instruction:' / '### Response:' turns, </s> after each answer.",
        system="{system}\n",
        default_system=BAYLING_SYSTEM,
        user="### Instruction:\n{content}\n### Response:\n",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="phi3",
        description="Phi-3: <|system|>, <|user|>, <|assistant|> headers, <|end|> after every turn.",
        bos=True,
        system="<|system|>\n{system}<|end|>\n",
        user="<|user|>\n{content}<|end|>\n<|assistant|>\n",
        eot="<|end|>",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="chatml",
        description="ChatML: <|im_start|>role\\n...<|im_end|>; <|im_end|> trained, the newline after it not.",
        system="<|im_start|>system\n{system}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        eot="<|im_end|>",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="qwen",
        description="ChatML with Qwen2.5's default system prompt (as its chat template renders it).",
        system="<|im_start|>system\n{system}<|im_end|>\n",
        default_system=QWEN_DEFAULT_SYSTEM,
        user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        eot="<|im_end|>",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="llama2",
        description="Llama-2 chat: <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>, BOS on every turn.",
        bos=True,
        bos_each_turn=True,
        system_in_first_user=True,
        first_user="[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{content} [/INST] ",
        user="[INST] {content} [/INST] ",
    )
)


_FIELDS = {f.name for f in fields(PromptFormat)}


def load_format_file(path: str | Path) -> PromptFormat:
    """A user format (YAML/JSON with PromptFormat fields) or an alpaca-lora template JSON."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{p}: format file not found") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(f"{p}: cannot parse format file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a format file is a mapping")
    if "prompt_input" in data and "name" not in data:  # alpaca-lora template
        unknown = sorted(set(data) - {"prompt_input", "prompt_no_input", "response_split", "description"})
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) in alpaca-lora template: {', '.join(unknown)}")
        return PromptFormat(
            name=p.stem,
            description=str(data.get("description", "")),
            prompt_input=str(data["prompt_input"]),
            prompt_no_input=str(data.get("prompt_no_input") or data["prompt_input"]),
            turn_separator="\n\n",
            source=str(p),
            extra={"response_split": data.get("response_split")},
        )
    unknown = sorted(set(data) - _FIELDS - {"base"})
    if unknown:
        raise ConfigError(
            f"{p}: unknown format field(s): {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})"
        )
    if "name" not in data:
        data["name"] = p.stem
    base = FORMATS.get(str(data.pop("base", ""))) if "base" in data else None
    fmt = PromptFormat(**{**(base.to_dict() if base else {}), **data, "source": str(p)})
    for wrapper in (
        fmt.user,
        fmt.system,
        fmt.prompt_input or "",
        fmt.prompt_no_input or "",
        fmt.first_user or "",
    ):
        try:
            list(string.Formatter().parse(wrapper))
        except ValueError as exc:
            raise ConfigError(
                f"{p}: bad wrapper {wrapper!r}: {exc} (write literal braces as {{{{ and }}}})"
            ) from None
    return fmt


def get_format(name_or_path: str) -> PromptFormat:
    if name_or_path in FORMATS:
        return FORMATS[name_or_path]
    if Path(name_or_path).suffix.lower() in (".json", ".yaml", ".yml"):
        return load_format_file(name_or_path)
    raise ConfigError(
        f"unknown prompt format '{name_or_path}' (built in: {', '.join(sorted(FORMATS))}, chat_template; "
        "or a .yaml/.json format file)"
    )
