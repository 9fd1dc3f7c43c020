"""Train on `instructgen tokenize --pack` output: a plain DataLoader loop, then HF Trainer.

    instructgen tokenize data.jsonl --tokenizer ./tok --format chatml --pack --max-length 1024 -o packed/
    python examples/train_packed_trainer.py packed/                 # a tiny random Llama, CPU, seconds
    python examples/train_packed_trainer.py packed/ --model ./my-model --attn flash_attention_2

The pad id and vocabulary size come from the folder's `instructgen_meta.json`. Which collator mode
to use follows from the attention implementation: a 4D block mask for `sdpa` / `eager`, one
flattened padding-free row for `flash_attention_2/3`. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import datasets
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from instructgen.tokenize.collate import Collator


def load_model(model_dir: str | None, vocab_size: int, attn: str):
    if model_dir:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        use_cache=False,  # a KV cache turns off transformers' packed-sequence detection
    )
    config._attn_implementation = attn
    return LlamaForCausalLM(config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packed", help="a folder written by `instructgen tokenize --pack`")
    ap.add_argument("--model", help="a local model folder (default: a tiny random Llama)")
    ap.add_argument("--attn", default="sdpa", help="sdpa | eager | flash_attention_2 | flash_attention_3")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()

    meta = json.loads((Path(args.packed) / "instructgen_meta.json").read_text(encoding="utf-8"))
    info = meta["trainer"]
    pad = info["pad"] or info["eos"]  # labels are padded with -100 by position, so pad == eos is safe
    ds = datasets.load_from_disk(args.packed)
    mode = "padding_free" if args.attn.startswith("flash") else "block_mask"
    collator = Collator(pad_id=pad["id"], packed_attention=mode, pad_to_multiple_of=8)
    model = load_model(args.model, info["vocab_size"], args.attn)

    # 1. a plain DataLoader loop; use_cache=False so nothing else decides the attention pattern
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, collate_fn=collator)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step, batch in zip(range(args.steps), loader):
        n_target = batch.pop("num_target_tokens")
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"loop step {step}: loss {loss.item():.4f} over {int(n_target)} target tokens")

    # 2. HF Trainer with its defaults: remove_unused_columns drops seq_lens/row/truncated, and the
    #    collator reads the example boundaries from position_ids, which Trainer keeps.
    targs = TrainingArguments(
        output_dir=str(Path(args.packed).with_name(Path(args.packed).name + "-run")),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=not torch.cuda.is_available(),
    )
    result = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator).train()
    assert math.isfinite(result.training_loss)
    print(f"Trainer: {result.global_step} steps, loss {result.training_loss:.4f}")


if __name__ == "__main__":
    main()
