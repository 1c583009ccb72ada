#!/usr/bin/env bash
# Set everything up (idempotent), install the browser for the end-to-end tests, lint, and run the whole test suite
# with the real default models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  printf '\n==> Installing Debian chromium for the browser tests\n' >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check assistant tests benchmarks
.venv/bin/ruff format --check assistant tests benchmarks
exec .venv/bin/python -m pytest "$@"
