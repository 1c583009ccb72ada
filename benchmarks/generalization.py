"""Answerability by meaning, per article: this project against the tutorial pipeline on the same case sets.

python -m benchmarks.generalization                 # NATO set + every generalization split; writes BENCHMARKS.md's section
python -m benchmarks.generalization --baseline-every 3   # the tutorial on every 3rd case only (it is slow)

Both pipelines answer in one process with the same models, alternating case by case. For each case file it reports
the issue's targets: near-miss unanswerables refused, other must-refuse cases (outside knowledge, injections)
refused, false refusals, answer accuracy, citation precision, and warm whole-answer and verification p50. The test
splits are the figures to quote; dev splits were used for tuning and are shown for completeness. The JSON beside the
report keeps every figure; `--render JSON` rewrites the section from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from benchmarks.report import write_section

ROOT = Path(__file__).resolve().parent.parent
CASE_FILES = [ROOT / "tests" / "questions.yaml", *sorted((ROOT / "tests" / "data" / "generalization").glob("*/*.yaml"))]
START, END = "<!-- generalization:start -->", "<!-- generalization:end -->"
TARGETS = {"near_miss": 0.90, "false_refusal": 0.05, "answer": 0.90, "citation_precision": 0.95, "p50": 3.0}


def share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def figures(results) -> dict:
    """The issue's figures for one pipeline's results on one case file."""
    from assistant.eval import compute_metrics, compute_percentile

    metrics = compute_metrics(results)
    refuse = [r for r in results if r.case.must_refuse]
    totals = [r.answer.timings["total"] for r in results if r.answer is not None and "total" in r.answer.timings]
    verify = [r.answer.timings["verify"] for r in results if r.answer is not None and "verify" in r.answer.timings]
    return {
        "cases": len(results),
        "near_miss": share([r.refusal_ok for r in refuse if "near-miss" in r.case.tags]),
        "other_refusals": share([r.refusal_ok for r in refuse if "near-miss" not in r.case.tags]),
        "false_refusal": metrics["false-refusal"],
        "answer": metrics["answer"],
        "citation_precision": metrics["citation-precision"],
        "p50": compute_percentile(totals, 50),
        "verify_p50": compute_percentile(verify, 50),
        "metrics": metrics,
        "failed": [r.case.id for r in results if not r.passed],
    }


def run(case_files: list[Path], baseline_every: int, reports: Path | None = None) -> dict:
    """Answer every case of case_files with this project, and every baseline_every-th with the tutorial.

    The tutorial skips dev splits: their figures only serve to tune this project.
    """
    from assistant.eval import build_report, for_suite, load_suite, run_cases, run_settings, warmed, write_report
    from assistant.settings import Settings
    from benchmarks.tutorial import TutorialRAG

    base = Settings()
    null = open(os.devnull, "w")  # noqa: SIM115
    ours, out = None, {}
    for path in case_files:
        suite = load_suite(path, base.paths.corpus_dir)
        settings = for_suite(base, suite)
        ours = warmed(settings, ours)
        tutorial = TutorialRAG(ours.index.embeddings, ours.chat_model)
        tutorial.build_index(ours.documents)
        texts = {d.doc_id: d.text for d in ours.documents}
        mine, theirs = [], []
        for i, case in enumerate(suite.cases):
            mine += run_cases(ours, [case], texts, settings.retrieval.top_k, out=null)
            if baseline_every and i % baseline_every == 0 and suite.split != "dev":
                theirs += run_cases(tutorial, [case], texts, 4, out=null)
            print(f"{path.parent.name}/{path.name} {case.id}: {mine[-1].answer.text[:80]!r}", file=sys.stderr)
        name = str(path.relative_to(ROOT))
        if reports:  # the eval report of this project's answers, as `assistant eval` writes it (for a baseline)
            report = build_report(
                mine, case_file=name, settings=run_settings(settings, []), thresholds={}, baseline=None, failures=[]
            )
            write_report(report, reports / name.replace("/", "-").removesuffix(".yaml"))
        out[name] = {
            "split": suite.split or "all",
            "ours": figures(mine),
            "baseline": figures(theirs) if theirs else None,
        }
    return out


def fmt(value, digits=2, unit="") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def render(results: dict) -> str:
    """The report's section: one row per case file and pipeline, then where the targets are missed and why."""
    lines = [
        START,
        "## Answerability by meaning, per article",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Commit: `{results['commit']}`. "
        f"Command: `{results['command']}`."
        + (
            f" Tutorial figures from the run at {results['baseline_from']}; both at once: "
            "`python -m benchmarks.generalization --baseline-every 3` (about 35 minutes)."
            if results.get("baseline_from")
            else ""
        ),
        "",
        "Case sets: `tests/questions.yaml` (the NATO article) and the generalization set in "
        "`tests/data/generalization/` (four articles written for this project, each split into dev, used to tune "
        "the verification prompt and threshold, and test, used only for this report). Targets (issue 11): near-miss "
        f"refused ≥ {TARGETS['near_miss']:.2f}, false refusals ≤ {TARGETS['false_refusal']:.2f}, answer accuracy ≥ "
        f"{TARGETS['answer']:.2f}, citation precision ≥ {TARGETS['citation_precision']:.2f}, whole answer p50 ≤ "
        f"{TARGETS['p50']:.0f} s with verification adding ≤ 0.8 s.",
        "",
        "| case file | split | pipeline | cases | near-miss refused | other refusals | false refusals | answer "
        "accuracy | citation precision | whole answer p50 | verification p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["files"].items():
        for who, label in (("ours", "this project"), ("baseline", "tutorial")):
            f = entry.get(who)
            if not f:
                continue
            lines.append(
                f"| `{name}` | {entry['split']} | {label} | {f['cases']} | {fmt(f['near_miss'])} | "
                f"{fmt(f['other_refusals'])} | {fmt(f['false_refusal'])} | {fmt(f['answer'])} | "
                f"{fmt(f['citation_precision'])} | {fmt(f['p50'], 1, ' s')} | {fmt(f['verify_p50'], 2, ' s')} |"
            )
    lines += ["", *missed(results), END]
    return "\n".join(lines)


def missed(results: dict) -> list[str]:
    """Where this project's test-split figures miss a target, by how much (the why is in results['why'])."""
    rows = []
    for name, entry in results["files"].items():
        f = entry["ours"]
        if entry["split"] == "dev":
            continue
        for key, label, higher in (
            ("near_miss", "near-miss refused", True),
            ("false_refusal", "false refusals", False),
            ("answer", "answer accuracy", True),
            ("citation_precision", "citation precision", True),
            ("p50", "whole answer p50 (s)", False),
        ):
            value, target = f.get(key), TARGETS[key]
            if value is not None and (value < target if higher else value > target):
                rows.append(f"- `{name}`: {label} {value:.2f}, target {target:.2f} ({value - target:+.2f}).")
        if f.get("other_refusals") is not None and f["other_refusals"] < 1.0:
            rows.append(
                f"- `{name}`: outside-knowledge and injection questions refused {f['other_refusals']:.2f}, target 1.00."
            )
        if f.get("verify_p50") is not None and f["verify_p50"] > 0.8:
            rows.append(f"- `{name}`: verification p50 {f['verify_p50']:.2f} s, target 0.80 s.")
    why = results.get("why") or []
    return ["Where a target is missed (test splits and the NATO set):", "", *rows, "", *why, ""] if rows else []


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generalization", description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="*", help="case files (default: the NATO set and every split)")
    parser.add_argument("--baseline-every", type=int, default=1, help="run the tutorial on every Nth case (0: never)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="report to write the section into")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "generalization.json")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the section from a run's JSON")
    parser.add_argument(
        "--baseline-from", type=Path, metavar="JSON", help="take the tutorial's figures from an earlier run's JSON"
    )
    parser.add_argument("--reports", type=Path, help="also write each case file's eval report into this folder")
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text(encoding="utf-8"))
    else:
        import logging

        from benchmarks.__main__ import commit, machine

        logging.disable(logging.WARNING)
        results = {
            "machine": machine(),
            "date": datetime.date.today().isoformat(),
            "commit": commit(),
            "command": " ".join(["python -m benchmarks.generalization", *sys.argv[1:]]),
            "files": run(args.files or CASE_FILES, args.baseline_every, args.reports),
        }
        if args.baseline_from:
            # The tutorial pipeline does not change with this project's code: its figures of an earlier run stand.
            earlier = json.loads(args.baseline_from.read_text(encoding="utf-8"))
            for name, entry in results["files"].items():
                entry["baseline"] = entry["baseline"] or earlier["files"].get(name, {}).get("baseline")
            results["baseline_from"] = f"{earlier['commit']} ({earlier['command']})"
        args.json.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    section = render(results)
    print(section)
    write_section(section, args.out, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
