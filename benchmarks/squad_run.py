"""The SQuAD benchmark's run: the corpus built, the cases chosen and scheduled across the engines, every answer
recorded and scored, and the results saved after each case."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path

from benchmarks.squad_data import (
    ATTRIBUTION,
    Article,
    Case,
    article_sample,
    build_corpus,
    choose_articles,
    load_articles,
    together_sample,
)
from benchmarks.squad_engines import ASSISTANTS, Engine, before_tree, short_commit, start_engines, tree_commit
from benchmarks.squad_scoring import category, score


def say(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def plan(chosen: list[Article], samples: dict[str, list[Case]], together: int) -> list[tuple]:
    """(mode, scope, cases) in the order they run: every article on its own, then all of them at once."""
    steps = [("single", a.slug, samples[a.slug]) for a in chosen]
    if together:
        steps.append(("all", None, [c for a in chosen for c in together_sample(samples[a.slug], together)]))
    return steps


def schedule(steps: list[tuple], engines: list[str], every: int, before_every: int = 1) -> list[tuple]:
    """(mode, scope, case, engine names in the order they answer) for every case.

    The tutorial joins every `every`-th case, the earlier commit every `before_every`-th (both are slow). Whoever
    goes first rotates each time the same set of engines meets, so that a slow moment of the machine falls on each
    engine alike.
    """
    jobs, uses, k = [], {}, 0
    for mode, scope, cases in steps:
        for case in cases:
            names = [n for n in ASSISTANTS if n in engines and (n != "before" or k % max(1, before_every) == 0)]
            if "tutorial" in engines and every and k % every == 0:
                names.append("tutorial")
            turn = uses.get(tuple(names), 0)
            uses[tuple(names)] = turn + 1
            r = turn % len(names)
            jobs.append((mode, scope, case, names[r:] + names[:r]))
            k += 1
    return jobs


def record(case: Case, engine: str, mode: str, out: dict, cites: bool) -> dict:
    """What is saved of one answer: the case, the reply, its timings and its scores."""
    return {
        "id": case.qid,
        "article": case.article,
        "kind": case.kind,
        "category": category(case),
        "engine": engine,
        "mode": mode,
        "question": case.question,
        "reply": out.get("text") or "",
        "abstained": bool(out.get("abstained")),
        "reason": out.get("reason"),
        "citations": [c.get("passage_id") for c in out.get("citations") or []],
        "draft": out.get("draft") or "",  # what the model wrote before the checks: why a right answer was refused
        "verdicts": out.get("verdicts") or [],
        "gold": case.gold,
        "timings": out.get("timings") or {},
        "seconds": out.get("seconds"),
        "error": out.get("error"),
        "scores": score(case, out, cites),
    }


def run_schedule(engines: dict[str, Engine], jobs: list[tuple], results: dict, save) -> None:
    """Answer every job, warming each engine up on a scope just before its first case there; results grows as it
    goes and save(results) is called after every case, so an interrupted run keeps what it did."""
    done, total, warmed = 0, sum(len(names) for *_, names in jobs), set()
    for mode, scope, case, names in jobs:
        for name in names:
            engine = engines[name]
            if (mode, scope, name) not in warmed:
                out = engine.run({"do": "warm", "scope": scope})
                warmed.add((mode, scope, name))
                results["warm_up"].append(
                    {"engine": name, "mode": mode, "scope": scope, "seconds": out["seconds"], "how": out.get("how")}
                )
                say(f"warm_up({scope}) {name}: {out['seconds']:.1f} s ({out.get('how')})")
            out = engine.run({"do": "answer", "question": case.question, "scope": scope})
            rec = record(case, name, mode, out, engine.cites)
            results["cases"].append(rec)
            done += 1
            verdict = "error" if rec["error"] else "refused" if rec["abstained"] else "answered"
            good = rec["scores"]["right"] if case.kind == "answerable" else rec["scores"]["refused"]
            say(
                f"[{done}/{total}] {mode} {case.article} {case.kind} {name}: {out['seconds']:.1f} s, {verdict}"
                f" ({'ok' if good else 'miss'}) {(rec['error'] or rec['reply'])[:70]!r}"
            )
        save(results)


def describe(articles: list[Article], cases: dict[str, list[Case]]) -> dict:
    """What the run's JSON says of every article of the data."""
    return {
        a.slug: {
            "title": a.title,
            "split": a.split,
            "paragraphs": len(a.paragraphs),
            "answerable": sum(c.kind == "answerable" for c in cases[a.slug]),
            "unanswerable": sum(c.kind == "unanswerable" for c in cases[a.slug]),
        }
        for a in articles
    }


def run(args, argv: list[str]) -> dict:
    """Build the corpus, choose the cases, start the engines and answer; return (and keep saving) the results."""
    from benchmarks.__main__ import machine

    articles = load_articles(args.data)
    corpus_dir = args.workdir / "corpus"
    cases = build_corpus(articles, corpus_dir)
    chosen = choose_articles(articles, args.split, args.articles, args.limit_articles)
    samples = {a.slug: article_sample(cases[a.slug], a.slug, args.answerable, args.unanswerable) for a in chosen}
    results = {
        "command": "python -m benchmarks.squad " + shlex.join(argv),
        "commit": tree_commit(),
        "before": short_commit(args.before) if args.before else None,
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": machine(),
        "data": str(args.data),
        "attribution": ATTRIBUTION,
        "split": args.split,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "articles": describe(articles, cases),
        "chosen": [a.slug for a in chosen],
        "complete": False,
        "loading": {},
        "warm_up": [],
        "cases": [],
    }
    save = lambda r: write_json(r, args.out)  # noqa: E731
    with before_tree(args.before) as tree:
        engines = start_engines(args, corpus_dir, tree)
        try:
            for name in ASSISTANTS:
                if name in engines:
                    results["loading"][name] = engines[name].run({"do": "load"})["seconds"]
                    say(f"{name}: index and model loaded in {results['loading'][name]:.1f} s")
            steps = plan(chosen, samples, args.all_together)
            jobs = schedule(steps, list(engines), args.baseline_every, args.before_every)
            run_schedule(engines, jobs, results, save)
        finally:
            for engine in engines.values():
                engine.close()
    results["complete"] = True
    save(results)
    return results


def write_json(results: dict, path: Path) -> None:
    """Save results (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    partial.replace(path)
