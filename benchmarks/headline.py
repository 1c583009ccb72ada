"""The headline benchmark's report (`python -m benchmarks`): BENCHMARKS.md's first part, this project against the
tutorial baseline, written from a run's figures, and the scale plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.eval import compute_percentile


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of values (q in 0..100) as `assistant eval` computes it; NaN (shown as –) for none."""
    value = compute_percentile(values, q)
    return float("nan") if value is None else value


def ratio(ours: float, base: float, higher_is_better: bool = False) -> str:
    """How many times better ours is than the baseline ('3.2× better')."""
    if not ours or not base or ours != ours or base != base:
        return "–"
    r = ours / base if higher_is_better else base / ours
    return f"{r:.1f}× {'better' if r >= 1 else 'worse'}"


def write_outputs(results: dict, out: Path | None, plot: Path | None, json_too: bool = True) -> None:
    """Print the markdown report and write it (with the run's JSON beside it) and the plot where asked."""
    from benchmarks.generalization import END, START

    report = render_markdown(results)
    print(report)
    if out:
        # The per-article section comes from `python -m benchmarks.generalization`: keep it.
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        kept = old[old.index(START) : old.index(END) + len(END)] if START in old and END in old else ""
        out.write_text(report + (f"\n\n{kept}\n" if kept else ""), encoding="utf-8")
        if json_too:
            out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
        print(f"Wrote {out}", file=sys.stderr)
    if plot:
        draw_plot(results["scale"], plot)
        print(f"Wrote {plot}", file=sys.stderr)


def render_markdown(results: dict) -> str:
    """The benchmark report as a markdown document."""
    return "\n".join([*headline_section(results), *scale_section(results)])


def figure_row(name: str, ours: float, base: float, unit: str = "", higher: bool = False, fmt: str = "{:.2f}") -> str:
    """One row of the headline table: both figures (– for NaN) and the ratio."""
    ov = fmt.format(ours) + unit if ours == ours else "–"
    bv = fmt.format(base) + unit if base == base else "–"
    return f"| {name} | {ov} | {bv} | {ratio(ours, base, higher)} |"


def metric_pair(results: dict, key: str) -> tuple[float, float]:
    """A quality metric of both pipelines, NaN where it is undefined."""
    q = results["quality"]
    om, bm = q["ours"]["metrics"], q["baseline"]["metrics"]
    return om.get(key) if om.get(key) is not None else float("nan"), (
        bm.get(key) if bm.get(key) is not None else float("nan")
    )


def headline_rows(results: dict) -> list[str]:
    """The headline table's rows: latency, start-up, index, memory and quality, this project against the baseline."""
    o, b = results["quality"]["ours"], results["quality"]["baseline"]
    row = figure_row
    return [
        row("first token p50 (warm)", percentile(o["first_token"], 50), percentile(b["first_token"], 50), " s"),
        row("first token p95 (warm)", percentile(o["first_token"], 95), percentile(b["first_token"], 95), " s"),
        row("first checked text p50 (warm)", percentile(o["first_text"], 50), percentile(b["first_text"], 50), " s"),
        row("whole answer p50 (warm)", percentile(o["total"], 50), percentile(b["total"], 50), " s"),
        row("whole answer p95 (warm)", percentile(o["total"], 95), percentile(b["total"], 95), " s"),
        row("cold start to first answer", results["cold"]["ours"], results["cold"]["baseline"], " s"),
        row("index build (first start)", results["index_build"]["ours"], results["index_build"]["baseline"], " s"),
        row("index ready (next starts)", results["index_ready"]["ours"], results["index_ready"]["baseline"], " s"),
        row("peak memory (RSS)", results["rss_mb"]["ours"], results["rss_mb"]["baseline"], " MB", fmt="{:.0f}"),
        row("answer accuracy", *metric_pair(results, "answer"), higher=True),
        row("refusal accuracy", *metric_pair(results, "refusal"), higher=True),
        row("false refusals", *metric_pair(results, "false-refusal")),
        row("citation precision", *metric_pair(results, "citation-precision"), higher=True),
    ]


