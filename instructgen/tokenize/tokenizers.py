"""One small interface over the tokenizers instructgen encodes with.

- `HFTokenizer`: any local Hugging Face tokenizer directory, encoded through its Rust backend in
  batches. Read from tokenizer.json and the config files when they say everything
  `AutoTokenizer.from_pretrained` would resolve (transformers imports torch: ~200 MB), through
  AutoTokenizer otherwise; AutoTokenizer is loaded on first use of `.hf` (chat templates).
- `TiktokenTokenizer`: a GPT-2-style BPE rank file (`*.tiktoken`, base64 token + rank per line)
  with a split regex and special tokens, through OpenAI's tiktoken.
- `fast_path`: for a byte-level BPE HF tokenizer whose ranks, split regex and normaliser can
  be expressed for tiktoken, a tiktoken twin that is used only after it gives identical ids
  on a sample of the data.

User text is encoded with special-token strings treated as plain text (`<|im_end|>` typed by a
user must not end a turn); template text is encoded with them as control tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
)


class Tokenizer(Protocol):
    name: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    adds_bos: bool  # the tokenizer itself puts BOS first (post-processor / add_bos_token)
    marks_word_start: bool  # every encode call starts a new word (SentencePiece "▁" dummy prefix)

    def encode_texts(self, texts: Sequence[str], *, specials: bool) -> list[list[int]]: ...
    def token_id(self, token: str) -> int | None: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def token_text(self, token_id: int) -> str: ...
    def special_tokens(self) -> list[str]: ...
    def added_tokens(self) -> dict[str, tuple[bool, bool]]: ...
    def fingerprint(self) -> str: ...


def _require(module: str, extra: str = "tokenize"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"this needs '{module}': pip install 'instructgen[{extra}]'") from None


class HFTokenizer:
    """A local HF tokenizer directory (fast tokenizers only: offsets and batching need them)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.name = self.path
        if not Path(path).is_dir():
            raise ConfigError(f"{path}: tokenizer directory not found")
        self._hf: Any = None
        light = _light_load(Path(path))
        # file_backed: encoding uses the folder's tokenizer.json exactly as the file defines it
        if light is not None:
            # tokenizer.json plus the special tokens and chat template read from the config files:
            # no `transformers` import (it imports torch: ~200 MB of the ~660 MB tokenize peak);
            # AutoTokenizer loads on first use of `.hf` (the chat_template path renders with it)
            self.backend, self.bos_id, self.eos_id, self.pad_id, self.chat_template = light
            self.file_backed = True
        else:
            hf = self.hf
            if not getattr(hf, "is_fast", False):
                raise ConfigError(
                    f"{path}: only fast (Rust) tokenizers are supported; this one is {type(hf).__name__}"
                )
            self.backend = _file_backend(Path(path), hf.backend_tokenizer)
            self.file_backed = self.backend is not hf.backend_tokenizer
            self.bos_id = hf.bos_token_id
            self.eos_id = hf.eos_token_id
            self.pad_id = hf.pad_token_id
            self.chat_template = getattr(hf, "chat_template", None)
        self._encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        added = self.backend.get_added_tokens_decoder()
        self._added = {t.content: (t.lstrip, t.rstrip) for t in added.values() if t.content}
        # user text must never become an added-token id (issue 11 item 5): the escaped encoding
        # runs on a copy where every added token is special, so encode_special_tokens covers them all
        self._plain = self.backend
        if any(not t.special for t in added.values()):
            state = json.loads(self.backend.to_str())
            for tok in state.get("added_tokens", []):
                tok["special"] = True
            self._plain = type(self.backend).from_str(json.dumps(state))
        self._plain_encode = getattr(self._plain, "encode_batch_fast", None) or self._plain.encode_batch
        self.adds_bos = self._adds_bos()
        self.marks_word_start = _marks_word_start(self)

    @property
    def hf(self) -> Any:
        """transformers' AutoTokenizer for this folder, loaded on first use (chat templates)."""
        if self._hf is None:
            transformers = _require("transformers")
            self._hf = transformers.AutoTokenizer.from_pretrained(self.path)
        return self._hf

    def vocab_len(self) -> int:
        """Base vocabulary plus added tokens (`len(AutoTokenizer)`): the ids the data can hold."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _adds_bos(self) -> bool:
        """Whether the tokenizer itself puts BOS first (its post-processor, i.e. add_bos_token)."""
        if self.bos_id is None:
            return False
        with_specials = self.backend.encode("a", add_special_tokens=True).ids
        return bool(with_specials) and with_specials[0] == self.bos_id

    def encode_texts(self, texts: Sequence[str], *, specials: bool) -> list[list[int]]:
        """specials=True: added tokens in the text are control tokens (template text);
        specials=False: every added-token string stays ordinary text (user text)."""
        if not texts:
            return []
        if specials:
            return [e.ids for e in self._encode(list(texts), add_special_tokens=False)]
        self._plain.encode_special_tokens = True
        try:
            return [e.ids for e in self._plain_encode(list(texts), add_special_tokens=False)]
        finally:
            self._plain.encode_special_tokens = False

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encs]

    def token_id(self, token: str) -> int | None:
        tid = self.backend.token_to_id(token)
        return tid

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        return self.backend.decode([token_id], skip_special_tokens=False)

    def special_tokens(self) -> list[str]:
        added = self.backend.get_added_tokens_decoder()
        return sorted({t.content for t in added.values() if t.special}, key=len, reverse=True)

    def added_tokens(self) -> dict[str, tuple[bool, bool]]:
        """Every added token (special or not) -> (lstrip, rstrip): what splits text into pieces."""
        return dict(self._added)

    def fingerprint(self) -> str:
        return tokenizer_fingerprint(self.path)


def _file_backend(path: Path, fallback: Any) -> Any:
    """The tokenizer exactly as its `tokenizer.json` defines it.

    transformers 5's AutoTokenizer rebuilds the pipeline of some classes (LlamaTokenizer gets a
    Metaspace pre-tokenizer, so " grabbed" loses SentencePiece's lone "▁"), while the file holds
    the model's own pipeline (it reproduces sentencepiece and Meta's `generation.py` ids). Encode
    with the file; fall back to AutoTokenizer's backend when there is no file or the two disagree
    on the vocabulary or the added tokens.
    """
    f = path / "tokenizer.json"
    if not f.is_file():
        return fallback
    try:
        from tokenizers import Tokenizer

        raw = Tokenizer.from_file(str(f))
    except Exception:
        return fallback
    same_added = {i: t.content for i, t in raw.get_added_tokens_decoder().items()} == {
        i: t.content for i, t in fallback.get_added_tokens_decoder().items()
    }
    if not same_added or raw.get_vocab_size() != fallback.get_vocab_size():
        return fallback
    return raw


_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")
# tokenizer classes with no default special tokens (a model class such as LlamaTokenizer has some)
_GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _token_content(value: Any) -> str | None:
    """A special token as the config files write it: a string, an AddedToken dict, or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(value)


