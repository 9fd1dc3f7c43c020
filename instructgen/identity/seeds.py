"""Identity seed pools (`task_templates/identity/<lang>.yaml`): questions and answers per category.

Unlike task pools, an identity pool pairs any question of a category with any answer of the
same category, so each entry is a short Jinja text and the category is the unit of meaning.
Validated on load like every pool: unknown keys, syntax, unknown variables, a category with
questions but no answers (or the reverse).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from jinja2 import TemplateSyntaxError

from ..errors import ConfigError, TemplateError
from ..templates.languages import normalize_code
from ..templates.pool import _Renderer

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
}
CATEGORIES = (
    "greeting",
    "name",
    "developer",
    "capabilities",
    "limitations",
    "languages",
    "denial",
    "adversarial",
    "short",
    "cutoff",
    "contact",
)
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
}


@dataclass
class Entry:
    id: str
    category: str
    text: str
    render: _Renderer
    variables: frozenset[str]


@dataclass
class SeedPool:
    language: str
    path: str
    list_sep: str
    list_and: str
    capability_names: dict[str, str]
    needs: dict[str, list[str]]
    system: list[Entry]
    questions: dict[str, list[Entry]] = field(default_factory=dict)
    answers: dict[str, list[Entry]] = field(default_factory=dict)

    def join(self, items: list[str]) -> str:
        if len(items) <= 1:
            return "".join(items)
        return self.list_sep.join(items[:-1]) + self.list_and + items[-1]


def _entry(text: object, entry_id: str, category: str, path: str) -> Entry:
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("entries must be non-empty text", path=path, template_id=entry_id)
    try:
        renderer = _Renderer(text)
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
    return Entry(entry_id, category, text, renderer, frozenset(variables))


def parse_seed_pool(text: str, *, path: str) -> SeedPool:
    try:
        data = yaml.safe_load(text)
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
            _entry(t, f"identity-{language}-system-{i + 1:02d}", "system", path)
            for i, t in enumerate(data.get("system") or [])
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
                _entry(t, f"identity-{language}-{category}-{letter}{i + 1:02d}", category, path)
                for i, t in enumerate(texts or [])
            ]
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
    root = resources.files("instructgen") / "task_templates" / "identity"
    pools = {}
    with resources.as_file(root) as base:
        for file in sorted(Path(base).glob("*.yaml")):
            pool = load_seed_pool(file, display_path=f"builtin:identity/{file.name}")
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
