#!/usr/bin/env bash
# Generate 20 English translation templates with a local OpenAI-compatible server, then use them.
#
# Start a server first, for example:
#   vLLM:    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000        -> BASE_URL=http://localhost:8000/v1
#   Ollama:  ollama serve && ollama pull qwen2.5                     -> BASE_URL=http://localhost:11434/v1
# Hosted endpoints work the same way (OpenAI: no --base-url; DeepSeek: https://api.deepseek.com/v1) with the
# key in an environment variable: export OPENAI_API_KEY=... (or --api-key-env DEEPSEEK_API_KEY). The key is
# never printed. Responses are cached in $XDG_CACHE_HOME/instructgen (or --cache-dir): re-running after a crash
# sends only the requests that never finished, and an identical re-run sends none.
set -euo pipefail
cd "$(dirname "$0")"
BASE_URL="${BASE_URL:-http://localhost:8000/v1}"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
mkdir -p out

instructgen templates generate --task translation --lang en -n 20 \
  --model "$MODEL" --base-url "$BASE_URL" --concurrency 4 \
  --rejects out/generate_rejects.jsonl -o out/translation_en_llm.yaml

instructgen templates validate out/translation_en_llm.yaml
instructgen translate data/zh_en.tsv --src-lang zh --tgt-lang en \
  --templates out/translation_en_llm.yaml --no-builtin-templates --meta -o out/zh_en_llm.jsonl