def _light_load(path: Path) -> tuple[Any, int | None, int | None, int | None, str | None] | None:
    """(tokenizer.json backend, bos, eos and pad ids, chat template) read from the folder's files
    without transformers, or None when only AutoTokenizer can say what it would resolve: no
    tokenizer.json or tokenizer_config.json; a special token left out (the tokenizer class's
    default would apply), named differently by tokenizer_config.json and special_tokens_map.json,
    or missing from the vocabulary (AutoTokenizer would add it); added tokens in the config that
    the file does not hold at the same ids; several or conflicting chat templates. In every other
    case AutoTokenizer ends with the same ids and templates (tests/test_tokenize_output.py checks
    it for every tokenizer the tests use)."""
    file, cfg_file, map_file = path / "tokenizer.json", path / "tokenizer_config.json", path / "special_tokens_map.json"
    if not file.is_file() or not cfg_file.is_file() or (path / "chat_template.json").exists():
        return None
    try:
        from tokenizers import Tokenizer

        cfg = json.loads(cfg_file.read_text("utf-8"))
        smap = json.loads(map_file.read_text("utf-8")) if map_file.is_file() else {}
        if not isinstance(cfg, dict) or not isinstance(smap, dict):
            return None
        backend = Tokenizer.from_file(str(file))
        ids: dict[str, int | None] = {}
        for key in _SPECIAL_KEYS:
            named = {_token_content(d[key]) for d in (cfg, smap) if key in d}
            if not named and cfg.get("tokenizer_class") in _GENERIC_CLASSES:
                named = {None}  # transformers 5 leaves unset tokens out; these classes have no default
            if len(named) != 1:
                return None
            token = named.pop()
            ids[key] = None if token is None else backend.token_to_id(token)
            if token is not None and ids[key] is None:
                return None
        for key in ("additional_special_tokens", "extra_special_tokens"):
            for d in (cfg, smap):
                extra = d.get(key) or []
                if not isinstance(extra, list):
                    return None
                if any(backend.token_to_id(_token_content(t) or "") is None for t in extra):
                    return None
        held = {i: t.content for i, t in backend.get_added_tokens_decoder().items()}
        decl = cfg.get("added_tokens_decoder") or {}
        if not isinstance(decl, dict) or any(held.get(int(i)) != _token_content(t) for i, t in decl.items()):
            return None
        template = cfg.get("chat_template")
        jinja = path / "chat_template.jinja"
        if jinja.is_file():
            text = jinja.read_text("utf-8")
            if template is not None and template != text:
                return None
            template = text
        if template is not None and not isinstance(template, str):
            return None  # named templates: AutoTokenizer's choice
    except Exception:  # unreadable or unexpected config: AutoTokenizer decides
        return None
    return backend, ids["bos_token"], ids["eos_token"], ids["pad_token"], template


