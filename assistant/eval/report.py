"""Eval stage, report: a run as a table printed case by case, one metric line, and eval.json with a
self-contained eval.html."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from ..answer.cite import MARKER, highlight
from .cases import METRICS
from .scoring import CaseResult, compute_latency, compute_metrics, format_label, overlaps


def format_value(value: float | None) -> str:
    """Return a metric value with two decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value:.2f}"


def format_metric_line(metrics: dict, latency: dict, top_k: int) -> str:
    """Return the one-line summary: every metric, then p50/p95 of the whole answer."""
    parts = [f"{format_label(key, top_k)} {format_value(metrics.get(key))}" for key in METRICS]
    total = latency.get("total")
    if total:
        parts += [f"p50 {total['p50']:.1f} s", f"p95 {total['p95']:.1f} s"]
    return "  ".join(parts)


def _format_flag(value: bool | None) -> str:
    return "-" if value is None else ("ok" if value else "FAIL")


def format_header(top_k: int, width: int) -> str:
    """Return the header of the per-case table."""
    return f"{'case':<{width}}  {'answer':>6}  {'refusal':>7}  {f'evidence@{top_k}':>10}  {'cites':>5}  {'ms':>6}"


def format_row(result: CaseResult, width: int) -> str:
    """Return one line of the per-case table, with what went wrong after it."""
    ms = result.milliseconds
    row = (
        f"{result.case.id:<{width}}  {_format_flag(result.answer_ok):>6}  {_format_flag(result.refusal_ok):>7}  "
        f"{_format_flag(result.evidence_hit):>10}  {_format_flag(result.citations_ok):>5}  {'-' if ms is None else f'{ms:.0f}':>6}"
    )
    if result.problems:
        row += "  " + "; ".join(result.problems)[:160]
    return row


def serialize_result(result: CaseResult, top_k: int) -> dict:
    """Return one case's question, answer, citations and verdicts as plain data."""
    case, answer = result.case, result.answer
    return {
        "id": case.id,
        "tags": list(case.tags),
        "question": case.question,
        "history": list(case.history),
        "must_refuse": case.must_refuse,
        "expected": list(case.answers),
        "must_contain": [list(g) for g in case.must_contain],
        "must_not_contain": [list(g) for g in case.must_not_contain],
        "evidence": [e.to_dict() for e in case.evidence],
        "answer": None if answer is None else answer.text,
        "abstained": None if answer is None else answer.abstained,
        "reason": None if answer is None else answer.reason,
        "standalone_question": None if answer is None else answer.standalone_question,
        "citations": [] if answer is None else [c.to_dict() for c in answer.citations],
        "retrieved": []
        if answer is None
        else [
            {
                "passage_id": p.passage_id,
                "doc_id": p.doc_id,
                "start": p.start,
                "end": p.end,
                "score": p.score,
                "evidence": any(
                    p.doc_id == e.doc_id and overlaps(p.start, p.end, e.start, e.end) for e in case.evidence
                ),
            }
            for p in answer.passages[:top_k]
        ],
        "timings": {} if answer is None else dict(answer.timings),
        "verdicts": [v.to_dict() for v in getattr(answer, "verdicts", None) or []],
        "checks": {
            "answer": result.answer_ok,
            "refusal": result.refusal_ok,
            "evidence": result.evidence_hit,
            "citations": result.citations_ok,
        },
        "f1": None if result.f1 is None else round(result.f1, 4),
        "evidence_rank": result.rank,
        "citations_on_evidence": result.precise_citations,
        "evidence_cited": result.covered_evidence,
        "problems": list(result.problems),
        "error": result.error,
        "passed": result.passed,
    }


