"""Prompt formats: how a Record becomes ordered segments `(text, trainable)` for one model family.

Each format is one small declarative entry that reproduces a published reference (the model's
chat template or its training code, cited in `reference`; tests/test_formats_reference.py checks
every built-in format against it, string for string and, with a real tokenizer, id for id).
Wrappers are `str.format` strings whose slots (`{content}`, `{system}`, `{instruction}`,
`{input}`, `{idx}`, `{answer}`) are filled with user data; everything outside the slots is
template text, which may contain the model's special tokens. The end-of-turn token is added by
id after every assistant turn, never as text, so it cannot be split into `</`, `s`, `>` and is
trained whenever its turn is. BOS follows the tokenizer (its post-processor / `add_bos_token`)
unless the reference says otherwise.

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

# Stanford Alpaca, tatsu-lab/stanford_alpaca train.py PROMPT_DICT: the response follows "### Response:"
STANFORD_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
# alpaca-lora, tloen/alpaca-lora templates/alpaca.json: the same wording with "### Response:\n"
ALPACA_PROMPT_INPUT = STANFORD_PROMPT_INPUT + "\n"
ALPACA_PROMPT_NO_INPUT = STANFORD_PROMPT_NO_INPUT + "\n"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
BAYLING_SYSTEM = (
    "I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
    "Below is a dialog consisting of instructions and responses. Write a response that completes the request.\n"
)


@dataclass(frozen=True)
class PromptFormat:
    name: str
    description: str = ""
    reference: str = ""  # the published template or training code this layout reproduces (repo and path)
    prefix: str = ""  # template text at the very start (e.g. "[gMASK]sop")
    suffix: str = ""  # untrained template text after the last turn (Phi-3's <|endoftext|>)
    bos: bool | None = None  # None: BOS as the tokenizer itself adds it; True: always; False: never
    bos_each_turn: bool = False  # Llama-2 opens every turn with BOS
    system: str = "{system}"  # wrapper for the system prompt, with its separator
    default_system: str | None = None
    default_system_names: tuple[str, ...] = ()  # who the default system prompt says the assistant is
    empty_system: bool = False  # an empty system text still renders its block (as the reference does)
    system_in_first_user: bool = False  # Llama-2 puts <<SYS>> inside the first [INST]
    first_user: str | None = None  # wrapper for the first user turn when it differs (needs {system})
    single_user: str | None = None  # wrapper of the user turn of a record without history (ChatGLM-6B)
    user: str = "{content}"  # wrapper for a user turn, including the assistant header that follows it
    history: str | None = None  # earlier turns as untrained prompt text ({content}, {answer}, {idx})
    response: str = "{content}"  # wrapper of the assistant text, trained with it (Llama-2: " {content} ")
    prompt_input: str | None = None  # Alpaca-style first turn: instruction and input separately
    prompt_no_input: str | None = None
    eot: str | None = None  # end-of-turn token; None means the tokenizer's EOS
    eot_trained: bool = True
    eot_opens_next_turn: bool = False  # ChatGLM3: the next <|user|> ends a turn, EOS ends the last
    turn_separator: str = ""  # untrained text after each end-of-turn token but the last
    separator_after_last: bool = False  # ChatML-like templates also end the last turn with it
    idx_start: int = 1  # first value of {idx}
    source: str = "builtin"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra", None)
        data["default_system_names"] = list(self.default_system_names)
        return data


class Segment(NamedTuple):
    """One piece of a conversation (built as a plain tuple in the hot path: same fields).

    kind: "text" (template text: special tokens in it are control tokens), "content" (user
    data: special-token strings in it stay plain text), "system" (user data that repeats across
    records, so its encoding is cached), or "bos" / "eot" (added by id; an eot's text names its
    token, "" = the format's end-of-turn). The encoder joins consecutive pieces with the same
    `trainable` into one string (the prompt side, the response side), as inference sees them.
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


def effective_system(fmt: PromptFormat, record: Record, mode: str = "default", text: str = "") -> str | None:
    """The system prompt a record gets: its own, else per `--system` (default / none / a text)."""
    if record.system is not None:
        return record.system
    if mode == "none":
        return None
    if mode == "text":
        return text
    return fmt.default_system


def segments(
    fmt: PromptFormat,
    record: Record,
    *,
    mask_history: bool = False,
    train_on_inputs: bool = False,
    system: str | None = None,
    use_default_system: bool = True,
) -> list[Segment]:
    """The record as ordered segments; trainable = assistant content and its end-of-turn token.

    `system` overrides the record's system prompt choice (see `effective_system`); BOS segments
    are placed where the format puts them, and the encoder drops them when the tokenizer adds none.
    """
    segs: list[Segment] = []
    if fmt.bos is not False:
        segs.append(("bos", "", train_on_inputs, -1))
    if fmt.prefix:
        segs.append(("text", fmt.prefix, train_on_inputs, -1))
    if system is None and use_default_system:
        system = effective_system(fmt, record)
    has_system = system is not None and (system != "" or fmt.empty_system)
    if has_system and not fmt.system_in_first_user:
        _fill(segs, fmt.system, {"system": system}, train_on_inputs, -1, "system")
    turns = [(t.user, t.assistant, None) for t in record.history]
    turns.append((record.prompt_text(), record.output, record))
    last = len(turns) - 1
    if fmt.history is not None and last > 0:
        for i, (user, assistant, _) in enumerate(turns[:-1]):
            values = {"content": user, "answer": assistant, "idx": str(fmt.idx_start + i)}
            _fill(segs, fmt.history, values, train_on_inputs, i)
        turns = turns[-1:]
        first_turn = last
    else:
        first_turn = 0
    for k, (user, assistant, rec) in enumerate(turns):
        i = first_turn + k
        if fmt.bos_each_turn and k > 0:
            segs.append(("bos", "", train_on_inputs, i))
        idx = str(fmt.idx_start + i)
        values = {"content": user, "idx": idx, "system": system or "", "instruction": user, "input": ""}
        if k == 0 and fmt.prompt_input is not None:
            src = rec if rec is not None else None
            if src is not None:
                values["instruction"], values["input"] = src.instruction, src.input
            wrapper = fmt.prompt_input if values["input"] else (fmt.prompt_no_input or fmt.prompt_input)
        elif last == 0 and fmt.single_user is not None:
            wrapper = fmt.single_user
        elif k == 0 and fmt.first_user is not None and has_system:
            wrapper = fmt.first_user
        else:
            wrapper = fmt.user
            if fmt.eot_opens_next_turn and k > 0 and fmt.eot and wrapper.startswith(fmt.eot):
                wrapper = wrapper[len(fmt.eot) :]  # the previous turn's end-of-turn token opened it
        _fill(segs, wrapper, values, train_on_inputs, i)
        trained = train_on_inputs or not mask_history or i == last
        _fill(segs, fmt.response, {"content": assistant}, trained, i)
        eot = fmt.eot or ""
        if fmt.eot_opens_next_turn and i == last:
            eot = ""  # the last turn ends with the tokenizer's EOS
        segs.append(("eot", eot, trained and (fmt.eot_trained or train_on_inputs), i))
        if fmt.turn_separator and (i < last or fmt.separator_after_last):
            segs.append(("text", fmt.turn_separator, train_on_inputs, i))
    if fmt.suffix:
        segs.append(("text", fmt.suffix, train_on_inputs, last))
    return segs


def render(fmt: PromptFormat, record: Record, *, bos: str = "", eos: str = "", **kwargs: Any) -> str:
    """The record as one string, with `bos` / `eos` standing for the tokenizer's BOS and EOS
    (what the references write as `<s>` / `</s>`); for docs, tests and the boundary audit."""
    out = []
    for kind, text, _, _ in segments(fmt, record, **kwargs):
        if kind == "eot":
            out.append(text or eos)
        elif kind == "bos":
            out.append(bos)
        else:
            out.append(text)
    return "".join(out)


FORMATS: dict[str, PromptFormat] = {}


def register(fmt: PromptFormat) -> PromptFormat:
    FORMATS[fmt.name] = fmt
    return fmt


_ALPACA_LORA = dict(
    prompt_input=ALPACA_PROMPT_INPUT,
    prompt_no_input=ALPACA_PROMPT_NO_INPUT,
    system="{system}\n\n",
    user="### Instruction:\n{content}\n\n### Response:\n",
    turn_separator="\n\n",
)
register(
    PromptFormat(
        name="stanford_alpaca",
        description="Stanford Alpaca: '### Response:' then the output directly, EOS after it; BOS as the "
        "tokenizer adds it.",
        reference="tatsu-lab/stanford_alpaca train.py (PROMPT_DICT, preprocess: source + output + eos_token)",
        prompt_input=STANFORD_PROMPT_INPUT,
        prompt_no_input=STANFORD_PROMPT_NO_INPUT,
        system="{system}\n\n",
        user="### Instruction:\n{content}\n\n### Response:",
        turn_separator="\n\n",
    )
)
register(
    PromptFormat(
        name="alpaca_lora",
        description="alpaca-lora: Alpaca wording with '### Response:\\n', EOS after the output; BOS as the "
        "tokenizer adds it.",
        reference="tloen/alpaca-lora templates/alpaca.json and finetune.py (tokenize: BOS from the tokenizer, "
        "EOS appended); later turns as LLaMA-Factory's alpaca template (src/llamafactory/data/template.py)",
        **_ALPACA_LORA,
    )
)
register(
    PromptFormat(
        name="alpaca",
        description="The alpaca-lora layout (same as alpaca_lora; kept as the default name).",
        reference="tloen/alpaca-lora templates/alpaca.json",
        **_ALPACA_LORA,
    )
)
register(
    PromptFormat(
        name="chatglm",
        description="ChatGLM-6B: the query alone (one turn) or [Round N]\\n问：...\\n答： rounds from 0 with "
        "history in the prompt, then [gMASK]<sop>, the answer, <eop>. One turn = the seed pipeline's "
        "instruct + '\\n' + query, [gMASK], bos output eos.",
        reference="THUDM/ChatGLM-6B ptuning/main.py (preprocess_function_train) and modeling_chatglm.py chat()",
        bos=False,
        system="{system}\n",
        single_user="{content}[gMASK]<sop>",
        history="[Round {idx}]\n问：{content}\n答：{answer}\n",
        user="[Round {idx}]\n问：{content}\n答：[gMASK]<sop>",
        eot="<eop>",
        idx_start=0,
    )
)
register(
    PromptFormat(
        name="chatglm2",
        description="ChatGLM2-6B: [gMASK]sop, [Round N]\\n\\n问：...\\n\\n答： rounds from 1 with history in the "
        "prompt, </s> after the answer.",
        reference="THUDM/ChatGLM2-6B ptuning/main.py and tokenization_chatglm.py build_prompt",
        bos=False,
        prefix="[gMASK]sop",
        system="{system}\n\n",
        history="[Round {idx}]\n\n问：{content}\n\n答：{answer}\n\n",
        user="[Round {idx}]\n\n问：{content}\n\n答：",
        idx_start=1,
    )
)
register(
    PromptFormat(
        name="chatglm3",
        description="ChatGLM3-6B: [gMASK]sop, <|system|>/<|user|>/<|assistant|> role tokens; the next <|user|> "
        "ends a turn (trained), EOS ends the last.",
        reference="THUDM/ChatGLM3 finetune_demo/finetune_hf.py (process_batch) and LLaMA-Factory's chatglm3 "
        "template (src/llamafactory/data/template.py)",
        bos=False,
        prefix="[gMASK]sop",
        system="<|system|>\n{system}",
        empty_system=True,
        user="<|user|>\n{content}<|assistant|>",
        response="\n{content}",
        eot="<|user|>",
        eot_opens_next_turn=True,
    )
)
register(
    PromptFormat(
        name="bloom",
        description="BELLE (BLOOM/LLaMA): 'Human: \\n...\\n\\nAssistant: \\n', EOS after every answer, nothing "
        "between turns, no BOS; a system prompt goes first, then a blank line.",
        reference="LianjiaTech/BELLE train/src/sample_generator.py (sft_sample_to_ids)",
        bos=False,
        system="{system}\n\n",
        user="Human: \n{content}\n\nAssistant: \n",
    )
)
register(
    PromptFormat(
        name="bayling",
        description="BayLing: its system text, '### Instruction:' / '### Response:' turns, </s> and a newline "
        "after each answer; BOS as the tokenizer adds it.",
        reference="ictnlp/BayLing bayling/conversation.py (SeparatorStyle.BAYLING)",
        system="{system}\n",
        default_system=BAYLING_SYSTEM,
        default_system_names=("NLP Group of ICT/CAS",),
        user="### Instruction:\n{content}\n### Response:\n",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="phi3",
        description="Phi-3: <|system|>, <|user|>, <|assistant|> headers, <|end|> and a newline after every turn, "
        "<|endoftext|> at the end; no BOS.",
        reference="microsoft/Phi-3-mini-4k-instruct tokenizer_config.json chat_template",
        bos=False,
        system="<|system|>\n{system}<|end|>\n",
        empty_system=True,
        user="<|user|>\n{content}<|end|>\n<|assistant|>\n",
        eot="<|end|>",
        turn_separator="\n",
        separator_after_last=True,
        suffix="<|endoftext|>",
    )
)
register(
    PromptFormat(
        name="chatml",
        description="ChatML: <|im_start|>role\\n...<|im_end|>; <|im_end|> trained, the newline after it not.",
        reference="Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template (with a system message)",
        system="<|im_start|>system\n{system}<|im_end|>\n",
        empty_system=True,
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
        reference="Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template",
        system="<|im_start|>system\n{system}<|im_end|>\n",
        default_system=QWEN_DEFAULT_SYSTEM,
        default_system_names=("Qwen", "Alibaba Cloud"),
        empty_system=True,
        user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        eot="<|im_end|>",
        turn_separator="\n",
        separator_after_last=True,
    )
)
register(
    PromptFormat(
        name="llama2",
        description="Llama-2 chat: <s>[INST] <<SYS>>\\n...\\n<</SYS>>\\n\\n... [/INST] answer </s>, BOS and EOS "
        "on every turn.",
        reference="meta-llama/llama llama/generation.py (chat_completion: f'{B_INST} {user} {E_INST} {answer} ' "
        "with bos and eos per turn)",
        bos=True,
        bos_each_turn=True,
        system_in_first_user=True,
        empty_system=True,
        first_user="[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{content} [/INST]",
        user="[INST] {content} [/INST]",
        response=" {content} ",
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
            from ..templates.safe_yaml import safe_load_bounded

            data = safe_load_bounded(text)  # alias bombs refused, like every YAML the project reads
    except Exception as exc:
        raise ConfigError(f"{p}: cannot parse format file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a format file is a mapping")
    if "prompt_input" in data and "name" not in data:  # alpaca-lora template
        unknown = sorted(set(data) - {"prompt_input", "prompt_no_input", "response_split", "description"})
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) in alpaca-lora template: {', '.join(unknown)}")
        prompt_no_input = str(data.get("prompt_no_input") or data["prompt_input"])
        return PromptFormat(
            name=p.stem,
            description=str(data.get("description", "")),
            reference=f"alpaca-lora template {p.name}",
            prompt_input=str(data["prompt_input"]),
            prompt_no_input=prompt_no_input,
            system="{system}\n\n",
            user=prompt_no_input.replace("{instruction}", "{content}"),
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
    _check_field_types(data, p)
    base = FORMATS.get(str(data.pop("base", ""))) if "base" in data else None
    fmt = PromptFormat(**{**(base.to_dict() if base else {}), **data, "source": str(p)})
    for wrapper in (
        fmt.user,
        fmt.system,
        fmt.response,
        fmt.history or "",
        fmt.single_user or "",
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


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "bool": (bool,),
    "bool | None": (bool, type(None)),
    "int": (int,),
    "tuple[str, ...]": (list, tuple),
    "dict[str, Any]": (dict,),
}


def _check_field_types(data: dict[str, Any], path: Path) -> None:
    """A format file's values have the types PromptFormat declares (`user: [1, 2]` is named, not a traceback)."""
    declared = {f.name: str(f.type) for f in fields(PromptFormat)}
    for key, value in data.items():
        kinds = _FIELD_TYPES.get(declared.get(key, ""))
        if kinds is None:
            continue
        ok = isinstance(value, kinds) and not (kinds == (int,) and isinstance(value, bool))
        if ok and kinds == (list, tuple):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            want = declared[key].replace("tuple[str, ...]", "a list of strings")
            raise ConfigError(f"{path}: field '{key}' must be {want}, not {type(value).__name__} {value!r:.60}")


def get_format(name_or_path: str) -> PromptFormat:
    if name_or_path in FORMATS:
        return FORMATS[name_or_path]
    if Path(name_or_path).suffix.lower() in (".json", ".yaml", ".yml"):
        return load_format_file(name_or_path)
    raise ConfigError(
        f"unknown prompt format '{name_or_path}' (built in: {', '.join(sorted(FORMATS))}, chat_template; "
        "or a .yaml/.json format file)"
    )