def headline_section(results: dict) -> list[str]:
    """The report's title, the run's facts, the baseline, the headline table and where this project is behind."""
    return [
        "# Benchmarks",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Commit: `{results.get('commit', 'not recorded')}`. "
        f"Command: `{results['command']}`.",
        "",
        "Baseline: LangChain's RAG tutorial pipeline (`benchmarks/tutorial.py`): RecursiveCharacterTextSplitter "
        "(1000/200, start index), Chroma with the same MiniLM embeddings, top-4 similarity search, the tutorial's "
        "prompt, the same Qwen2.5-Coder-1.5B GGUF at temperature 0; it refuses only when the model says it does not "
        f"know. Both pipelines ran in the same process, alternating question by question, over {results['cases']} "
        "cases of `tests/questions.yaml`.",
        "",
        "| figure | this project | tutorial baseline | ratio |",
        "|---|---|---|---|",
        *headline_rows(results),
        "",
        "Ratios are baseline ÷ ours for times, memory and false refusals, ours ÷ baseline for accuracies: above 1 means "
        "this project is ahead. The baseline has no citations, so its citation precision is 0 or undefined. "
        "'First checked text' is when this project shows its first sentence, after the grounding check; the baseline "
        "shows unchecked tokens, so its first text is its first token.",
        "",
        *behind(results),
    ]


