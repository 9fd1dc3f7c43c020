"""Persona + seed pools -> self-identity records, balanced, distinct and checked.

Per language, every (question, answer[, other assistant]) combination of a category is a
candidate. Candidates are ordered by a hash of (seed, language, category, ids), with every
question's first use before any reuse. Categories then take turns: first only with questions
not yet used (so the set has as many distinct instructions as the pools allow), with no
category taking more than twice its share while others still have fresh questions; then with
reuse. An exact duplicate (instruction, output) pair is never written: when `n` is more than
the distinct combinations, the run says so and writes what exists.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..determinism import choose_index, stable_hash
from ..errors import ConfigError, TemplateError
from ..quality.filters import leftover_placeholders
from ..quality.langid import LanguageCheck, make_backend
from ..quality.report import Report
from ..schema import Persona, Record, Rejected, Turn
from ..templates.languages import language_name, normalize_code
from .seeds import VARIABLES, Entry, SeedPool, builtin_seed_pools, capability_index, load_seed_pool

TASK = "identity"
OTHER_CATEGORIES = ("denial", "adversarial")
LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class IdentityOptions:
    n: int = 300
    languages: tuple[str, ...] = ()  # default: the persona's languages, else zh and en
    seed: int = 0
    system_ratio: float = 0.0  # share of records that carry a system prompt
    multi_turn_ratio: float = 0.0  # share of records that start with a greeting turn
    seed_files: tuple[str, ...] = ()  # extra identity pools (replace the built-in pool of their language)
    langid: str = "fasttext"


@dataclass
class Candidate:
    category: str
    question: Entry
    answer: Entry
    other: str | None
    order: tuple[int, int]
    instruction_key: tuple[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.instruction_key = (self.question.id, self.other)


class IdentityGenerator:
    def __init__(self, persona: Persona, options: IdentityOptions) -> None:
        self.persona = persona
        self.options = options
        pools = builtin_seed_pools()
        for path in options.seed_files:
            pool = load_seed_pool(path)
            pools[pool.language] = pool
        self.pools = pools
        self._capabilities = capability_index(pools)
        requested = options.languages or tuple(persona.languages) or ("zh", "en")
        self.languages = [normalize_code(code) for code in requested]
        for code in self.languages:
            if code not in pools:
                raise ConfigError(
                    f"no identity seed pool for '{code}' (available: {', '.join(sorted(pools))}); "
                    "add one with --seeds FILE"
                )
        backend = make_backend(options.langid)
        self.check = None if backend is None else LanguageCheck(backend)
        self._masks = sorted(
            {
                *persona.names(),
                *(persona.text("developer", c) or "" for c in pools),
                *(a for d in persona.deny for a in d.split("/")),
            },
            key=len,
            reverse=True,
        )

    # --- persona values in one language ------------------------------------------------------

    def _capability_list(self, field_name: str, pool: SeedPool) -> list[str]:
        out = []
        for item in self.persona.items(field_name, pool.language):
            key = self._capabilities.get(item.casefold())
            if key is not None and key in pool.capability_names:
                out.append(pool.capability_names[key])
            elif key is None and _fits_script(item, pool.language):
                out.append(item)  # free text, used only where its script fits the language
        return out

    def values(self, pool: SeedPool) -> dict[str, str | None]:
        lang = pool.language
        caps = self._capability_list("capabilities", pool) or [pool.capability_names.get("general", "")]
        strengths = self._capability_list("strengths", pool) or caps[:1]
        served = self.persona.languages or self.languages
        return {
            "name": self.persona.text("name", lang),
            "developer": self.persona.text("developer", lang),
            "description": self.persona.text("description", lang),
            "capabilities": pool.join(caps),
            "strengths": pool.join(strengths),
            "limitations": pool.join(self.persona.items("limitations", lang)) or None,
            "languages": pool.join([language_name(code, lang) for code in served]),
            "cutoff": self.persona.knowledge_cutoff,
            "contact": self.persona.contact,
        }

    def _others(self, lang: str) -> list[str]:
        """Names to deny: in CJK pools any alias, elsewhere the Latin-script ones."""
        out = []
        for entry in self.persona.deny:
            aliases = [a.strip() for a in entry.split("/") if a.strip()]
            if lang.split("-")[0] not in ("zh", "ja", "ko"):
                aliases = [a for a in aliases if LATIN.search(a)] or aliases
            out.extend(aliases)
        return out

    # --- candidates -------------------------------------------------------------------------------

    def candidates(self, pool: SeedPool, values: dict[str, Any]) -> dict[str, list[Candidate]]:
        seed, lang = self.options.seed, pool.language
        result: dict[str, list[Candidate]] = {}
        for category, questions in pool.questions.items():
            needs = pool.needs.get(category, [])
            if any(not values.get(v) for v in needs):
                continue  # e.g. no knowledge cutoff given: no cutoff questions
            answers = pool.answers[category]
            for entry in (*questions, *answers):
                for var in entry.variables - {"other"}:
                    if values.get(var) in (None, ""):
                        raise ConfigError(
                            f"template {entry.id} ({pool.path}) needs persona field '{VARIABLES[var]}', "
                            "which the persona does not set"
                        )
            uses_other = any("other" in e.variables for e in (*questions, *answers))
            others: list[str | None] = list(self._others(lang)) if uses_other else [None]
            if uses_other and not others:
                continue
            cands = []
            for q in questions:
                for other in others:
                    group = sorted(
                        answers,
                        key=lambda a, q=q, o=other: stable_hash(seed, TASK, lang, q.id, a.id, o, "rank"),
                    )
                    for rank, a in enumerate(group):
                        order = (rank, stable_hash(seed, TASK, lang, category, q.id, a.id, other))
                        cands.append(Candidate(category, q, a, other, order))
            cands.sort(key=lambda c: c.order)
            result[category] = cands
        return result

    def _pick(self, cands: dict[str, list[Candidate]], quota: int) -> Iterator[Candidate]:
        """Categories take turns; fresh questions first (each category capped at twice its share of
        `quota`), then reuse. Yields until every candidate is used; the caller stops at its quota."""
        cats = [c for c in CATEGORY_ORDER if c in cands]
        cap = max(1, 2 * -(-quota // max(1, len(cats))))
        taken: Counter = Counter()
        used_instr: set = set()
        pos = dict.fromkeys(cats, 0)
        for fresh_only in (True, False):
            progress = True
            while progress:
                progress = False
                for cat in cats:
                    if fresh_only and taken[cat] >= cap:
                        continue
                    lst = cands[cat]
                    i = pos[cat] if not fresh_only else 0
                    while i < len(lst) and (
                        lst[i] is None or (fresh_only and lst[i].instruction_key in used_instr)
                    ):
                        i += 1
                    if i >= len(lst):
                        continue
                    cand = lst[i]
                    lst[i] = None  # consumed
                    if not fresh_only:
                        pos[cat] = i + 1
                    used_instr.add(cand.instruction_key)
                    taken[cat] += 1
                    progress = True
                    yield cand

    # --- records --------------------------------------------------------------------------------------

    def _record(self, pool: SeedPool, values: dict[str, Any], cand: Candidate) -> Record | Rejected:
        lang, seed = pool.language, self.options.seed
        vals = {**values, "other": cand.other}
        question = cand.question.render(vals).strip()
        answer = cand.answer.render(vals).strip()
        key = f"{lang}|{cand.question.id}|{cand.answer.id}|{cand.other}"
        system = None
        if pool.system and _share(seed, key, "system") < self.options.system_ratio:
            system = pool.system[choose_index(len(pool.system), seed, TASK, key, "system-text")].render(vals)
        history: list[Turn] = []
        greet_q, greet_a = pool.questions.get("greeting"), pool.answers.get("greeting")
        if (
            cand.category != "greeting"
            and greet_q
            and greet_a
            and _share(seed, key, "multi") < self.options.multi_turn_ratio
        ):
            gq = greet_q[choose_index(len(greet_q), seed, TASK, key, "greet-q")].render(vals)
            ga = greet_a[choose_index(len(greet_a), seed, TASK, key, "greet-a")].render(vals)
            history = [Turn(user=gq.strip(), assistant=ga.strip())]
        meta = {
            "lang": lang,
            "category": cand.category,
            "question_id": cand.question.id,
            "answer_id": cand.answer.id,
            "other": cand.other,
            "key": key,
        }
        example = {"instruction": question, "output": answer, **meta}

        texts = [question, answer, system or ""] + [
            t for turn in history for t in (turn.user, turn.assistant)
        ]
        left = leftover_placeholders(texts, [])
        if left:
            return Rejected(
                reason="unrendered_placeholder", detail=f"left {', '.join(left)}", example=example
            )
        names = [values["name"], *self.persona.aliases]
        if not any(name and name in answer for name in names):
            return Rejected(
                reason="persona_not_named", detail=f"answer does not name {values['name']}", example=example
            )
        if self.check is not None:
            for side, text in (("question", question), ("answer", answer)):
                problem = self.check.check(self._mask(text), lang)
                if problem:
                    return Rejected(reason=f"wrong_language_{side}", detail=problem, example=example)
        return Record(instruction=question, output=answer, system=system, history=history, meta=meta)

    def _mask(self, text: str) -> str:
        """Proper nouns (persona, developer, other assistants) carry no language: hide them from langid."""
        for name in self._masks:
            if name:
                text = text.replace(name, " ")
        return text

    def generate(self) -> tuple[list[Record], list[Rejected], Report]:
        n, langs = self.options.n, self.languages
        if n < 0:
            raise ConfigError("-n must be at least 0")
        report = Report(task=TASK)
        quotas = [n // len(langs) + (1 if i < n % len(langs) else 0) for i in range(len(langs))]
        records: list[Record] = []
        rejected: list[Rejected] = []
        by_cat: dict[str, Counter] = defaultdict(Counter)
        for lang, quota in zip(langs, quotas):
            pool = self.pools[lang]
            values = self.values(pool)
            cands = self.candidates(pool, values)
            seen: set[tuple[str, str]] = set()
            made = 0
            for cand in self._pick(cands, quota):
                if made >= quota:
                    break
                item = self._record(pool, values, cand)
                report.read += 1
                if isinstance(item, Rejected):
                    rejected.append(item)
                    report.reject(item)
                    continue
                pair = (item.instruction, item.output)
                if pair in seen:
                    continue  # same text from different ids (e.g. an answer without {{ other }})
                seen.add(pair)
                records.append(item)
                made += 1
                by_cat[lang][cand.category] += 1
                report.languages[lang] += 1
                report.templates[cand.question.id] += 1
            if made < quota:
                report.notes.append(
                    f"{lang}: asked for {quota} records, only {made} distinct question/answer combinations exist; "
                    "wrote those rather than repeat rows (add seeds with --seeds FILE)"
                )
        report.written = len(records)
        for lang in langs:
            cats = ", ".join(f"{c} {k}" for c, k in sorted(by_cat[lang].items()))
            report.notes.append(f"{lang} by category: {cats}")
        report.notes.append(
            "identity-only set: mix it with general instruction data before training (e.g. 1 identity row per "
            "5-10 general rows; `instructgen mix`) so the model does not answer everything with its identity"
        )
        return records, rejected, report


CATEGORY_ORDER = (
    "name",
    "developer",
    "capabilities",
    "greeting",
    "short",
    "denial",
    "adversarial",
    "limitations",
    "languages",
    "cutoff",
    "contact",
)


def _share(seed: int, key: str, purpose: str) -> float:
    return stable_hash(seed, TASK, key, purpose) / 2**64


def _fits_script(text: str, lang: str) -> bool:
    cjk = bool(re.search(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", text))
    return cjk == (lang.split("-")[0] in ("zh", "ja", "ko"))


def identity(
    persona: Persona | dict[str, Any],
    *,
    n: int = 300,
    languages: list[str] | None = None,
    seed: int = 0,
    **options: Any,
):
    """Generate self-identity records for a persona. Returns a `Result` (records, rejected, report)."""
    from ..api import Result

    if not isinstance(persona, Persona):
        persona = Persona.model_validate(persona)
    opts = IdentityOptions(
        n=n,
        languages=tuple(languages or ()),
        seed=seed,
        **{k: tuple(v) if k == "seed_files" else v for k, v in options.items()},
    )
    records, rejected, report = IdentityGenerator(persona, opts).generate()
    return Result(records=records, rejected=rejected, report=report)


def load_persona(path: str) -> Persona:
    """A persona from YAML or JSON, with errors that name the file and the field."""
    import json
    from pathlib import Path

    from pydantic import ValidationError

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: persona file not found") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else __import__("yaml").safe_load(text)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot parse persona: {exc}") from None
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


__all__ = ["IdentityGenerator", "IdentityOptions", "TemplateError", "identity", "load_persona"]
