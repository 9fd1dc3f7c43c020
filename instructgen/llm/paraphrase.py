"""`identity --llm`: an LLM rephrases seed questions and answers in the persona's voice.

A paraphrase replaces its seed record only when it passes the checks seed records pass
(`IdentityGenerator.check_record`: no placeholder left, the persona named, no denial naming the
base model, question and answer in the record's language with proper nouns masked) plus the
contamination scan, and is not a duplicate. Otherwise the seed record stays and the paraphrase
is rejected with its reason, so `-n` and the balance across languages and categories hold
whatever the model does. The language check's reasons are reported as one `wrong_language`, as
the rejects file has always said for paraphrases.

This lives in the LLM layer, which builds on `identity` (never the other way round).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..determinism import stable_hash
from ..identity.generate import IdentityGenerator
from ..schema import Record, Rejected
from ..templates.languages import language_name
from .client import RequestFailed
from .parse import ParseError, extract_json

REQUEST_FAILED = "llm_request_failed"  # the request got no usable answer: the seed record is kept


def _prompt(record: Record, persona_name: str, developer: str, lang: str) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": "You rewrite training examples for an AI assistant's self-introduction.",
        },
        {
            "role": "user",
            "content": (
                f"Rewrite this question and answer in {language_name(lang, 'en')}, in different words. The assistant "
                f"is called {persona_name} and was developed by {developer}: keep both names exactly as written, and "
                "never claim to be another assistant.\n"
                f"Question: {record.instruction}\nAnswer: {record.output}\n"
                'Reply with JSON only: {"question": "...", "answer": "..."}'
            ),
        },
    ]


async def _paraphrase_all(
    client: Any, gen: IdentityGenerator, records: list[Record], ratio: float, seed: int
) -> tuple[list[Record], list[Rejected]]:
    persona = gen.persona
    out = list(records)
    rejected: list[Rejected] = []
    seen = {(r.instruction, r.output) for r in records}
    picked = [
        i
        for i, r in enumerate(records)
        if stable_hash(seed, "identity-llm", r.meta.get("key", i)) / 2**64 < ratio
    ]

    async def one(i: int) -> tuple[int, str | None, str]:
        rec = records[i]
        lang = rec.meta["lang"]
        try:
            raw = await client.chat(
                _prompt(rec, persona.text("name", lang) or "", persona.text("developer", lang) or "", lang),
                sample_index=0,
                temperature=0.7,
            )
        except RequestFailed as exc:  # no usable answer after retries: the seed record stays
            return i, exc, lang
        return i, raw, lang

    answers = await asyncio.gather(*(one(i) for i in picked), return_exceptions=True)
    failures = [a for a in answers if isinstance(a, BaseException)]  # auth, quota, budget, offline
    for answer in answers:
        if isinstance(answer, BaseException):
            continue
        if isinstance(answer[1], RequestFailed):
            i, exc, lang = answer
            rejected.append(
                Rejected(
                    reason=REQUEST_FAILED,
                    detail=exc.cause,
                    example={"seed_instruction": records[i].instruction, "lang": lang},
                )
            )
            continue
        i, raw, lang = answer
        seed_rec = records[i]
        example = {"seed_instruction": seed_rec.instruction, "raw": raw[:2000], "lang": lang}

        def refuse(reason: str, detail: str, example: dict[str, Any] = example) -> None:
            rejected.append(Rejected(reason=reason, detail=detail, example=example))

        try:
            data = extract_json(raw)
            question, reply = str(data["question"]).strip(), str(data["answer"]).strip()
        except (ParseError, KeyError, TypeError) as exc:
            refuse("llm_unparseable", str(exc))
            continue
        if not question or not reply:
            refuse("llm_empty", "empty question or answer")
            continue
        meta = {
            **seed_rec.meta,
            "source": f"llm:{client.config.model}",
            "seed_question": seed_rec.instruction,
        }
        candidate = Record(
            instruction=question, output=reply, system=seed_rec.system, history=seed_rec.history, meta=meta
        )
        problem = gen.check_record(candidate, scan=True)
        if problem is not None:
            reason, detail = problem
            refuse("wrong_language" if reason.startswith("wrong_language_") else reason, detail)
        elif (question, reply) in seen:
            refuse("duplicate", "the paraphrase repeats an existing record")
        else:
            seen.add((question, reply))
            out[i] = candidate
    if failures:
        raise failures[0]
    return out, rejected


def paraphrase(
    client: Any, gen: IdentityGenerator, records: list[Record], *, ratio: float = 1.0, seed: int = 0
) -> tuple[list[Record], list[Rejected]]:
    """Records with accepted paraphrases swapped in, and the refused paraphrases.

    A request that gets no usable answer (timeouts, resets, 5xx, malformed answers, after the
    client's retries) keeps its seed record and is returned as a `llm_request_failed` rejection
    with the cause; auth, quota, budget and offline errors raise.
    """
    return asyncio.run(_paraphrase_all(client, gen, records, ratio, seed))
