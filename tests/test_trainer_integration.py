"""A real HF Trainer run on `tokenize --pack` output keeps each example's boundaries.

Trainer's default `remove_unused_columns=True` keeps only the model's forward() arguments
(transformers 5.23 `trainer.py`, `_set_signature_columns_if_needed` / `_remove_unused_columns`),
so `seq_lens`, `row` and `truncated` never reach the collator. The collator must rebuild the
boundaries from `position_ids` (kept: LlamaForCausalLM.forward takes it) and hand the model
restarting positions plus a block mask (sdpa/eager) or a flattened padding-free row (flash).
The model's forward kwargs are recorded with a forward pre-hook and checked against the
`seq_lens` the tokenizer wrote.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer refuses to start without it

from instructgen.tokenize.collate import Collator  # noqa: E402

RECORDS = [
    {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    {"instruction": "Translate the sentence into English.", "input": "你好，世界", "output": "Hello world!"},
    {
        "instruction": "How are you today?",
        "input": "",
        "output": "The quick brown fox jumps over the lazy dog.",
    },
    {"instruction": "Count.", "input": "", "output": "0 1 2 3 4 5 6 7 8 9"},
    {"instruction": "Thanks!", "input": "", "output": "谢谢！"},
    {"instruction": "Hello world!", "input": "", "output": "How are you today?"},
]


@pytest.fixture(scope="module")
def packed_dir(tmp_path_factory, tiny_dir):
    """`instructgen tokenize --pack` through the CLI, as a user would run it."""
    from click.testing import CliRunner

    from instructgen.cli.main import cli

    tmp = tmp_path_factory.mktemp("packed")
    src = tmp / "d.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n", encoding="utf-8")
    out = tmp / "tok"
    args = ["tokenize", str(src), "--tokenizer", str(tiny_dir), "--format", "chatml", "--pack"]
    res = CliRunner().invoke(cli, [*args, "--max-length", "96", "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return out


def tiny_llama(vocab_size: int, attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    config._attn_implementation = attn
    return LlamaForCausalLM(config)


def run_trainer(tmp_path, packed_dir, tiny_dir, collator_kwargs: dict, attn: str, trl: dict | None = None):
    """Two optimizer steps with Trainer defaults (or TRL's SFTTrainer with `trl` as extra SFTConfig
    arguments); returns (dataset, features keys the collator saw, forward kwargs the model got,
    training loss)."""
    import datasets
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    ds = datasets.load_from_disk(str(packed_dir))
    if trl is not None and trl.pop("rename", False):
        ds = ds.rename_column("seq_lens", "seq_lengths")
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    collator = Collator(pad_id=tok.pad_token_id, **collator_kwargs)
    seen_keys: list[set] = []

    def collate(features):
        seen_keys.append(set(features[0]))
        return collator(features)

    model = tiny_llama(len(tok), attn)
    calls: list[dict] = []
    model.register_forward_pre_hook(lambda _m, _a, kw: calls.append(dict(kw)), with_kwargs=True)
    common = {
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": len(ds),
        "max_steps": 2,
        "learning_rate": 1e-3,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": 0,
    }
    if trl is None:
        args = TrainingArguments(**common)
        assert args.remove_unused_columns  # the default this test is about
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate)
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, bf16=False, **trl)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=ds, processing_class=tok, data_collator=collate
        )
    result = trainer.train()
    if trl is not None:
        ds = ds.rename_columns({"seq_lengths": "seq_lens"}) if "seq_lengths" in ds.column_names else ds
    return ds, seen_keys, calls, result.training_loss


def check_block_mask_calls(ds, calls: list[dict]) -> None:
    """Every row the model got has restarting positions and a block mask equal to the seq_lens
    the tokenizer wrote (rows matched by their ids; right padding)."""
    by_ids = {tuple(r["input_ids"]): r["seq_lens"] for r in ds}
    for kw in calls:
        assert {"input_ids", "attention_mask", "labels", "position_ids"} <= set(kw)
        mask = kw["attention_mask"]
        batch, width = kw["input_ids"].shape
        assert mask.shape == (batch, 1, width, width) and mask.dtype == torch.float32
        rows_seen = set()
        for r in range(batch):
            (key,) = [k for k in by_ids if tuple(kw["input_ids"][r, : len(k)].tolist()) == k]
            rows_seen.add(key)
            lens = by_ids[key]
            expected_pos = [p for n in lens for p in range(n)] + [0] * (width - len(key))
            assert kw["position_ids"][r].tolist() == expected_pos
            example = [i for i, n in enumerate(lens) for _ in range(n)]
            for q in range(len(key)):
                visible = (mask[r, 0, q, : len(key)] == 0).nonzero().flatten().tolist()
                assert visible == [k for k in range(q + 1) if example[k] == example[q]]
                assert (mask[r, 0, q, len(key) :] != 0).all()  # padding is never seen
        assert len(rows_seen) == len(ds)


def split(ids: list[int], lens: list[int]) -> list[tuple[int, ...]]:
    out, at = [], 0
    for n in lens:
        out.append(tuple(ids[at : at + n]))
        at += n
    return out


def test_packed_output_has_what_trainer_keeps(packed_dir):
    import datasets

    ds = datasets.load_from_disk(str(packed_dir))
    assert {"input_ids", "labels", "position_ids", "seq_lens"} <= set(ds.column_names)
    assert len(ds) >= 2 and sum(len(s) for s in ds["seq_lens"]) == len(RECORDS)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_trainer_block_mask_keeps_positions_and_boundaries(tmp_path, packed_dir, tiny_dir, attn):
    ds, seen_keys, calls, loss = run_trainer(tmp_path, packed_dir, tiny_dir, {}, attn)
    # Trainer pruned what forward() does not take: the collator never saw seq_lens
    assert "seq_lens" in ds.column_names
    assert seen_keys and all({"input_ids", "labels", "position_ids"} <= k for k in seen_keys)
    assert not set().union(*seen_keys) & {"seq_lens", "row", "truncated"}
    assert len(calls) == 2 and math.isfinite(loss)
    check_block_mask_calls(ds, calls)


def test_trainer_padding_free_flattens_with_position_ids(tmp_path, packed_dir, tiny_dir):
    ds, seen_keys, calls, loss = run_trainer(
        tmp_path, packed_dir, tiny_dir, {"packed_attention": "padding_free"}, "sdpa"
    )
    assert "seq_lens" not in set().union(*seen_keys) and len(calls) == 2 and math.isfinite(loss)
    expected = sorted(e for r in ds for e in split(r["input_ids"], r["seq_lens"]))
    for kw in calls:
        assert "attention_mask" not in kw and kw["input_ids"].shape[0] == 1
        pos = kw["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0]
        lens = [b - a for a, b in zip(starts, [*starts[1:], len(pos)])]
        assert kw["cu_seq_lens_q"].tolist() == [0, *torch.cumsum(torch.tensor(lens), 0).tolist()]
        assert sorted(split(kw["input_ids"][0].tolist(), lens)) == expected


# TRL 1.16 SFTTrainer (trl/trainer/sft_trainer.py): with a pre-tokenized dataset and
# `dataset_kwargs={"skip_prepare_dataset": True}` it trains on the rows as given, but its
# `_set_signature_columns_if_needed` keeps only input_ids, labels and seq_lengths, so position_ids
# is pruned under its defaults. Either keep every column or give seq_lens TRL's name.
TRL_SKIP = {"dataset_kwargs": {"skip_prepare_dataset": True}}


def test_trl_default_pruning_drops_position_ids(tmp_path, packed_dir, tiny_dir):
    """Why README asks for one of the two settings below (fails if TRL changes what it keeps)."""
    pytest.importorskip("trl")
    _, seen_keys, _, _ = run_trainer(tmp_path, packed_dir, tiny_dir, {}, "sdpa", trl=dict(TRL_SKIP))
    assert seen_keys[0] == {"input_ids", "labels"}


@pytest.mark.parametrize(
    "setting", [{"remove_unused_columns": False}, {"rename": True}], ids=["keep_columns", "seq_lengths"]
)
def test_trl_sft_trainer_keeps_boundaries(tmp_path, packed_dir, tiny_dir, setting):
    pytest.importorskip("trl")
    ds, seen_keys, calls, loss = run_trainer(
        tmp_path, packed_dir, tiny_dir, {}, "sdpa", trl={**TRL_SKIP, **setting}
    )
    assert seen_keys[0] & {"position_ids", "seq_lens", "seq_lengths"}
    assert len(calls) == 2 and math.isfinite(loss)
    check_block_mask_calls(ds, calls)
