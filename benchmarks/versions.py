"""Warm answer time of this tree against an earlier commit, measured in the same run, question by question.

    python -m benchmarks.versions --before COMMIT [--cases tests/questions.yaml] [--limit 40]

The earlier commit is checked out into a temporary git worktree. Each version runs in a worker process of its own
(warmed once), and the two answer the same questions in turn, alternating which goes first, so that the machine's
noise falls on both alike. It prints p50 and p95 of the whole answer and of the first checked text, and how many
answers came out the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from assistant.eval import compute_percentile, load_suite

ROOT = Path(__file__).resolve().parent.parent

# Runs inside a worker: answers one JSON question per line from stdin with the tree it was started in.
WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from assistant.answering import Assistant
from assistant.settings import Settings
bot = Assistant(Settings(corpus_dir=sys.argv[2], index_dir=sys.argv[3]))
bot.warm_up()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    case = json.loads(line)
    a = bot.answer(case["question"], case["history"] or None)
    print(json.dumps({"text": a.text, "reason": a.reason, "timings": a.timings}), flush=True)
"""


class Worker:
    """One version of the assistant in a process of its own."""

    def __init__(self, name: str, root: Path, corpus: Path, index: Path):
        self.name = name
        args = [sys.executable, "-c", WORKER, str(root), str(corpus), str(index)]
        self.process = subprocess.Popen(args, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.results: list[dict] = []
        self.read()  # ready

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"The {self.name} worker stopped.")

    def ask(self, question: str, history: list) -> dict:
        self.process.stdin.write(json.dumps({"question": question, "history": history}) + "\n")
        self.process.stdin.flush()
        result = self.read()
        self.results.append(result)
        return result

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def figures(results: list[dict], key: str) -> tuple[float | None, float | None]:
    values = [r["timings"].get(key, r["timings"]["total"]) for r in results]
    return compute_percentile(values, 50), compute_percentile(values, 95)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier commit (or any git revision)")
    parser.add_argument(
        "--cases", default=str(ROOT / "tests" / "questions.yaml"), help="case file to take questions from"
    )
    parser.add_argument("--limit", type=int, default=40, help="how many of its questions to ask each version")
    args = parser.parse_args(argv)
    suite = load_suite(Path(args.cases), ROOT / "corpus")
    corpus = suite.corpus or ROOT / "corpus"
    cases = suite.cases[: args.limit]
    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True, capture_output=True
        )
        try:
            workers = [
                Worker(f"before ({commit.stdout.strip()})", tree, corpus, Path(tmp) / "index-before"),
                Worker(f"after ({head.stdout.strip()})", ROOT, corpus, Path(tmp) / "index-after"),
            ]
            for i, case in enumerate(cases):
                for worker in workers if i % 2 == 0 else workers[::-1]:
                    worker.ask(case.question, [dict(m) for m in case.history])
            for worker in workers:
                worker.close()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print(f"{len(cases)} questions from {args.cases}, asked of each version in turn\n")
    print("| version | whole answer p50 | p95 | first checked text p50 | answered |\n|---|---|---|---|---|")
    for w in workers:
        (p50, p95), (f50, _) = figures(w.results, "total"), figures(w.results, "first_text")
        answered = sum(r["reason"] == "answered" for r in w.results)
        print(f"| {w.name} | {p50:.2f} s | {p95:.2f} s | {f50:.2f} s | {answered}/{len(cases)} |")
    pairs = list(zip(cases, workers[0].results, workers[1].results, strict=True))
    same = sum(a["text"] == b["text"] for _, a, b in pairs)
    print(f"\nSame answer text: {same}/{len(cases)}")
    for case, a, b in pairs:  # what changed, so that a changed figure can be read for its cause
        if a["text"] != b["text"]:
            print(
                f"\n- {case.id}: {case.question}\n  before ({a['reason']}): {a['text']}\n  after ({b['reason']}): {b['text']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
