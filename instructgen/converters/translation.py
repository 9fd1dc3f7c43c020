"""Parallel sentence pairs -> translation instruction records.

Per pair, in this order: strip whitespace; reject an empty side; reject a length-ratio outlier;
reject a side not in its declared language; then for each direction, choose a pool language and
a template as pure functions of (seed, task, key) and render. The shared checks (placeholders
left, empty fields) and exact dedup, the one step that needs to see the whole stream, are the
task's pipeline steps (tasks/translation.py), so the per-pair work can run in any number of
processes and still give the same bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from hashlib import blake2b as _blake2b
from typing import Any

from ..determinism import choose_index, content_key
from ..errors import ConfigError
from ..io.readers import FieldSpec
from ..pipeline.outcome import COLUMNS, Outcome, outcomes_from_rows, outcomes_to_columns  # noqa: F401
from ..quality.filters import length_ratio, length_units
from ..quality.langid import LanguageCheck, make_backend
from ..quality.placement import choose_fitting
from ..schema import Example, Record, Rejected
from ..templates.languages import language_name, normalize_code
from ..templates.pool import PoolSet

TASK = "translation"
DIRECTIONS = ("src2tgt", "tgt2src", "both")
INSTRUCTION_LANG_MODES = ("src", "tgt", "mix")


@dataclass(frozen=True)
class TranslationOptions:
    """Everything that decides the output; two runs with equal options give equal bytes."""

    src_lang: str
    tgt_lang: str
    seed: int = 0
    direction: str = "src2tgt"
    instruction_lang: str = "en"  # a pool language code, or src | tgt | mix
    templates: tuple[str, ...] = ()  # extra pool files
    builtin_templates: bool = True
    langid: str = "fasttext"  # fasttext | langdetect | none
    langid_threshold: float = 0.6
    langid_min_chars: int = 12
    max_ratio: float | None = 3.0
    ratio_min_units: int = 8  # pairs shorter than this (longer side, in units) skip the ratio check
    dedup: bool = True
    meta: bool = False
    src_col: str | None = None
    tgt_col: str | None = None


def dedup_key(direction: str, src: str, tgt: str) -> bytes:
    """A 16-byte BLAKE2b digest of (direction, source, target), the source length-prefixed.

    Joining the texts with a separator merged pairs that differ in where that separator sits
    ("a\x1fb" + "c" and "a" + "b\x1fc"); the directions all have 7 letters and the source's
    length ends at the ':', so the encoding is unambiguous. Keeping the digest instead of the
    texts holds the duplicate pass to a fixed size per pair, whatever the sentence lengths (840
    MB at 2M pairs when it kept the texts). A digest, not hash(): workers of Dataset.map make keys
    that the parent compares, and str hashes differ between processes.
    """
    data = f"{direction}{len(src)}:{src}{tgt}".encode("utf-8", "surrogatepass")
    return _blake2b(data, digest_size=16).digest()


class TranslationConverter:
    """Callable on one Example (`convert`) or on a column batch (`__call__`, for Dataset.map)."""

    def __init__(self, options: TranslationOptions) -> None:
        if options.direction not in DIRECTIONS:
            raise ConfigError(
                f"--direction must be one of {', '.join(DIRECTIONS)}, not '{options.direction}'"
            )
        self.options = options
        self.src = normalize_code(options.src_lang)
        self.tgt = normalize_code(options.tgt_lang)
        if self.src == self.tgt:
            raise ConfigError(f"source and target language are both '{self.src}'")
        self.pools = PoolSet.load(TASK, options.templates, include_builtin=options.builtin_templates)
        self._directions = ("src2tgt", "tgt2src") if options.direction == "both" else (options.direction,)
        mode = options.instruction_lang
        self._fixed_lang = None if mode in INSTRUCTION_LANG_MODES else self.pools.resolve_language(mode)
        self._mix_langs = self.pools.languages
        if mode in ("src", "tgt"):
            # the record's source language is self.src for src2tgt and self.tgt for tgt2src
            for d in self._directions:
                s_code, t_code = (self.src, self.tgt) if d == "src2tgt" else (self.tgt, self.src)
                self.pools.resolve_language(s_code if mode == "src" else t_code)  # fail now, not hours later
        backend = make_backend(options.langid)
        self.check = (
            None
            if backend is None
            else LanguageCheck(
                backend, threshold=options.langid_threshold, min_chars=options.langid_min_chars
            )
        )
        self.spec = FieldSpec.for_languages(
            options.src_lang, options.tgt_lang, options.src_col, options.tgt_col
        )

    # Pickle only the options: workers rebuild pools and the language model themselves.
    def __getstate__(self) -> dict[str, Any]:
        return {"options": asdict(self.options)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        opts = dict(state["options"])
        opts["templates"] = tuple(opts["templates"])
        self.__init__(TranslationOptions(**opts))

    def _pool_language(self, key: str, src_code: str, tgt_code: str) -> str:
        if self._fixed_lang is not None:
            return self._fixed_lang
        mode = self.options.instruction_lang
        if mode == "src":
            return self.pools.resolve_language(src_code)
        if mode == "tgt":
            return self.pools.resolve_language(tgt_code)
        langs = self._mix_langs
        return langs[choose_index(len(langs), self.options.seed, TASK, key, "instruction_lang")]

    def convert(self, example: Example) -> list[Outcome]:
        opts = self.options
        src = example.fields["source"].strip()
        tgt = example.fields["target"].strip()
        where = {"source_file": example.source_file, "line": example.line}
        pair = {"source": src, "target": tgt}

        def reject(reason: str, detail: str, extra: dict[str, Any] | None = None) -> Outcome:
            ex = {**pair, **(extra or {})}
            return Outcome(Rejected(reason=reason, detail=detail, example=ex, **where), example=ex, **where)

        if not src:
            return [reject("empty_source", "the source side is empty")]
        if not tgt:
            return [reject("empty_target", "the target side is empty")]
        if opts.max_ratio is not None:
            longest = max(length_units(src), length_units(tgt))
            if longest >= opts.ratio_min_units:
                ratio = length_ratio(src, tgt)
                if ratio > opts.max_ratio:
                    return [reject("length_ratio", f"length ratio {ratio:.1f} > {opts.max_ratio:g}")]
        if self.check is not None:
            problem = self.check.check(src, self.src)
            if problem:
                return [reject("wrong_language_source", problem)]
            problem = self.check.check(tgt, self.tgt)
            if problem:
                return [reject("wrong_language_target", problem)]

        key = example.key or content_key(src, tgt)
        out = []
        for direction in self._directions:
            if direction == "src2tgt":
                s_text, t_text, s_code, t_code = src, tgt, self.src, self.tgt
            else:
                s_text, t_text, s_code, t_code = tgt, src, self.tgt, self.src
            lang = self._pool_language(key, s_code, t_code)
            # a source that cannot sit inside the drawn template (long, quoted, several sentences) is
            # re-drawn among the templates that delimit it; records whose source fits keep their draw
            template = choose_fitting(self.pools.by_language[lang], opts.seed, TASK, key, s_text)
            if template is None:
                out.append(
                    reject(
                        "undelimited_source",
                        f"no '{lang}' template delimits this source",
                        {"direction": direction},
                    )
                )
                continue
            values = {
                "source": s_text,
                "target": t_text,
                "src_lang": language_name(s_code, lang),
                "tgt_lang": language_name(t_code, lang),
                "src_code": s_code,
                "tgt_code": t_code,
            }
            rendered = template.render(values)
            meta: dict[str, Any] = {}
            if opts.meta:
                meta = {
                    "key": key,
                    "template_id": template.id,
                    "template_hash": template.text_hash,
                    "instruction_lang": lang,
                    "src_code": s_code,
                    "tgt_code": t_code,
                    "direction": direction,
                    "source_file": example.source_file,
                    "line": example.line,
                }
            record = Record(
                instruction=rendered["instruction"],
                input=rendered["input"],
                output=rendered["output"],
                system=rendered["system"],
                meta=meta,
            )
            out.append(
                Outcome(
                    record,
                    dedup_key=dedup_key(direction, src, tgt),
                    example={
                        **pair,
                        "direction": direction,
                        "template_id": template.id,
                        "instruction_lang": lang,
                    },
                    data=(s_text, t_text),
                    **where,
                )
            )
        return out

