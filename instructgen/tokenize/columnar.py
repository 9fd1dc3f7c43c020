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

import operator
import os
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
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
    fields: tuple[int, ...] = ()  # the fields `template` uses, in the order of its {0}, {1}, ...
    direct: int = -1  # the template is exactly one field: that field's column is the strings


@dataclass
class _Shape:
    pieces: list[_Piece]
    glue: list[tuple[int, int]]  # (prompt piece, response piece) encoded together (SentencePiece)


@dataclass
class ChunkPlan:
    """A chunk routed and rendered, not yet encoded (`ColumnarEncoder.plan`)."""

    n: int
    codes: np.ndarray  # per record its shape code, -1 for a row the encoder takes
    groups: list  # (rows, shape, texts, slots, glue_at) per shape present


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
    """Concatenated aranges starts[i] .. starts[i] + lengths[i] (the gather/scatter index), as
    one running sum: 1 everywhere but at each segment's first position, which jumps from the
    previous segment's last index to its start (two passes over the index, not four)."""
    nonempty = lengths > 0
    if not nonempty.all():
        starts, lengths = starts[nonempty], lengths[nonempty]
    starts = starts.astype(np.int64, copy=False)
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    idx = np.ones(total, dtype=np.int64)
    first = np.cumsum(lengths[:-1])  # where segments 1.. begin
    idx[0] = starts[0]
    idx[first] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    np.cumsum(idx, out=idx)
    return idx


_FIELDS = operator.attrgetter("instruction", "input", "output", "system", "history", "meta")
# Where a match of _IDENTITY_Q can start: each alternative begins with one of these words (in
# the lowercased text: their letters have no case variant outside ASCII under re.IGNORECASE, only
# i, k and s do) or CJK characters; "introduce" is found by "ntroduce" one character on (its "i"
# may be "ı")
_IDENTITY_STARTS = (("who", 0), ("your", 0), ("what", 0), ("ntroduce", 1))
_IDENTITY_STARTS_CJK = ("你", "您", "谁", "介")


def _key(code: int) -> tuple:
    """The shape key of a code from `ColumnarEncoder._route`."""
    return (bool(code & 1), bool(code & 2), bool(code & 4), ("none", "own", "empty")[code >> 3])


def _joined(texts: Sequence[str]) -> tuple[str, np.ndarray]:
    """`texts` joined by _SEP, and where each one's separator ends (row k is before ends[k])."""
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return _SEP.join(texts), np.cumsum(lens + 1)


def _rows_at(ends: np.ndarray, positions: Any) -> list[int]:
    """The rows (see `_joined`) the positions fall in, sorted, each once."""
    pos = np.fromiter(positions, dtype=np.int64)
    return np.unique(np.searchsorted(ends, pos, side="right")).tolist()


def _holds(text: str, prefix: str) -> bool:
    """`prefix in text`, by single-character scans for its first character (about 2.5x faster
    than the two-character search on long non-ASCII text) while those are few."""
    find, first = text.find, prefix[0]
    pos = find(first)
    for _ in range(64):
        if pos < 0:
            return False
        if text.startswith(prefix, pos):
            return True
        pos = find(first, pos + 1)
    return pos >= 0 and text.find(prefix, pos) >= 0


def _identity_in(joined: str, ends: np.ndarray) -> list[int]:
    """The rows of `joined` (see `_joined`) that `_IDENTITY_Q` matches, what
    `Encoder._system_for` checks.

    _SEP is no part of any alternative, and \\b sees it as the start or end of a text; the regex
    is tried anchored (`match`) only where one of its alternatives can start
    (`_IDENTITY_STARTS`, found by substring scans of the lowercased text): searching every
    prompt with it cost ~250 ns a character, about as much as encoding them.
    """
    assert _IDENTITY_Q is not None
    low = joined.lower()
    match = _IDENTITY_Q.match
    if len(low) != len(joined):  # a character lowercases to several (İ): search row by row
        bounds = [0, *ends.tolist()]
        return [k for k in range(len(ends)) if _IDENTITY_Q.search(joined, bounds[k], bounds[k + 1] - 1)]
    needles = list(_IDENTITY_STARTS)
    if not joined.isascii():
        needles += [(c, 0) for c in _IDENTITY_STARTS_CJK]
    starts: list[int] = []
    for needle, back in needles:
        find = low.find
        pos = find(needle)
        while pos >= 0:
            if pos >= back and match(joined, pos - back):
                starts.append(pos - back)
            pos = find(needle, pos + 1)
    return _rows_at(ends, starts) if starts else []


