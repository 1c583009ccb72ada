"""Eval stage: the regression suite (`assistant eval`) runs a question set through the Assistant and gates its
metrics; users' ratings become regression cases (`assistant feedback export`).

normalise (the one answer normaliser, SQuAD's, which the benchmarks use too) → cases (what a case is; the case
file, checked) → scoring (each answer checked; figures and gates) → report (table, eval.json, eval.html) → run
(the command); feedback (ratings as cases) reads cases and the conversation store.
"""

from .cases import (
    METRICS,
    SPLITS,
    BaselineError,
    Case,
    CaseError,
    Evidence,
    Metric,
    Suite,
    load_suite,
    locate_evidence,
    parse_case,
    parse_suite,
    read_yaml,
)
from .feedback import cli_feedback, export_cases, plan_cases
from .normalise import fold_answer, normalize_answer, normalize_folded
from .report import build_report, format_metric_line, render_html, write_report
from .run import add_arguments, for_suite, main, run_cases, run_settings, warmed
from .scoring import (
    ANSWER_F1_MIN,
    CaseResult,
    check_citations,
    check_gates,
    compute_latency,
    compute_metrics,
    compute_percentile,
    compute_token_f1,
    match_answer,
    score_case,
)

__all__ = [
    "ANSWER_F1_MIN",
    "METRICS",
    "SPLITS",
    "BaselineError",
    "Case",
    "CaseError",
    "CaseResult",
    "Evidence",
    "Metric",
    "Suite",
    "add_arguments",
    "build_report",
    "check_citations",
    "check_gates",
    "cli_feedback",
    "compute_latency",
    "compute_metrics",
    "compute_percentile",
    "compute_token_f1",
    "export_cases",
    "for_suite",
    "fold_answer",
    "format_metric_line",
    "load_suite",
    "locate_evidence",
    "main",
    "match_answer",
    "normalize_answer",
    "normalize_folded",
    "parse_case",
    "parse_suite",
    "plan_cases",
    "read_yaml",
    "render_html",
    "run_cases",
    "run_settings",
    "score_case",
    "warmed",
    "write_report",
]
