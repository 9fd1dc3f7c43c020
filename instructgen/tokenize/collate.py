"""Batches for HF Trainer, TRL or a plain DataLoader: dynamic padding, labels padded by length.

Labels are built before padding and padded with -100 by position, so when the pad token is
the EOS token the real EOS keeps its label (the pad == eos bug of the stock LM collator).
Left padding comes with `position_ids` counted from each row's first real token.

Packed rows (output of `tokenize --pack`) hold several examples; they must not attend to each
other, and each must see its own positions from 0. HF Trainer's default
`remove_unused_columns=True` keeps only the model's forward() arguments, so `seq_lens` never
reaches the collator; the example boundaries are therefore read from `position_ids` (a forward
argument Trainer keeps) where they restart, with `seq_lens` used when it is there. Two ways to
keep examples apart, for the attention implementations of transformers 5.x:

- `packed_attention="block_mask"` (default): a 4D mask `[batch, 1, q, k]`, causal within each
  example, nothing across examples, every padding token seeing only itself (so no softmax row is
  empty). transformers' `create_causal_mask` (masking_utils.py) passes a 4D mask through
  unchanged. The default float mask is additive (0 / dtype min), which both `eager` (it adds the
  mask to the scores) and `sdpa` (float `attn_mask`) accept; a bool mask (True = attend) is
  smaller but `eager` would add it as 0/1, so use `mask_dtype="bool"` with `sdpa` only.
- `packed_attention="padding_free"`: the whole batch flattened into one row `[1, total]` with
  `position_ids` restarting per example, no `attention_mask`, and FlashAttention's varlen kwargs
  (`cu_seq_lens_q/k`, `max_length_q/k`, the names `DataCollatorWithFlattening` uses). This is
  what `flash_attention_2/3` need; transformers also builds the block mask from the position
  resets for `sdpa`/`eager` when no attention mask and no KV cache are given (Trainer turns the
  cache off; in your own loop pass `use_cache=False`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100
PACKED_ATTENTION = ("block_mask", "padding_free")
# ours, and TRL's name: TRL's SFTTrainer keeps only input_ids, labels and seq_lengths through its
# column pruning (trl 1.16 sft_trainer.py `_set_signature_columns_if_needed`), dropping position_ids
SEQ_LENS_KEYS = ("seq_lens", "seq_lengths")


def example_lengths(feature: dict[str, Any], row: int = 0) -> list[int]:
    """Lengths of the examples packed into one row: `seq_lens` (or TRL's `seq_lengths`) when
    present, otherwise where `position_ids` restart (any step other than +1, the rule of
    transformers' `find_packed_sequence_indices`), otherwise the whole row as one example."""
    import torch

    n = len(feature["input_ids"])
    given = next((feature[k] for k in SEQ_LENS_KEYS if feature.get(k) is not None), None)
    if given is not None:
        lens = [int(s) for s in given]
        if sum(lens) != n or any(s <= 0 for s in lens):
            raise ValueError(f"row {row}: seq_lens {lens} do not split its {n} tokens")
        return lens
    if "position_ids" in feature and feature["position_ids"] is not None:
        pos = torch.as_tensor(feature["position_ids"], dtype=torch.long).reshape(-1)
        if pos.numel() != n:
            raise ValueError(f"row {row}: {pos.numel()} position_ids for {n} tokens")
        if n == 0:
            return []
        starts = [0, *(torch.nonzero(torch.diff(pos) != 1).flatten() + 1).tolist()]
        return [b - a for a, b in zip(starts, [*starts[1:], n])]
    return [n] if n else []


def _positions(lens: list[int], torch: Any) -> Any:
    """0..len-1 for every example, concatenated."""
    if not lens:
        return torch.zeros(0, dtype=torch.long)
    sizes = torch.tensor(lens, dtype=torch.long)
    starts = torch.cumsum(sizes, 0) - sizes
    return torch.arange(int(sizes.sum()), dtype=torch.long) - torch.repeat_interleave(starts, sizes)


def _mask_starts(labels: Any, lens: list[int]) -> None:
    """-100 at every example start: no example learns to predict its first token from the one
    before it (`pack_rows` already does this; rows packed elsewhere get it here)."""
    at = 0
    for s in lens:
        labels[at] = IGNORE
        at += s


@dataclass
class Collator:
    pad_id: int
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None
    max_length: int | None = None  # static padding: every batch padded to this length
    return_position_ids: bool | None = None  # default: True for left padding and packed rows
    packed_attention: str = "block_mask"  # or "padding_free"; see the module docstring
    mask_dtype: Any = "float32"  # dtype of the 4D block mask: a float dtype (additive) or "bool"

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if self.padding_side not in ("right", "left"):
            raise ValueError("padding_side must be 'right' or 'left'")
        if self.packed_attention not in PACKED_ATTENTION:
            raise ValueError(
                f"packed_attention must be one of {PACKED_ATTENTION}, not {self.packed_attention!r}"
            )
        if self.packed_attention == "padding_free":
            return self._flatten(features, torch)
        packed = any(k in features[0] for k in (*SEQ_LENS_KEYS, "position_ids"))
        if packed and self.return_position_ids is False:
            raise ValueError("packed rows need position_ids (each example's positions restart at 0)")
        lengths = [len(f["input_ids"]) for f in features]
        width = self._width(max(lengths))
        want_pos = self.return_position_ids
        if want_pos is None:
            want_pos = self.padding_side == "left" or packed
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        pos = torch.zeros((len(features), width), dtype=torch.long)
        blocks: list[list[tuple[int, int]]] = []  # per row: (start, length) of each example
        for row, (f, n) in enumerate(zip(features, lengths)):
            if n > width:
                raise ValueError(f"row {row} has {n} tokens, more than the padded width {width}")
            sl = slice(0, n) if self.padding_side == "right" else slice(width - n, width)
            ids[row, sl] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            row_labels = torch.as_tensor(f["labels"], dtype=torch.long).clone()
            mask[row, sl] = 1
            if packed:
                lens = example_lengths(f, row)
                _mask_starts(row_labels, lens)
                pos[row, sl] = _positions(lens, torch)
                starts = itertools.accumulate(lens[:-1], initial=sl.start)
                blocks.append(list(zip(starts, lens)))
            else:
                pos[row, sl] = torch.arange(n, dtype=torch.long)
            labels[row, sl] = row_labels
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if packed:
            batch["attention_mask"] = self._block_mask(blocks, mask, torch)
        if want_pos:
            batch["position_ids"] = pos
        # tokens that contribute to the loss after the model's one-step shift
        batch["num_target_tokens"] = torch.tensor(int((labels[:, 1:] != IGNORE).sum()))
        return batch

    def _width(self, longest: int) -> int:
        width = self.max_length or longest
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = -(-width // m) * m
        return width

    def _block_mask(self, blocks: list[list[tuple[int, int]]], real: Any, torch: Any) -> Any:
        """[batch, 1, q, k]: key k visible to query q iff both lie in one example and k <= q;
        a padding token sees only itself. Each example's block is copied from one causal
        triangle (comparing segment ids over the whole q x k grid took 1.8x longer)."""
        batch, width = real.shape
        dtype = (
            self.mask_dtype if isinstance(self.mask_dtype, torch.dtype) else getattr(torch, self.mask_dtype)
        )
        if dtype == torch.bool:
            allowed, hidden = True, False
            triangle = torch.ones((width, width), dtype=torch.bool).tril_()
        else:
            allowed, hidden = 0.0, torch.finfo(dtype).min
            triangle = torch.full((width, width), hidden, dtype=dtype).triu_(1)
        out = torch.full((batch, 1, width, width), hidden, dtype=dtype)
        for row, row_blocks in enumerate(blocks):
            for start, n in row_blocks:
                out[row, 0, start : start + n, start : start + n] = triangle[:n, :n]
            pads = torch.nonzero(real[row] == 0).flatten()
            out[row, 0, pads, pads] = allowed
        return out

    def _flatten(self, features: Sequence[dict[str, Any]], torch: Any) -> dict[str, Any]:
        """One row of every example in the batch, positions restarting per example, no mask."""
        if self.max_length:
            raise ValueError(
                "max_length (static padding) does not apply to padding_free batches, which are one row "
                "of all tokens; use pad_to_multiple_of"
            )
        ids, labels, lens = [], [], []
        for row, f in enumerate(features):
            row_lens = example_lengths(f, row)
            row_labels = torch.as_tensor(f["labels"], dtype=torch.long).clone()
            _mask_starts(row_labels, row_lens)
            ids.append(torch.as_tensor(f["input_ids"], dtype=torch.long))
            labels.append(row_labels)
            lens.extend(row_lens)
        total = sum(lens)
        pad = self._width(total) - total
        if pad:  # the padding is one more sequence of its own, with labels -100
            ids.append(torch.full((pad,), self.pad_id, dtype=torch.long))
            labels.append(torch.full((pad,), IGNORE, dtype=torch.long))
            lens.append(pad)
        flat_labels = torch.cat(labels)[None]
        cu = torch.tensor([0, *torch.cumsum(torch.tensor(lens), 0).tolist()], dtype=torch.int32)
        longest = max(lens) if lens else 0
        return {
            "input_ids": torch.cat(ids)[None],
            "labels": flat_labels,
            "position_ids": _positions(lens, torch)[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
            "num_target_tokens": torch.tensor(int((flat_labels[:, 1:] != IGNORE).sum())),
        }
