"""Eval stage, scoring: each answer checked against its case (answer, refusal, patterns, evidence, citations),
the figures over a run, and the gates: thresholds and the drop allowed from a baseline."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..answer.cite import MARKER, marker_numbers, strip_markers
from .cases import METRICS, BaselineError, Case, Evidence
from .normalise import normalize_folded

DEFAULT_TOLERANCE = 0.02
ANSWER_F1_MIN = 0.7  # token F1 at or above which a response counts as an accepted answer even without a substring match
LATENCY_STAGES = ("rewrite", "retrieve", "first_token", "generate", "total")


# ----- matching -----------------------------------------------------------------------------------------------------
def compute_token_f1(prediction: str, truth: str) -> float:
    """Return the SQuAD token F1 of prediction against truth, after normalisation."""
    predicted, expected = normalize_folded(prediction).split(), normalize_folded(truth).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def match_answer(text: str, answers: tuple[str, ...] | list[str]) -> tuple[bool, float]:
    """Return (accepted, best token F1): accepted when a normalised answer occurs in the normalised text, or F1 is high."""
    response = f" {normalize_folded(text)} "
    best = max((compute_token_f1(text, a) for a in answers), default=0.0)
    found = any(normalize_folded(a) and f" {normalize_folded(a)} " in response for a in answers)
    return found or best >= ANSWER_F1_MIN, best


def check_patterns(text: str, must_contain, must_not_contain) -> list[str]:
    """Return what the text breaks: each must_contain group needs one match, no must_not_contain pattern may match."""
    problems = []
    for group in must_contain:
        if not any(re.search(p, text, re.IGNORECASE) for p in group):
            problems.append(f"missing one of {list(group)}")
    for group in must_not_contain:
        hits = [p for p in group if re.search(p, text, re.IGNORECASE)]
        if hits:
            problems.append(f"contains {hits[0]!r}")
    return problems


def overlaps(start: int, end: int, other_start: int, other_end: int) -> bool:
    """True when the half-open spans [start, end) and [other_start, other_end) share a character."""
    return start < other_end and other_start < end


def cites_evidence(citation, evidence: Evidence) -> bool:
    """True when the citation's quote or its passage overlaps the evidence quote, in the same document."""
    if citation.doc_id != evidence.doc_id:
        return False
    return overlaps(citation.start, citation.end, evidence.start, evidence.end) or overlaps(
        citation.passage_start, citation.passage_end, evidence.start, evidence.end
    )


def check_citations(answer, doc_texts: dict[str, str]) -> list[str]:
    """Return what is wrong with the answer's citations: markers without a citation, unused or malformed citations."""
    problems = []
    markers = set(marker_numbers(answer.text))
    indices = [c.index for c in answer.citations]
    if len(set(indices)) != len(indices):
        problems.append(f"duplicate citation indices {sorted(indices)}")
    for n in sorted(markers - set(indices)):
        problems.append(f"marker [{n}] has no citation")
    for n in sorted(set(indices) - markers):
        problems.append(f"citation {n} is never marked in the text")
    if not answer.abstained and not answer.citations:
        problems.append("an answer without any citation")
    for c in answer.citations:
        text = doc_texts.get(c.doc_id)
        if text is None:
            problems.append(f"citation {c.index} names unknown document {c.doc_id!r}")
        elif text[c.start : c.end] != c.quote or not c.quote:
            problems.append(f"citation {c.index} quote is not the document text at {c.start}-{c.end}")
        elif not c.passage_start <= c.start < c.end <= c.passage_end:
            problems.append(f"citation {c.index} quote lies outside its passage")
    return problems


def rank_evidence(passages, evidence: tuple[Evidence, ...]) -> int | None:
    """Return the 1-based rank of the first retrieved passage that overlaps some evidence, or None."""
    for rank, p in enumerate(passages, 1):
        if any(p.doc_id == e.doc_id and overlaps(p.start, p.end, e.start, e.end) for e in evidence):
            return rank
    return None


