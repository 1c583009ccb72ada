"""Eval stage, run: `assistant eval` reads every case file first, then answers its cases with one warmed Assistant
(shared models across files), prints, reports and gates them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .cases import Case, CaseError, Suite, load_suite
from .report import build_report, format_header, format_row, write_report
from .scoring import CaseResult, build_baseline, check_gates, compute_metrics, read_baseline, reject_case, score_case


def run_cases(assistant, cases: list[Case], doc_texts: dict[str, str], top_k: int, out=None):
    """Answer every case with one Assistant, printing a table row as each finishes; return the results."""
    from ..answer.guard import InvalidQuestion

    out = out or sys.stdout
    width = max(len("case"), *(len(c.id) for c in cases))
    print(format_header(top_k, width), file=out, flush=True)
    results = []
    for case in cases:
        try:
            answer = assistant.answer(case.question, list(case.history) or None)
            result = score_case(case, answer, doc_texts, top_k)
        except InvalidQuestion as exc:
            result = reject_case(case, str(exc))
        results.append(result)
        print(format_row(result, width), file=out, flush=True)
    return results


def for_suite(settings, suite: Suite):
    """The settings to answer suite's cases with: its own corpus (and index) when it names one, else settings."""
    if suite.corpus is None or suite.corpus == Path(settings.paths.corpus_dir).resolve():
        return settings
    return for_corpus(settings, suite.corpus)


def warmed(settings, shared=None):
    """A warmed Assistant for settings, sharing the chat and embedding models of shared (an earlier one) if given."""
    from ..answering import Assistant

    models = {"chat_model": shared.chat_model, "embeddings": shared.index.embeddings} if shared else {}
    assistant = Assistant(settings, **models)
    assistant.warm_up()
    return assistant


