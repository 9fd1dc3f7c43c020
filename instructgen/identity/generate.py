"""Persona + seed pools -> self-identity records in a stated category mix, distinct and checked.

Per language, every (question, answer[, other assistant]) combination of a category whose answer
states the facts its question asks for (see `seeds`) is a candidate. Candidates are ordered by a
hash of (seed, language, category, ids), each question's first use before any reuse. Each
category then gets its share of the language's quota from the target mix (`DEFAULT_MIX`, or
`mix=`), renormalized over the categories the persona makes possible (no cutoff given: no cutoff
questions), so the mix is the same at every `n`. An exact duplicate (instruction, output) pair is
never written: when a category cannot fill its share, the run writes fewer records in the same
mix and says so, rather than let the categories that can grow take over.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..determinism import choose_index, stable_hash
from ..errors import ConfigError, TemplateError
from ..quality.filters import leftover_placeholders
from ..quality.langid import LanguageCheck, make_backend
from ..quality.report import Report
from ..schema import Persona, Record, Rejected, Turn
from ..templates.languages import language_name, normalize_code
from .grammar import agree
from .scan import scan_text
from .seeds import (
    CATEGORIES,
    OPTIONAL_VARIABLES,
    VARIABLES,
    Entry,
    SeedPool,
    builtin_seed_pools,
    capability_index,
    load_seed_pool,
)

TASK = "identity"
OTHER_CATEGORIES = ("denial", "adversarial")
LATIN = re.compile(r"[A-Za-z]")
# Target share of each category (percent). Who the model is (name, introduction, developer,
# capabilities) is the majority; "I am not X" (denial + adversarial) about 12%, near
# LLaMA-Factory's identity set (8.8%), so the model learns its name more than other names.
DEFAULT_MIX: dict[str, float] = {
    "name": 18,
    "introduction": 14,
    "developer": 14,
    "capabilities": 14,
    "short": 5,
    "greeting": 4,
    "limitations": 8,
    "languages": 4,
    "base_model": 3,
    "denial": 7,
    "adversarial": 5,
    "cutoff": 2,
    "contact": 2,
}


@dataclass(frozen=True)
class IdentityOptions:
    n: int = 300
    languages: tuple[str, ...] = ()  # default: the persona's languages, else zh and en
    seed: int = 0
    system_ratio: float = 0.0  # share of records that carry a system prompt
    multi_turn_ratio: float = 0.0  # share of records that start with a greeting turn
    seed_files: tuple[str, ...] = ()  # extra identity pools (replace the built-in pool of their language)
    langid: str = "fasttext"
    mix: tuple[tuple[str, float], ...] = ()  # category weights that replace DEFAULT_MIX's


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """`name=20,denial=5` -> ((name, 20.0), (denial, 5.0)); unknown categories and bad numbers stop."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        cat, sep, weight = part.partition("=")
        cat = cat.strip()
        if not sep or cat not in DEFAULT_MIX:
            raise ConfigError(
                f"--mix: '{part}' is not category=weight with a category among: {', '.join(DEFAULT_MIX)}"
            )
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(f"--mix: weight of '{cat}' is not a number: '{weight.strip()}'") from None
        if value < 0:
            raise ConfigError(f"--mix: weight of '{cat}' must be 0 or more")
        out.append((cat, value))
    return tuple(out)