def render_chart(
    metrics: dict, thresholds: dict, baseline: dict | None, top_k: int, failed: frozenset[str] = frozenset()
) -> str:
    """Return an inline SVG bar chart of the metrics (failed ones red), with threshold and baseline ticks."""
    row, left, width = 22, 150, 300
    keys = list(METRICS)
    height = row * len(keys) + 10
    parts = [f'<svg width="{left + width + 60}" height="{height}" role="img" aria-label="metrics chart">']
    for i, key in enumerate(keys):
        y = 5 + i * row
        value = metrics.get(key)
        label = html.escape(format_label(key, top_k))
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{width}" height="14" fill="#eee"/>')
        if value is not None:
            colour = "#d44" if key in failed else "#4a7"
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{value * width:.1f}" height="14" fill="{colour}"/>')
        for marks, colour in ((baseline or {}, "#555"), (thresholds, "#d22")):
            mark = marks.get(key)
            if mark is not None:
                x = left + mark * width
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 20}" stroke="{colour}" stroke-width="2"/>'
                )
        parts.append(
            f'<text x="{left + width + 6}" y="{y + 14}" font-size="12">{html.escape(format_value(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _render_quote(citation: dict) -> str:
    """The citation's passage with its quote marked; just the quote, marked, when the offsets are missing or wrong."""
    passage, offset, start, end = (citation.get(k) for k in ("text", "passage_start", "start", "end"))
    if passage and None not in (offset, start, end) and offset <= start < end <= offset + len(passage):
        return highlight(passage, offset, [(start, end)])
    return f"<mark>{html.escape(citation.get('quote') or '')}</mark>"


def _render_badge(value: bool | None, name: str) -> str:
    css = {None: "na", True: "ok", False: "fail"}[value]
    return f'<span class="badge {css}">{html.escape(name)} {html.escape(_format_flag(value))}</span>'


def _render_case(n: int, case: dict, top_k: int) -> str:
    """One case of the report as an HTML section: its question, answer (markers link to citations) and checks."""
    e, anchor = html.escape, f"c{n}"
    answer = MARKER.sub(lambda m: f'<a href="#{anchor}-{m.group(1)}">[{m.group(1)}]</a>', e(case["answer"] or ""))
    history = "".join(f'<div class="turn"><b>{e(t["role"])}:</b> {e(t["content"])}</div>' for t in case["history"])
    citations = "".join(
        f'<li id="{anchor}-{int(c["index"])}">[{int(c["index"])}] {e(str(c.get("doc_id", "")))} '
        f"¶{e(str(c.get('number', '')))}: {_render_quote(c)}</li>"
        for c in case["citations"]
    )
    evidence = "".join(f"<li>{e(x['quote'])}</li>" for x in case["evidence"])
    expected = "must refuse" if case["must_refuse"] else " | ".join(case["expected"])
    checks = case["checks"]
    return (
        f'<section class="case {"pass" if case["passed"] else "failed"}" id="{e(case["id"])}">'
        f"<h3>{e(case['id'])} {'✔' if case['passed'] else '✘'} "
        f"{_render_badge(checks['answer'], 'answer')}{_render_badge(checks['refusal'], 'refusal')}"
        f"{_render_badge(checks['evidence'], f'evidence@{top_k}')}{_render_badge(checks['citations'], 'cites')}</h3>"
        f"{history}<p><b>Q:</b> {e(case['question'])}</p>"
        + (
            f'<p class="meta">rewritten as: {e(case["standalone_question"])}</p>'
            if case["history"] and case["standalone_question"]
            else ""
        )
        + f'<p><b>A:</b> {answer} <span class="meta">({e(str(case["reason"]))})</span></p>'
        f'<p class="meta"><b>Expected:</b> {e(expected)}</p>'
        + (f"<ul class='cites'>{citations}</ul>" if citations else "")
        + (f"<details><summary>evidence</summary><ul>{evidence}</ul></details>" if evidence else "")
        + (f"<p class='problems'>{e('; '.join(case['problems']))}</p>" if case["problems"] else "")
        + "</section>"
    )


def render_html(report: dict) -> str:
    """Return a self-contained HTML page of the report; every piece of text is escaped."""
    e = html.escape
    top_k = report["settings"]["top_k"]
    cases_html = [_render_case(n, case, top_k) for n, case in enumerate(report["cases"])]
    failures = "".join(f"<li>{e(f)}</li>" for f in report["failures"])
    failed = frozenset(k for k in METRICS for f in report["failures"] if f.startswith(format_label(k, top_k) + " "))
    status = "FAILED" if report["failures"] else "PASSED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>assistant eval: {e(status)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#222}}
.case{{border:1px solid #ccc;border-left:6px solid #4a7;padding:.3em .8em;margin:.8em 0}}
.case.failed{{border-left-color:#d22}} .meta{{color:#666;font-size:.9em}} mark{{background:#fe8}}
.badge{{font-size:.7em;padding:.1em .4em;margin-left:.4em;border-radius:3px;font-weight:normal}}
.ok{{background:#cfc}} .fail{{background:#fcc}} .na{{background:#eee}} .problems{{color:#a00}}
.turn{{color:#555;font-size:.9em}} code{{background:#f4f4f4}} .cites{{list-style:none;padding-left:1em}}
</style></head><body>
<h1>assistant eval: {e(status)}</h1>
<p class="meta">{e(report["created"])} · {e(report["case_file"])} · {len(report["cases"])} cases,
{report["summary"]["passed"]} passed · settings {e(json.dumps(report["settings"]))}</p>
<p><code>{e(report["metric_line"])}</code></p>
{render_chart(report["metrics"], report["thresholds"], report.get("baseline"), top_k, failed)}
<p class="meta">bars: value (red: failed a gate) · red tick: threshold (a maximum for false-refusal) ·
grey tick: baseline</p>
{f"<h2>Failures</h2><ul>{failures}</ul>" if failures else ""}
<h2>Cases</h2>
{"".join(cases_html)}
</body></html>
"""


def build_report(
    results: list[CaseResult],
    *,
    case_file: str,
    settings: dict,
    thresholds: dict,
    baseline: dict | None,
    failures: list[str],
) -> dict:
    """Return the whole run as plain data: settings, every figure and every case."""
    top_k = settings["top_k"]
    metrics = compute_metrics(results)
    latency = compute_latency(results)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "case_file": case_file,
        "settings": settings,
        "summary": {"cases": len(results), "passed": sum(r.passed for r in results)},
        "metrics": metrics,
        "labels": {key: format_label(key, top_k) for key in METRICS},
        "latency": latency,
        "metric_line": format_metric_line(metrics, latency, top_k),
        "thresholds": thresholds,
        "baseline": baseline,
        "failures": failures,
        "cases": [serialize_result(r, top_k) for r in results],
    }


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    """Write eval.json and eval.html into folder; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "eval.json", folder / "eval.html"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path