def for_corpus(settings, corpus: Path):
    """Settings that answer from corpus, with an index of its own beside the cache (the main index stays as it is)."""
    import hashlib

    key = hashlib.sha256(str(corpus).encode()).hexdigest()[:12]
    return settings.updated(
        corpus_dir=corpus, index_dir=Path(settings.paths.cache_dir) / "indexes" / f"{corpus.name}-{key}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `assistant eval` to parser."""
    parser.add_argument(
        "cases", type=Path, nargs="+", help="YAML case file(s), e.g. tests/questions.yaml; each may name its corpus"
    )
    parser.add_argument("--baseline", type=Path, help="baseline JSON to compare against (or to write)")
    parser.add_argument("--report", type=Path, help="folder for eval.json and eval.html")
    parser.add_argument(
        "--update-baseline", action="store_true", help="write this run's metrics to --baseline instead of comparing"
    )
    parser.add_argument("-k", "--top-k", dest="top_k", type=int, help="passages to retrieve (default: settings)")
    parser.add_argument(
        "--no-grounding", action="store_true", help="turn the grounding check off (to measure what it buys)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="turn verification by meaning off (to measure what it buys)"
    )
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these case ids")


@dataclass
class Plan:
    """One case file to run: its cases, the settings (corpus and index) to answer them with, and its baseline."""

    path: Path
    suite: Suite
    cases: list[Case]
    settings: object  # assistant.settings.Settings
    baseline: dict | None


def plan_runs(args: argparse.Namespace) -> list[Plan]:
    """Read and check every case file (and the options) before any model loads; CaseError or BaselineError."""
    from ..settings import Settings

    overrides = {}
    if args.top_k is not None:
        overrides["top_k"] = args.top_k
    if args.no_grounding:
        overrides["grounding_check"] = False
    if args.no_verify:
        overrides["verify"] = False
    base = Settings(**overrides)
    if len(args.cases) > 1 and (args.baseline or args.only):
        raise CaseError("--baseline, --update-baseline and --only take one case file")
    if args.update_baseline and (args.baseline is None or args.only):
        raise CaseError("--update-baseline needs --baseline and the whole case set (no --only)")
    plans = []
    for path in args.cases:
        suite = load_suite(path, base.paths.corpus_dir)
        settings = for_suite(base, suite)
        cases = suite.cases
        if args.only:
            unknown = [i for i in args.only if i not in {c.id for c in cases}]
            if unknown:
                raise CaseError(f"--only: no case with id {', '.join(map(repr, unknown))} in {path}")
            cases = [c for c in cases if c.id in set(args.only)]
        baseline = read_baseline(args.baseline) if args.baseline and not args.update_baseline else None
        plans.append(Plan(Path(path), suite, cases, settings, baseline))
    return plans


def run_settings(settings, only: list[str]) -> dict:
    """The settings a report records: what changes the figures."""
    return {
        "top_k": settings.retrieval.top_k,
        "grounding_check": settings.retrieval.grounding_check,
        "verify": settings.verification.verify,
        "verify_threshold": settings.verification.verify_threshold,
        "max_distance": settings.retrieval.max_distance,
        "min_support": settings.retrieval.min_support,
        "llm_backend": settings.generation.llm_backend,
        "only": list(only or []),
    }


def report_plan(plan: Plan, results: list[CaseResult], args: argparse.Namespace, folder: Path | None) -> list[str]:
    """Gate, print and write one case file's results; return its failures."""
    baseline, recorded = plan.baseline, run_settings(plan.settings, args.only)
    metrics = compute_metrics(results)
    limits = baseline["metrics"] if baseline else None
    failures = check_gates(metrics, plan.suite.thresholds, limits, plan.suite.tolerance, plan.settings.retrieval.top_k)
    report = build_report(
        results,
        case_file=str(plan.path),
        settings=recorded,
        thresholds=plan.suite.thresholds,
        baseline=limits,
        failures=failures,
    )
    print()
    print(report["metric_line"])
    print(f"{report['summary']['passed']}/{len(results)} cases passed")
    if baseline:
        before = baseline.get("passed") or {}
        newly = [r.case.id for r in results if before.get(r.case.id) and not r.passed]
        if newly:
            print(f"Newly failing since the baseline (not gated): {', '.join(newly)}")
        old = baseline.get("settings") or {}
        changed = [f"{k} {old[k]}->{v}" for k, v in recorded.items() if k in old and old[k] != v and k != "only"]
        if changed:
            print(f"Note: settings differ from the baseline's: {', '.join(changed)}")
        if args.only:
            print(f"Note: {len(results)} of {len(plan.suite.cases)} cases compared against the whole-set baseline")
    if folder:
        json_path, html_path = write_report(report, folder)
        print(f"Report: {json_path} {html_path}")
    if args.update_baseline:
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        args.baseline.write_text(json.dumps(build_baseline(report), indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"Baseline written to {args.baseline}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return failures


def report_folder(args: argparse.Namespace, path: Path) -> Path | None:
    """Where one case file's report goes: --report itself, or a folder per file when there are several."""
    if not args.report:
        return None
    if len(args.cases) == 1:
        return args.report
    return args.report / f"{Path(path).resolve().parent.name}-{Path(path).stem}"


def main(args: argparse.Namespace) -> int:
    """Run the suites: 0 when every gate passes, 1 when a threshold or the baseline fails, 2 on bad input.

    Several case files (each may name its own corpus) share one chat model and one embedding model.
    """
    try:
        plans = plan_runs(args)
    except ValueError as exc:  # CaseError, BaselineError, or a setting out of range (-k 0)
        print(f"Error: {exc}", file=sys.stderr)
        return 2

    failed, assistant = [], None
    for plan in plans:
        print(f"{plan.path}: loading the index and the model for {len(plan.cases)} cases…", file=sys.stderr, flush=True)
        assistant = warmed(plan.settings, assistant)
        doc_texts = {d.doc_id: d.text for d in assistant.documents}
        results = run_cases(assistant, plan.cases, doc_texts, plan.settings.retrieval.top_k)
        if report_plan(plan, results, args, report_folder(args, plan.path)):
            failed.append(str(plan.path))
    if len(plans) > 1:
        print(
            f"\n{len(plans) - len(failed)}/{len(plans)} case files passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0
