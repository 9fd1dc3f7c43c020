"""Records -> input_ids / labels, with the masking contract of DESIGN.md.

Two strategies, one contract:

- **per-segment** (built-in formats): each segment is tokenized on its own. The prompt is
  therefore exactly what inference sees, labels split exactly at segment edges, BOS/EOT are
  added by id, and user text is encoded with special-token strings as plain text. The price:
  a response's first token may differ from tokenizing the whole text at once (SentencePiece
  word-start markers, merges across the edge); the boundary audit counts such records.
- **one-pass** (`chat_template`): the tokenizer's own Jinja template renders the conversation
  once, with invisible sentinels around every message's content; the sentinels give exact
  character spans, the text is tokenized once with offsets, and tokens inside assistant spans
  (plus the end-of-turn token right after each) are trained. A template that changes message
  content (trimming, dropping earlier turns' thinking) is refused, never guessed.

A record left with no trained token is rejected (it would give a NaN loss); truncation follows
an explicit policy and never cuts a role header or the final end-of-turn token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..formats import PromptFormat, Segment, segments
from ..schema import Record, Rejected

IGNORE = -100
TRUNCATION = ("drop", "truncate_prompt_left", "truncate_response")


@dataclass(frozen=True)
class EncodeOptions:
    max_length: int = 2048
    truncation: str = "drop"
    train_on_inputs: bool = False
    mask_history: bool = False
    escape_special: bool = True
    audit_sample: int = 1000  # records checked against one-pass tokenization (0 = none, -1 = all)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    boundary_mismatch: bool | None = None  # None when not audited


@dataclass
class _Piece:
    ids: list[int]
    seg: Segment
    turn: int

    @classmethod
    def of(cls, seg: tuple, ids: list[int]) -> _Piece:
        s = Segment(*seg)
        return cls(list(ids), s, s.turn)


@dataclass
class EncodeStats:
    records: int = 0
    truncated: int = 0
    audited: int = 0
    boundary_mismatch: int = 0
    escaped: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class Encoder:
    """Encodes batches of records with one tokenizer and one prompt format."""

    def __init__(self, tokenizer: Any, fmt: PromptFormat, options: EncodeOptions) -> None:
        if options.truncation not in TRUNCATION:
            raise ConfigError(
                f"--truncation must be one of {', '.join(TRUNCATION)}, not '{options.truncation}'"
            )
        if options.max_length < 2:
            raise ConfigError("--max-length must be at least 2")
        self.tok = tokenizer
        self.fmt = fmt
        self.options = options
        self.bos_id = tokenizer.bos_id if fmt.bos else None
        if fmt.eot:
            eot_id = tokenizer.token_id(fmt.eot)
            if eot_id is None:
                raise ConfigError(
                    f"format '{fmt.name}' ends turns with {fmt.eot!r}, which is not a single token of this "
                    "tokenizer; add it as a special token or choose another format"
                )
        else:
            eot_id = tokenizer.eos_id
            if eot_id is None:
                raise ConfigError(
                    f"the tokenizer has no EOS token, which format '{fmt.name}' ends turns with"
                )
        self.eot_id = eot_id
        self.eot_text = tokenizer.token_text(eot_id)
        self.specials = [s for s in tokenizer.special_tokens() if s]
        # user text needs the (slower) escaped encoding only when it contains a special-token string
        self._special_re = (
            re.compile("|".join(re.escape(sp) for sp in self.specials)) if self.specials else None
        )
        self._template_cache: dict[str, list[int]] = {}
        self.stats = EncodeStats()
        self._audited = 0

    # --- per-segment ---------------------------------------------------------------------------

    def encode_batch(self, records: list[Record]) -> list[Encoded | Rejected]:
        opts = self.options
        all_segs = [
            segments(self.fmt, r, mask_history=opts.mask_history, train_on_inputs=opts.train_on_inputs)
            for r in records
        ]
        cache = self._template_cache
        contents: list[str] = []
        new_cached: dict[str, bool] = {}  # text -> encode with specials?
        for segs in all_segs:
            for s in segs:
                kind = s[0]
                if kind == "content":
                    contents.append(s[1])
                elif (kind == "text" or kind == "system") and s[1] not in cache and s[1] not in new_cached:
                    new_cached[s[1]] = kind == "text" or not opts.escape_special
        if new_cached:
            for specials in (True, False):
                texts = [t for t, sp in new_cached.items() if sp is specials]
                for text, ids in zip(texts, self.tok.encode_texts(texts, specials=specials)):
                    cache[text] = ids
            if len(cache) > 10_000:  # system prompts that never repeat: keep the cache bounded
                cache.clear()
        content_ids = iter(self._encode_contents(contents))

        out: list[Encoded | Rejected] = []
        audit: list[tuple[int, list[list[int]], str]] = []
        limit = opts.max_length
        bos = [self.bos_id] if self.bos_id is not None else []
        eot = [self.eot_id]
        for segs in all_segs:
            parts: list[list[int]] = []
            for s in segs:
                kind = s[0]
                if kind == "content":
                    parts.append(next(content_ids))
                elif kind == "text" or kind == "system":
                    parts.append(cache[s[1]])
                elif kind == "eot":
                    parts.append(eot)
                else:
                    parts.append(bos)
            if self._should_audit(segs):
                audit.append((len(out), parts, self._full_text(segs)))
            total = sum(map(len, parts))
            if total > limit:
                out.append(self._finish_truncated(segs, parts, total))
                continue
            input_ids: list[int] = []
            labels: list[int] = []
            for s, ids in zip(segs, parts):
                input_ids += ids
                labels += ids if s[2] else [IGNORE] * len(ids)
            if len(labels) == labels.count(IGNORE):
                self._count("no_trained_tokens")
                out.append(
                    Rejected(
                        reason="no_trained_tokens",
                        detail="no token left to train on (it would give a NaN loss)",
                    )
                )
                continue
            out.append(Encoded(input_ids, labels))
        if audit:
            one_pass = self.tok.encode_texts([text for _, _, text in audit], specials=True)
            for (row, parts, _), ids in zip(audit, one_pass):
                enc = out[row]
                if isinstance(enc, Encoded):
                    enc.boundary_mismatch = ids != [i for p in parts for i in p]
                    self.stats.audited += 1
                    self.stats.boundary_mismatch += enc.boundary_mismatch
        self.stats.records += len(records)
        return out

    def _encode_contents(self, contents: list[str]) -> list[list[int]]:
        """User text with special-token strings kept as text. Texts without any special string encode
        the same either way, and the escaped mode costs ~35% more in HF tokenizers, so only the
        texts that contain one take it."""
        if not self.options.escape_special:
            return self.tok.encode_texts(contents, specials=True)
        search = self._special_re.search if self._special_re is not None else None
        risky = [i for i, t in enumerate(contents) if search is not None and search(t)]
        if not risky:
            return self.tok.encode_texts(contents, specials=True)
        risky_set = set(risky)
        plain = [t for i, t in enumerate(contents) if i not in risky_set]
        plain_ids = iter(self.tok.encode_texts(plain, specials=True))
        escaped_ids = iter(self.tok.encode_texts([contents[i] for i in risky], specials=False))
        return [next(escaped_ids) if i in risky_set else next(plain_ids) for i in range(len(contents))]

    def _should_audit(self, segs: list[tuple]) -> bool:
        n = self.options.audit_sample
        if n == 0 or (n > 0 and self._audited >= n):
            return False
        if any(s[0] == "content" and any(sp in s[1] for sp in self.specials) for s in segs):
            return False  # escaped specials cannot match a one-pass encoding by design
        self._audited += 1
        return True

    def _full_text(self, segs: list[tuple]) -> str:
        parts = []
        for kind, text, _trainable, _turn in segs:
            if kind in ("text", "content", "system"):
                parts.append(text)
            elif kind == "bos" and self.bos_id is not None:
                parts.append(self.tok.token_text(self.bos_id))
            elif kind == "eot":
                parts.append(self.eot_text)
        return "".join(parts)

    def _finish_truncated(self, segs: list[tuple], parts: list[list[int]], total: int) -> Encoded | Rejected:
        pieces = [_Piece.of(s, ids) for s, ids in zip(segs, parts)]
        result = self._truncate(pieces, total)
        if isinstance(result, Rejected):
            self._count(result.reason)
            return result
        self.stats.truncated += 1
        input_ids: list[int] = []
        labels: list[int] = []
        for p in result:
            input_ids += p.ids
            labels += p.ids if p.seg.trainable else [IGNORE] * len(p.ids)
        if len(labels) == labels.count(IGNORE):
            self._count("no_trained_tokens")
            return Rejected(
                reason="no_trained_tokens", detail="no token left to train on (it would give a NaN loss)"
            )
        return Encoded(input_ids, labels, truncated=True)

    def _count(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1

    def _truncate(self, pieces: list[_Piece], total: int) -> list[_Piece] | Rejected:
        limit = self.options.max_length
        policy = self.options.truncation
        if policy == "drop":
            return Rejected(
                reason="too_long", detail=f"{total} tokens > max_length {limit} (--truncation drop)"
            )
        pieces = [_Piece(list(p.ids), p.seg, p.turn) for p in pieces]
        excess = total - limit
        last_turn = max(p.turn for p in pieces)
        if policy == "truncate_response":
            for p in reversed(pieces):
                if p.seg.kind == "content" and p.seg.trainable and p.turn == last_turn:
                    if len(p.ids) - excess >= 1:
                        del p.ids[len(p.ids) - excess :]
                        return pieces
                    break
            return Rejected(
                reason="too_long",
                detail=f"{total} tokens: the prompt leaves no room for the response within {limit}",
            )
        # truncate_prompt_left: drop whole earlier turns first, then cut the last prompt from the left
        turns = sorted({p.turn for p in pieces if p.turn >= 0})
        for t in turns[:-1]:
            if excess <= 0:
                break
            size = sum(len(p.ids) for p in pieces if p.turn == t)
            pieces = [p for p in pieces if p.turn != t]
            excess -= size
        for p in pieces:
            if excess <= 0:
                break
            if p.turn == last_turn and p.seg.kind == "content" and not p.seg.trainable:
                cut = min(excess, len(p.ids))
                del p.ids[:cut]
                excess -= cut
        if excess > 0:
            return Rejected(
                reason="too_long",
                detail=f"{total} tokens: headers and response alone exceed max_length {limit}",
            )
        return [p for p in pieces if p.ids or p.seg.kind != "content"]


# --- one-pass through the tokenizer's chat template ----------------------------------------------

_OPEN, _MID, _CLOSE = "\ue000", "\ue001", "\ue002"
ZWSP = "\u200b"


def record_messages(record: Record) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": record.system}] if record.system else []
    for t in record.history:
        msgs += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.assistant}]
    msgs += [
        {"role": "user", "content": record.prompt_text()},
        {"role": "assistant", "content": record.output},
    ]
    return msgs


class ChatTemplateEncoder:
    """One render, one tokenization, spans from sentinels (HF tokenizers with a chat template)."""

    def __init__(self, tokenizer: Any, options: EncodeOptions) -> None:
        if not hasattr(tokenizer, "encode_with_offsets") or not getattr(tokenizer, "chat_template", None):
            raise ConfigError("format chat_template needs a HF tokenizer directory with a chat_template")
        if options.truncation != "drop":
            raise ConfigError(
                "format chat_template supports --truncation drop only (a rendered template has no "
                "structure to cut safely)"
            )
        self.tok = tokenizer
        self.options = options
        self.specials = [s for s in tokenizer.special_tokens() if s]
        self.stats = EncodeStats()

    def _escape(self, text: str) -> str:
        if not self.options.escape_special:
            return text
        for sp in self.specials:
            if sp in text:
                text = text.replace(sp, sp[0] + ZWSP + sp[1:])
                self.stats.escaped += 1
        return text

    def render(self, record: Record) -> tuple[str, list[tuple[int, int, bool]]]:
        """(text, [(start, end, trained)] for every assistant span).

        The conversation is rendered twice: with sentinels around every message's content, and
        plainly. With the sentinels removed the two must be identical; a template that trims,
        rewrites or drops content (e.g. earlier turns' thinking) makes them differ and is refused.
        """
        msgs = [{"role": m["role"], "content": self._escape(m["content"])} for m in record_messages(record)]
        marked = [
            {"role": m["role"], "content": f"{_OPEN}{i}{_MID}{m['content']}{_CLOSE}{i}{_MID}"}
            for i, m in enumerate(msgs)
        ]
        rendered = self.tok.hf.apply_chat_template(marked, tokenize=False)
        plain = self.tok.hf.apply_chat_template(msgs, tokenize=False)
        text_parts: list[str] = []
        spans: list[tuple[int, int, bool]] = []
        where: list[tuple[int, int, int]] = []  # (start, end, message index) of every message
        pos = 0
        cursor = 0
        last_assistant = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        for i, m in enumerate(msgs):
            open_tag, close_tag = f"{_OPEN}{i}{_MID}", f"{_CLOSE}{i}{_MID}"
            a = rendered.find(open_tag, pos)
            b = rendered.find(close_tag, a + len(open_tag)) if a >= 0 else -1
            if a < 0 or b < 0:
                raise ConfigError(
                    f"the chat template dropped message {i} ({m['role']}); it rewrites the conversation, "
                    "so spans cannot be trusted: use a built-in --format"
                )
            inner = rendered[a + len(open_tag) : b]
            text_parts.append(rendered[pos:a])
            cursor += a - pos
            start = cursor
            text_parts.append(inner)
            cursor += len(inner)
            where.append((start, cursor, i))
            if m["role"] == "assistant":
                trained = self.options.train_on_inputs or not self.options.mask_history or i == last_assistant
                spans.append((start, cursor, trained))
            pos = b + len(close_tag)
        text_parts.append(rendered[pos:])
        text = "".join(text_parts)
        if _OPEN in text or _CLOSE in text:
            raise ConfigError("the chat template repeated a message's content; spans cannot be trusted")
        if text != plain:
            at = next((k for k, (x, y) in enumerate(zip(text, plain)) if x != y), min(len(text), len(plain)))
            i = next((i for a, b, i in where if a <= at <= b), None)
            which = f"message {i} ({msgs[i]['role']})" if i is not None else "the text between messages"
            raise ConfigError(
                f"the chat template changed the content of {which}, e.g. by trimming it or dropping "
                "earlier turns' thinking; spans cannot be trusted: use a built-in --format"
            )
        return text, spans

    def encode_batch(self, records: list[Record]) -> list[Encoded | Rejected]:
        rendered = [self.render(r) for r in records]
        encs = self.tok.encode_with_offsets([t for t, _ in rendered])
        special_ids = {self.tok.token_id(s) for s in self.specials}
        out: list[Encoded | Rejected] = []
        for (_text, spans), (ids, offsets) in zip(rendered, encs):
            labels = [IGNORE] * len(ids)
            for start, end, trained in spans:
                if not trained and not self.options.train_on_inputs:
                    continue
                last = None
                for k, (a, b) in enumerate(offsets):
                    if a >= start and b <= end and b > a:
                        labels[k] = ids[k]
                        last = k
                    elif a >= end:
                        break
                nxt = (
                    (last + 1)
                    if last is not None
                    else next((k for k, (a, _) in enumerate(offsets) if a >= end), None)
                )
                if nxt is not None and nxt < len(ids) and ids[nxt] in special_ids:
                    labels[nxt] = ids[nxt]  # the end-of-turn token closing this assistant turn
            if self.options.train_on_inputs:
                labels = list(ids)
            self.stats.records += 1
            if len(ids) > self.options.max_length:
                self.stats.rejected["too_long"] = self.stats.rejected.get("too_long", 0) + 1
                out.append(
                    Rejected(
                        reason="too_long", detail=f"{len(ids)} tokens > max_length {self.options.max_length}"
                    )
                )
                continue
            if all(x == IGNORE for x in labels):
                self.stats.rejected["no_trained_tokens"] = self.stats.rejected.get("no_trained_tokens", 0) + 1
                out.append(Rejected(reason="no_trained_tokens", detail="no token left to train on"))
                continue
            out.append(Encoded(list(ids), labels))
        return out