@dataclass
class Candidate:
    category: str
    question: Entry
    answer: Entry
    other: str | None
    order: tuple[int, ...]
    closing: Entry | None = None  # a closing sentence appended to the answer (large -n only)


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
        for cat, _ in options.mix:
            if cat not in DEFAULT_MIX:
                raise ConfigError(f"--mix: unknown category '{cat}' (known: {', '.join(DEFAULT_MIX)})")
        self.mix = {**DEFAULT_MIX, **dict(options.mix)}
        backend = make_backend(options.langid)
        self.check = None if backend is None else LanguageCheck(backend)
        bases = [persona.text("base_model", c) for c in pools] if persona.base_model else []
        self._base_names = [b for b in {*bases} if b]
        self._masks = sorted(
            {
                *persona.names(),
                *(persona.text("developer", c) or "" for c in pools),
                *(a for d in persona.deny for a in d.split("/")),
                *(v for p in pools.values() for v in p.other_names.values()),
                *self._base_names,
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
            elif key is None and self._in_language(item, pool.language):
                out.append(item)  # free text, used only in its own language
        return out

    def _in_language(self, text: str, lang: str) -> bool:
        """Free persona text goes only into records of its own language."""
        if not _fits_script(text, lang):
            return False
        return self.check is None or not self.check.check(self._mask(text), lang)

    def _local_text(self, field_name: str, lang: str) -> str | None:
        value = getattr(self.persona, field_name)
        if isinstance(value, dict):
            base = lang.split("-")[0]
            return value.get(lang) or value.get(base)
        return value if value and self._in_language(value, lang) else None

    def values(self, pool: SeedPool) -> dict[str, str | None]:
        """Slot values for one language. Optional facts the persona lacks are None: the entries
        that need them are not used (no strengths given: no "especially good at" answers)."""
        lang = pool.language
        caps = self._capability_list("capabilities", pool) or [pool.capability_names.get("general", "")]
        strengths = [s for s in self._capability_list("strengths", pool) if s not in caps or len(caps) > 1]
        limits = [x for x in self.persona.items("limitations", lang) if self._in_language(x, lang)]
        if isinstance(self.persona.limitations, dict):
            limits = self.persona.items("limitations", lang)
        base = self.persona.text("base_model", lang) if self.persona.base_model else None
        return {
            "name": self.persona.text("name", lang),
            "developer": self.persona.text("developer", lang),
            "description": self._local_text("description", lang),
            "capabilities": pool.join(caps),
            "strengths": pool.join(strengths) or None,
            "limitations": pool.join(limits) or None,
            "languages": self._languages(pool),
            "cutoff": self.persona.knowledge_cutoff,
            "contact": self.persona.contact,
            "base_model": base if self.persona.disclose_base_model else None,
        }

    def _languages(self, pool: SeedPool) -> str | None:
        """The persona's languages, named in the pool's language; None (no language questions) when
        the persona lists none, or does not list the language this pool writes in: a Japanese record
        must not say the model speaks only Chinese and English."""
        spoken = [normalize_code(c) for c in self.persona.languages]
        if pool.language.split("-")[0] not in {c.split("-")[0] for c in spoken}:
            return None
        return pool.join([language_name(c, pool.language) for c in spoken]) or None

    def _is_base(self, name: str) -> bool:
        low = name.casefold()
        return any(low in b.casefold() or b.casefold() in low for b in self._base_names)

    def _others(self, pool: SeedPool) -> list[str]:
        """Names to deny, in the pool's own form: zh/ja any alias (ja writes 通義千問), elsewhere
        the Latin-script ones. Never the base model: a fine-tune does not deny what it is built on."""
        lang = pool.language.split("-")[0]
        out = []
        for entry in self.persona.deny:
            aliases = [a.strip() for a in entry.split("/") if a.strip()]
            if any(self._is_base(a) for a in aliases):
                continue
            if lang not in ("zh", "ja"):
                aliases = [a for a in aliases if LATIN.search(a)] or aliases
            out.extend(pool.other_names.get(a, a) for a in aliases)
        return list(dict.fromkeys(out))

    # --- candidates -------------------------------------------------------------------------------

    def _usable(self, entry: Entry, values: dict[str, Any], pool: SeedPool) -> bool:
        """False when the entry needs an optional fact the persona lacks; an error for a required one."""
        for var in entry.variables - {"other"}:
            if values.get(var) in (None, ""):
                if var in OPTIONAL_VARIABLES:
                    return False
                raise ConfigError(
                    f"template {entry.id} ({pool.path}) needs persona field '{VARIABLES[var]}', "
                    "which the persona does not set"
                )
        private = bool(self.persona.base_model) and not self.persona.disclose_base_model
        return "base_model_private" not in entry.facts or private

    def _fitting(self, question: Entry, answers: list[Entry]) -> list[Entry]:
        """Answers that state what `question` asks; a private base model counts as stated by a
        polite refusal to name it."""
        private = bool(self.persona.base_model) and not self.persona.disclose_base_model
        out = []
        for a in answers:
            states = a.facts | ({"base_model"} if private and "base_model_private" in a.facts else set())
            if question.facts <= states and a.tags <= question.tags:
                out.append(a)
        return out

    def candidates(self, pool: SeedPool, values: dict[str, Any]) -> dict[str, list[Candidate]]:
        seed, lang = self.options.seed, pool.language
        result: dict[str, list[Candidate]] = {}
        others_all = self._others(pool)
        for category, questions in pool.questions.items():
            needs = pool.needs.get(category, [])
            if any(not values.get(v) for v in needs):
                continue  # e.g. no knowledge cutoff given: no cutoff questions
            questions = [q for q in questions if self._usable(q, values, pool)]
            answers = [a for a in pool.answers[category] if self._usable(a, values, pool)]
            cands = []
            for q in questions:
                fitting = self._fitting(q, answers)
                uses_other = "other" in q.variables or any("other" in a.variables for a in fitting)
                for other in others_all if uses_other else [None]:
                    group = sorted(
                        fitting,
                        key=lambda a, q=q, o=other: stable_hash(seed, TASK, lang, q.id, a.id, o, "rank"),
                    )
                    for rank, a in enumerate(group):
                        order = (0, rank, stable_hash(seed, TASK, lang, category, q.id, a.id, other))
                        cands.append(Candidate(category, q, a, other, order))
                        # Variants with a closing sentence come after every plain pair.
                        for c in pool.closings if a.closing else ():
                            key = stable_hash(seed, TASK, lang, category, q.id, a.id, other, c.id)
                            cands.append(Candidate(category, q, a, other, (1, rank, key), c))
            if cands:
                cands.sort(key=lambda c: c.order)
                result[category] = cands
        return result

    # --- records --------------------------------------------------------------------------------------

    def _record(self, pool: SeedPool, values: dict[str, Any], cand: Candidate) -> Record | Rejected:
        lang, seed = pool.language, self.options.seed
        vals = {**values, "other": cand.other}

        def render(entry: Entry) -> str:
            return agree(entry.render(vals), lang).strip()

        question = render(cand.question)
        answer = render(cand.answer)
        if cand.closing is not None:
            sep = "" if lang.split("-")[0] in ("zh", "ja") else " "
            answer = agree(answer + sep + render(cand.closing), lang)
        key = f"{lang}|{cand.question.id}|{cand.answer.id}|{cand.other}"
        if cand.closing is not None:
            key += f"|{cand.closing.id}"
        system = None
        if pool.system and _share(seed, key, "system") < self.options.system_ratio:
            system = render(pool.system[choose_index(len(pool.system), seed, TASK, key, "system-text")])
        history: list[Turn] = []
        greet_q, greet_a = pool.questions.get("greeting"), pool.answers.get("greeting")
        if (
            cand.category != "greeting"
            and greet_q
            and greet_a
            and _share(seed, key, "multi") < self.options.multi_turn_ratio
        ):
            gq = render(greet_q[choose_index(len(greet_q), seed, TASK, key, "greet-q")])
            usable = [a for a in greet_a if self._usable(a, values, pool)] or greet_a
            ga = render(usable[choose_index(len(usable), seed, TASK, key, "greet-a")])
            history = [Turn(user=gq, assistant=ga)]
        meta = {
            "lang": lang,
            "category": cand.category,
            "question_id": cand.question.id,
            "answer_id": cand.answer.id,
            "other": cand.other,
            "key": key,
        }
        if cand.closing is not None:
            meta["closing_id"] = cand.closing.id
        record = Record(instruction=question, output=answer, system=system, history=history, meta=meta)
        problem = self.check_record(record)
        if problem is not None:
            example = {"instruction": question, "output": answer, **meta}
            return Rejected(reason=problem[0], detail=problem[1], example=example)
        return record

    def check_record(self, record: Record, *, scan: bool = False) -> tuple[str, str] | None:
        """Why `record` must not be written, as (reason, detail), or None.

        The one set of checks for seed records and for their LLM paraphrases (llm/paraphrase.py):
        no placeholder left in any text, the answer names the persona, a denial never names the
        persona's base model, with `scan` the answer claims no other identity (identity/scan.py;
        off for seed records, whose denials name other assistants on purpose and are curated), and
        question and answer are in the record's language (`meta["lang"]`) once proper nouns are
        masked. `meta["category"]` says whether the record is a denial.
        """
        lang, question, answer = record.meta["lang"], record.instruction, record.output
        texts = [question, answer, record.system or ""] + [
            t for turn in record.history for t in (turn.user, turn.assistant)
        ]
        left = leftover_placeholders(texts, [])
        if left:
            return "unrendered_placeholder", f"left {', '.join(left)}"
        name = self.persona.text("name", lang)
        if not any(n and n in answer for n in [name, *self.persona.aliases]):
            return "persona_not_named", f"answer does not name {name}"
        if record.meta.get("category") in OTHER_CATEGORIES and any(b in answer for b in self._base_names):
            return "denies_base_model", "a denial names the persona's base model"
        if scan:
            hits = scan_text(answer, tuple(self.persona.names()))
            if hits:
                return (
                    "contamination",
                    f"the answer claims another identity ({', '.join(h for h, _ in hits)})",
                )
        if self.check is not None:
            for side, text in (("question", question), ("answer", answer)):
                problem = self.check.check(self._mask(text), lang)
                if problem:
                    return f"wrong_language_{side}", problem
        return None

    def _mask(self, text: str) -> str:
        """Proper nouns (persona, developer, other assistants) carry no language: hide them from langid."""
        for name in self._masks:
            if name:
                text = text.replace(name, " ")
        return text

    def _valid(
        self, pool: SeedPool, values: dict[str, Any], cands: list[Candidate]
    ) -> tuple[list[tuple[Record, Candidate]], list[tuple[int, Rejected]]]:
        """Every distinct checked record of one category, in candidate order, and the rejects with
        how many records had been made before each (to count only those a run reached)."""
        made: list[tuple[Record, Candidate]] = []
        refused: list[tuple[int, Rejected]] = []
        seen: set[tuple[str, str]] = set()
        for cand in cands:
            item = self._record(pool, values, cand)
            if isinstance(item, Rejected):
                refused.append((len(made), item))
                continue
            pair = (item.instruction, item.output)
            if pair not in seen:  # same text from different ids (e.g. an answer without {{ other }})
                seen.add(pair)
                made.append((item, cand))
        return made, refused

    def target_mix(self, available: list[str]) -> dict[str, float]:
        """The target shares (summing to 1) over the categories a language can make."""
        weights = {c: self.mix.get(c, 0.0) for c in available}
        total = sum(weights.values())
        if not available:
            return {}  # the pool makes no pair for this persona: nothing to write (the summary says so)
        if total <= 0:
            raise ConfigError("--mix gives every category this persona can make a weight of 0")
        return {c: w / total for c, w in weights.items() if w > 0}

    def generate(self) -> tuple[list[Record], list[Rejected], Report]:
        n, langs = self.options.n, self.languages
        if n < 0:
            raise ConfigError("-n must be at least 0")
        report = Report(task=TASK)
        quotas = [n // len(langs) + (1 if i < n % len(langs) else 0) for i in range(len(langs))]
        records: list[Record] = []
        rejected: list[Rejected] = []
        by_cat: dict[str, Counter] = {}
        targets: dict[str, dict[str, float]] = {}
        for lang, quota in zip(langs, quotas):
            pool = self.pools[lang]
            values = self.values(pool)
            cands = self.candidates(pool, values)
            # Plain pairs first; variants with a closing sentence are checked only when a category
            # needs them to fill its share (large -n), which keeps small runs fast.
            plain = {cat: [c for c in lst if c.closing is None] for cat, lst in cands.items()}
            valid = {cat: self._valid(pool, values, lst) for cat, lst in plain.items()}
            shares = self.target_mix([c for c in CATEGORY_ORDER if valid.get(c, ([], []))[0]])
            targets[lang] = shares
            counts = _allocate(quota, shares, {c: len(valid[c][0]) for c in shares})
            if sum(counts.values()) < quota:
                for cat in shares:
                    if len(cands[cat]) > len(plain[cat]):
                        valid[cat] = self._valid(pool, values, cands[cat])
                counts = _allocate(quota, shares, {c: len(valid[c][0]) for c in shares})
            made = sum(counts.values())
            chosen: list[tuple[Record, Candidate]] = []
            reached = 0
            for cat, k in counts.items():
                chosen.extend(valid[cat][0][:k])
                for before, item in valid[cat][1]:
                    if before < k:  # met on the way to the k records taken
                        reached += 1
                        rejected.append(item)
                        report.reject(item)
            chosen.sort(key=lambda rc: stable_hash(self.options.seed, TASK, rc[0].meta["key"], "order"))
            by_cat[lang] = Counter(counts)
            for record, cand in chosen:
                records.append(record)
                report.languages[lang] += 1
                report.templates[cand.question.id] += 1
            report.read += made + reached
            if self.persona.languages and values["languages"] is None:
                report.notes.append(
                    f"{lang}: the persona's languages ({', '.join(self.persona.languages)}) do not include "
                    f"{lang}; no records about which languages it speaks were written in {lang}"
                )
            if made < quota:
                report.notes.append(
                    f"{lang}: asked for {quota} records; the pools hold enough distinct question/answer "
                    f"pairs for {made} in the target mix; wrote those rather than repeat rows or drift "
                    "from the mix (add seeds with --seeds FILE)"
                )
        report.written = len(records)
        report.notes.extend(_mix_notes(langs, by_cat, targets))
        report.notes.append(
            "identity-only set: mix it with general instruction data before training (e.g. 1 identity row per "
            "5-10 general rows; `instructgen mix`) so the model does not answer everything with its identity"
        )
        return records, rejected, report


CATEGORY_ORDER = tuple(c for c in CATEGORIES)


def _allocate(quota: int, shares: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Counts per category for `quota` records in `shares` (largest remainder). When a category
    cannot fill its count, the total shrinks until every category fits, so the mix holds."""
    total = quota
    if shares:
        total = min(quota, *(int(capacity[c] / s) + 1 for c, s in shares.items()))
    while total >= 0:
        exact = {c: total * s for c, s in shares.items()}
        counts = {c: int(v) for c, v in exact.items()}
        rest = total - sum(counts.values())
        for c in sorted(exact, key=lambda c: (counts[c] - exact[c], c))[:rest]:
            counts[c] += 1
        if all(counts[c] <= capacity[c] for c in counts):
            return counts
        total -= 1
    return dict.fromkeys(shares, 0)


def _mix_notes(
    langs: list[str], by_cat: dict[str, Counter], targets: dict[str, dict[str, float]]
) -> list[str]:
    """The written mix per language and overall, each share next to its target."""
    notes = []
    total: Counter = Counter()
    target_sum: Counter = Counter()
    for lang in langs:
        counts = by_cat[lang]
        n = sum(counts.values())
        total.update(counts)
        for c, s in targets[lang].items():
            target_sum[c] += s * n
        cats = ", ".join(f"{c} {counts[c]}" for c in CATEGORY_ORDER if counts[c])
        notes.append(f"{lang} by category: {cats}")
    n = sum(total.values())
    if n:
        parts = [
            f"{c} {100 * total[c] / n:.1f}% (target {100 * target_sum[c] / n:.1f}%)"
            for c in CATEGORY_ORDER
            if target_sum[c]
        ]
        notes.append("category mix: " + ", ".join(parts))
        other = sum(total[c] for c in OTHER_CATEGORIES)
        notes.append(f"denial + adversarial: {100 * other / n:.1f}% of records")
    return notes


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
        **{k: _option(k, v) for k, v in options.items()},
    )
    records, rejected, report = IdentityGenerator(persona, opts).generate()
    return Result(records=records, rejected=rejected, report=report)


def _option(key: str, value: Any) -> Any:
    if key == "seed_files":
        return tuple(value)
    if key == "mix":
        return parse_mix(value) if isinstance(value, str) else tuple(dict(value).items())
    return value


def load_persona(path: str) -> Persona:
    """A persona from YAML or JSON, with errors that name the file and the field."""
    import json
    from pathlib import Path

    from pydantic import ValidationError

    from ..templates.safe_yaml import safe_load_bounded

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: persona file not found") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else safe_load_bounded(text)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot parse persona: {exc}") from None
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


__all__ = [
    "DEFAULT_MIX",
    "IdentityGenerator",
    "IdentityOptions",
    "TemplateError",
    "identity",
    "load_persona",
    "parse_mix",
]
