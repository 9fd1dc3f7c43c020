"""Contamination scan: assistant turns in which a model claims another assistant's identity.

Data distilled from a teacher carries the teacher's identity ("As an AI language model
developed by OpenAI", "我是通义千问"); a model trained on it then denies its own name. The
scan reads any Alpaca/ShareGPT/messages file and counts hits by pattern. Only assistant
turns are scanned: a user asking "are you ChatGPT?" is not contamination.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ..schema import Record

_ASSISTANTS_EN = r"(?:ChatGPT|GPT-?4o?|GPT-?3\.5|Claude|Gemini|Bard|LLaMA|Llama|Qwen|ERNIE(?: Bot)?|DeepSeek|Mistral|ChatGLM)"
_ASSISTANTS_ZH = r"(?:ChatGPT|GPT-?4|通义千问|文心一言|Claude|Gemini|Llama|DeepSeek|Qwen|ERNIE|讯飞星火|智谱清言|ChatGLM|豆包|Kimi)"
_ORGS_EN = r"(?:OpenAI|Anthropic|Google(?: DeepMind)?|Meta AI|Meta|Alibaba(?: Cloud)?|Baidu|DeepSeek|Mistral AI|Zhipu AI)"
_ORGS_ZH = r"(?:OpenAI|Anthropic|谷歌|Google|Meta|阿里云|阿里巴巴|百度|深度求索|智谱|月之暗面|字节跳动)"

PATTERNS: dict[str, re.Pattern[str]] = {
    "as_an_ai_language_model": re.compile(r"\bas an? (?:AI|artificial intelligence) language model\b", re.I),
    "claims_other_assistant_en": re.compile(rf"\b(?:I am|I'm|my name is|this is)\s+{_ASSISTANTS_EN}\b", re.I),
    "made_by_other_org_en": re.compile(
        rf"\b(?:developed|created|trained|built|made|designed)\s+by\s+{_ORGS_EN}\b", re.I
    ),
    "claims_other_assistant_zh": re.compile(rf"(?:我是|我叫|我的名字是)\s*{_ASSISTANTS_ZH}"),
    "made_by_other_org_zh": re.compile(
        rf"(?:由\s*{_ORGS_ZH}\s*(?:开发|研发|训练|打造|创建)|{_ORGS_ZH}(?:开发|研发|训练|打造)的)"
    ),
    "ai_language_model_zh": re.compile(r"作为一个?(?:AI|人工智能)语言模型"),
}


@dataclass
class ScanReport:
    scanned: int = 0
    flagged: int = 0
    by_pattern: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        lines = [f"scan: {self.scanned} records, {self.flagged} flagged"]
        lines += [
            f"  {name}: {n}" for name, n in sorted(self.by_pattern.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return "\n".join(lines)


def scan_text(text: str, allow: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(pattern name, matched text) for each hit; hits containing an allowed name are skipped."""
    hits = []
    for name, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if not any(a and a.lower() in m.group(0).lower() for a in allow):
                hits.append((name, m.group(0)))
    return hits


def scan_record(record: Record, allow: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    texts = [t.assistant for t in record.history] + [record.output]
    return [hit for text in texts for hit in scan_text(text, allow)]
