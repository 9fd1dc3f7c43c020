"""The engine that turns strings into ids: the fastest one proven to give the tokenizer's own ids.

A user brings a HF tokenizer; its ids are the contract. Engines that reproduce them faster:

- `fastokens` (PyPI, Rust): loads the tokenizer's own `tokenizer.json` (byte-level BPE,
  SentencePiece-style BPE such as Llama-2, non-special added tokens, the common normalizers)
  and encodes a batch into two flat buffers (uint32 ids, uint64 offsets) with no per-token
  Python object: about 20x less CPU than `tokenizers` on Qwen and Llama-2 vocabularies.
- `tiktoken`: a twin built from the vocabulary (byte-level BPE whose split regex and normalizer
  tiktoken can express; see `tokenizers.tiktoken_twin`).
- `tokenizers`: the tokenizer itself (always right, slowest).

An engine is used only after it reproduced, on a sample of the data being tokenized, (1) the
ids of every sample string in both encodings the encoder uses (template text with added tokens
as control tokens; user text with every added-token string kept as plain text) and (2) the
encoder's whole output (input_ids and labels, rejections) for the sample records. The first
candidate that passes runs; the report line names it and why each one before it was refused.

Threads: fastokens and tokenizers encode a batch on a Rayon pool. The pipeline runs
`--num-proc N` worker processes and gives each one engine thread (`limit_engine_threads`), so N
processes keep N cores busy, not N x cores. fastokens then runs a batch on its one pool thread
while the calling thread waits: CPU seconds stay about equal to wall seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .columnar import ColumnarEncoder, payload_of
from .tokenizers import HFTokenizer, fast_path

ENGINES = ("fastokens", "tiktoken", "tokenizers")
CANDIDATES: tuple[str, ...] = ("fastokens", "tiktoken")  # tried in this order (benchmarks pin one)
SAMPLE_RECORDS = 200  # their fields are encoded both ways by the tokenizer and the engine (~0.4 ms a
# record of the tokenizer's own time on alpaca-sized rows: 500 records were a fifth of a 52k-row run)
ENCODER_SAMPLE = 200  # and the encoder's whole output compared on the first of them


def limit_engine_threads(num_proc: int) -> None:
    """One engine thread per process, set before the Rayon pools (fastokens, tokenizers) start:
    `--num-proc N` then means N busy cores (N processes, each encoding on one thread), never
    N processes x all cores fighting over the same cores. An explicit RAYON_NUM_THREADS wins
    (e.g. one process on a big machine that should let its engine use 8 threads)."""
    del num_proc  # the rule is per process, whatever their number
    os.environ.setdefault("RAYON_NUM_THREADS", "1")


class FastokensTokenizer:
    """The Tokenizer interface with encoding by fastokens and everything else (special-token
    lookups, decoding, metadata) by the user's own tokenizer, so only the ids can differ, and
    those are proven equal before use."""

    engine = "fastokens"

    def __init__(self, base: HFTokenizer) -> None:
        self.base = base
        file = Path(base.path) / "tokenizer.json"
        # file_backed: HFTokenizer encodes with tokenizer.json as is (asking base.hf would load
        # transformers, and with it torch, just to compare)
        if getattr(base, "file_backed", False) and file.is_file():
            state = file.read_text(encoding="utf-8")  # what HFTokenizer encodes with
        else:
            state = base.backend.to_str()
        # user text is encoded with split_special_tokens, which keeps special added tokens as
        # text; non-special ones would still match, so (as HFTokenizer does) those tokenizers get
        # a copy where every added token is special
        self.ft, self.ft_plain = _fastokens_pair(state, getattr(base, "_plain", None) is not base.backend)
        self.name = f"{base.name} (fastokens)"
        for attr in ("bos_id", "eos_id", "pad_id", "adds_bos", "marks_word_start", "path", "chat_template"):
            setattr(self, attr, getattr(base, attr, None))

    def encode_flat(self, texts: Sequence[str], *, specials: bool) -> tuple[Any, Any]:
        """(ids uint32, offsets uint64 of len(texts)+1): text i is ids[offsets[i]:offsets[i+1]]."""
        import numpy as np

        texts = list(texts)
        if specials:
            ids, offsets = self.ft.encode_batch_flat(texts, add_special_tokens=False)
        else:
            ids, offsets = self.ft_plain.encode_batch_flat(
                texts, add_special_tokens=False, split_special_tokens=True
            )
        return np.frombuffer(ids, dtype=np.uint32), np.frombuffer(offsets, dtype=np.uint64)

    def encode_texts(self, texts: Sequence[str], *, specials: bool) -> list[list[int]]:
        if not texts:
            return []
        ids, offsets = self.encode_flat(texts, specials=specials)
        flat = ids.tolist()
        bounds = offsets.tolist()
        return [flat[a:b] for a, b in itertools.pairwise(bounds)]

    def token_id(self, token: str) -> int | None:
        return self.base.token_id(token)

    def decode(self, ids: Sequence[int]) -> str:
        return self.base.decode(ids)

    def token_text(self, token_id: int) -> str:
        return self.base.token_text(token_id)

    def special_tokens(self) -> list[str]:
        return self.base.special_tokens()

    def added_tokens(self) -> dict[str, tuple[bool, bool]]:
        return self.base.added_tokens()

    def fingerprint(self) -> str:
        return self.base.fingerprint()


_LOADED: dict[tuple[bytes, bool], tuple[Any, Any]] = {}  # the last pair built (one at most)
_LOADING = threading.Lock()


def _fastokens_pair(state: str, plain: bool) -> tuple[Any, Any]:
    """fastokens loaded from a `tokenizer.json` text (and, with `plain`, from a copy where every
    added token is special), kept for the next call with the same text.

    Loading is most of a run's fixed cost (~1.3 CPU s for Qwen's 151k merges, single-threaded,
    twice with `plain`), so a process that tokenizes several inputs with one tokenizer (a
    pipeline, a notebook, a test session) pays it once. The key is the digest of the exact JSON
    loaded, so an edited tokenizer is loaded afresh; only the last pair is kept (a few hundred
    MB for a 150k vocabulary), replaced when another tokenizer loads. Every use still proves
    the engine on its own data (`select_engine`)."""
    import fastokens

    key = (hashlib.blake2b(state.encode("utf-8"), digest_size=16).digest(), plain)
    with _LOADING:  # the engine thread (`start_build`) and a caller never build one twice
        pair = _LOADED.get(key)
        if pair is None:
            ft = fastokens.Tokenizer.from_json_str(state)
            ft_plain = ft
            if plain:
                doc = json.loads(state)
                for tok in doc.get("added_tokens", []):
                    tok["special"] = True
                ft_plain = fastokens.Tokenizer.from_json_str(json.dumps(doc))
            _LOADED.clear()
            pair = _LOADED[key] = (ft, ft_plain)
    return pair


def _build(name: str, tok: HFTokenizer) -> Any:
    """The candidate engine as a Tokenizer, or a string saying why it cannot be built."""
    if name == "fastokens":
        try:
            import fastokens  # noqa: F401
        except ImportError:
            return "not installed (pip install 'instructgen[tokenize]')"
        try:
            return FastokensTokenizer(tok)
        except Exception as exc:  # fastokens refuses pipelines it does not implement
            return f"cannot load the tokenizer: {' '.join(str(exc).split())[:160]}"
    if name == "tiktoken":
        twin, msg = fast_path(tok, [])
        return twin if twin is not None else msg.removeprefix("fast path off: ")
    raise ValueError(name)


def sample_texts(records: Sequence[Any], tok: HFTokenizer) -> list[str]:
    """The strings an engine must reproduce: every field of the sample records, plus one text
    holding every added token between ordinary words."""
    texts: list[str] = []
    for r in records:
        texts += [r.prompt_text(), r.output]
        if r.system:
            texts.append(r.system)
        for t in r.history:
            texts += [t.user, t.assistant]
    texts.append("x " + "\n".join(tok.added_tokens()) + " y")
    return texts


@dataclass
class EngineChoice:
    """What encodes: the tokenizer (an engine or the user's own), its name, the report line, and
    whether rows are assembled columnar (`columnar.ColumnarEncoder`, proven on the same sample)."""

    tok: Any
    name: str
    line: str
    columnar: bool = False


class _Proof:
    """The reference results on the sample, computed once with the user's tokenizer."""

    def __init__(self, tok: HFTokenizer, records: list[Any], fmt: Any, options: Any) -> None:
        self.tok, self.records, self.fmt = tok, records[:ENCODER_SAMPLE], fmt
        self.options = replace(options, audit_sample=0) if options is not None else None
        self.texts = sample_texts(records, tok)  # all of them
        self._ids: dict[bool, list[list[int]]] = {}
        self._want: tuple | None = None

    def ids(self, specials: bool) -> list[list[int]]:
        if specials not in self._ids:
            self._ids[specials] = self.tok.encode_texts(self.texts, specials=specials)
        return self._ids[specials]

    def want(self) -> tuple:
        if self._want is None:
            from .encode import Encoder

            self._want = payload_of(Encoder(self.tok, self.fmt, self.options).encode_batch(self.records))
        return self._want

    def check(self, cand: Any, *, texts: bool = True) -> tuple[str | None, str]:
        """(why `cand` is refused or None, why columnar assembly is off or "")."""
        from .encode import Encoder

        # user text as the escaped encoding sees it; template mode on the text of every added
        # token between words, and on the encoder's own strings below
        checks = ((False, self.texts), (True, self.texts[-1:])) if texts else ()
        for specials, batch in checks:
            want = self.ids(False) if not specials else self.tok.encode_texts(batch, specials=True)
            for text, x, y in zip(batch, want, cand.encode_texts(batch, specials=specials)):
                if x != y:
                    return f"ids differ on {text[:40]!r} ({'template' if specials else 'user'} text)", ""
        if self.fmt is None or not self.records:
            return None, "no format"
        encoder = Encoder(cand, self.fmt, self.options)
        col = ColumnarEncoder(encoder)
        if col.off:
            got = payload_of(encoder.encode_batch(self.records))
            off = col.off
        else:
            got = col.encode(self.records)
            off = ""
            if got[:5] != self.want()[:5]:  # the columnar rows differ: is it the engine?
                got = payload_of(Encoder(cand, self.fmt, self.options).encode_batch(self.records))
                off = "columnar rows differ from the encoder's on the sample"
        if got[:5] != self.want()[:5]:
            return "the encoder's output differs on the sample records", ""
        return None, off


def start_build(tok: Any, threads: int) -> Future | None:
    """Start building the first candidate engine on a thread now, for `select_engine(started=)`:
    with more than one core (`threads`), a caller that still has to read its input lets the
    engine load meanwhile (~1.4 CPU s for fastokens on a 150k vocabulary; the build releases
    the GIL). None with one core, or when there is nothing to build."""
    if threads <= 1 or not isinstance(tok, HFTokenizer) or not CANDIDATES:
        return None
    return _start(CANDIDATES[0], tok)


def _start(name: str, tok: HFTokenizer) -> Future:
    """`_build(name, tok)` on a thread of its own, which ends with it."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="instructgen-engine")
    future = pool.submit(_build, name, tok)
    future.engine_name = name  # type: ignore[attr-defined]
    pool.shutdown(wait=False)
    return future


def select_engine(
    tok: Any,
    records: Sequence[Any],
    fmt: Any = None,
    options: Any = None,
    *,
    fast: bool = True,
    candidates: Sequence[str] | None = None,
    threads: int = 1,
    while_loading: Callable[[Callable[[], bool]], None] | None = None,
    started: Future | None = None,
) -> EngineChoice:
    """The engine to encode with, and one report line.

    Candidates are tried fastest first; each must reproduce the tokenizer on the sample (see the
    module docstring) or it is refused with its reason; when none does, the tokenizer itself
    encodes. With `threads` > 1 (`--num-proc`: cores we may use) the first candidate loads on a
    thread while the tokenizer encodes the sample (both release the GIL): loading fastokens is
    most of the fixed cost; the main thread then calls `while_loading(done)` (planning rows that
    need no engine) until `done()` says the engine is loaded. `started` (`start_build`): that
    load began earlier, while the caller read its input. `fast=False` (`--no-fast`) is the reference path: the tokenizer itself through
    `Encoder`, no engine, no columnar assembly. Tokenizers that are not HF directories (a
    `.tiktoken` file) are their own engine.
    """
    if not fast:
        return EngineChoice(tok, "tokenizers", "fast path off: --no-fast (the tokenizer itself encodes)")
    if not isinstance(tok, HFTokenizer):
        return EngineChoice(tok, getattr(tok, "engine", "tiktoken"), "")
    proof = _Proof(tok, list(records[:SAMPLE_RECORDS]), fmt, options)
    refused: list[str] = []
    names = list(CANDIDATES if candidates is None else candidates)
    early = started if started is not None and names[:1] == [getattr(started, "engine_name", None)] else None
    if early is None and threads > 1 and names:
        early = _start(names[0], tok)
    if early is not None:
        proof.ids(False)
        if fmt is not None and proof.records:
            proof.want()
        if while_loading is not None:
            while_loading(early.done)
        early.result()
    for k, name in enumerate(names):
        cand = early.result() if k == 0 and early is not None else _build(name, tok)
        why, off = (cand, "") if isinstance(cand, str) else proof.check(cand)
        if why is None:
            line = f"fast path on: {name} gives identical ids on {len(proof.texts)} sample texts"
            if fmt is not None and proof.records:
                line += f" and identical output on {len(proof.records)} records"
            line += f"; columnar off: {off}" if off else "; columnar rows"
            if refused:
                line += f" ({'; '.join(refused)})"
            return EngineChoice(cand, name, line, columnar=not off)
        refused.append(f"{name} refused: {why}")
    _, off = proof.check(tok, texts=False)
    line = f"fast path off: {'; '.join(refused)} (the tokenizer itself encodes"
    line += f"; columnar off: {off})" if off else "; columnar rows)"
    return EngineChoice(tok, "tokenizers", line, columnar=not off)


def engine_for(tok: Any, name: str) -> Any:
    """Rebuild an engine the parent process already proved (spawned workers)."""
    if name in ("tokenizers", "") or not isinstance(tok, HFTokenizer):
        return tok
    cand = _build(name, tok)
    return tok if isinstance(cand, str) else cand
