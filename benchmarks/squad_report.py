"""The SQuAD benchmark's report: figures per engine, mode and article, against the targets, and BENCHMARKS.md's
section with a table per mode and the answers by kind of question."""

from __future__ import annotations

from pathlib import Path

from benchmarks.squad_data import ATTRIBUTION, DEFAULT_DATA, MODES, load_articles, to_case
from benchmarks.squad_engines import ASSISTANTS, ENGINES
from benchmarks.squad_kinds import ANSWERABLE, UNANSWERABLE
from benchmarks.squad_scoring import category

START, END = "<!-- squad:start -->", "<!-- squad:end -->"
HEADING = "## Real articles: SQuAD 2.0"


TARGETS = {  # (key, label, target, higher is better, modes it applies to)
    "p50": ("whole answer p50", 5.0, False, ("single",)),
    "p95": ("whole answer p95", 10.0, False, ("single",)),
    "p50_all": ("whole answer p50", 8.0, False, ("all",)),
    "answerable_right": ("answerable right", 0.80, True, ("single", "all")),
    "unanswerable_refused": ("unanswerable refused", 0.80, True, ("single", "all")),
    "false_refusal": ("false refusals", 0.10, False, ("single", "all")),
    "citation_gold": ("citation of gold paragraph", 0.95, True, ("single", "all")),
}


def interval(share: float | None, n: int) -> tuple[float, float] | None:
    """The 95 % Wilson interval of a share of n cases (None without cases): 48 cases move by about ±0.07."""
    import math

    if share is None or n == 0:
        return None
    z = 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def share(flags: list) -> float | None:
    """The share of true flags among those that apply (None: none apply)."""
    flags = [f for f in flags if f is not None]
    return sum(map(bool, flags)) / len(flags) if flags else None


def figures(records: list[dict]) -> dict:
    """The report's figures over records (one engine, one mode, one article or all)."""
    from assistant.eval import compute_percentile

    def timing(key: str) -> list[float]:
        return [r["timings"][key] for r in records if key in (r.get("timings") or {})]

    yes = [r for r in records if r["kind"] == "answerable"]
    no = [r for r in records if r["kind"] == "unanswerable"]
    refusals = [r for r in records if r.get("abstained") and not r.get("error")]
    # When the reader sees the refusal: it is streamed before its correction is asked for (pipeline.correct).
    shown = [r["timings"]["total"] - r["timings"].get("correct", 0.0) for r in refusals if "total" in r["timings"]]
    return {
        "cases": len(records),
        "answerable": len(yes),
        "unanswerable": len(no),
        "errors": sum(bool(r.get("error")) for r in records),
        "answerable_right": share([r["scores"]["right"] for r in yes]),
        "unanswerable_refused": share([r["scores"]["refused"] for r in no]),
        "false_refusal": share([r["scores"]["false_refusal"] for r in yes]),
        "citation_gold": share([r["scores"]["citation_gold"] for r in yes]),
        "trap": share([r["scores"]["trap"] for r in no]),
        "corrected": share([corrected(r.get("reply", "")) for r in refusals]),
        "refusal_shown_p50": compute_percentile(shown, 50),
        "p50": compute_percentile(timing("total"), 50),
        "p95": compute_percentile(timing("total"), 95),
        "first_text_p50": compute_percentile(timing("first_text"), 50),
        "verify_p50": compute_percentile(timing("verify"), 50),
    }


def corrected(reply: str) -> bool:
    """True for a refusal that says what the article says instead ("The article does not say that …; it says …")."""
    from assistant.answer.state import NOT_IN_ARTICLE

    return reply.startswith(NOT_IN_ARTICLE.rstrip(".")) and reply.strip() != NOT_IN_ARTICLE


def summarise(records: list[dict]) -> dict:
    """mode -> engine -> article slug (and "overall") -> figures."""
    out: dict = {}
    for mode in MODES:
        for engine in ENGINES:
            mine = [r for r in records if r["mode"] == mode and r["engine"] == engine]
            if not mine:
                continue
            rows = {
                slug: figures([r for r in mine if r["article"] == slug])
                for slug in dict.fromkeys(r["article"] for r in mine)
            }
            rows["overall"] = figures(mine)
            out.setdefault(mode, {})[engine] = rows
    return out


def fmt(value, digits: int = 2, unit: str = "") -> str:
    """A figure for the table; – where it does not apply (no such cases, or no such timing)."""
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def with_interval(value: float | None, n: int) -> str:
    """A share with its 95 % interval: "0.72 (0.64–0.79)"."""
    bounds = interval(value, n)
    return fmt(value) if bounds is None else f"{value:.2f} ({bounds[0]:.2f}–{bounds[1]:.2f})"