def _marks_word_start(tok: Any) -> bool:
    """Whether each encode call starts a new word (SentencePiece's "▁" dummy prefix): then the
    response side cannot be encoded on its own after a prompt that ends mid-word or on "\n"."""
    a, b, ab = tok.encode_texts(["\n", "hello", "\nhello"], specials=True)
    return a + b != ab


# Model weights a tokenizer never reads: left out of its fingerprint (they can be gigabytes).
NOT_TOKENIZER_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".msgpack", ".h5")


def tokenizer_fingerprint(path: str | Path) -> str:
    """A hash of every file a tokenizer may load, without loading it (cache keys need only this).

    `AutoTokenizer` reads far more than tokenizer.json: vocab.txt (WordPiece), vocab.json and
    merges.txt, *.model (SentencePiece), special_tokens_map.json, added_tokens.json, chat
    templates (chat_template.jinja / .json, additional_chat_templates/), config.json (to pick
    the class). A list of names misses the next one, so every file in the folder counts, by
    relative path and content, except model weights and hidden entries (.git, .cache).
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        h.update(p.read_bytes())
        sidecar = Path(str(p) + ".json")
        if sidecar.is_file():
            h.update(sidecar.read_bytes())
        return h.hexdigest()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        rel = f.relative_to(p)
        if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() in NOT_TOKENIZER_SUFFIXES:
            continue
        h.update(rel.as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def load_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError:
                raise ConfigError(f"{path}:{n}: expected '<base64 token> <rank>'") from None
    return ranks


# GPT-4/Qwen-style split pattern: the default for a .tiktoken file without a sidecar config.
DEFAULT_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


class TiktokenTokenizer:
    """A tiktoken encoding from a local rank file.

    Options come from a sidecar `<file>.json` ({"pattern", "special_tokens", "bos", "eos", "pad",
    "normalize"}) or the constructor; special tokens default to Qwen's three after the last rank.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        pattern: str | None = None,
        special_tokens: dict[str, int] | None = None,
        bos: str | None = None,
        eos: str | None = None,
        pad: str | None = None,
        normalize: str | None = None,
        name: str | None = None,
    ) -> None:
        tiktoken = _require("tiktoken")
        self.path = str(path)
        self.name = name or self.path
        sidecar = Path(str(path) + ".json")
        cfg: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
        ranks = load_tiktoken_ranks(path)
        n = max(ranks.values()) + 1 if ranks else 0
        specials = (
            special_tokens
            or cfg.get("special_tokens")
            or {
                "<|endoftext|>": n,
                "<|im_start|>": n + 1,
                "<|im_end|>": n + 2,
            }
        )
        self.pattern = pattern or cfg.get("pattern") or DEFAULT_PATTERN
        self.normalize = normalize if normalize is not None else cfg.get("normalize")
        self.enc = tiktoken.Encoding(
            name=Path(path).stem, pat_str=self.pattern, mergeable_ranks=ranks, special_tokens=dict(specials)
        )
        self._specials = dict(specials)
        self._ranks_inverse: dict[int, bytes] | None = None
        self.bos_id = self._specials.get(bos or cfg.get("bos") or "", None)
        self.eos_id = self._specials.get(eos or cfg.get("eos") or "<|im_end|>", None)
        self.pad_id = self._specials.get(pad or cfg.get("pad") or "<|endoftext|>", None)
        self.chat_template = cfg.get("chat_template")
        self.threads = int(os.environ.get("INSTRUCTGEN_TIKTOKEN_THREADS", "1"))
        self.adds_bos = bool(cfg.get("add_bos")) and self.bos_id is not None
        self.marks_word_start = False

    @classmethod
    def from_encoding(
        cls,
        enc: Any,
        *,
        name: str,
        bos_id,
        eos_id,
        pad_id,
        normalize: str | None,
        fingerprint: str,
        adds_bos: bool = False,
    ) -> TiktokenTokenizer:
        self = cls.__new__(cls)
        self.enc, self.name, self.path = enc, name, name
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.normalize = normalize
        self._specials = dict(enc._special_tokens)
        self._ranks_inverse = None
        self.chat_template = None
        self.threads = int(os.environ.get("INSTRUCTGEN_TIKTOKEN_THREADS", "1"))
        self._fingerprint = fingerprint
        self.adds_bos = adds_bos
        self.marks_word_start = False
        return self

    def _norm(self, texts: Sequence[str]) -> list[str]:
        if not self.normalize:
            return list(texts)
        form = self.normalize
        return [t if unicodedata.is_normalized(form, t) else unicodedata.normalize(form, t) for t in texts]

    def encode_texts(self, texts: Sequence[str], *, specials: bool) -> list[list[int]]:
        texts = self._norm(texts)
        if self.threads > 1:
            if specials:
                return self.enc.encode_batch(texts, allowed_special="all", num_threads=self.threads)
            return self.enc.encode_ordinary_batch(texts, num_threads=self.threads)
        # tiktoken's *_batch functions submit every text to a thread pool even for one thread,
        # which costs more than the encoding of short texts: call the encoder directly instead.
        if specials:
            allowed = self.enc.special_tokens_set
            encode = self.enc.encode
            return [encode(t, allowed_special=allowed) for t in texts]
        encode_ordinary = self.enc.encode_ordinary
        return [encode_ordinary(t) for t in texts]

    def token_id(self, token: str) -> int | None:
        if token in self._specials:
            return self._specials[token]
        try:
            return self.enc.encode_single_token(token.encode("utf-8"))
        except KeyError:
            return None

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode(list(ids))

    def token_text(self, token_id: int) -> str:
        return self.enc.decode([token_id])

    def special_tokens(self) -> list[str]:
        return sorted(self._specials, key=len, reverse=True)

    def added_tokens(self) -> dict[str, tuple[bool, bool]]:
        return {s: (False, False) for s in self._specials}

    def fingerprint(self) -> str:
        return getattr(self, "_fingerprint", None) or tokenizer_fingerprint(self.path)


