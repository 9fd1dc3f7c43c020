#!/usr/bin/env bash
# From the bundled zh-en pairs to files a trainer reads: translate (both directions, with meta),
# a leak-free split, an identity mix-in, stats (with plots when matplotlib is installed), and an
# export for LLaMA-Factory and TRL. Runs in seconds; everything lands in examples/out/pipeline.
set -euo pipefail
cd "$(dirname "$0")"
out=out/pipeline
rm -rf "$out" && mkdir -p "$out"
instructgen translate data/zh_en.tsv --src-lang zh --tgt-lang en --direction both --meta \
  --rejects "$out/rejects.jsonl" -o "$out/zh_en.jsonl"
instructgen identity --name 雁栖-7B --developer 助教 --languages zh,en -n 40 --meta -o "$out/identity.jsonl"
# both directions of a pair share meta.key, so they never straddle splits
instructgen split "$out/zh_en.jsonl" -o "$out/splits" --ratios 80,10,10 --seed 7
# 10% identity rows on top of every training pair
instructgen mix "$out/splits/train.jsonl" "$out/identity.jsonl:0.1" -o "$out/train_mixed/train.jsonl" --seed 7
cp "$out/splits/validation.jsonl" "$out/splits/test.jsonl" "$out/train_mixed/"
plots=()
python -c "import matplotlib" 2>/dev/null && plots=(--plots "$out/plots")
instructgen stats "$out/train_mixed/train.jsonl" --rejects "$out/rejects.jsonl" "${plots[@]}"
instructgen export "$out/train_mixed" --to llamafactory -o "$out/llamafactory" --name zh_en
instructgen export "$out/train_mixed" --to trl -o "$out/trl" --trl-layout prompt-completion
cat "$out/llamafactory/dataset_info.json"