def engine_label(results: dict, engine: str) -> str:
    """How the report names an engine: the assistants by their commit."""
    labels = {
        "ours": f"this tree ({results['commit']})",
        "retrieved": f"this tree, retrieved sentences only ({results['commit']}, ASSISTANT_WHOLE_ARTICLE=false)",
        "before": f"before ({results.get('before')})",
    }
    return labels.get(engine, "tutorial")


def mode_table(results: dict, mode: str, summary: dict) -> list[str]:
    """One mode's table: a row per article and engine, then an overall row per engine."""
    warm = {(w["mode"], w["scope"], w["engine"]): w["seconds"] for w in results.get("warm_up", [])}
    titles = {slug: a["title"] for slug, a in results["articles"].items()}
    lines = [
        f"**{MODES[mode][0].upper()}{MODES[mode][1:]}.**",
        "",
        "| article | engine | cases (ans.+unans.) | answerable right | unanswerable refused | false refusals "
        "| citation of gold ¶ | trap answer given | refusals corrected | whole answer p50 | p95 "
        "| first checked text p50 | refusal shown p50 | verification p50 | warm_up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    slugs = list(dict.fromkeys(s for rows in summary.values() for s in rows if s != "overall"))
    for slug in [*slugs, "overall"]:
        for engine, rows in summary.items():
            if slug in rows:
                seconds = warm.get((mode, None if slug == "overall" else slug, engine))
                name = "**overall**" if slug == "overall" else titles.get(slug, slug)
                lines.append(table_row(name, engine_label(results, engine), rows[slug], seconds))
    return [*lines, ""]


def table_row(name: str, engine: str, f: dict, warm_up: float | None) -> str:
    """One row of a mode's table."""
    errors = f" ({f['errors']} failed)" if f["errors"] else ""
    cells = [
        name,
        engine,
        f"{f['cases']} ({f['answerable']}+{f['unanswerable']}){errors}",
        with_interval(f["answerable_right"], f["answerable"]),
        with_interval(f["unanswerable_refused"], f["unanswerable"]),
        with_interval(f["false_refusal"], f["answerable"]),
        fmt(f["citation_gold"]),
        fmt(f["trap"]),
        fmt(f["corrected"]),
        fmt(f["p50"], 1, " s"),
        fmt(f["p95"], 1, " s"),
        fmt(f["first_text_p50"], 1, " s"),
        fmt(f["refusal_shown_p50"], 1, " s"),
        fmt(f["verify_p50"], 2, " s"),
        fmt(warm_up, 1, " s"),
    ]
    return "| " + " | ".join(cells) + " |"


def targets_line() -> str:
    """The targets, as the report states them (TARGETS holds the same numbers for missed())."""
    return (
        "Targets: single article whole answer p50 ≤ 5 s, p95 ≤ 10 s; all twelve together p50 ≤ 8 s; answerable right "
        "≥ 0.80, unanswerable refused (or premise corrected) ≥ 0.80, false refusals ≤ 0.10, citation of gold paragraph "
        "≥ 0.95. Shares are given with their 95 % interval (Wilson)."
    )


def missed(results: dict, summary: dict) -> list[str]:
    """Each overall figure of the assistant (this tree, and the earlier commit) that misses its target, by how much."""
    rows = []
    for mode, engines in summary.items():
        for engine in ASSISTANTS:
            f = engines.get(engine, {}).get("overall")
            if f is None:
                continue
            for key, (label, target, higher, modes) in TARGETS.items():
                value = f.get(key.removesuffix("_all"))
                if mode not in modes or value is None or (value >= target if higher else value <= target):
                    continue
                unit = " s" if key.startswith("p") else ""
                gap = f"{target - value:.2f} short" if higher else f"{value - target:.2f}{unit} over"
                sign = "≥" if higher else "≤"
                rows.append(
                    f"- {MODES[mode]}, {engine_label(results, engine)}: {label} {value:.2f}{unit}, "
                    f"target {sign} {target:.2f}{unit} ({gap})."
                )
    return ["Where a target is missed:", "", *rows, ""] if rows else ["Every target is met.", ""]


def with_categories(results: dict) -> list[dict]:
    """The records, each with its category: as saved or, for a run saved before records held one, read from its
    data file (results' "data", else DEFAULT_DATA); None where neither knows the question."""
    records = results["cases"]
    missing = {r["id"] for r in records if not r.get("category")}
    paths = [Path(p) for p in (results.get("data"), DEFAULT_DATA) if p and Path(p).is_file()]
    if not missing or not paths:
        return records
    found = {
        qa["id"]: category(to_case(article, j, qa))
        for article in load_articles(paths[0])
        for j, qa in article.qas
        if qa["id"] in missing
    }
    return [r if r.get("category") else {**r, "category": found.get(r["id"])} for r in records]


# (kind, the heading of its categories, those in order, the two scores shown, their labels)
KIND_TABLES = (
    ("unanswerable", "unanswerable, how it was made", UNANSWERABLE, ("refused", "trap"), ("refused", "trap given")),
    ("answerable", "answerable, what it asks", ANSWERABLE, ("right", "false_refusal"), ("right", "false refusal")),
)


def kinds_tables(results: dict) -> list[str]:
    """This tree's answers by kind of question, a table per kind with columns per mode: which kinds fail."""
    ours = [r for r in with_categories(results) if r["engine"] == "ours"]
    if not ours:
        return []
    if not any(r.get("category") for r in ours):
        return ["Which questions fail, by kind: not known (no SQuAD data file here holds the run's questions).", ""]
    modes = [m for m in MODES if any(r["mode"] == m for r in ours)]
    lines = [
        "Which questions fail, by kind (this tree; single = each article as its own scope, all = all together). "
        "Kinds are read by word rules (`benchmarks/squad_kinds.py`), an approximation of SQuAD 2.0's categories: "
        "an unanswerable by how it differs from the sentence holding its trap, an answerable by its wh-word.",
        "",
    ]
    for kind, heading, names, keys, labels in KIND_TABLES:
        mine = [r for r in ours if r["kind"] == kind]
        head = [heading, *(f"{m}: {c}" for m in modes for c in ("questions", *labels))]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for name in [*names, None]:
            rows = [[r for r in mine if r["mode"] == m and r.get("category") == name] for m in modes]
            if any(rows):
                cells = [str(name or "not known")]
                for got in rows:
                    cells += [str(len(got)), *(fmt(share([r["scores"][k] for r in got])) for k in keys)]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render(results: dict) -> str:
    """BENCHMARKS.md's section for a run: what was asked, a table per mode, the targets and what misses them."""
    options, summary = results.get("options", {}), summarise(results["cases"])
    chosen = [results["articles"][slug]["title"] for slug in results.get("chosen", [])]
    loading = ", ".join(f"{engine_label(results, k)} {v:.1f} s" for k, v in results.get("loading", {}).items())
    lines = [
        START,
        HEADING,
        "",
        f"Real, crowd-written questions on whole Wikipedia articles: {len(results['articles'])} articles of SQuAD "
        "2.0's development set, each its own corpus file with one SQuAD paragraph per line; about half the questions are "
        "SQuAD 2.0's adversarial unanswerables, whose plausible (wrong) answer is the trap. Split by article: the "
        "titles in sorted order go alternately to dev and test. "
        f"This run: {results['split']} split, {len(chosen)} article(s) ({', '.join(chosen)}); per article "
        f"{options.get('answerable')} answerable and {options.get('unanswerable')} unanswerable questions (a fixed "
        "seeded sample); "
        + (
            f"all {len(results['articles'])} articles together on the first {options['all_together']} of each kind"
            if options.get("all_together")
            else "all articles together: not run"
        )
        + "; the tutorial "
        + (f"on one case in {options['baseline_every']}." if options.get("baseline_every") else "not run.")
        + ("" if results.get("complete", True) else f" Interrupted run: {len(results['cases'])} answers."),
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Commit: `{results['commit']}`. "
        f"Command: `{results['command']}`. Loading index and model once per engine: {loading or '–'}; warm_up is "
        "the one-time reading of the scope (for the tutorial: building its index over that text).",
        "",
        f"Data: {results.get('attribution', ATTRIBUTION)}",
        "",
    ]
    for mode in MODES:
        if mode in summary:
            lines += mode_table(results, mode, summary[mode])
    lines += [
        "Scoring: SQuAD normalisation; right = not refused and a gold answer in the reply; citation of gold ¶ over "
        "answered answerable questions (the tutorial has no citations); trap = an unanswerable answered with its "
        'plausible answer; refusals corrected = refusals whose reply says what the article says instead ("The '
        "article does not say that …; it says …\"); times are the engine's own (whole answer, first checked text, "
        "verification); refusal shown = a refusal's whole answer less its correction, which comes after it.",
        "",
        targets_line(),
        "",
        *missed(results, summary),
        *kinds_tables(results),
        END,
    ]
    return "\n".join(lines)
