#!/usr/bin/env bash
# Time the set-up of a fresh clone as a new machine would run it: no pip cache (llama-cpp-python compiles), an empty
# model cache (the model is assembled and checked, the embedding model exported, the article read once).
#   bash benchmarks/setup_time.sh [COMMIT ...]      (default: HEAD; several commits are timed one after another)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for commit in "${@:-HEAD}"; do
  work="$(mktemp -d)"
  git clone -q "$ROOT" "$work/tree"
  git -C "$work/tree" checkout -q "$commit"
  start=$(date +%s)
  (cd "$work/tree" && PIP_NO_CACHE_DIR=1 ASSISTANT_CACHE_DIR="$work/cache" bash scripts/setup.sh >"$work/setup.log" 2>&1) \
    || { echo "set-up of $commit failed; see $work/setup.log" >&2; exit 1; }
  end=$(date +%s)
  printf '%s\t%s\tset-up %d s\n' "$commit" "$(git -C "$work/tree" rev-parse --short HEAD)" $((end - start))
  rm -rf "$work"
done
