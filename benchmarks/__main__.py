"""Run the benchmarks: this project against LangChain's RAG tutorial pipeline, same machine, article and models.

python -m benchmarks            # the full run (by hand: ~30-60 min), writes BENCHMARKS.md and benchmarks/scale.png
python -m benchmarks --quick    # the smoke version CI runs: 4 cases, sizes 1 and 2, one repeat
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.headline import percentile, write_outputs

ROOT = Path(__file__).resolve().parent.parent
# Asked once of each pipeline before timing (it loads the model) and by every cold start.
WARM_QUESTION = "Who is the NATO Secretary General?"
FULL_SIZES, QUICK_SIZES = [1, 10, 100, 1000], [1, 2]
FULL_REPEATS, QUICK_REPEATS = 3, 1
QUICK_CASES = 4  # cases of the quality run, and questions of the scale probe, in a --quick run
PROBE_CASES = 20  # questions of the scale probe in a full run
BASELINE_TOP_K = 4  # the tutorial's similarity search


def machine() -> str:
    """One line describing this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem_gb = int(mem.split()[1]) / 1024 / 1024
    except (OSError, StopIteration):
        mem_gb = float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"
    )


def commit() -> str:
    """The commit the benchmark runs on (with '+changes' when the work tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return (head.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


def dir_size(path: Path) -> int:
    """Bytes used by the files under path."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cold_run(which: str, question: str, env: dict) -> tuple[float, float]:
    """Seconds from spawning a fresh process to its first answer, and its peak RSS in MB."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cold", which, question],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out, _ = proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cold run of {which} failed: {out.decode()}")
    return elapsed, json.loads(out.decode().strip().splitlines()[-1])["peak_mb"]


def say(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 cases, sizes 1 and 2, one repeat")
    parser.add_argument("--sizes", type=int, nargs="*", help="corpus sizes for the scale run (default 1 10 100 1000)")
    parser.add_argument("--repeats", type=int, help="repeats of index builds and cold starts (default 3)")
    parser.add_argument("--cases", type=Path, default=ROOT / "tests" / "questions.yaml")
    parser.add_argument("--every", type=int, default=1, help="use every Nth case of the set (the baseline is slow)")
    parser.add_argument("--out", type=Path, help="markdown file (default BENCHMARKS.md; --quick: none)")
    parser.add_argument("--plot", type=Path, help="PNG plot (default benchmarks/scale.png; --quick: none)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the report from a run's JSON")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    out = args.out or (None if args.quick else ROOT / "BENCHMARKS.md")
    plot = args.plot or (None if args.quick else ROOT / "benchmarks" / "scale.png")
    if args.render:
        # The figures of an earlier run, written out again (after a change to the report's wording, say).
        results = json.loads(args.render.read_text(encoding="utf-8"))
        write_outputs(results, out, plot, json_too=False)
        return 0
    write_outputs(measure(args), out, plot)
    return 0


@dataclass
class Bench:
    """What every measurement shares: a scratch folder, the settings, the embedding model, the article, the cases."""

    work: Path
    settings: Any
    embeddings: Any
    documents: list
    suite: Any


def measure(args: argparse.Namespace) -> dict:
    """Every figure of the report, measured: index build, quality and warm latency, cold start, scale."""
    import logging

    logging.disable(logging.WARNING)
    from assistant.eval import load_suite
    from assistant.index.corpus import load_documents
    from assistant.index.indexing import load_embeddings
    from assistant.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = Settings()
    embeddings = load_embeddings(settings)
    documents = load_documents(settings.paths.corpus_dir)
    suite = load_suite(args.cases, documents)
    bench = Bench(work, settings, embeddings, documents, suite)
    if args.quick:
        cases = suite.cases[:: max(1, len(suite.cases) // QUICK_CASES)][:QUICK_CASES]
    else:
        cases = suite.cases[:: args.every]
    repeats = args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS)
    results: dict = {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "commit": commit(),
    }
    results["cases"] = len(cases)
    results |= measure_index_build(bench, repeats)
    results["quality"], ours, tutorial = measure_quality(bench, cases)
    results |= measure_cold(repeats)
    probe = [c for c in suite.cases if c.answers and not c.history and c.evidence]
    probe = probe[: (QUICK_CASES if args.quick else PROBE_CASES)]
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    results["scale"] = [measure_scale(bench, size, probe, ours, tutorial.chat_model) for size in sizes]
    return results


def measure_index_build(bench: Bench, repeats: int) -> dict:
    """Index build and reopening, alternating the two pipelines so that machine noise hits both."""
    from assistant.index.corpus import load_passages
    from assistant.index.indexing import PassageIndex, forget_open_stores
    from benchmarks.tutorial import TutorialRAG

    say("Index build…")
    settings, embeddings = bench.settings, bench.embeddings
    # One untimed build of each first: chromadb's one-off start-up must not land on whichever pipeline goes first.
    PassageIndex(settings.updated(index_dir=bench.work / "index-warm"), embeddings).open(
        *load_passages(settings.paths.corpus_dir)
    )
    TutorialRAG(embeddings, None).build_index(bench.documents)
    ours_build, base_build, ours_reopen = [], [], []
    for r in range(repeats):
        s = settings.updated(index_dir=bench.work / f"index-{r}")
        docs, passages = load_passages(s.paths.corpus_dir)
        t = time.perf_counter()
        PassageIndex(s, embeddings).open(docs, passages)
        ours_build.append(time.perf_counter() - t)
        base_build.append(TutorialRAG(embeddings, None).build_index(bench.documents))
        # The next start: this project reopens its persisted store, the tutorial's in-memory one is built again.
        forget_open_stores(s)
        t = time.perf_counter()
        PassageIndex(s, embeddings).open(docs, passages)
        ours_reopen.append(time.perf_counter() - t)
    return {
        "index_build": {"ours": statistics.median(ours_build), "baseline": statistics.median(base_build)},
        "index_ready": {"ours": statistics.median(ours_reopen), "baseline": statistics.median(base_build)},
    }


def measure_quality(bench: Bench, cases: list) -> tuple[dict, Any, Any]:
    """Quality and warm latency over every case, alternating between the two pipelines; also returns both
    pipelines, warm, for the scale run to borrow their models."""
    from assistant.answer.generation import build_chat_model
    from assistant.answering import Assistant
    from assistant.eval import run_cases
    from benchmarks.tutorial import TutorialRAG

    say(f"Quality and warm latency over {len(cases)} cases…")
    settings, embeddings = bench.settings, bench.embeddings
    doc_texts = {d.doc_id: d.text for d in bench.documents}
    ours = Assistant(settings.updated(index_dir=bench.work / "index-0"), embeddings=embeddings)
    ours.warm_up()
    tutorial = TutorialRAG(embeddings, build_chat_model(settings))
    tutorial.build_index(bench.documents)
    tutorial.answer(WARM_QUESTION)  # its warm-up: load the model once
    ours_results, base_results = [], []
    with open(os.devnull, "w") as null:
        for case in cases:
            ours_results += run_cases(ours, [case], doc_texts, settings.retrieval.top_k, out=null)
            base_results += run_cases(tutorial, [case], doc_texts, BASELINE_TOP_K, out=null)
    quality = {"ours": pipeline_figures(ours_results), "baseline": pipeline_figures(base_results)}
    return quality, ours, tutorial


def pipeline_figures(results: list) -> dict:
    """One pipeline's metrics and its answers' timings."""
    from assistant.eval import compute_metrics

    answered = [r.answer for r in results if r.answer is not None and not r.answer.abstained]
    timed = [r.answer for r in results if r.answer is not None and "first_token" in r.answer.timings]
    return {
        "metrics": compute_metrics(results),
        "first_token": [a.timings["first_token"] for a in timed],
        "first_text": [a.timings.get("first_text", a.timings["total"]) for a in answered],
        "total": [a.timings["total"] for a in timed],
    }


def measure_cold(repeats: int) -> dict:
    """Cold start and peak memory, each in a fresh process."""
    say("Cold starts…")
    env = dict(os.environ)
    ours_cold, base_cold, ours_rss, base_rss = [], [], [], []
    for _ in range(repeats):
        t, rss = cold_run("ours", WARM_QUESTION, env)
        ours_cold.append(t)
        ours_rss.append(rss)
        t, rss = cold_run("tutorial", WARM_QUESTION, env)
        base_cold.append(t)
        base_rss.append(rss)
    return {
        "cold": {"ours": statistics.median(ours_cold), "baseline": statistics.median(base_cold)},
        "rss_mb": {"ours": max(ours_rss), "baseline": max(base_rss)},
    }


def holds_evidence(found: list, case) -> bool:
    """Whether a retrieved passage overlaps one of the case's evidence spans."""
    return any(p.doc_id == e.doc_id and p.start < e.end and e.start < p.end for p in found for e in case.evidence)


