"""Packed rows keep their examples apart in a real model: the logits of every packed example equal
its logits alone, for transformers' `sdpa` and `eager` attention, through our Collator.

References (transformers 5.23, installed): `masking_utils.py` — `_preprocess_mask_arguments`
returns a 4D mask as-is and only derives packed sequences from `position_ids` when the attention
mask is None and no cache is used, `find_packed_sequence_indices` (a new example wherever the
position step is not +1); `data/data_collator.py` — `DataCollatorWithFlattening` (one flattened
row, `cu_seq_lens_q/k`, `max_length_q/k`, -100 at every example start).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from instructgen.tokenize.collate import IGNORE, Collator, example_lengths  # noqa: E402
from instructgen.tokenize.packing import pack_rows  # noqa: E402

VOCAB = 97


def tiny_llama(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        use_cache=False,
    )
    config._attn_implementation = attn
    return LlamaForCausalLM(config).eval()


def examples(lengths: list[int], seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def packed_features(capacity: int = 24) -> tuple[list[dict], list[list[int]]]:
    """Two packed rows of different totals (so the batch has padding): [9, 11, 3] and [6, 5].

    `seq_lens` is removed, as HF Trainer's remove_unused_columns does."""
    exs = examples([9, 6, 5, 11, 3], seed=1)
    cols = pack_rows(exs, [list(e) for e in exs], capacity)
    assert cols["seq_lens"] == [[9, 11, 3], [6, 5]]  # the layout the assertions below rely on
    feats = [
        {
            "input_ids": cols["input_ids"][r],
            "labels": cols["labels"][r],
            "position_ids": cols["position_ids"][r],
        }
        for r in range(2)
    ]
    return feats, cols["seq_lens"]


def alone_logits(model, ids: list[int]):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def worst_gap(model, batch: dict, feats: list[dict], seq_lens: list[list[int]], flat: bool) -> float:
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "num_target_tokens")}
    with torch.no_grad():
        logits = model(**inputs).logits
    worst, at_flat = 0.0, 0
    for r, (f, lens) in enumerate(zip(feats, seq_lens)):
        at = 0
        for n in lens:
            ids = f["input_ids"][at : at + n]
            got = logits[0, at_flat : at_flat + n] if flat else logits[r, at : at + n]
            worst = max(worst, float((got - alone_logits(model, ids)).abs().max()))
            at += n
            at_flat += n
    return worst


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mode", ["block_mask", "padding_free"])
def test_packed_logits_equal_each_example_alone(attn, mode):
    model = tiny_llama(attn)
    feats, seq_lens = packed_features()
    batch = Collator(pad_id=0, packed_attention=mode, pad_to_multiple_of=8)(feats)
    if mode == "block_mask":
        assert batch["attention_mask"].shape == (2, 1, 24, 24)
    else:
        assert "attention_mask" not in batch and batch["input_ids"].shape == (1, 40)
    assert worst_gap(model, batch, feats, seq_lens, flat=mode == "padding_free") < 1e-5


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_old_batch_leaks_across_examples(attn):
    """Control: what Trainer handed the model before (2D all-ones mask, positions 0..n-1 because
    seq_lens was pruned) mixes examples, so the equality above is not trivially true."""
    model = tiny_llama(attn)
    feats, seq_lens = packed_features()
    old = Collator(pad_id=0, return_position_ids=False)(
        [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in feats]
    )
    assert old["attention_mask"].ndim == 2
    assert worst_gap(model, old, feats, seq_lens, flat=False) > 1e-2


def test_bool_block_mask_layout():
    feats = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [4, 4, 4], "labels": [IGNORE, 4, 4], "position_ids": [0, 1, 2]},
    ]
    batch = Collator(pad_id=0, mask_dtype="bool")(feats)
    x, o = True, False
    assert batch["attention_mask"][:, 0].tolist() == [
        [[x, o, o, o, o], [x, x, o, o, o], [x, x, x, o, o], [o, o, o, x, o], [o, o, o, x, x]],
        # padding (columns 3, 4) is invisible to real tokens and sees only itself
        [[x, o, o, o, o], [x, x, o, o, o], [x, x, x, o, o], [o, o, o, x, o], [o, o, o, o, x]],
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 0]]
    # every example start is -100: no example learns its first token from the one before
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 9], [IGNORE, 4, 4, IGNORE, IGNORE]]
    assert int(batch["num_target_tokens"]) == 5


def test_float_block_mask_is_additive_and_left_padding_works():
    feats = [
        {"input_ids": [5, 6], "labels": [5, 6], "seq_lens": [1, 1]},
        {"input_ids": [7], "labels": [7], "seq_lens": [1]},
    ]
    batch = Collator(pad_id=0, padding_side="left")(feats)
    m = torch.finfo(torch.float32).min
    assert batch["attention_mask"].dtype == torch.float32
    assert batch["attention_mask"][:, 0].tolist() == [[[0.0, m], [m, 0.0]], [[0.0, m], [m, 0.0]]]
    assert batch["input_ids"].tolist() == [[5, 6], [0, 7]] and batch["position_ids"].tolist() == [
        [0, 0],
        [0, 0],
    ]


def test_padding_free_layout():
    feats = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [4, 4, 4], "labels": [4, 4, 4]},  # an unpacked row is one example
    ]
    batch = Collator(pad_id=0, packed_attention="padding_free", pad_to_multiple_of=6)(feats)
    assert set(batch) == {
        "input_ids",
        "labels",
        "position_ids",
        "cu_seq_lens_q",
        "cu_seq_lens_k",
        "max_length_q",
        "max_length_k",
        "num_target_tokens",
    }
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 4, 4, 4, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 9, IGNORE, 4, 4] + [IGNORE] * 4]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 8, 12] and batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == batch["max_length_k"] == 4


def test_example_lengths_sources():
    assert example_lengths({"input_ids": [1] * 6, "position_ids": [0, 1, 2, 0, 0, 1]}) == [3, 1, 2]
    assert example_lengths({"input_ids": [1] * 6, "seq_lens": [2, 4], "position_ids": [0] * 6}) == [2, 4]
    assert example_lengths({"input_ids": [1] * 6}) == [6]


def test_collator_refuses_inconsistent_packing():
    with pytest.raises(ValueError, match=r"row 1: seq_lens \[2, 2\] do not split its 5 tokens"):
        Collator(pad_id=0)(
            [
                {"input_ids": [1], "labels": [1], "seq_lens": [1]},
                {"input_ids": [1] * 5, "labels": [1] * 5, "seq_lens": [2, 2]},
            ]
        )
    with pytest.raises(ValueError, match="row 0: 2 position_ids for 3 tokens"):
        Collator(pad_id=0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 1]}])
    with pytest.raises(ValueError, match="packed rows need position_ids"):
        Collator(pad_id=0, return_position_ids=False)([{"input_ids": [1], "labels": [1], "seq_lens": [1]}])
    with pytest.raises(ValueError, match="packed_attention must be one of"):
        Collator(pad_id=0, packed_attention="flash")([{"input_ids": [1], "labels": [1]}])
    with pytest.raises(ValueError, match=r"max_length .* does not apply to padding_free"):
        Collator(pad_id=0, packed_attention="padding_free", max_length=8)([{"input_ids": [1], "labels": [1]}])
