"""The records that flow between pipeline steps.

`Record` is what a converter produces and a writer consumes; `Rejected` is what a converter
produces instead when an example must not become training data, so that nothing is dropped
without a reason that ends up in the summary and the rejects file.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Turn(BaseModel):
    """One earlier exchange of a multi-turn record (Alpaca `history` semantics)."""

    model_config = ConfigDict(frozen=True)

    user: str
    assistant: str


class Record(BaseModel):
    """An instruction-tuning record: the Alpaca triple plus optional system prompt and history."""

    model_config = ConfigDict(extra="forbid")

    instruction: str
    input: str = ""
    output: str
    system: str | None = None
    history: list[Turn] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def prompt_text(self) -> str:
        """The user turn as chat formats show it: instruction, then input on its own line."""
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction


class Rejected(BaseModel):
    """An example that did not become a record, with a stable reason code and a human detail."""

    model_config = ConfigDict(extra="forbid")

    reason: str
    detail: str = ""
    source_file: str | None = None
    line: int | None = None
    example: dict[str, Any] = Field(default_factory=dict)


class Example(BaseModel):
    """A source example as read: its fields, a stable key and where it came from."""

    model_config = ConfigDict(extra="forbid")

    key: str
    fields: dict[str, Any]
    source_file: str | None = None
    line: int | None = None


class TemplateSpec(BaseModel):
    """One entry of a pool file, as written by a person or an LLM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    instruction: str
    input: str = ""
    output: str
    system: str | None = None
    kind: str = "original"
    # The answer shapes the wording fits (NER: list, json, inline, per-type); empty: decided by the
    # task from the variables used. An "extract the entities" instruction cannot ask for an inline
    # answer, which copies the sentence with marks.
    targets: tuple[str, ...] = ()
    source: str = "human"
    note: str | None = None


# Assistants an identity-tuned model must not claim to be; "A/B" lists names of one assistant.
DEFAULT_DENY = [
    "ChatGPT",
    "GPT-4",
    "Claude",
    "Gemini",
    "Qwen/通义千问",
    "Llama",
    "ERNIE/文心一言",
    "DeepSeek",
]

LocalText = str | dict[str, str]


class Persona(BaseModel):
    """Who the fine-tuned model says it is. Texts may be given per language: {"zh": ..., "en": ...}."""

    model_config = ConfigDict(extra="forbid")

    name: LocalText
    aliases: list[str] = Field(default_factory=list)
    developer: LocalText
    description: LocalText | None = None
    capabilities: list[str] | dict[str, list[str]] = Field(default_factory=list)
    strengths: list[str] | dict[str, list[str]] = Field(default_factory=list)
    limitations: list[str] | dict[str, list[str]] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    knowledge_cutoff: str | None = None
    contact: str | None = None
    deny: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY))
    # The model this one was fine-tuned from ("Llama 2" / "BayLing"): answers about it tell the
    # truth ("built on top of X") instead of denying it, and it is never among the names denied.
    base_model: LocalText | None = None
    disclose_base_model: bool = True  # False: "I can't share which model I was built from", never a denial

    def text(self, field: str, language: str) -> str | None:
        """A text field in `language`, else its plain/default value, else None."""
        value = getattr(self, field)
        if isinstance(value, dict):
            base = language.split("-")[0]
            return (
                value.get(language)
                or value.get(base)
                or value.get("default")
                or next(iter(value.values()), None)
            )
        return value

    def names(self) -> list[str]:
        """Every name the persona answers to (all languages and aliases): what its answers must mention."""
        out = list(self.name.values()) if isinstance(self.name, dict) else [self.name]
        return out + [a for a in self.aliases if a not in out]

    def items(self, field: str, language: str) -> list[str]:
        value = getattr(self, field)
        if isinstance(value, dict):
            base = language.split("-")[0]
            return list(value.get(language) or value.get(base) or value.get("default") or [])
        return list(value)
