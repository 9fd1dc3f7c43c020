"""`templates generate`: an LLM writes new templates for a task pool; only linted, new ones are kept.

The prompt shows the task's placeholder contract in brackets (`[input]`, `[tgt_lang]`), mapped to
the pool's Jinja variables, and a few templates of the existing pool as examples. Every answer
goes through: parsing (JSON, else a list; re-asked with the parse error up to `reask` times), the
linter (required placeholders, no unknown or misspelt placeholder, no filled-in example values,
length bounds, written in the pool's language), the pool validator (the same as for hand-written
pools), and de-duplication against the pool and the accepted items by a Unicode-aware ROUGE-L
(characters for CJK, words otherwise). Rounds continue, showing what is accepted so far, until
`n` are accepted or `stall_rounds` rounds add nothing.

A request that gets no usable answer after its retries (`RequestFailed`: timeouts, 5xx, malformed
200s) is counted with its cause and the run goes on; auth, quota, budget and offline errors stop it.
Accepted ids carry a prefix hashed from the run's inputs (model, endpoint, task, language, category,
seed and the ids of the pools deduplicated against), so separately generated pools can be used
together, and an identical re-run writes identical ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigError, TemplateError
from ..quality.langid import LanguageCheck, make_backend
from ..quality.placement import placement
from ..templates.languages import language_name, normalize_code
from ..templates.pool import PoolSet, compile_template
from ..templates.tasks import generatable_tasks, get_task
from .client import LLMClient, LLMError, RequestFailed
from .parse import ParseError, extract_json, extract_list

# Pool tasks declare their LLM contract (bracket -> Jinja variable, required brackets, output) on
# their TaskSpec (templates/tasks.py). Identity question pools are seed pools, not a pool task: their
# one bracket is the other assistant's name, and what each category asks about is described below.
IDENTITY_PLACEHOLDERS = {"other": "other"}
IDENTITY_TOPICS = {
    "greeting": "greetings that open a conversation",
    "name": "who it is and what it is called",
    "developer": "who made or trained it",
    "capabilities": "what it can do",
    "limitations": "its limits",
    "languages": "which languages it speaks",
    "denial": "whether it is another assistant, named [other]",
    "adversarial": "insisting it is really another assistant, named [other]",
    "short": "its identity, tersely",
    "introduction": "who it is and who built it, in one go",
    "cutoff": "how recent its knowledge is",
    "contact": "how to reach the people behind it",
    "base_model": "which model it was built on",
}
_PLACEHOLDER_LIKE = re.compile(r"\[[A-Za-z_ ]+\]|\{+\s*[A-Za-z_]+\s*\}+|【[^】]*】|<[a-z_]+>")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def units(text: str) -> list[str]:
    """ROUGE-L units: CJK characters one by one, other text by words (lower-cased, no placeholders)."""
    text = re.sub(r"\[[a-z_]+\]|\{\{[^}]*\}\}", " ", text.lower())
    out = []
    for word in re.findall(r"\w+", text):
        out.extend(list(word) if _CJK.search(word) else [word])
    return out


def rouge_l(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    p, r = lcs / len(a), lcs / len(b)
    return 0.0 if lcs == 0 else 2 * p * r / (p + r)


def generatable() -> list[str]:
    """What `templates generate --task` accepts: every registered task with an LLM contract, then identity."""
    return [*generatable_tasks(), "identity"]


def placeholders_of(task: str) -> dict[str, str]:
    """Bracket placeholder shown to the model -> Jinja variable, for `task`."""
    if task == "identity":
        return IDENTITY_PLACEHOLDERS
    contract = get_task(task).llm
    if contract is None:
        raise ConfigError(f"templates generate supports {', '.join(generatable())}, not '{task}'")
    return contract.placeholders


def to_brackets(text: str, task: str) -> str:
    for bracket, var in placeholders_of(task).items():
        text = re.sub(r"\{\{\s*" + var + r"\s*\}\}", f"[{bracket}]", text)
    return text


def to_jinja(text: str, task: str) -> str:
    for bracket, var in placeholders_of(task).items():
        text = text.replace(f"[{bracket}]", "{{ " + var + " }}")
    return text


@dataclass
class GenResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    failed: list[str] = field(default_factory=list)  # causes of requests that got no usable answer


@dataclass(frozen=True)
class GenOptions:
    task: str
    language: str
    n: int = 20
    per_request: int = 10
    parallel: int = 2  # requests per round
    similarity: float = 0.7
    stall_rounds: int = 3
    category: str | None = None  # identity question pools: which category
    max_rounds: int = 20
    reask: int = 2
    min_chars: int = 6
    max_chars: int = 300
    temperature: float = 0.9
    seed: int = 0


class TemplateGenerator:
    def __init__(self, client: LLMClient, options: GenOptions, pool_files: tuple[str, ...] = ()) -> None:
        supported = generatable()
        if options.task not in supported:
            raise ConfigError(f"templates generate supports {', '.join(supported)}, not '{options.task}'")
        self.client = client
        self.options = options
        self.lang = normalize_code(options.language)
        self.check = LanguageCheck(make_backend("fasttext"))
        # names of real languages must be placeholders, not filled in
        self.filled = {
            language_name(code, self.lang).lower() for code in ("en", "zh", "de", "fr", "ja", "es")
        }
        if options.task == "identity":
            self._init_identity()
            return
        self.spec = get_task(options.task)
        assert self.spec.llm is not None  # generatable() holds only tasks with a contract
        self.contract = self.spec.llm
        self.placeholders = self.contract.placeholders
        self.required = set(self.contract.required)
        pools = PoolSet.load(options.task, pool_files)
        self.existing = [t for lang in pools.languages for t in pools.by_language[lang]]
        self.taken_ids = {t.id for t in self.existing}
        self.id_prefix = self._id_prefix(sorted(self.taken_ids))
        self.examples = [t for t in pools.by_language.get(self.lang, []) if t.spec.kind == "original"][
            :4
        ] or [t for t in self.existing if t.spec.kind == "original"][:4]
        self.seen = [units(t.spec.instruction + " " + t.spec.input) for t in self.existing]

    def _id_prefix(self, known_ids: list[str]) -> str:
        """`<task>-<lang>-llm-<6 hex>`: a pure function of what makes this pool different from another."""
        o = self.options
        inputs = {
            "model": self.client.config.model,
            "base_url": self.client.config.base_url or "",
            "task": o.task,
            "language": self.lang,
            "category": o.category or "",
            "seed": o.seed,
            "known_ids": known_ids,
        }
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()[:6]
        return f"{o.task}-{self.lang}-llm-{digest}"

    def _next_id(self, accepted: list[dict[str, Any]]) -> str:
        n = len(accepted) + 1
        while f"{self.id_prefix}-{n:03d}" in self.taken_ids:
            n += 1
        return f"{self.id_prefix}-{n:03d}"

    def _init_identity(self) -> None:
        from ..identity.seeds import builtin_seed_pools

        cat = self.options.category
        if cat not in IDENTITY_TOPICS:
            raise ConfigError(f"identity questions need --category, one of {', '.join(IDENTITY_TOPICS)}")
        pools = builtin_seed_pools()
        if self.lang not in pools:
            raise ConfigError(f"no identity seed pool for '{self.lang}' to take answers from")
        self.seed_pool = pools[self.lang]
        self.placeholders = IDENTITY_PLACEHOLDERS
        self.required = {"other"} if cat in ("denial", "adversarial") else set()
        self.question_examples = [
            to_brackets(q.text, "identity") for q in self.seed_pool.questions.get(cat, [])
        ]
        self.seen = [units(q) for q in self.question_examples]
        self.filled = set()  # identity questions may name languages ("Can we talk in Chinese?")

    def prompt(self, accepted: list[dict[str, Any]], k: int) -> list[dict[str, str]]:
        task = self.options.task
        if task == "identity":
            cat = self.options.category or ""
            text = (
                f"Write {k} new, varied questions a user might ask an AI assistant about "
                f"{IDENTITY_TOPICS[cat]}, written in {language_name(self.lang, 'en')} as a native speaker "
                "would type them. "
                + (
                    "Write the other assistant's name as [other]. "
                    if self.required
                    else "Use no placeholders and no names. "
                )
                + "Existing questions (do not repeat them):\n"
                + "\n".join(f"- {q}" for q in self.question_examples[:8])
                + "\n"
            )
            if accepted:
                text += (
                    "Already accepted:\n" + "\n".join(f"- {a['instruction']}" for a in accepted[-20:]) + "\n"
                )
            text += 'Answer with JSON: {"templates": ["...", "..."]}'
            return [{"role": "user", "content": text}]
        contract = ", ".join(f"[{b}]" for b in self.placeholders)
        required = ", ".join(f"[{b}]" for b in sorted(self.required))
        examples = "\n".join(
            f"- {to_brackets(t.spec.instruction, task)}"
            + (f" (input: {to_brackets(t.spec.input, task)})" if t.spec.input else "")
            for t in self.examples
        )
        lang_name = language_name(self.lang, "en")
        text = (
            f"Write {k} new, varied instruction templates for the task '{task}', written in {lang_name}.\n"
            f"Placeholders you may use: {contract}. Every template must contain {required}, written exactly like "
            "that, and no other bracketed placeholder. Never fill in example values (no real language names, "
            "no example sentences). Put [input] in quotes or on its own line at the end.\n"
            f"Existing templates (do not repeat them):\n{examples}\n"
        )
        if accepted:
            text += (
                "Already accepted (write different ones):\n"
                + "\n".join(f"- {a['instruction']}" for a in accepted[-20:])
                + "\n"
            )
        text += 'Answer with JSON: {"templates": ["...", "..."]}'
        return [
            {"role": "system", "content": "You write instruction templates for training data."},
            {"role": "user", "content": text},
        ]

    def lint(self, raw: str) -> str | None:
        """Why a candidate template is refused, or None."""
        o = self.options
        if not (o.min_chars <= len(raw) <= o.max_chars):
            return f"length {len(raw)} outside {o.min_chars}-{o.max_chars}"
        required = self.required
        # identity questions may use [other] only where they must (denials); templates any bracket
        allowed = {f"[{b}]" for b in (required if o.task == "identity" else self.placeholders)}
        for ph in _PLACEHOLDER_LIKE.findall(raw):
            if ph not in allowed:
                return f"unknown or misspelt placeholder {ph}"
        missing = [f"[{b}]" for b in sorted(required) if f"[{b}]" not in raw]
        if missing:
            return f"missing placeholder {', '.join(missing)}"
        plain = re.sub(r"\[[a-z_]+\]", " ", raw)
        if len(units(plain)) < (2 if o.task == "identity" else 3):
            return "no instruction words besides the placeholders"
        lowered = plain.lower()
        for name in self.filled:
            if name and name in lowered:
                return f"filled-in value '{name}' (use a placeholder)"
        problem = self.check.check(plain, self.lang)
        if problem:
            return f"not written in '{self.lang}': {problem}"
        return None

    def accept(self, raw: str, accepted: list[dict[str, Any]], model: str) -> str | None:
        reason = self.lint(raw)
        if reason:
            return reason
        u = units(raw)
        best = max((rouge_l(u, s) for s in self.seen), default=0.0)
        if best >= self.options.similarity:
            return f"too similar to an existing or accepted template (ROUGE-L {best:.2f})"
        if self.options.task == "identity":
            from ..identity.seeds import parse_entry

            text = to_jinja(raw, "identity")
            try:
                parse_entry(text, f"identity-{self.lang}-llm", self.options.category or "", "<generated>")
            except TemplateError as exc:
                return f"invalid question: {exc}"
            accepted.append({"instruction": text, "source": f"llm:{model}"})
            self.seen.append(u)
            return None
        entry = {
            "id": self._next_id(accepted),
            "instruction": to_jinja(raw, self.options.task),
            "output": self.contract.output,
            "source": f"llm:{model}",
        }
        problem = self._delimit(entry)
        if problem:
            return problem
        try:
            compile_template(entry, task=self.spec, language=self.lang, path="<generated>")
        except TemplateError as exc:
            return f"invalid template: {exc}"
        accepted.append(entry)
        self.seen.append(u)
        return None

    def _delimit(self, entry: dict[str, Any]) -> str | None:
        """Translation: the source must be delimited (see quality/placement.py) or the record is useless.

        `...into [tgt_lang]: [input]` runs the source on after a colon: the source moves to the input
        field, which delimits it. A source inside a sentence without quotes is refused.
        """
        if self.options.task != "translation":
            return None
        shape = placement(entry["instruction"], entry.get("input"))
        if shape.shape != "bare":
            return None
        text = entry["instruction"].rstrip()
        tail = "{{ source }}"
        if text.endswith(tail) and text[: -len(tail)].strip():
            entry["instruction"] = text[: -len(tail)].rstrip()
            entry["input"] = tail
            return None
        return "the source is not delimited (quote [input] or put it at the end)"

    async def _ask(self, messages: list[dict[str, str]], sample_index: int) -> tuple[list[str] | None, str]:
        """Items from one request, re-asking with the parse error; (None, raw) when it never parses."""
        raw = ""
        convo = list(messages)
        for attempt in range(self.options.reask + 1):
            raw = await self.client.chat(
                convo, sample_index=sample_index * 10 + attempt, temperature=self.options.temperature
            )
            try:
                data = extract_json(raw)
                items = data.get("templates") if isinstance(data, dict) else data
                if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                    raise ParseError('expected {"templates": [strings]}')
                return items, raw
            except ParseError as exc:
                try:
                    return extract_list(raw), raw
                except ParseError:
                    convo = [
                        *convo,
                        {"role": "assistant", "content": raw},
                        {
                            "role": "user",
                            "content": f"That could not be parsed ({exc}). Answer with JSON only: "
                            '{"templates": ["..."]}',
                        },
                    ]
        return None, raw

    async def run(self) -> GenResult:
        o = self.options
        result = GenResult()
        stall = 0
        request = 0
        while len(result.accepted) < o.n and stall < o.stall_rounds and result.rounds < o.max_rounds:
            result.rounds += 1
            before = len(result.accepted)
            messages = self.prompt(result.accepted, o.per_request)
            batch = [self._ask(messages, request + i) for i in range(o.parallel)]
            request += o.parallel
            answers = await asyncio.gather(*batch, return_exceptions=True)
            failures = [
                a for a in answers if isinstance(a, BaseException) and not isinstance(a, RequestFailed)
            ]
            for answer in answers:
                if isinstance(answer, RequestFailed):  # counted with its cause; the run goes on
                    result.failed.append(answer.cause)
                    continue
                if isinstance(answer, BaseException):
                    continue
                items, raw = answer
                if items is None:
                    result.rejected.append({"reason": "unparseable", "raw": raw})
                    continue
                for item in items:
                    if len(result.accepted) >= o.n:
                        break
                    why = self.accept(item.strip(), result.accepted, self.client.config.model)
                    if why:
                        result.rejected.append({"reason": why, "template": item})
            if failures:  # the requests that did finish are cached: a re-run resumes from there
                raise failures[0]
            stall = stall + 1 if len(result.accepted) == before else 0
        return result


def pool_yaml(task: str, language: str, entries: list[dict[str, Any]], model: str) -> str:
    data = {
        "task": task,
        "language": language,
        "description": f"generated by {model}; review before use",
        "templates": entries,
    }
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000)


def identity_pool_yaml(language: str, category: str, questions: list[str], model: str) -> str:
    """An identity seed pool: the generated questions with the shipped answers of that category."""
    from ..identity.seeds import builtin_seed_pools

    shipped = builtin_seed_pools()[normalize_code(language)]
    data = {
        "task": "identity",
        "language": language,
        "list_sep": shipped.list_sep,
        "list_and": shipped.list_and,
        "capability_names": shipped.capability_names,
        "questions": {category: questions},
        # the entries as written (text plus states/fits/closing), so generated questions pair with
        # answers by the facts they state, as the shipped pool does
        "answers": {category: [a.raw for a in shipped.answers[category]]},
    }
    header = f"# generated by {model} ({len(questions)} {category} questions); review before use\n"
    return header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000)


def generate_pool(client: LLMClient, options: GenOptions, pool_files: tuple[str, ...] = ()) -> GenResult:
    gen = TemplateGenerator(client, options, pool_files)
    try:
        return asyncio.run(gen.run())
    except LLMError:
        raise