def measure_scale(bench: Bench, size: int, probe: list, ours, chat_model) -> dict:
    """One haystack of generated documents with the real article inside: both pipelines' index and retrieval."""
    from assistant.answering import Assistant
    from assistant.index.corpus import load_documents
    from benchmarks.haystack import build_haystack
    from benchmarks.tutorial import TutorialRAG

    say(f"Scale: {size} document(s)…")
    corpus = build_haystack(bench.work / f"corpus-{size}", size, bench.settings.paths.corpus_dir / "nato-3-0.txt")
    s = bench.settings.updated(
        corpus_dir=corpus, index_dir=bench.work / f"scale-index-{size}", persist_model_state=False
    )
    bot = Assistant(s, chat_model=ours.chat_model, embeddings=bench.embeddings)
    t = time.perf_counter()
    bot.load()
    build = time.perf_counter() - t
    retrieval, hits = [], 0
    for case in probe:
        t = time.perf_counter()
        found = bot.retrieve(case.question)
        retrieval.append(time.perf_counter() - t)
        hits += holds_evidence(found, case)
    firsts = [bot.answer(c.question).timings.get("first_token", float("nan")) for c in probe[:2]]
    rag = TutorialRAG(bench.embeddings, chat_model)
    base_build_s = rag.build_index(load_documents(corpus))
    base_hits = sum(holds_evidence(rag.retrieve(case.question), case) for case in probe)
    return {
        "documents": size,
        "passages": len(bot.passages),
        "whole_corpus_in_prompt": bot.whole_corpus,
        "index_build_s": build,
        "index_mb": dir_size(s.paths.index_dir) / 1e6,
        "retrieval_p50_ms": percentile(retrieval, 50) * 1000,
        "hit_rate": hits / len(probe),
        "first_token_s": statistics.median(firsts),
        "baseline_index_build_s": base_build_s,
        "baseline_hit_rate": base_hits / len(probe),
        "baseline_chunks": rag.chunks,
    }


if __name__ == "__main__":
    sys.exit(main())