def load_tokenizer(path: str | Path) -> HFTokenizer | TiktokenTokenizer:
    """A HF tokenizer directory, or a `.tiktoken` rank file."""
    p = Path(path)
    if p.is_file() and p.suffix == ".tiktoken":
        return TiktokenTokenizer(p)
    if p.is_dir():
        return HFTokenizer(p)
    raise ConfigError(f"{path}: not a tokenizer directory or a .tiktoken file")


# --- byte-level BPE: HF tokenizer <-> tiktoken ---------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiktoken_twin(tok: HFTokenizer) -> tuple[Any, str | None] | str:
    """A tiktoken Encoding equivalent to a byte-level BPE HF tokenizer, or why there is none."""
    tiktoken = _require("tiktoken")
    backend = tok.backend
    if type(backend.model).__name__ != "BPE":
        return f"model is {type(backend.model).__name__}, not BPE"
    pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    pattern = None
    byte_level = False
    for step in steps:
        if step.get("type") == "Split" and "Regex" in (step.get("pattern") or {}):
            if step.get("behavior") != "Isolated" or step.get("invert"):
                return "split pre-tokenizer is not 'isolated'"
            pattern = step["pattern"]["Regex"]
        elif step.get("type") == "ByteLevel":
            if step.get("add_prefix_space"):
                return "byte-level pre-tokenizer adds a prefix space"
            byte_level = True
            if step.get("use_regex", True) and pattern is None:
                pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
        else:
            return f"pre-tokenizer step {step.get('type')} has no tiktoken equivalent"
    if not byte_level or pattern is None:
        return "not a byte-level BPE with a split regex"
    norm = json.loads(backend.normalizer.__getstate__()) if backend.normalizer is not None else None
    normalize = None
    if norm:
        if norm.get("type") in ("NFC", "NFKC", "NFD", "NFKD"):
            normalize = norm["type"]
        else:
            return f"normalizer {norm.get('type')} has no tiktoken equivalent"
    # byte-level characters -> the bytes they stand for, through str.translate (C speed)
    table = {ord(c): chr(b) for b, c in _bytes_to_unicode().items()}
    vocab = backend.get_vocab(with_added_tokens=False)
    try:
        ranks = {token.translate(table).encode("latin-1"): tid for token, tid in vocab.items()}
    except UnicodeEncodeError:
        return "vocabulary is not written in byte-level characters"
    added = {t.content: i for i, t in backend.get_added_tokens_decoder().items()}
    specials = {s: i for s, i in added.items() if ranks.get(s.encode("utf-8")) != i}
    try:
        enc = tiktoken.Encoding(name="twin", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    except Exception as exc:  # tiktoken rejects patterns its regex engine cannot compile
        return f"tiktoken cannot use it: {exc}"
    return enc, normalize


def fast_path(tok: HFTokenizer, sample: Sequence[str]) -> tuple[TiktokenTokenizer | None, str]:
    """(tiktoken twin, message): the twin only when it encodes the sample identically.

    User text is checked on the whole sample (it is what the twin encodes); special-token
    handling on a slice of it plus a text made of every special token.
    """
    twin = tiktoken_twin(tok)
    if isinstance(twin, str):
        return None, f"fast path off: {twin}"
    enc, normalize = twin
    fast = TiktokenTokenizer.from_encoding(
        enc,
        name=f"{tok.name} (tiktoken)",
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        normalize=normalize,
        fingerprint=tok.fingerprint(),
        adds_bos=tok.adds_bos,
    )
    texts = list(sample)
    with_specials = [*texts[:50], "x" + "\n".join(tok.special_tokens()) + " y"]
    for specials, batch in ((False, texts), (True, with_specials)):
        for text, x, y in zip(
            batch, tok.encode_texts(batch, specials=specials), fast.encode_texts(batch, specials=specials)
        ):
            if x != y:
                return None, f"fast path off: tiktoken differs from the tokenizer on {text[:40]!r}"
    return fast, f"fast path on: tiktoken gives identical ids on {len(texts)} sample texts"


def tiktoken_to_hf(
    rank_file: str | Path,
    out_dir: str | Path,
    *,
    pattern: str = DEFAULT_PATTERN,
    special_tokens: Sequence[str] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    eos: str = "<|im_end|>",
    pad: str = "<|endoftext|>",
    chat_template: str | None = None,
    normalizer: str | None = "NFC",
) -> Path:
    """Write a HF fast-tokenizer directory equivalent to a tiktoken rank file.

    Merges are recovered by replaying BPE on each token with only lower-ranked merges allowed:
    what remains is the pair whose merge creates it.
    """
    tokenizers = _require("tokenizers")
    transformers = _require("transformers")
    ranks = load_tiktoken_ranks(rank_file)
    b2u = _bytes_to_unicode()

    def enc(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2:
            raise ConfigError(f"{rank_file}: token of rank {rank} is not the merge of two tokens")
        merges.append((enc(parts[0]), enc(parts[1])))
    vocab = {enc(t): r for t, r in ranks.items()}
    from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    tok = tokenizers.Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False))
    if normalizer:
        tok.normalizer = getattr(normalizers, normalizer)()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special_tokens])
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        pad_token=pad,
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        hf.chat_template = chat_template
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out))
    return out
