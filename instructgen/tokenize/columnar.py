"""Records -> flat int32 columns without per-row Python in the hot path.

`Encoder` builds each record's strings, ids and labels with a Python loop per record and per
piece; with an engine that encodes 150,000 strings a second that loop is most of the time. Here
the records of a chunk are grouped by *shape* (which fields are empty, whether the system prompt
is the record's own or the format's), and each shape is rendered once through the encoder itself
on a probe record whose fields are placeholders. That gives the shape's program: strings with
slots for the fields (encoded in one flat batch per chunk), ids placed as they are (BOS,
end-of-turn, the template's special tokens), and which pieces are trained. Rows are then
assembled with array operations: the same strings, ids and labels the encoder gives, only
without a Python object per token.

Rows the program does not cover go through `Encoder.encode_batch` unchanged, in place: records
with history, with an added-token string in a field (escaped encoding), rows longer than
max_length (truncation policy), rows with no trained token (rejection), identity candidates
(the `--system` check), and audited rows. Tokenizers whose added tokens strip whitespace and
the chat_template format are not covered at all. The output is proven equal to the encoder's
on the sample before use (`engines.select_engine`), and tests compare whole files.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..schema import Record, Rejected
from . import encode as _encode
from .encode import IGNORE, ChatTemplateEncoder, Encoded, Encoder

# the identity question Encoder._system_for looks for; without it every candidate row goes there
_IDENTITY_Q: re.Pattern | None = getattr(_encode, "_IDENTITY_Q", None)

# placeholders for instruction, input, output, system (private use: no real format contains them)
_PH = ("\ue0f0", "\ue0f1", "\ue0f2", "\ue0f3")
_PH_RE = re.compile("([\ue0f0-\ue0f3])")
_SEP = "\x00"  # joins fields for one regex pass over a chunk (no added token or pattern spans it)


@dataclass
class _Piece:
    trainable: bool
    const: Any = None  # np.int32 ids, the same for every row
    template: str | None = None  # str.format template over (instruction, input, output, system)
    specials: bool = True  # encoding mode of the string


@dataclass
class _Shape:
    pieces: list[_Piece]
    glue: list[tuple[int, int]]  # (prompt piece, response piece) encoded together (SentencePiece)


def encode_flat(tok: Any, texts: list[str], *, specials: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets) of `texts` from any engine: fastokens' flat buffers, or lists flattened."""
    flat = getattr(tok, "encode_flat", None)
    if flat is not None:
        return flat(texts, specials=specials)
    lists = tok.encode_texts(texts, specials=specials)
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(offsets[-1]))
    return ids, offsets


def payload_of(out: Sequence[Encoded | Rejected]) -> tuple[bytes, bytes, bytes, bytes, list]:
    """The encoder's per-row results as the flat payload `ColumnarEncoder.encode` returns."""
    lengths, ids, labels = array("i"), array("i"), array("i")
    flags = bytearray()
    rejected = []
    for k, r in enumerate(out):
        if isinstance(r, Rejected):
            lengths.append(-1)
            rejected.append((k, r.reason, r.detail))
        else:
            lengths.append(len(r.input_ids))
            ids.extend(r.input_ids)
            labels.extend(r.labels)
            flags.append(1 if r.truncated else 0)
    return lengths.tobytes(), ids.tobytes(), labels.tobytes(), bytes(flags), rejected


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges starts[i] .. starts[i] + lengths[i] (the gather/scatter index)."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts.astype(np.int64) - before, lengths)


