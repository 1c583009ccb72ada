"""Cold start of `assistant ask`, the whole process as a user sees it, for this tree and an earlier commit.

    python -m benchmarks.startup [--before COMMIT] [--runs 5] [--question Q]

The earlier commit (default: the one before the start-up work) is checked out into a temporary git worktree. Each
tree answers the question once unmeasured (its saved model state and the page cache are then warm), then both
answer it --runs times, alternating which goes first, so that the machine's noise falls on both alike. It prints
the median wall time of the whole process, the answer's own in-process time, peak memory, and whether the two
trees gave the same answer, and writes benchmarks/results/startup.json. --without-repack adds a third row: this tree
with llama.cpp's weight repacking off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import commit

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "a2bd57b"  # the last commit before #14's start-up work
QUESTION = "Who described the moment as NATO 3.0?"


def ask(tree: Path, question: str, extra_env: dict | None = None) -> dict:
    """Run `python -m assistant.cli ask --json` from tree in a fresh process; wall time, peak memory, answer."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        # Both trees answer from the same corpus and index, so only the code differs.
        "ASSISTANT_CORPUS_DIR": str(ROOT / "corpus"),
        "ASSISTANT_INDEX_DIR": str(ROOT / "index"),
        **(extra_env or {}),
    }
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "ask", "--json", question],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        stdout = child.stdout.read()
        # wait4 gives this child's own resource use: its peak memory, not the largest of all children so far.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            errors.seek(0)
            log = ROOT / "benchmarks" / "results" / "startup-failure.log"
            log.write_text(errors.read())
            raise RuntimeError(f"`assistant ask` failed in {tree} with {extra_env or 'default settings'}; see {log}")
    answer = json.loads(stdout)
    return {
        "seconds": seconds,
        "answer_seconds": answer["timings"]["total"],
        "text": answer["text"],
        "peak_mb": usage.ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the earlier commit (or any git revision)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each tree")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument(
        "--without-repack", action="store_true", help="also time this tree with ASSISTANT_LLM_REPACK_WEIGHTS=false"
    )
    args = parser.parse_args(argv)
    before = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True)
    names = {"after": f"this tree ({commit()})", "before": f"before ({before.stdout.strip()})"}
    envs: dict[str, dict] = {"before": {}, "after": {}}
    if args.without_repack:
        names["plain"] = f"this tree, ASSISTANT_LLM_REPACK_WEIGHTS=false ({commit()})"
        envs["plain"] = {"ASSISTANT_LLM_REPACK_WEIGHTS": "false"}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True, capture_output=True
        )
        trees = {"before": tree, "after": ROOT, "plain": ROOT}
        try:
            for name in names:
                ask(trees[name], args.question, envs[name])  # unmeasured: saves the model state, warms the page cache
            order = list(names)
            for i in range(args.runs):
                for name in order if i % 2 == 0 else order[::-1]:
                    runs[name].append(ask(trees[name], args.question, envs[name]))
                    print(f"{names[name]}: {runs[name][-1]['seconds']:.2f} s", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    report(args, names, runs)
    return 0


def report(args, names: dict, runs: dict[str, list[dict]]) -> None:
    rows = {}
    for name, results in runs.items():
        rows[name] = {
            "tree": names[name],
            "process_median_s": statistics.median(r["seconds"] for r in results),
            "process_runs_s": [round(r["seconds"], 2) for r in results],
            "answer_median_s": statistics.median(r["answer_seconds"] for r in results),
            "peak_mb": statistics.median(r["peak_mb"] for r in results),
            "answers": sorted({r["text"] for r in results}),
        }
    same = rows["before"]["answers"] == rows["after"]["answers"]  # the plain kernels may word answers otherwise
    print(f"\n`assistant ask` cold start, median of {args.runs} (question: {args.question!r})\n")
    print("| tree | whole process | the answer in-process | peak memory |")
    print("|---|---|---|---|")
    for row in rows.values():
        print(
            f"| {row['tree']} | {row['process_median_s']:.2f} s | {row['answer_median_s']:.2f} s "
            f"| {row['peak_mb']:.0f} MB |"
        )
    ratio = rows["before"]["process_median_s"] / rows["after"]["process_median_s"]
    print(f"\n{ratio:.1f}x faster; same answer in every run: {same}")
    for name, row in rows.items():
        print(f"{name}: {row['answers']}")
    out = ROOT / "benchmarks" / "results" / "startup.json"
    out.write_text(json.dumps({"question": args.question, "runs": args.runs, "trees": rows, "same": same}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
