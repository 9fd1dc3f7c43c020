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
    source: str = "human"
    note: str | None = None