def _identity_rows(prompts: Sequence[str], rows: list[int]) -> list[int]:
    """The rows (of `rows`) whose prompt `_IDENTITY_Q` matches (`_identity_in` on their texts)."""
    joined, ends = _joined([prompts[k] for k in rows])
    return [rows[j] for j in _identity_in(joined, ends)]


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
            used = tuple(dict.fromkeys(_PH.index(p) for p in parts[1::2]))
            fmt = "".join(
                "{" + str(used.index(_PH.index(p))) + "}"
                if k % 2
                else p.replace("{", "{{").replace("}", "}}")
                for k, p in enumerate(parts)
            )
            direct = used[0] if fmt == "{0}" else -1
            pieces.append(_Piece(trainable=bool(trainable), template=fmt, fields=used, direct=direct))
        # consecutive constant pieces with one label rule are one piece (fewer segments per row)
        merged: list[_Piece] = []
        for piece in pieces:
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.template is None
                and piece.template is None
                and last.trainable == piece.trainable
            ):
                merged[-1] = _Piece(trainable=last.trainable, const=np.concatenate([last.const, piece.const]))
            else:
                merged.append(piece)
        pieces = merged
        glue = []
        if self.enc._glue:
            for j in range(1, len(pieces)):
                a, b = pieces[j - 1], pieces[j]
                if a.template is not None and b.template is not None and b.trainable and not a.trainable:
                    glue.append((j - 1, j))
        return _Shape(pieces=pieces, glue=glue)

    # --- a chunk ------------------------------------------------------------------------------------

    def _route(self, records: Sequence[Record]) -> tuple[np.ndarray, list]:
        """(per record its shape code, -1 for a row the encoder takes (see `_key`); the chunk's
        columns instruction, input, output, system): one C-level pass per column, no per-row
        Python objects but the prompt strings, whose added-token and identity scans run on the
        joined column."""
        enc = self.enc
        n_rec = len(records)
        if self.off or enc.options.audit_sample < 0:
            return np.full(n_rec, -1, dtype=np.int64), []
        if not n_rec:
            return np.empty(0, dtype=np.int64), [(), (), (), ()]
        ins, inp, out, sysv, hist, meta = zip(*map(_FIELDS, records))
        cols = [ins, inp, out, sysv]
        has = partial(np.fromiter, dtype=bool, count=n_rec)
        codes = has(map(bool, ins)).astype(np.int64)
        has_input = has(map(bool, inp))
        codes += 2 * has_input
        codes += 4 * has(map(bool, out))
        sys_none = has(map(operator.is_, sysv, repeat(None)))
        if not sys_none.all():
            codes += 8 * np.where(sys_none, 0, np.where(has(map(bool, sysv)), 1, 2))
        # the prompts (Record.prompt_text) as one string: "instruction\ninput" for every row when
        # some row has an input (a trailing "\n" where the input is empty: neither the identity
        # question nor an added token ends in one, and a spurious added-token hit only sends the
        # row to the encoder), without a Python string per row
        if has_input.any():
            lens = np.fromiter(map(len, ins), np.int64, n_rec) + np.fromiter(map(len, inp), np.int64, n_rec)
            p_join, p_ends = _SEP.join(map("{}\n{}".format, ins, inp)), np.cumsum(lens + 2)
        else:
            p_join, p_ends = _joined(ins)
        slow: set[int] = set(np.flatnonzero(has(map(bool, hist))).tolist())  # history
        split_re = enc._split_re
        if split_re is not None:
            columns = [(p_join, p_ends), _joined(out)]
            if not sys_none.all():
                columns.append(_joined([x or "" for x in sysv]))
            for joined, ends in columns:
                self._flag(split_re, self._added_prefix, joined, ends, slow)
        if self._identity_check:
            # Encoder._system_for's identity check can only object to a record without a system
            # prompt that has meta or an identity question in its prompt: those go through it
            # (the rows with history already do)
            eligible = sys_none
            with_meta = eligible & has(map(bool, meta))
            slow.update(np.flatnonzero(with_meta).tolist())
            asked = eligible & ~with_meta
            if _IDENTITY_Q is None:
                slow.update(np.flatnonzero(asked).tolist())
            elif asked.all():
                slow.update(_identity_in(p_join, p_ends))
            elif asked.any():
                rows = np.flatnonzero(asked).tolist()
                texts = [f"{ins[k]}\n{inp[k]}" if inp[k] else ins[k] for k in rows]
                slow.update(rows[j] for j in _identity_in(*_joined(texts)))
        if slow:
            codes[np.fromiter(slow, dtype=np.int64, count=len(slow))] = -1
        return codes, cols

    @staticmethod
    def _flag(rx: re.Pattern, prefix: str, joined: str, ends: np.ndarray, slow: set[int]) -> None:
        """Rows (see `_joined`) where `rx` matches, in one pass over the joined texts. A chunk
        without the prefix all added-token strings share ("<|" for Qwen) is done with a
        substring scan, a fraction of the alternation regex's time."""
        if prefix and not _holds(joined, prefix):
            return
        if not rx.search(joined):
            return
        slow.update(_rows_at(ends, (m.start() for m in rx.finditer(joined))))

    def _audit_pending(self) -> bool:
        """Rows still go to the encoder for the boundary audit (`EncodeOptions.audit_sample`)."""
        n = self.enc.options.audit_sample
        return n > 0 and self.enc._audited < n

    def plan(self, records: Sequence[Record], *, ahead: bool = False) -> ChunkPlan:
        """The engine-free half of `encode`: route the chunk's rows to shapes and build every
        string the engine will encode. `ahead`: planned before the chunk's turn (while the engine
        loads), so the audit state is not known yet; `finish` checks it when the turn comes."""
        if not ahead and self._audit_pending():
            return ChunkPlan(len(records), np.full(len(records), -1, dtype=np.int64), [])
        codes, cols = self._route(records)
        n_rec = len(records)
        groups: list[tuple[np.ndarray, _Shape, list[str], dict[int, int], dict[int, int]]] = []
        for code in np.unique(codes[codes >= 0]).tolist():
            rows_a = np.flatnonzero(codes == code)
            shape = self._shape(_key(code))
            if shape is None:
                codes[rows_a] = -1
                continue
            if len(rows_a) == n_rec:
                group = cols
            else:
                pick = operator.itemgetter(*rows_a.tolist())
                group = [pick(c) if len(rows_a) > 1 else [c[int(rows_a[0])]] for c in cols]
            groups.append((rows_a, shape, *self._texts(shape, group, len(rows_a))))
        return ChunkPlan(n_rec, codes, groups)

    def encode(self, records: Sequence[Record]) -> tuple[bytes, bytes, bytes, bytes, list, dict[str, int]]:
        """`finish(plan(records))`: see there."""
        return self.finish(records, self.plan(records))

    def finish(
        self, records: Sequence[Record], plan: ChunkPlan
    ) -> tuple[bytes, bytes, bytes, bytes, list, dict[str, int]]:
        """The chunk as (lengths, ids, labels, truncated flags, rejected, stats delta): the payload
        `pipeline._encode_range` returns, with indexes relative to the chunk.

        Every shape's rows, and the encoder's, become segments of one id source and one label
        source (the same layout, labels already masked); each kept row is a row of a segment
        table in record order, and the chunk's ids and labels are one gather each through it.
        """
        enc = self.enc
        before = (enc.stats.truncated, enc.stats.audited, enc.stats.boundary_mismatch)
        n_rec = len(records)
        codes, groups = plan.codes, plan.groups
        if groups and self._audit_pending():  # planned ahead, and the audit still wants rows
            codes, groups = np.full(n_rec, -1, dtype=np.int64), []
        lengths = np.full(n_rec, -2, dtype=np.int64)  # -2: not done yet
        sources: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, labels) of each source part
        tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, starts, lens)
        base = 0
        slow = set(np.flatnonzero(codes < 0).tolist())
        for rows_a, shape, texts, slots, glue_at in groups:
            ok, src_ids, src_labels, starts_2d, lens_2d = self._assemble(shape, len(rows_a), texts, slots, glue_at)
            slow.update(rows_a[~ok].tolist())
            kept_rows = rows_a[ok]
            lengths[kept_rows] = lens_2d[ok].sum(axis=1)
            tables.append((kept_rows, starts_2d[ok] + base, lens_2d[ok]))
            sources.append((src_ids, src_labels))
            base += len(src_ids)
        enc.stats.records += n_rec - len(slow)
        self.columnar_rows += n_rec - len(slow)
        self.encoder_rows += len(slow)
        slow_rows = sorted(slow)
        slow_out = enc.encode_batch([records[k] for k in slow_rows]) if slow_rows else []
        rejected: list[tuple[int, str, str]] = []
        s_ids, s_labels = array("i"), array("i")
        s_rows, s_lens = [], []
        truncated = np.zeros(n_rec, dtype=bool)
        for k, r in zip(slow_rows, slow_out):
            if isinstance(r, Rejected):
                lengths[k] = -1
                rejected.append((k, r.reason, r.detail))
            else:
                lengths[k] = len(r.input_ids)
                s_rows.append(k)
                s_lens.append(len(r.input_ids))
                s_ids.extend(r.input_ids)
                s_labels.extend(r.labels)
                truncated[k] = r.truncated
        if s_rows:  # each encoder row: one segment of its own ids and labels
            s_len = np.asarray(s_lens, dtype=np.int64)
            s_start = base + np.cumsum(s_len) - s_len
            tables.append((np.asarray(s_rows, dtype=np.int64), s_start[:, None], s_len[:, None]))
            sources.append((np.frombuffer(s_ids, dtype=np.int32), np.frombuffer(s_labels, dtype=np.int32)))
        kept = lengths >= 0
        if not tables or not kept.any():
            ids = labels = np.empty(0, dtype=np.int32)
        else:
            # the segment table in record order (shapes of fewer pieces padded with empty segments)
            width = max(t[1].shape[1] for t in tables)
            seg_start = np.zeros((n_rec, width), dtype=np.int64)
            seg_len = np.zeros((n_rec, width), dtype=np.int64)
            for rows, st, ln in tables:
                seg_start[rows, : st.shape[1]] = st
                seg_len[rows, : ln.shape[1]] = ln
            if len(sources) == 1:
                src_ids, src_labels = sources[0]
            else:
                src_ids = np.concatenate([x for x, _ in sources])
                src_labels = np.concatenate([y for _, y in sources])
            idx = _ranges(seg_start[kept].ravel(), seg_len[kept].ravel())
            ids, labels = src_ids[idx], src_labels[idx]
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

    def _texts(
        self, shape: _Shape, cols: Sequence[Sequence[Any]], n: int
    ) -> tuple[list[str], dict[int, int], dict[int, int]]:
        """Every field string of the shape for `n` records given as their columns instruction,
        input, output, system (None for none: the shape says), for one flat encode (each piece's
        strings contiguous): (texts, piece -> index of its first string, glued piece -> index of
        its joint strings)."""
        texts: list[str] = []
        slots: dict[int, int] = {}
        for j, p in enumerate(shape.pieces):
            if p.template is not None:
                slots[j] = len(texts)
                if p.direct >= 0:  # the field itself
                    texts += cols[p.direct]
                elif p.fields:
                    texts += map(p.template.format, *(cols[f] for f in p.fields))
                else:
                    texts += [p.template.format()] * n
        glue_at: dict[int, int] = {}
        for a, b in shape.glue:
            glue_at[b] = len(texts)
            texts += [x + y for x, y in zip(texts[slots[a] : slots[a] + n], texts[slots[b] : slots[b] + n])]
        return texts, slots, glue_at

    def _assemble(
        self, shape: _Shape, n: int, texts: list[str], slots: dict[int, int], glue_at: dict[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ok per row, id source, label source, segment starts and lengths (row x piece) into the
        sources) for the `n` records of one shape whose strings `_texts` built.

        The sources are the flat encoding of the shape's strings followed by the constant
        pieces; the label source is the id source with IGNORE over every untrained piece's
        tokens. A row is its segments in order; rows that are too long, train nothing, or whose
        glued response does not start with its prompt's tokens are not ok (the encoder's).
        """
        flat, offsets = encode_flat(self.tok, texts, specials=True)
        offsets = offsets.astype(np.int64)
        starts, lens = offsets[:-1], offsets[1:] - offsets[:-1]
        ok = np.ones(n, dtype=bool)
        consts = [p.const for p in shape.pieces if p.template is None]
        const_at = np.cumsum([len(flat), *(len(c) for c in consts)])  # where each constant starts
        seg_start: list[np.ndarray] = []
        seg_len: list[np.ndarray] = []
        untrained: list[tuple[int, int]] = []  # source ranges whose labels are IGNORE
        k = 0
        for j, p in enumerate(shape.pieces):
            if p.template is None:
                seg_start.append(np.full(n, const_at[k], np.int64))
                seg_len.append(np.full(n, len(p.const), np.int64))
                if not p.trainable:
                    untrained.append((int(const_at[k]), int(const_at[k + 1])))
                k += 1
            else:
                seg_start.append(starts[slots[j] : slots[j] + n])
                seg_len.append(lens[slots[j] : slots[j] + n])
                if not p.trainable and j not in glue_at:
                    untrained.append((int(offsets[slots[j]]), int(offsets[slots[j] + n])))
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
            if not shape.pieces[b].trainable:
                untrained.append((int(offsets[g]), int(offsets[g + n])))
        train = np.array([p.trainable for p in shape.pieces], dtype=bool)
        starts_2d = np.stack(seg_start, axis=1)  # row x piece
        lens_2d = np.stack(seg_len, axis=1)
        total = lens_2d.sum(axis=1)
        trained = lens_2d[:, train].sum(axis=1)
        ok &= (total <= self.enc.options.max_length) & (trained > 0)
        src_ids = np.empty(int(const_at[-1]), dtype=np.int32)
        src_ids[: len(flat)] = flat
        for c, lo, hi in zip(consts, const_at[:-1], const_at[1:]):
            src_ids[lo:hi] = c
        src_labels = src_ids.copy()
        for lo, hi in untrained:
            src_labels[lo:hi] = IGNORE
        return ok, src_ids, src_labels, starts_2d, lens_2d
