#!/usr/bin/env bash
# Set everything up (idempotent) and start the web chat on http://127.0.0.1:7860 (override with --host/--port).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/assistant chat "$@"
