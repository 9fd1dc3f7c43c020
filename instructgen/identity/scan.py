"""Contamination scan: assistant turns that would teach a persona model to be someone else.

Data distilled from a teacher carries the teacher's voice. Three categories, counted apart
because they call for different fixes:

- `other_assistant`: claims another named assistant or its maker ("I'm ChatGPT", "developed by
  OpenAI", "我是通义千问"); after `mix` the model denies its own name.
- `ai_self_reference`: the teacher talks about itself as an anonymous AI ("As an AI language
  model, I ...", "由于我是一个人工智能语言模型"); it contradicts a persona's name and invites
  the refusals that follow it.
- `refusal`: the answer opens by declining ("I'm sorry, but I cannot ...", "很抱歉，您没有提供
  文本"); as training targets these teach the model to refuse.

Only assistant turns are scanned: a user asking "are you ChatGPT?" is not contamination, and
a third-person mention ("AI language models can ...", "你作为一个人工智能助手") is not a
self-reference. Precision and recall per category are measured on `tests/data/scan_labelled.jsonl`
(`python -m instructgen.identity.scan_eval`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ..schema import Record

CATEGORIES = ("other_assistant", "ai_self_reference", "refusal")

_ASSISTANTS_EN = r"(?:ChatGPT|GPT-?4o?|GPT-?3(?:\.5)?|Claude|Gemini|Bard|LLaMA|Llama|Qwen|ERNIE(?: Bot)?|DeepSeek|Mistral|ChatGLM)"
_ASSISTANTS_ZH = r"(?:ChatGPT|GPT-?4|通义千问|通義千問|文心一言|Claude|Gemini|Llama|DeepSeek|Qwen|ERNIE|讯飞星火|智谱清言|ChatGLM|豆包|Kimi)"
_ORGS_EN = r"(?:OpenAI|Anthropic|Google(?: DeepMind)?|Meta AI|Meta|Alibaba(?: Cloud)?|Baidu|DeepSeek|Mistral AI|Zhipu AI)"
_ORGS_ZH = r"(?:OpenAI|Anthropic|谷歌|Google|Meta|阿里云|阿里巴巴|百度|深度求索|智谱|月之暗面|字节跳动)"

# What an anonymous AI calls itself, per language.
_AI_EN = (
    r"(?:an? )?(?:AI|artificial intelligence|large language model|language model|chatbot|computer program|"
    r"virtual assistant|text-based AI)(?:[- ](?:language )?(?:model|assistant|chatbot|program|system|bot))?"
)
_AI_ZH = (
    r"(?:一个|一名|一款|一位|个)?\s*(?:[\u4e00-\u9fff]{1,4}的)?\s*(?:大型|文字型|文本|纯文本|基于文本的)?\s*"
    r"(?:AI|人工智能|语言|计算机|虚拟|聊天|文本)\s*(?:语言)?\s*(?:AI)?\s*(?:模型|助手|机器人|程序|系统|AI)"
    r"|(?:一个|一名)?\s*(?:AI|人工智能)(?![\u4e00-\u9fff])"
)
# Professions that start like an AI self-reference ("As an AI researcher, I ...").
_NOT_SELF_EN = (
    r"(?!-)(?!\s+(?:researcher|engineer|expert|scientist|developer|enthusiast|ethicist|specialist|company|"
    r"startup|professional|practitioner|student|teacher|writer)s?\b)"
)
_SORRY_EN = (
    r"(?:I'?m|I am|I'm)\s+(?:very\s+|so\s+|really\s+)?sorry|Sorry|Unfortunately|Apologies|I apologi[sz]e"
)
_CANT_EN = (
    r"(?:can(?:no|')t|unable|not able|don'?t have|do not have|didn'?t (?:provide|give|specify|include)|"
    r"did not (?:provide|give|specify|include)|haven'?t (?:provided|given)|have not (?:provided|given)|"
    r"(?:isn'?t|is not|not) (?:enough|sufficient)|need more (?:information|context|details)|"
    r"you (?:will |would )?need to (?:specify|provide|give|share)|(?:do not|don'?t) possess the ability|"
    r"not possible for me|not capable|no (?:text|data|input|information|context) (?:was )?(?:provided|given))"
)
_SORRY_ZH = r"(?:我)?(?:很|非常|十分|真的)?(?:抱歉|对不起|不好意思|遗憾)"
_CANT_ZH = (
    r"(?:无法|不能|不知道|(?:并)?没有(?:为我|给我|向我)?(?:提供|给出|给|指定|说明|附上|告诉)|并未(?:提供|给出|给)|"
    r"未(?:提供|给出|指定)|(?:你|您)需要(?:提供|给出)|不具备|不具有|(?:并)?没有(?:能力|办法|可以))"
)
# A short opener before a refusal: "您好，", "喔不，", "根据您提供的信息，".
_OPEN_ZH = r"^\W*(?:(?:您好|你好|喔不|哦|嗯|好的)[，,！!]\s*)?"

PATTERNS: dict[str, tuple[str, re.Pattern[str]]] = {
    # --- other_assistant ------------------------------------------------------------------------
    "claims_other_assistant_en": (
        "other_assistant",
        re.compile(rf"\b(?:I am|I'm|my name is|this is)\s+{_ASSISTANTS_EN}\b", re.I),
    ),
    "made_by_other_org_en": (
        "other_assistant",
        re.compile(
            rf"\b(?:I was|I'm|I am|I've been|model|assistant|AI)\s+(?:\w+\s+){{0,3}}?(?:developed|created|trained|"
            rf"built|made|designed)\s+by\s+{_ORGS_EN}\b",
            re.I,
        ),
    ),
    "claims_other_assistant_zh": (
        "other_assistant",
        re.compile(rf"(?:我是|我叫|我的名字是)\s*{_ASSISTANTS_ZH}"),
    ),
    "made_by_other_org_zh": (
        "other_assistant",
        re.compile(
            rf"(?:我(?:是|由)?\s*(?:由)?\s*{_ORGS_ZH}\s*(?:开发|研发|训练|打造|创建)|{_ORGS_ZH}(?:开发|研发|训练|打造)的"
            rf"(?:AI|人工智能|语言模型|助手|模型)|由\s*{_ORGS_ZH}\s*(?:开发|研发|训练|打造|创建)的(?:AI|人工智能|语言模型|助手))"
        ),
    ),
    "claims_other_assistant_ja_ko": (
        "other_assistant",
        re.compile(rf"(?:私は|僕は|저는|나는)\s*{_ASSISTANTS_ZH}\s*(?:です|입니다|이에요|예요|だ)"),
    ),
    "claims_other_assistant_eu": (
        "other_assistant",
        re.compile(rf"(?<![Nn]o )\b(?:[Ii]ch bin|[Jj]e suis|[Ss]oy|[Yy]o soy)\s+{_ASSISTANTS_EN}\b"),
    ),
    # --- ai_self_reference -------------------------------------------------------------------------
    "as_an_ai_en": (
        "ai_self_reference",
        re.compile(
            rf"\b(?:as|being)\s+{_AI_EN}\b{_NOT_SELF_EN}[^.!?\n]{{0,40}}?\b(?:I|I'm|I am|my|me)\b", re.I
        ),
    ),
    "i_am_an_ai_en": (
        "ai_self_reference",
        re.compile(
            rf"\b(?:I'?m|I am)\s+(?:just |only |merely |simply )?(?:an? )?{_AI_EN}\b{_NOT_SELF_EN}", re.I
        ),
    ),
    "as_an_ai_zh": (
        "ai_self_reference",
        re.compile(rf"(?<![你您他她])(?:作为|身为)\s*(?:{_AI_ZH})(?![，,]?\s*[你您他她])"),
    ),
    "i_am_an_ai_zh": (
        "ai_self_reference",
        re.compile(
            rf"我\s*(?:只是|仅仅是|是|作为)\s*(?:由[^，,。]{{1,12}}?(?:开发|研发|训练|打造)的)?\s*(?:{_AI_ZH})"
        ),
    ),
    "as_an_ai_ja": (
        "ai_self_reference",
        re.compile(
            r"(?:私は|僕は)?(?:AI|人工知能|言語モデル|AIアシスタント|AI言語モデル)(?:として|である私|なので、?私)|私は(?:AI|人工知能|言語モデル|AIアシスタント|AI言語モデル)(?:です|であり|なので)"
        ),
    ),
    "as_an_ai_ko": (
        "ai_self_reference",
        re.compile(
            r"(?:AI|인공지능|언어 ?모델|AI 언어 ?모델|AI 어시스턴트)(?:로서|으로서)|저는 (?:AI|인공지능|언어 ?모델|AI 언어 ?모델|AI 어시스턴트)(?:입니다|이기|이라서|라서|이므로|이고)"
        ),
    ),
    "as_an_ai_de": (
        "ai_self_reference",
        re.compile(
            r"\bAls (?:eine? )?(?:KI-Sprachmodell|KI-Assistent|KI|künstliche Intelligenz|Sprachmodell|Chatbot)(?![-\w])"
            r"|\bIch bin (?:nur |lediglich )?(?:eine? )?(?:KI-Sprachmodell|KI-Assistent|KI|künstliche Intelligenz|Sprachmodell)(?![-\w])"
        ),
    ),
    "as_an_ai_fr": (
        "ai_self_reference",
        re.compile(
            r"\b[Ee]n tant qu(?:e |')(?:une? )?(?:IA|intelligence artificielle|modèle de langage|assistant (?:d'IA|virtuel))"
            r"|\bJe (?:ne )?suis (?:qu')?(?:une IA|un modèle de langage|une intelligence artificielle|un assistant (?:d'IA|virtuel))"
        ),
    ),
    "as_an_ai_es": (
        "ai_self_reference",
        re.compile(
            r"\b[Cc]omo (?:una? )?(?:IA|inteligencia artificial|modelo de lenguaje|asistente (?:de IA|virtual))\b"
            r"|\b[Ss]oy (?:solo |sólo )?(?:una IA|un modelo de lenguaje|una inteligencia artificial|un asistente (?:de IA|virtual))"
        ),
    ),
    # --- refusal: the answer opens by declining ----------------------------------------------------
    "refusal_en": (
        "refusal",
        re.compile(
            rf"^\W*(?:(?:{_SORRY_EN})\b[^.!?\n]{{0,120}}?\b{_CANT_EN}|(?:As an AI[^,]*,\s*)?I\s+{_CANT_EN}\s+"
            rf"(?:access|browse|provide|retrieve|perceive|see|create|generate|determine|answer|complete|perform|"
            rf"draw|display|estimate|physically)"
            rf"|(?:As an? |I'?m an? |I am an? )(?:AI|artificial intelligence|language model)[^,.]*,?\s*(?:and |so )?(?:I\s+)?"
            rf"(?:can(?:no|')t|am unable|unable|am not (?:capable|able)|not capable|(?:do not|don'?t) "
            rf"(?:have|possess) (?:the ability|access|the capability|a physical)))",
            re.I,
        ),
    ),
    "refusal_zh": (
        "refusal",
        re.compile(
            rf"{_OPEN_ZH}(?:{_SORRY_ZH}[^。！？\n]{{0,60}}?{_CANT_ZH}"
            rf"|(?:根据[^，,。]{{1,15}}[，,]\s*)?我(?:无法|不能)(?:访问|回答|提供|确定|生成|完成|看到|判断|获取)"
            rf"|(?:由于|因为)?(?:您|你)(?:没有|并未|未)(?:提供|给出|给|指定|告诉)"
            rf"|(?:由于|因为)?我是[^。！？\n]{{0,25}}?[，,]\s*(?:所以)?我?(?:并)?(?:无法|不能|不知道|没有办法)"
            rf"|(?:作为|身为)[^，,。]{{1,20}}[，,]\s*我(?:并)?(?:无法|不能|没有(?:办法|亲身|实体)|不具备))"
        ),
    ),
    "refusal_ja": (
        "refusal",
        re.compile(
            r"^\W*(?:申し訳(?:ありません|ございません)が|すみませんが)[^\n]{0,80}?(?:できません|られません)"
        ),
    ),
    "refusal_ko": (
        "refusal",
        re.compile(r"^\W*(?:죄송(?:하지만|합니다)|미안하지만)[^\n]{0,80}?(?:수 없|못합니다)"),
    ),
    "refusal_de": (
        "refusal",
        re.compile(
            r"^\W*(?:Es tut mir leid|Leider|Entschuldigung)[^.!?\n]{0,80}?\b(?:kann ich|ich kann|nicht möglich)\b"
        ),
    ),
    "refusal_fr": (
        "refusal",
        re.compile(
            r"^\W*(?:Désolée?|Je suis désolée?|Malheureusement)[^.!?\n]{0,80}?\b(?:ne peux pas|n'ai pas accès|impossible)"
        ),
    ),
    "refusal_es": (
        "refusal",
        re.compile(
            r"^\W*(?:Lo siento|Lamentablemente|Disculpa)[^.!?\n]{0,80}?\b(?:no puedo|no tengo acceso|no es posible)"
        ),
    ),
}


@dataclass(frozen=True)
class Hit:
    category: str
    pattern: str
    text: str


@dataclass
class ScanReport:
    scanned: int = 0
    flagged: int = 0
    by_category: Counter = field(default_factory=Counter)  # records with at least one hit of it
    by_pattern: Counter = field(default_factory=Counter)

    def add(self, hits: list[Hit]) -> None:
        self.scanned += 1
        if hits:
            self.flagged += 1
            self.by_category.update({h.category for h in hits})
            self.by_pattern.update(h.pattern for h in hits)

    def summary(self) -> str:
        lines = [f"scan: {self.scanned} records, {self.flagged} flagged"]
        for cat in CATEGORIES:
            if self.by_category[cat]:
                lines.append(f"  {cat}: {self.by_category[cat]}")
                pats = [(p, n) for p, n in self.by_pattern.items() if PATTERNS[p][0] == cat]
                lines += [f"    {p}: {n}" for p, n in sorted(pats, key=lambda kv: (-kv[1], kv[0]))]
        return "\n".join(lines)


def scan_hits(text: str, allow: tuple[str, ...] = (), categories: tuple[str, ...] = CATEGORIES) -> list[Hit]:
    """Every hit in `text` of the chosen categories. Hits containing an allowed name are skipped, and
    so is an AI self-reference in a text that names an allowed name: "My name is 雁栖-7B. I'm an AI"
    is the persona speaking, not an anonymous teacher."""
    hits = []
    text = text.replace("\u2019", "'")  # "don’t" reads as "don't" (same length: matches slice alike)
    named = any(a and a.lower() in text.lower() for a in allow)
    for name, (category, pattern) in PATTERNS.items():
        if category not in categories or (named and category == "ai_self_reference"):
            continue
        for m in pattern.finditer(text):
            if not any(a and a.lower() in m.group(0).lower() for a in allow):
                hits.append(Hit(category, name, m.group(0)))
    return hits


IDENTITY_CATEGORIES = ("other_assistant", "ai_self_reference")


def scan_text(text: str, allow: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(pattern name, matched text) for each identity hit: another assistant or an anonymous AI.
    Refusals are left out here: a persona's own answers rightly refuse ("Sorry, I can't confirm
    something that isn't true")."""
    return [(h.pattern, h.text) for h in scan_hits(text, allow, IDENTITY_CATEGORIES)]


def scan_record(
    record: Record, allow: tuple[str, ...] = (), categories: tuple[str, ...] = CATEGORIES
) -> list[Hit]:
    texts = [t.assistant for t in record.history] + [record.output]
    return [hit for text in texts for hit in scan_hits(text, allow, categories)]
