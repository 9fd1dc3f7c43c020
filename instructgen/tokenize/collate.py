"""Batches for HF Trainer, TRL or a plain DataLoader: dynamic padding, labels padded by length.

Labels are built before padding and padded with -100 by position, so when the pad token is
the EOS token the real EOS keeps its label (the pad == eos bug of the stock LM collator).
Left padding comes with `position_ids` counted from each row's first real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass
class Collator:
    pad_id: int
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None
    max_length: int | None = None  # static padding: every batch padded to this length
    return_position_ids: bool | None = None  # default: True for left padding and packed rows

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if self.padding_side not in ("right", "left"):
            raise ValueError("padding_side must be 'right' or 'left'")
        lengths = [len(f["input_ids"]) for f in features]
        width = self.max_length or max(lengths)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = -(-width // m) * m
        packed = "seq_lens" in features[0]
        want_pos = self.return_position_ids
        if want_pos is None:
            want_pos = self.padding_side == "left" or packed
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        pos = torch.zeros((len(features), width), dtype=torch.long)
        for row, (f, n) in enumerate(zip(features, lengths)):
            if n > width:
                raise ValueError(f"row {row} has {n} tokens, more than the padded width {width}")
            sl = slice(0, n) if self.padding_side == "right" else slice(width - n, width)
            ids[row, sl] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            labels[row, sl] = torch.as_tensor(f["labels"], dtype=torch.long)
            mask[row, sl] = 1
            if packed:
                pos[row, sl] = torch.as_tensor(f["position_ids"], dtype=torch.long)
            else:
                pos[row, sl] = torch.arange(n, dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if want_pos:
            batch["position_ids"] = pos
        # tokens that contribute to the loss after the model's one-step shift
        batch["num_target_tokens"] = torch.tensor(int((labels[:, 1:] != IGNORE).sum()))
        if packed:
            seq_lens = [int(s) for f in features for s in f["seq_lens"]]
            batch["cu_seqlens"] = torch.tensor(
                [0, *torch.cumsum(torch.tensor(seq_lens), 0).tolist()], dtype=torch.int32
            )
        return batch