# ----- scoring ------------------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """One case, the assistant's answer and every check made on it."""

    case: Case
    answer: object | None  # an assistant.answering.Answer; None when the question was rejected
    error: str = ""
    answer_ok: bool | None = None  # answerable cases only
    refusal_ok: bool | None = None  # must-refuse cases: refused; answerable: not refused
    f1: float | None = None
    rank: int | None = None  # of the first evidence passage, answerable cases only
    evidence_hit: bool | None = None
    citations_ok: bool | None = None  # None when there is nothing to cite
    precise_citations: int = 0
    scored_citations: int = 0
    covered_evidence: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check that applies to the case passed."""
        checks = (self.answer_ok, self.refusal_ok, self.evidence_hit, self.citations_ok)
        return not self.error and all(c is not False for c in checks)

    @property
    def milliseconds(self) -> float | None:
        """Total time the answer took, in milliseconds."""
        if self.answer is None or "total" not in self.answer.timings:
            return None
        return self.answer.timings["total"] * 1000


def score_case(case: Case, answer, doc_texts: dict[str, str], top_k: int) -> CaseResult:
    """Check one answer against its case."""
    result = CaseResult(case, answer)
    text = answer.text
    pattern_problems = []
    if case.must_refuse or not answer.abstained:  # a refused answerable case fails on that alone
        pattern_problems = check_patterns(strip_markers(text), case.must_contain, case.must_not_contain)
    result.problems.extend(pattern_problems)
    if case.must_refuse:
        result.refusal_ok = bool(answer.abstained) and not pattern_problems
        if not answer.abstained:
            result.problems.append("answered a question it must refuse")
    else:
        result.refusal_ok = not answer.abstained
        accepted, result.f1 = match_answer(text, case.answers) if not answer.abstained else (False, 0.0)
        result.answer_ok = accepted and not answer.abstained and not pattern_problems
        if answer.abstained:
            result.problems.append(f"refused ({answer.reason})")
        elif not accepted:
            result.problems.append("no accepted answer in the response")
        result.rank = rank_evidence(answer.passages[:top_k], case.evidence)
        result.evidence_hit = result.rank is not None
        if not answer.abstained:
            result.scored_citations = len(answer.citations)
            result.precise_citations = sum(any(cites_evidence(c, e) for e in case.evidence) for c in answer.citations)
        result.covered_evidence = sum(any(cites_evidence(c, e) for c in answer.citations) for e in case.evidence)
    if not answer.abstained or answer.citations or MARKER.search(text):
        citation_problems = check_citations(answer, doc_texts)
        result.citations_ok = not citation_problems
        result.problems.extend(citation_problems)
    return result


def reject_case(case: Case, error: str) -> CaseResult:
    """Return the result of a case whose question the assistant rejected as invalid."""
    result = CaseResult(case, None, error=error, problems=[f"rejected: {error}"])
    if case.must_refuse:
        result.refusal_ok = False
    else:
        result.answer_ok, result.refusal_ok, result.f1, result.evidence_hit = False, False, 0.0, False
    return result


def _compute_share(flags) -> float | None:
    flags = [f for f in flags if f is not None]
    return sum(map(bool, flags)) / len(flags) if flags else None


def compute_metrics(results: list[CaseResult]) -> dict[str, float | None]:
    """Return every gated metric (None when no case measures it)."""
    answerable = [r for r in results if not r.case.must_refuse]
    refuse = [r for r in results if r.case.must_refuse]
    scored = sum(r.scored_citations for r in answerable)
    evidence = sum(len(r.case.evidence) for r in answerable)
    return {
        "answer": _compute_share(r.answer_ok for r in answerable),
        "f1": sum(r.f1 or 0.0 for r in answerable) / len(answerable) if answerable else None,
        "refusal": _compute_share(r.refusal_ok for r in refuse),
        "near-miss": _compute_share(r.refusal_ok for r in refuse if "near-miss" in r.case.tags),
        "false-refusal": _compute_share(not r.refusal_ok for r in answerable),
        "evidence": _compute_share(r.evidence_hit for r in answerable),
        "mrr": sum(1 / r.rank if r.rank else 0.0 for r in answerable) / len(answerable) if answerable else None,
        "citation-validity": _compute_share(r.citations_ok for r in results),
        "citation-precision": sum(r.precise_citations for r in answerable) / scored if scored else None,
        "citation-recall": sum(r.covered_evidence for r in answerable) / evidence if evidence else None,
    }


def compute_percentile(values: list[float], q: float) -> float | None:
    """Return the q-th percentile (q a whole number from 0 to 100) of values, interpolated between the closest ranks
    (statistics.quantiles' inclusive method, numpy's default); None for no values."""
    if q != int(q) or not 0 <= q <= 100:
        raise ValueError(f"q must be a whole number from 0 to 100, not {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    if q == 0 or len(ordered) == 1:
        return float(ordered[0])
    if q == 100:
        return float(ordered[-1])
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def compute_latency(results: list[CaseResult]) -> dict[str, dict[str, float]]:
    """Return p50 and p95 seconds of each pipeline stage over the cases that ran it."""
    latency = {}
    for stage in LATENCY_STAGES:
        values = [r.answer.timings[stage] for r in results if r.answer is not None and stage in r.answer.timings]
        if values:
            latency[stage] = {
                "p50": round(compute_percentile(values, 50), 4),
                "p95": round(compute_percentile(values, 95), 4),
                "n": len(values),
            }
    return latency


# ----- gates --------------------------------------------------------------------------------------------------------
def format_label(key: str, top_k: int) -> str:
    """Return the display name of a metric, e.g. 'evidence@4'."""
    return METRICS[key].label.format(k=top_k)


def check_gates(
    metrics: dict[str, float | None],
    thresholds: dict[str, float],
    baseline: dict[str, float | None] | None,
    tolerance: dict[str, float],
    top_k: int,
) -> list[str]:
    """Return one message per failed gate: a threshold missed, or a drop from the baseline beyond its tolerance."""
    failures = []
    for key, metric in METRICS.items():
        value = metrics.get(key)
        if value is None:
            continue
        label = format_label(key, top_k)
        limit = thresholds.get(key)
        if limit is not None:
            if metric.higher_is_better and value < limit - 1e-9:
                failures.append(f"{label} {value:.2f} < threshold {limit:.2f}")
            elif not metric.higher_is_better and value > limit + 1e-9:
                failures.append(f"{label} {value:.2f} > maximum {limit:.2f}")
        before = (baseline or {}).get(key)
        if before is None:
            continue
        slack = tolerance.get(key, DEFAULT_TOLERANCE)
        if metric.higher_is_better and value < before - slack - 1e-9:
            failures.append(f"{label} {value:.2f} < baseline {before:.2f} - {slack:.2f}")
        elif not metric.higher_is_better and value > before + slack + 1e-9:
            failures.append(f"{label} {value:.2f} > baseline {before:.2f} + {slack:.2f}")
    return failures


def read_baseline(path: Path) -> dict:
    """Return the baseline file's data; BaselineError when it is missing or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(f"baseline {path} does not exist; create it with --update-baseline") from exc
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline {path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise BaselineError(f"baseline {path} has no 'metrics' mapping; recreate it with --update-baseline")
    return data


def build_baseline(report: dict) -> dict:
    """Return the baseline to store: the metrics, the settings they were measured with and each case's verdict."""
    return {
        "created": report["created"],
        "case_file": report["case_file"],
        "settings": report["settings"],
        "cases": len(report["cases"]),
        "metrics": {k: None if v is None else round(v, 4) for k, v in report["metrics"].items()},
        "latency": report["latency"],
        "passed": {c["id"]: c["passed"] for c in report["cases"]},
    }