class ColumnarEncoder:
    """Encodes chunks of records to flat columns, with the output of `encoder` (see module doc)."""

    def __init__(self, encoder: Encoder) -> None:
        self.enc = encoder
        self.tok = encoder.tok
        self.off = ""
        if isinstance(encoder, ChatTemplateEncoder):
            self.off = "chat_template renders through Jinja per record"
        elif any(lstrip or rstrip for lstrip, rstrip in encoder._added.values()):
            self.off = "an added token strips whitespace around it (depends on each row's text)"
        self._shapes: dict[tuple, _Shape | None] = {}
        # the characters every added token starts with (strings, not paths)
        self._added_prefix = os.path.commonprefix(list(encoder._added)) if encoder._added else ""  # noqa: RUF071
        self.columnar_rows = 0  # rows assembled here / handed to the encoder (for tests and reports)
        self.encoder_rows = 0
        opts, fmt = encoder.options, encoder.fmt
        self._identity_check = (
            opts.system_mode == "auto" and bool(fmt.default_system) and bool(fmt.default_system_names)
        )

    # --- shapes ------------------------------------------------------------------------------------

    def _shape(self, key: tuple) -> _Shape | None:
        if key not in self._shapes:
            self._shapes[key] = self._probe(key)
        return self._shapes[key]

    def _probe(self, key: tuple) -> _Shape | None:
        """The shape's program, from the encoder's own rendering of a placeholder record."""
        has_instruction, has_input, has_output, system = key
        try:
            probe = Record(
                instruction=_PH[0] if has_instruction else "",
                input=_PH[1] if has_input else "",
                output=_PH[2] if has_output else "",
                system={"own": _PH[3], "empty": "", "none": None}[system],
            )
            items = self.enc._runs(self.enc._segments(probe))
        except Exception:
            return None  # e.g. the format refuses such a record: the encoder will say so per row
        pieces: list[_Piece] = []
        for it in items:
            if it[0] == "i":
                pieces.append(_Piece(trainable=bool(it[2]), const=np.asarray(it[1], dtype=np.int64)))
                continue
            _, text, trainable, _turn, risky, _cacheable = it
            if risky:
                return None
            parts = _PH_RE.split(text)
            if len(parts) == 1 and not self.enc._glue:  # template text only: encoded once
                ids = self.tok.encode_texts([text], specials=True)[0]
                pieces.append(_Piece(trainable=bool(trainable), const=np.asarray(ids, dtype=np.int64)))
                continue
            # (with glue every string stays a template: a response is encoded with its prompt)
            fmt = "".join(
                "{" + str(_PH.index(p)) + "}" if k % 2 else p.replace("{", "{{").replace("}", "}}")
                for k, p in enumerate(parts)
            )
            pieces.append(_Piece(trainable=bool(trainable), template=fmt))
        glue = []
        if self.enc._glue:
            for j in range(1, len(pieces)):
                a, b = pieces[j - 1], pieces[j]
                if a.template is not None and b.template is not None and b.trainable and not a.trainable:
                    glue.append((j - 1, j))
        return _Shape(pieces=pieces, glue=glue)

    # --- a chunk ------------------------------------------------------------------------------------

    def _route(self, records: Sequence[Record]) -> tuple[list[tuple | None], list[int], list[tuple]]:
        """(per record: its shape key or None for the encoder; rows needing the encoder; per
        record its (instruction, input, output, system or "") fields, read once for the chunk)."""
        enc = self.enc
        n = enc.options.audit_sample
        if self.off or n < 0 or (n > 0 and enc._audited < n):
            return [None] * len(records), list(range(len(records))), []
        raw = [(r.instruction, r.input, r.output, r.system, r.history, r.meta) for r in records]
        fields = [(i, x, o, s or "") for i, x, o, s, _, _ in raw]
        prompts = [f"{i}\n{x}" if x else i for i, x, *_ in raw]  # Record.prompt_text
        slow = {k for k, f in enumerate(raw) if f[4]}  # history
        split_re = enc._split_re
        if split_re is not None:
            for column in (prompts, [f[2] for f in fields], [f[3] for f in fields]):
                self._flag(split_re, self._added_prefix, column, slow)
        if self._identity_check:
            # Encoder._system_for's identity check can only object to a record without a system
            # prompt that has meta or an identity question in its prompt: those go through it.
            # Every alternative of _IDENTITY_Q holds "who", "your", "what", 你, 您 or 谁; the
            # regex runs only on prompts holding one (a tenth of the time of one pass over all)
            for k, (p, f) in enumerate(zip(prompts, raw)):
                if f[3] is not None:
                    continue
                if f[5]:
                    slow.add(k)
                    continue
                low = p.lower()
                if _IDENTITY_Q is None or (
                    ("who" in low or "your" in low or "what" in low or "你" in p or "您" in p or "谁" in p)
                    and _IDENTITY_Q.search(p)
                ):
                    slow.add(k)
        keys: list[tuple | None] = [
            None
            if k in slow
            else (bool(i), bool(x), bool(o), "none" if s is None else ("own" if s else "empty"))
            for k, (i, x, o, s, _, _) in enumerate(raw)
        ]
        return keys, sorted(slow), fields

    @staticmethod
    def _flag(rx: re.Pattern, prefix: str, texts: list[str], slow: set[int]) -> None:
        """Rows k where `rx` matches texts[k], in one pass over the joined texts. A chunk without
        the prefix all added-token strings share ("<|" for Qwen) is done with one substring scan,
        about a third of the alternation regex's time; the others go through the regex."""
        joined = _SEP.join(texts)
        if prefix and prefix not in joined:
            return
        if not rx.search(joined):
            return
        ends = np.cumsum([len(t) + 1 for t in texts])
        for m in rx.finditer(joined):
            slow.add(int(np.searchsorted(ends, m.start(), side="right")))

    def encode(self, records: Sequence[Record]) -> tuple[bytes, bytes, bytes, bytes, list, dict[str, int]]:
        """The chunk as (lengths, ids, labels, truncated flags, rejected, stats delta): the payload
        `pipeline._encode_range` returns, with indexes relative to the chunk."""
        enc = self.enc
        before = (enc.stats.truncated, enc.stats.audited, enc.stats.boundary_mismatch)
        keys, slow_rows, fields = self._route(records)
        groups: dict[tuple, list[int]] = {}
        for k, key in enumerate(keys):
            if key is not None:
                groups.setdefault(key, []).append(k)
        lengths = np.full(len(records), -2, dtype=np.int64)  # -2: not done yet
        col_ids: list[np.ndarray] = []
        col_labels: list[np.ndarray] = []
        col_rows: list[np.ndarray] = []
        col_lens: list[np.ndarray] = []
        slow = set(slow_rows)
        for key, rows in groups.items():
            shape = self._shape(key)
            if shape is None:
                slow.update(rows)
                continue
            done = self._encode_shape(shape, [fields[k] for k in rows])
            ok, ids, labels, lens = done
            rows_a = np.asarray(rows, dtype=np.int64)
            slow.update(rows_a[~ok].tolist())
            col_rows.append(rows_a[ok])
            col_lens.append(lens)
            col_ids.append(ids)
            col_labels.append(labels)
        enc.stats.records += len(records) - len(slow)
        self.columnar_rows += len(records) - len(slow)
        self.encoder_rows += len(slow)
        slow_rows = sorted(slow)
        slow_out = enc.encode_batch([records[k] for k in slow_rows]) if slow_rows else []
        rejected: list[tuple[int, str, str]] = []
        s_ids, s_labels = array("i"), array("i")
        s_lens = []
        truncated = np.zeros(len(records), dtype=bool)
        for k, r in zip(slow_rows, slow_out):
            if isinstance(r, Rejected):
                lengths[k] = -1
                rejected.append((k, r.reason, r.detail))
            else:
                lengths[k] = len(r.input_ids)
                s_lens.append(len(r.input_ids))
                s_ids.extend(r.input_ids)
                s_labels.extend(r.labels)
                truncated[k] = r.truncated
        # gather: columnar rows and encoder rows, back into record order
        src_rows = [*col_rows, np.asarray([k for k, r in zip(slow_rows, slow_out) if isinstance(r, Encoded)])]
        src_lens = [*col_lens, np.asarray(s_lens, dtype=np.int64)]
        all_ids = np.concatenate([*col_ids, np.frombuffer(s_ids, dtype=np.int32)]) if records else None
        all_labels = (
            np.concatenate([*col_labels, np.frombuffer(s_labels, dtype=np.int32)]) if records else None
        )
        row_of = np.concatenate(src_rows).astype(np.int64) if src_rows else np.empty(0, np.int64)
        len_of = np.concatenate(src_lens).astype(np.int64) if src_lens else np.empty(0, np.int64)
        lengths[row_of] = len_of
        kept = lengths >= 0
        order = np.argsort(row_of, kind="stable")
        src_start = np.cumsum(len_of) - len_of
        if all_ids is None or len(order) == 0:
            ids = labels = np.empty(0, dtype=np.int32)
        elif (np.diff(row_of) > 0).all():  # already in record order (one shape, no encoder rows)
            ids, labels = all_ids, all_labels
        else:
            idx = _ranges(src_start[order], len_of[order])
            ids, labels = all_ids[idx], all_labels[idx]
        after = (enc.stats.truncated, enc.stats.audited, enc.stats.boundary_mismatch)
        delta = {
            "truncated": after[0] - before[0],
            "audited": after[1] - before[1],
            "boundary_mismatch": after[2] - before[2],
        }
        flags = truncated[kept].astype(np.uint8).tobytes()
        return (
            lengths.astype(np.int32).tobytes(),
            np.ascontiguousarray(ids, dtype=np.int32).tobytes(),
            np.ascontiguousarray(labels, dtype=np.int32).tobytes(),
            flags,
            rejected,
            delta,
        )

    def _encode_shape(
        self, shape: _Shape, rows: list[tuple[str, str, str, str]]
    ) -> tuple[np.ndarray, Any, Any, Any]:
        """(ok per row, ids, labels, lengths of the ok rows) for the (instruction, input, output,
        system) fields of records of one shape.

        Every row is a sequence of segments (one per piece) of one source buffer: the flat
        encoding of the chunk's strings followed by the constant pieces. The output is one gather
        over all kept rows' segments, and the labels one mask repeated by segment length.
        """
        n = len(rows)
        # every field string of the shape, one flat encode (each piece's strings are contiguous)
        texts: list[str] = []
        slots: dict[int, int] = {}  # piece -> index of its first string in texts
        for j, p in enumerate(shape.pieces):
            if p.template is not None:
                slots[j] = len(texts)
                template = p.template.format
                texts += [template(*row) for row in rows]
        glue_at: dict[int, int] = {}
        for a, b in shape.glue:
            glue_at[b] = len(texts)
            texts += [x + y for x, y in zip(texts[slots[a] : slots[a] + n], texts[slots[b] : slots[b] + n])]
        flat, offsets = encode_flat(self.tok, texts, specials=True)
        offsets = offsets.astype(np.int64)
        starts, lens = offsets[:-1], offsets[1:] - offsets[:-1]
        ok = np.ones(n, dtype=bool)
        consts = [p.const for p in shape.pieces if p.template is None]
        const_at = np.cumsum([len(flat), *(len(c) for c in consts)])  # where each constant starts
        seg_start: list[np.ndarray] = []
        seg_len: list[np.ndarray] = []
        k = 0
        for j, p in enumerate(shape.pieces):
            if p.template is None:
                seg_start.append(np.full(n, const_at[k], np.int64))
                seg_len.append(np.full(n, len(p.const), np.int64))
                k += 1
            else:
                seg_start.append(starts[slots[j] : slots[j] + n])
                seg_len.append(lens[slots[j] : slots[j] + n])
        for a, b in shape.glue:
            # the response keeps the joint encoding's tokens after the prompt's own tokens, when the
            # joint encoding starts with them (Encoder._glue_responses); other rows: the encoder
            g = glue_at[b]
            p_start, p_len = seg_start[a], seg_len[a]
            j_start, j_len = starts[g : g + n], lens[g : g + n]
            fits = j_len >= p_len
            same = np.zeros(n, dtype=bool)
            idx_p = _ranges(p_start[fits], p_len[fits])
            idx_j = _ranges(j_start[fits], p_len[fits])
            eq = flat[idx_p] == flat[idx_j]
            bounds = np.cumsum(p_len[fits]) - p_len[fits]
            nonempty = p_len[fits] > 0
            row_eq = np.ones(int(fits.sum()), dtype=bool)
            if eq.size:
                red = np.logical_and.reduceat(eq, bounds[nonempty]) if nonempty.any() else np.empty(0, bool)
                row_eq[nonempty] = red
            same[np.flatnonzero(fits)] = row_eq
            ok &= same
            seg_start[b], seg_len[b] = j_start + p_len, j_len - p_len
        train = np.array([p.trainable for p in shape.pieces], dtype=bool)
        starts_2d = np.stack(seg_start, axis=1)  # row x piece
        lens_2d = np.stack(seg_len, axis=1)
        total = lens_2d.sum(axis=1)
        trained = lens_2d[:, train].sum(axis=1)
        ok &= (total <= self.enc.options.max_length) & (trained > 0)
        keep = np.flatnonzero(ok)
        row_len = total[keep]
        seg_lens = lens_2d[keep].ravel()  # row-major: each kept row's pieces in order
        source = np.concatenate([flat.astype(np.int32, copy=False), *(c.astype(np.int32) for c in consts)])
        ids = source[_ranges(starts_2d[keep].ravel(), seg_lens)]
        trainable = np.repeat(np.tile(train, len(keep)), seg_lens)
        labels = np.where(trainable, ids, np.int32(IGNORE)).astype(np.int32, copy=False)
        return ok, ids, labels, row_len
