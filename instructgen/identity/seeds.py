"""Identity seed pools (`task_templates/identity/<lang>.yaml`): questions and answers per category.

An identity pool pairs a question of a category with an answer of the same category, but only
an answer that states every fact the question asks for: "Who built you? One word." asks for
the developer, so "I'm {{ name }}." may not answer it. Facts are data in the pool:

- a question asks for its category's default facts (`DEFAULT_ASKS`) unless it is written as a
  mapping `{text: ..., asks: [developer]}`; `tags` mark its tone (`suspicion`, `order`);
- an answer states the facts of the variables it uses ({{ developer }} -> developer) plus those
  listed in `states` (`ai`, `memory`, `browsing`, `feelings`, `mistakes`, ...); `fits` lists tags
  a question must carry for the answer to suit it ("I understand why you might think so" fits
  only a `suspicion`).

Validated on load like every pool: unknown keys, syntax, unknown variables and facts, a category
with questions but no answers (or the reverse).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jinja2 import TemplateSyntaxError

from ..errors import ConfigError, TemplateError
from ..templates.languages import normalize_code
from ..templates.pool import Renderer, builtin_pool_files
from ..templates.safe_yaml import safe_load_bounded

# What an identity template may use, and the persona field each variable comes from.
VARIABLES = {
    "name": "name",
    "developer": "developer",
    "description": "description",
    "capabilities": "capabilities",
    "strengths": "strengths",
    "limitations": "limitations",
    "languages": "languages",
    "other": "deny",
    "cutoff": "knowledge_cutoff",
    "contact": "contact",
    "base_model": "base_model",
}
# Variables whose absence drops the entries that use them instead of stopping the run.
OPTIONAL_VARIABLES = frozenset({"description", "limitations", "strengths", "languages", "base_model"})
CATEGORIES = (
    "greeting",
    "name",
    "introduction",
    "developer",
    "capabilities",
    "limitations",
    "languages",
    "denial",
    "adversarial",
    "short",
    "cutoff",
    "contact",
    "base_model",
)
# What an answer can state. Variables state their own fact; the rest are listed per answer.
FACTS = frozenset(
    {
        *VARIABLES,
        "not_other",  # denies being {{ other }} (the variable states it)
        "greeting",
        "ai",  # says it is an AI / a language model, not a person
        "memory",
        "browsing",
        "feelings",
        "mistakes",
        "base_model_private",  # declines to name the base model (disclose_base_model: false)
    }
)
FACT_OF_VARIABLE = {v: ("not_other" if v == "other" else v) for v in VARIABLES}
TAGS = frozenset({"suspicion", "order", "yes_no"})
DEFAULT_ASKS: dict[str, tuple[str, ...]] = {
    "greeting": ("greeting",),
    "name": ("name",),
    "introduction": ("name", "developer"),
    "developer": ("developer",),
    "capabilities": ("capabilities",),
    "limitations": ("mistakes",),
    "languages": ("languages",),
    "denial": ("name", "not_other"),
    "adversarial": ("name", "not_other"),
    "short": ("name",),
    "cutoff": ("cutoff",),
    "contact": ("contact",),
    "base_model": ("base_model",),
}
TOP_KEYS = {
    "task",
    "language",
    "list_sep",
    "list_and",
    "capability_names",
    "needs",
    "system",
    "questions",
    "answers",
    "other_names",
    "closings",
}
# Categories whose answers may end with one of the pool's `closings` ("How can I help you today?"):
# more distinct answers for large -n without a new fact or a repeated row.
CLOSING_CATEGORIES = frozenset(
    {"name", "introduction", "developer", "capabilities", "limitations", "languages", "base_model"}
)


@dataclass
class Entry:
    id: str
    category: str
    text: str
    render: Renderer
    variables: frozenset[str]
    facts: frozenset[str] = frozenset()  # question: what it asks for; answer: what it states
    tags: frozenset[str] = frozenset()  # question: its tone; answer: tones it fits (empty: any)
    raw: object = None  # the entry as written in the pool (text or mapping), to copy it elsewhere
    closing: bool = True  # answer: may take a closing sentence (False where it already invites one)

    def answers(self, question: Entry) -> bool:
        """True when this answer states every fact `question` asks for and suits its tone."""
        return question.facts <= self.facts and self.tags <= question.tags


@dataclass
class SeedPool:
    language: str
    path: str
    list_sep: str
    list_and: str
    capability_names: dict[str, str]
    needs: dict[str, list[str]]
    system: list[Entry]
    other_names: dict[str, str] = field(default_factory=dict)  # "通义千问" -> "通義千問" (ja)
    closings: list[Entry] = field(default_factory=list)
    questions: dict[str, list[Entry]] = field(default_factory=dict)
    answers: dict[str, list[Entry]] = field(default_factory=dict)

    def join(self, items: list[str]) -> str:
        if len(items) <= 1:
            return "".join(items)
        return self.list_sep.join(items[:-1]) + self.list_and + items[-1]


def _words(value: object, known: frozenset[str], what: str, path: str, entry_id: str) -> frozenset[str]:
    items = [value] if isinstance(value, str) else list(value or [])
    unknown = sorted(str(i) for i in items if i not in known)
    if unknown:
        raise TemplateError(
            f"unknown {what} '{unknown[0]}'; known: {', '.join(sorted(known))}",
            path=path,
            template_id=entry_id,
        )
    return frozenset(str(i) for i in items)


def parse_entry(raw: object, entry_id: str, category: str, path: str, kind: str = "system") -> Entry:
    """One question/answer: a text, or {text, asks|states, tags|fits} (see the module docstring)."""
    extra: dict = {}
    text = raw
    if isinstance(raw, dict):
        allowed = {
            "questions": {"text", "asks", "tags"},
            "answers": {"text", "states", "fits", "closing"},
        }.get(kind, {"text"})
        bad = sorted(set(raw) - allowed)
        if bad:
            raise TemplateError(
                f"unknown key '{bad[0]}' (a {kind[:-1]} may have: {', '.join(sorted(allowed))})",
                path=path,
                template_id=entry_id,
            )
        text, extra = raw.get("text"), raw
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("entries must be non-empty text", path=path, template_id=entry_id)
    try:
        renderer = Renderer(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Jinja syntax error: {exc.message}", path=path, template_id=entry_id) from None
    variables = renderer.variables()
    unknown = sorted(variables - set(VARIABLES))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(VARIABLES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TemplateError(
            f"unknown variable '{unknown[0]}'{hint}; identity templates may use: {', '.join(sorted(VARIABLES))}",
            path=path,
            template_id=entry_id,
        )
    if kind == "questions":
        asks = _words(extra.get("asks", DEFAULT_ASKS.get(category, ())), FACTS, "fact", path, entry_id)
        tags = _words(extra.get("tags"), TAGS, "tag", path, entry_id)
        return Entry(entry_id, category, text, renderer, frozenset(variables), asks, tags, raw)
    if kind == "answers":
        states = _words(extra.get("states"), FACTS, "fact", path, entry_id)
        states |= {FACT_OF_VARIABLE[v] for v in variables}
        fits = _words(extra.get("fits"), TAGS, "tag", path, entry_id)
        closing = extra.get("closing", True)
        if not isinstance(closing, bool):
            raise TemplateError("'closing' must be true or false", path=path, template_id=entry_id)
        closing = closing and category in CLOSING_CATEGORIES and not text.rstrip().endswith(("?", "？"))
        return Entry(entry_id, category, text, renderer, frozenset(variables), states, fits, raw, closing)
    return Entry(entry_id, category, text, renderer, frozenset(variables))


def parse_seed_pool(text: str, *, path: str) -> SeedPool:
    try:
        data = safe_load_bounded(text)  # refuses alias bombs and runaway nesting
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise TemplateError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path=where) from None
    if not isinstance(data, dict) or data.get("task") != "identity":
        raise TemplateError("an identity pool is a mapping with 'task: identity'", path=path)
    extra = sorted(set(data) - TOP_KEYS)
    if extra:
        raise TemplateError(f"unknown top-level key(s): {', '.join(extra)}", path=path)
    try:
        language = normalize_code(str(data.get("language", "")))
    except ConfigError as exc:
        raise TemplateError(str(exc), path=path) from None
    pool = SeedPool(
        language=language,
        path=path,
        list_sep=str(data.get("list_sep", ", ")),
        list_and=str(data.get("list_and", ", ")),
        capability_names={str(k): str(v) for k, v in (data.get("capability_names") or {}).items()},
        needs={str(k): list(v) for k, v in (data.get("needs") or {}).items()},
        system=[
            parse_entry(t, f"identity-{language}-system-{i + 1:02d}", "system", path)
            for i, t in enumerate(data.get("system") or [])
        ],
        other_names={str(k): str(v) for k, v in (data.get("other_names") or {}).items()},
        closings=[
            parse_entry(t, f"identity-{language}-closing-{i + 1:02d}", "closing", path)
            for i, t in enumerate(data.get("closings") or [])
        ],
    )
    for kind in ("questions", "answers"):
        block = data.get(kind) or {}
        if not isinstance(block, dict):
            raise TemplateError(f"'{kind}' must map categories to lists", path=path)
        for category, texts in block.items():
            if category not in CATEGORIES:
                close = difflib.get_close_matches(str(category), CATEGORIES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TemplateError(f"unknown category '{category}' in {kind}{hint}", path=path)
            letter = "q" if kind == "questions" else "a"
            getattr(pool, kind)[category] = [
                parse_entry(t, f"identity-{language}-{category}-{letter}{i + 1:02d}", category, path, kind)
                for i, t in enumerate(texts or [])
            ]
    for category, answers in pool.answers.items():
        entries = [*pool.questions.get(category, []), *answers]
        if not any(isinstance(e.raw, dict) and ({"asks", "states"} & set(e.raw)) for e in entries):
            # A pool that annotates no facts in this category (written before facts existed, or
            # generated): its answers are trusted to answer the category's questions, as before.
            default = frozenset(DEFAULT_ASKS.get(category, ()))
            for e in answers:
                e.facts = e.facts | default
    for category in sorted(set(pool.questions) ^ set(pool.answers)):
        has = "questions" if category in pool.questions else "answers"
        lacks = "answers" if has == "questions" else "questions"
        raise TemplateError(f"category '{category}' has {has} but no {lacks}", path=path)
    return pool


def load_seed_pool(path: str | Path, display_path: str | None = None) -> SeedPool:
    shown = display_path or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TemplateError("pool file not found", path=shown) from None
    return parse_seed_pool(text, path=shown)


def builtin_seed_pools() -> dict[str, SeedPool]:
    """The shipped pools by language (a fresh dict over pools parsed once per process)."""
    return dict(_builtin_seed_pools())


@functools.lru_cache(maxsize=1)
def _builtin_seed_pools() -> dict[str, SeedPool]:
    pools = {}
    for shown, file in builtin_pool_files("identity", seed_pools=True):
        pool = load_seed_pool(file, display_path=shown)
        pools[pool.language] = pool
    return pools


def capability_index(pools: dict[str, SeedPool]) -> dict[str, str]:
    """Every localized capability name (casefolded) -> its key, so `--capability 翻译` means translation."""
    index: dict[str, str] = {}
    for pool in pools.values():
        for key, name in pool.capability_names.items():
            index.setdefault(key.casefold(), key)
            index.setdefault(name.casefold(), key)
    return index
