#!/usr/bin/env bash
# Turn the bundled zh-en pairs into translation instruction data, both directions,
# instructions in the language of each record's source (Chinese or English).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p out
instructgen translate data/zh_en.tsv --src-lang zh --tgt-lang en \
  --direction both --instruction-lang src --meta --seed 7 \
  --rejects out/rejects.jsonl -o out/zh_en.jsonl
head -n 4 out/zh_en.jsonl