def scale_section(results: dict) -> list[str]:
    """The scale section: a row per haystack size, where the design changes, and where this project trails."""
    lines = [
        "## Scale",
        "",
        "Corpora of generated article-sized documents (fixed seed) with the real article inside; the hit rate is the "
        "share of the article's questions whose evidence paragraph is retrieved in the top 4.",
        "",
        "| documents | passages | index build | index size | retrieval p50 | hit rate | first token | article in prompt "
        "| baseline build | baseline hit rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["scale"]:
        lines.append(
            f"| {s['documents']} | {s['passages']} | {s['index_build_s']:.1f} s | {s['index_mb']:.1f} MB | "
            f"{s['retrieval_p50_ms']:.0f} ms | {s['hit_rate']:.2f} | {s['first_token_s']:.2f} s | "
            f"{'whole corpus' if s['whole_corpus_in_prompt'] else 'retrieved passages'} | "
            f"{s['baseline_index_build_s']:.1f} s | {s['baseline_hit_rate']:.2f} |"
        )
    return [
        *lines,
        "",
        "Where the design changes: while the whole corpus fits the model's context (one article), it is a fixed prompt "
        "prefix that llama.cpp keeps cached, so the first token costs only the question's tokens. Past that (from two "
        "articles on), the prompt carries the retrieved passages, which differ per question: every answer pays for "
        "reading them (~50 tokens/s on 2 cores), as the baseline always does. Index build grows linearly with the "
        "number of passages (embedding dominates); retrieval stays in milliseconds (HNSW plus BM25 over all passages).",
        "",
        *scale_behind(results["scale"]),
    ]


def scale_behind(scale: list[dict]) -> list[str]:
    """Plain words on the corpus sizes where this project trails the baseline, and why."""
    lines = []
    slower = [s for s in scale if s["index_build_s"] > s["baseline_index_build_s"] and s["documents"] > 1]
    if slower:
        sizes = " and ".join(
            f"{s['documents']:,} documents ({s['index_build_s']:.1f} s against {s['baseline_index_build_s']:.1f} s)"
            for s in slower
        )
        lines.append(
            f"- **Index build** is slower at {sizes}: this project embeds every paragraph (11 per article) where the "
            "tutorial embeds fewer, larger 1,000-character chunks (5 for this article), and it also builds BM25 and "
            "writes the persistent store. Both grow linearly; it is paid once, as above."
        )
    missed = [s for s in scale if s["hit_rate"] < s["baseline_hit_rate"]]
    if missed:
        sizes = " and ".join(
            f"{s['documents']:,} document{'s' if s['documents'] > 1 else ''} ({s['hit_rate']:.2f} against "
            f"{s['baseline_hit_rate']:.2f})"
            for s in missed
        )
        lines.append(
            f"- **Hit rate** is lower at {sizes}: four of the tutorial's 1,000-character chunks are most of "
            "a 3,900-character article, four paragraphs about a third of it, so its top 4 nearly always holds the "
            "evidence. While the whole corpus is in the prompt, this project's retrieval does not limit what the "
            "model reads (it only feeds the relevance gate and the sources list); as the haystack grows, paragraphs "
            "plus BM25 keep more of the evidence than the tutorial's chunks do."
        )
    return ["Where this project is not ahead at scale:", "", *lines, ""] if lines else []


# Why this project can trail the baseline on a figure, said wherever the run shows it behind.
WHY_BEHIND = {
    "index build (first start)": "The first build also writes a persistent store with its manifest (corpus hash, "
    "model, chunking) and builds the BM25 index, and it embeds the article's paragraphs rather than fewer, larger "
    "1,000-character chunks. It is paid once: every later start reopens the store ('index ready'), while the "
    "tutorial's in-memory store is rebuilt at every start.",
    "false refusals": "The tutorial never refuses (its model always answers), so it cannot refuse falsely; it pays "
    "for that in refusal accuracy, answering every question the article cannot answer. This project drops any "
    "sentence the grounding check cannot tie to a passage, and when nothing is left it says the article does not "
    "say, even if the model's draft was right in a way the check cannot verify (paraphrases that share few words "
    "with the article, inferences across paragraphs).",
    "peak memory (RSS)": "Both load the same embedding model and the same GGUF with the same context size; this project "
    "also holds the BM25 index, the persistent store's client and the article's saved model state while restoring it.",
    "whole answer p95 (warm)": "The slowest answers are follow-ups, which cost this project a second model call to "
    "rewrite the question, and long multi-part answers.",
}


def behind(results: dict) -> list[str]:
    """A plain list of the figures where this project is not ahead, each with why; empty when it leads on all."""
    q = results["quality"]
    o, b = q["ours"], q["baseline"]
    figures = {
        "first token p50 (warm)": (percentile(o["first_token"], 50), percentile(b["first_token"], 50), False),
        "whole answer p50 (warm)": (percentile(o["total"], 50), percentile(b["total"], 50), False),
        "whole answer p95 (warm)": (percentile(o["total"], 95), percentile(b["total"], 95), False),
        "cold start to first answer": (results["cold"]["ours"], results["cold"]["baseline"], False),
        "index build (first start)": (results["index_build"]["ours"], results["index_build"]["baseline"], False),
        "index ready (next starts)": (results["index_ready"]["ours"], results["index_ready"]["baseline"], False),
        "peak memory (RSS)": (results["rss_mb"]["ours"], results["rss_mb"]["baseline"], False),
    }
    for key in ("answer", "refusal", "citation-precision"):
        figures[key] = (o["metrics"].get(key) or 0.0, b["metrics"].get(key) or 0.0, True)
    figures["false refusals"] = (
        o["metrics"].get("false-refusal") or 0.0,
        b["metrics"].get("false-refusal") or 0.0,
        None,
    )
    lines = []
    for name, (ours, base, higher) in figures.items():
        worse = ours < base if higher else ours > base
        if worse:
            reason = WHY_BEHIND.get(name, "Within this machine's noise; not investigated further.")
            lines.append(f"- **{name}**: {ours:.2f} against {base:.2f}. {reason}")
    if not lines:
        return ["This project is ahead of the baseline on every figure above.", ""]
    return ["Where this project is not ahead:", "", *lines, ""]


def draw_plot(scale: list[dict], path: Path) -> None:
    """Latency and hit rate against corpus size, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s["documents"] for s in scale]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [s["retrieval_p50_ms"] for s in scale], "o-", label="retrieval p50 (ms)")
    left.plot(sizes, [s["first_token_s"] * 1000 for s in scale], "s-", label="first token (ms)")
    left.plot(sizes, [s["index_build_s"] * 1000 for s in scale], "^-", label="index build (ms)")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("documents in corpus")
    left.legend()
    left.set_title("Cost against corpus size")
    right.plot(sizes, [s["hit_rate"] for s in scale], "o-", label="this project")
    right.plot(sizes, [s["baseline_hit_rate"] for s in scale], "s--", label="tutorial baseline")
    right.set_xscale("log")
    right.set_ylim(0, 1.05)
    right.set_xlabel("documents in corpus")
    right.set_ylabel("evidence hit@4")
    right.legend()
    right.set_title("Retrieval hit rate as the haystack grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
