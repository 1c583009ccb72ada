"""How well the model's hidden states tell a right answer from a trap: probes at three places and several layers.

    python -m benchmarks.probes [--dev DIR] [--test DIR] [--workdir DIR] [--out benchmarks/results/probes.json]

From the runs `python -m benchmarks.runs collect` saved (dev articles to fit on, test articles to report on), a
probe (a standardised logistic regression, scikit-learn) is fitted on dev for each place and tapped layer, and its
ROC AUC is read on each test article and on all of them, beside the judgement's P(yes) on the same examples:

- question: the state at the question's end, on top of the article, before the first answer token; label: the
  question is answerable (plus the states `benchmarks.runs questions` read, for more examples). P(yes) is that of
  the run's first judged sentence, where there is one.
- answer: the state after each judged answer sentence, with the article in view; label: the sentence holds a gold
  answer of an answerable question.
- judgement: the state at the judgement prompt's end; same label.

It also times reading a state (copying the tapped layers' columns out of llama.cpp's graph) on the real model.
Writes the JSON and prints the table (Markdown) for BENCHMARKS.md.

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.decision import (
    PROBE_C,
    Run,
    articles,
    context,
    fit_linear,
    probe_examples,
    question_states,
    split_runs,
)
from benchmarks.runs import DEFAULT_STORE, LAYERS
from benchmarks.squad_data import DEFAULT_WORKDIR
from benchmarks.squad_engines import tree_commit
from benchmarks.squad_run import say

ROOT = Path(__file__).resolve().parent.parent
PLACES = ("question", "answer", "judgement")


def auc(labels, scores) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else None


def p_yes_examples(runs: list[Run], place: str) -> tuple[list, list, list]:
    """(P(yes) log-odds, labels, articles) for the examples of place that have a judgement."""
    x, y, g = [], [], []
    for run in runs:
        if place == "question":
            if run.judged:
                x.append(run.judged[0].values["logit_yes"]), y.append(int(run.answerable)), g.append(run.article)
            continue
        for j in run.judged:
            x.append(j.values["logit_yes"]), y.append(j.label), g.append(run.article)
    return x, y, g


def row(place: str, signal: str, labels, scores, groups, names: list[str]) -> dict:
    """One table row: the signal's AUC on all test examples and per test article."""
    out = {"place": place, "signal": signal, "examples": len(labels), "all": auc(labels, scores)}
    for name in names:
        picked = [(lab, s) for lab, s, a in zip(labels, scores, groups, strict=True) if a == name]
        out[name] = auc([p[0] for p in picked], [p[1] for p in picked]) if picked else None
    return out


def table(dev: list[Run], test: list[Run], extra) -> list[dict]:
    """Rows: for each place, P(yes) then each layer's probe fitted on dev, read on test."""
    names = articles(test)
    rows = []
    for place in PLACES:
        x, y, g = p_yes_examples(test, place)
        rows.append(row(place, "P(yes)", y, x, g, names))
        for layer in LAYERS:
            X, y_dev, _ = probe_examples(dev, place, layer, extra if place == "question" else ())
            X_test, y_test, g_test = probe_examples(test, place, layer)
            if len(set(y_dev)) < 2 or not X_test:
                continue
            probe = fit_linear(X, y_dev, [], PROBE_C)
            scores = [probe.logit(v) for v in X_test]
            rows.append(row(place, f"layer {layer}", y_test, scores, g_test, names))
            say(f"{place} layer {layer}: AUC {rows[-1]['all']}")
    return rows


def markdown(rows: list[dict], names: list[str]) -> str:
    def cell(v):
        return "–" if v is None else f"{v:.3f}"

    head = ["place", "signal", "test examples", "all test articles", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join([r["place"], r["signal"], str(r["examples"]), cell(r["all"]), *(cell(r[n]) for n in names)])
            + " |"
        )
    return "\n".join(lines)


def read_cost(runs: int = 20) -> dict:
    """Seconds to read a state at a decode with every layer of LAYERS tapped, against the same decode untapped."""
    import time

    from assistant.index.models import chat_model_file
    from assistant.llamacpp.engine import open_model
    from assistant.settings import Settings

    settings = Settings()
    path = str(chat_model_file(settings))
    timings = {}
    for label, layers in (("untapped", ()), ("tapped", LAYERS)):
        llm = open_model(path, 2048, settings.generation.llm_threads, settings.generation.llm_repack_weights, layers)
        tokens = llm.tokenize(b"Evidence from the article: the bridge was opened in 1998. Question: when?")
        taps = llm.taps
        spent = []
        for _ in range(runs):
            llm.reset()
            start = time.perf_counter()
            if taps is not None:
                with taps.armed():
                    llm.eval(tokens)
            else:
                llm.eval(tokens)
            spent.append(time.perf_counter() - start)
        timings[label] = sorted(spent)[len(spent) // 2]
        del llm
    timings["cost"] = timings["tapped"] - timings["untapped"]
    return timings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=Path, default=DEFAULT_STORE / "dev")
    parser.add_argument("--test", type=Path, default=DEFAULT_STORE / "test")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probes.json")
    parser.add_argument("--hold-out", nargs="*", default=[], help="report on these dev articles instead of --test")
    parser.add_argument("--no-timing", action="store_true", help="skip timing a state's reading")
    args = parser.parse_args(argv)
    ctx = context(args.workdir)
    dev, test = split_runs(args, ctx)
    rows = table(dev, test, question_states(args.dev, dev))
    cost = None if args.no_timing else read_cost()
    result = {
        "command": "python -m benchmarks.probes " + " ".join(argv),
        "commit": tree_commit(),
        "rows": rows,
        "read_cost_s": cost,
        "fitted_on": articles(dev),
        "reported_on": articles(test),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown(rows, articles(test)))
    if cost:
        print(f"\nReading a state ({len(LAYERS)} layers): {cost['cost'] * 1000:.1f} ms per decode")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
