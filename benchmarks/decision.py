"""Fit the decision (assistant/answer/decision.py) on the pipeline's own runs, and report it on held-out articles.

    python -m benchmarks.decision fit [--dev DIR] [--test DIR] [--out assistant/answer/decision.json]
    python -m benchmarks.decision report [--dev DIR] [--test DIR]     # the same figures, nothing written

The runs come from `python -m benchmarks.runs collect` (dev articles to fit on, test articles to report on):
every sentence the word check kept went through the judge, so each judged sentence is an example, labelled 1 when
its question is answerable and it holds a gold answer, else 0 (a trap answer, or a wrong one). Its signals are
computed here with the product's own functions (decision.signals, question_words), so a refit after a change to
them takes seconds, without the model.

Probes: a standardised logistic regression on one layer's state at one place (the question's end, after the
sentence, the judgement's end). Their out-of-fold logits (folds by article) feed the combiner on dev; the final
probe is fitted on all dev. The question probe also learns from `benchmarks.runs questions` (label: the question
is answerable). A probe is kept only where it measures better on the test articles, as the issue asks.

The threshold maximises, on dev, the mean of "answerable right" and "unanswerable refused", as the questions of
the runs would end with it; the early refusal's threshold is the highest that costs at most EARLY_LOSS of the dev
answerable questions the decision would have answered right.

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.runs import DEFAULT_STORE
from benchmarks.squad_data import ATTRIBUTION, DEFAULT_WORKDIR
from benchmarks.squad_engines import tree_commit
from benchmarks.squad_report import interval
from benchmarks.squad_run import say
from benchmarks.squad_scoring import contains_answer

ROOT = Path(__file__).resolve().parent.parent
EARLY_LOSS = 0.02
PROBE_C = 0.01  # strong regularisation: 1,536 inputs, a few thousand examples


@dataclass
class Judged:
    """One judged sentence of one run, with its label and signals."""

    index: int
    sentence: str
    label: int
    values: dict[str, float]


@dataclass
class Run:
    """One question of a collecting run: its kind, and the sentences that reached the judge."""

    qid: str
    article: str
    kind: str
    category: str
    judged: list[Judged] = field(default_factory=list)
    states: dict = field(default_factory=dict)  # {key: vector}: question_L, answer{i}_L, judgement{i}_L
    refused_anyway: bool = False  # refused with every judged sentence passed (declined; not the kind asked)
    after_question: float = 0.0  # seconds the run spent after the question's end: what an early refusal saves
    question_logit: float | None = None  # the question probe's logit, once a question probe is fitted

    @property
    def answerable(self) -> bool:
        return self.kind == "answerable"


def context(workdir: Path):
    """What the offline signals need: the corpus passages by id, a grounder (for names) and the word checker."""
    from assistant.answer.grounding import Grounder
    from assistant.answer.question_words import QuestionWords
    from assistant.index.corpus import load_passages
    from assistant.index.embedding import load_embeddings
    from assistant.settings import Settings

    documents, passages = load_passages(workdir / "corpus")
    grounder = Grounder(passages, {d.doc_id: d.text for d in documents})
    settings = Settings()
    checker = QuestionWords(load_embeddings(settings).embed_documents, settings.deciding.question_words_similarity)
    return {p.passage_id: p for p in passages}, grounder, checker


def judged_of(row: dict, verdict: dict, index: int, ctx) -> Judged:
    """A verdict of a saved run, labelled, with its signals computed as the pipeline computes them."""
    from assistant.answer.decision import signals

    by_id, grounder, checker = ctx
    cited = tuple(pid for pid in verdict.get("passages", []) if pid in by_id)
    passages = tuple(by_id[pid] for pid in cited)
    named = partial(grounder.named_in, passages=passages)
    text = " ".join(p.text for p in passages)
    unmatched = checker.unmatched(row["question"], verdict["sentence"], text, " ".join(verdict["evidence"]), named)
    retrieved = [(p["id"], p["distance"]) for p in row.get("passages", [])]
    values = signals(
        row["question"], verdict["sentence"], verdict["p_yes"], unmatched, retrieved, cited, verdict.get("p_claim")
    )
    label = int(row["kind"] == "answerable" and contains_answer(verdict["sentence"], row["answers"]))
    return Judged(index, verdict["sentence"], label, values)


def load_runs(store: Path, ctx, with_states: bool = True) -> list[Run]:
    """The runs saved in store (runs.jsonl and states/), with their judged sentences' signals."""
    import numpy as np

    runs = []
    for line in (store / "runs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        timings = row.get("timings") or {}
        run = Run(row["id"], row["article"], row["kind"], row.get("category", ""), refused_anyway=row["abstained"])
        run.after_question = timings.get("total", 0.0) - timings.get("first_token", timings.get("total", 0.0))
        run.judged = [judged_of(row, v, i, ctx) for i, v in enumerate(row["verdicts"]) if v.get("p_yes") is not None]
        path = store / "states" / f"{row['id']}.npz"
        if with_states and path.is_file():
            with np.load(path) as data:
                run.states = {k: data[k].astype(np.float32) for k in data.files}
        runs.append(run)
    say(f"{store}: {len(runs)} runs, {sum(len(r.judged) for r in runs)} judged sentences")
    return runs


def question_states(store: Path, besides: list[Run] = ()) -> list[tuple[str, int, dict]]:
    """(article, answerable, {layer: vector}) of every question `benchmarks.runs questions` read, but those of the
    runs besides (their question states are examples already)."""
    import numpy as np

    path = store / "questions.jsonl"
    if not path.is_file():
        return []
    out, seen = [], {r.qid for r in besides}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        npz = store / "questions" / f"{row['id']}.npz"
        if row.get("read") and npz.is_file() and row["id"] not in seen:
            with np.load(npz) as data:
                vectors = {int(k.split("_")[1]): data[k].astype(np.float32) for k in data.files}
            out.append((row["article"], int(row["kind"] == "answerable"), vectors))
    return out


# ----- outcomes ------------------------------------------------------------------------------------------------
def outcome(run: Run, passes) -> str:
    """How run's question ends when passes(judged) decides each sentence: right, wrong, refused."""
    kept = [j for j in run.judged if passes(j)]
    if not kept or run.refused_anyway:
        return "refused"
    return "right" if any(j.label for j in kept) else "wrong"


def figures(runs: list[Run], passes) -> dict[str, float]:
    """answerable right, unanswerable refused, false refusals, with the counts they are over."""
    ends = [(r.answerable, outcome(r, passes)) for r in runs]
    yes = [e for a, e in ends if a]
    no = [e for a, e in ends if not a]
    return {
        "answerable": len(yes),
        "unanswerable": len(no),
        "answerable_right": sum(e == "right" for e in yes) / max(1, len(yes)),
        "unanswerable_refused": sum(e == "refused" for e in no) / max(1, len(no)),
        "false_refusals": sum(e == "refused" for e in yes) / max(1, len(yes)),
    }


def balanced(f: dict) -> float:
    return (f["answerable_right"] + f["unanswerable_refused"]) / 2


# ----- fitting -------------------------------------------------------------------------------------------------
def fit_linear(X, y, names: list[str], C: float = 1.0):
    """A standardised logistic regression (scikit-learn) as decision.Linear; with no names (a probe's vector), the
    standardisation is folded into the weights, rounded to five significant digits: a small file."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from assistant.answer.decision import Linear

    X = np.asarray(X, dtype=np.float64)
    means, scales = X.mean(axis=0), X.std(axis=0)
    scales[scales < 1e-9] = 1.0
    model = LogisticRegression(C=C, max_iter=5000).fit((X - means) / scales, y)
    weights, intercept = model.coef_[0], float(model.intercept_[0])
    if names:
        return Linear(
            names=list(names),
            means=means.tolist(),
            scales=scales.tolist(),
            weights=weights.tolist(),
            intercept=intercept,
        )
    folded = weights / scales
    return Linear(names=[], weights=[float(f"{w:.5g}") for w in folded], intercept=intercept - float(folded @ means))


def probe_examples(runs: list[Run], place: str, layer: int, extra=()) -> tuple[list, list, list]:
    """(vectors, labels, articles) for a probe: the question place is labelled by whether the question is
    answerable (one example per question, plus extra from `runs questions`), the others by the sentence's label."""
    X, y, g = [], [], []
    for run in runs:
        if place == "question":
            vector = run.states.get(f"question_{layer}")
            if vector is not None:
                X.append(vector), y.append(int(run.answerable)), g.append(run.article)
            continue
        for j in run.judged:
            vector = run.states.get(f"{place}{j.index}_{layer}")
            if vector is not None:
                X.append(vector), y.append(j.label), g.append(run.article)
    for article, label, vectors in extra:
        if layer in vectors:
            X.append(vectors[layer]), y.append(label), g.append(article)
    return X, y, g


def out_of_fold(X, y, groups, C: float = PROBE_C):
    """Each example's probe logit from a probe fitted without its article (folds by article)."""
    import numpy as np
    from sklearn.model_selection import GroupKFold

    X, y, groups = np.asarray(X), np.asarray(y), np.asarray(groups)
    logits = np.zeros(len(y))
    if len(set(groups)) < 2:  # one article only (a first look): folds of questions instead
        groups = np.arange(len(y)) % 5
    for train, held in GroupKFold(n_splits=min(len(set(groups)), 6)).split(X, y, groups):
        logits[held] = [
            fit_linear(X[train], y[train], [str(i) for i in range(X.shape[1])], C).logit(x) for x in X[held]
        ]
    return logits


def with_probe(runs: list[Run], place: str, layer: int, logit_of) -> None:
    """Set probe_<place> in each judged sentence's values from logit_of(vector) (missing state: 0)."""
    for run in runs:
        if place == "question" and (vector := run.states.get(f"question_{layer}")) is not None:
            run.question_logit = logit_of(vector)
        for j in run.judged:
            key = f"question_{layer}" if place == "question" else f"{place}{j.index}_{layer}"
            vector = run.states.get(key)
            j.values[f"probe_{place}"] = logit_of(vector) if vector is not None else 0.0


def fit_combiner(runs: list[Run], names: list[str]):
    """The combiner over names, and the threshold that maximises the balanced figure on runs."""
    X = [[j.values[n] for n in names] for r in runs for j in r.judged]
    y = [j.label for r in runs for j in r.judged]
    linear = fit_linear(X, y, names)
    return linear, best_threshold(runs, linear)


def best_threshold(runs: list[Run], linear) -> float:
    """The threshold on linear's probability with the best balanced figure on runs."""
    scored = {id(j): linear.probability(j.values) for r in runs for j in r.judged}
    best, chosen = -1.0, 0.5
    for t in sorted({round(v, 3) for v in scored.values()}):
        value = balanced(figures(runs, lambda j, t=t: scored[id(j)] >= t))
        if value > best:
            best, chosen = value, t
    return chosen


# ----- probes --------------------------------------------------------------------------------------------------
def fit_probe(runs: list[Run], place: str, layer: int, extra=()):
    """The probe of place and layer fitted on runs (and extra question states), or None without examples."""
    X, y, _ = probe_examples(runs, place, layer, extra if place == "question" else ())
    if len(set(y)) < 2:
        return None
    return fit_linear(X, y, [], PROBE_C)


def add_probe(dev: list[Run], test: list[Run], place: str, layer: int, extra=()):
    """Give dev runs the probe's out-of-fold logits and test runs the logits of the probe fitted on all dev;
    return that probe (None without examples)."""
    X, y, g = probe_examples(dev, place, layer, extra if place == "question" else ())
    if len(set(y)) < 2:
        return None
    oof = dict(zip(map(id, X), out_of_fold(X, y, g), strict=True))
    with_probe(dev, place, layer, lambda v: oof.get(id(v), 0.0))
    probe = fit_probe(dev, place, layer, extra)
    with_probe(test, place, layer, probe.logit)
    return probe


def early_threshold(runs: list[Run], passes) -> float | None:
    """The highest question-probe probability below which refusing early loses at most EARLY_LOSS of the
    answerable questions runs answer right (None: no threshold loses so little)."""
    import math

    right = [r for r in runs if r.answerable and outcome(r, passes) == "right"]
    p = sorted(1 / (1 + math.exp(-r.question_logit)) for r in right if r.question_logit is not None)
    if not p:
        return None
    k = int(EARLY_LOSS * len(p))
    return round(p[k], 4) if k > 0 else None


# ----- the fit and its report ----------------------------------------------------------------------------------
_DECISIVE = ("unmatched_names", "unmatched_numbers", "negation_mismatch", "antonym")


def policies(model, judgement_alone=None) -> dict:
    """How each compared policy decides a judged sentence (j: Judged), by name. judgement_alone, when given, is
    (Linear over logit_yes only, its threshold): the judgement recalibrated and thresholded the decision's way, to
    show what the other signals add."""
    from assistant.answer.decision import log_odds

    judgement = log_odds(0.64)

    def today(j) -> bool:
        return j.values["logit_yes"] >= judgement

    def fallback(j) -> bool:
        return model.fallback.probability(j.values) >= model.fallback_threshold

    def combined(j) -> bool:
        if not model.probes:
            return fallback(j)
        return model.combiner.probability(j.values) >= model.threshold

    def words_hold(j) -> bool:  # ASSISTANT_QUESTION_WORDS: a decisive word of the question unmatched drops it
        return not any(j.values[k] for k in _DECISIVE)

    alone = {}
    if judgement_alone is not None:
        linear, threshold = judgement_alone
        alone["judgement alone, threshold fitted"] = lambda j: linear.probability(j.values) >= threshold
    return {
        "every judged sentence shown (the generation's ceiling)": lambda j: True,
        "judgement at 0.64 (f8402ed)": today,
        "judgement at 0.64, question words dropping": lambda j: today(j) and words_hold(j),
        **alone,
        "decision without probes": fallback,
        "decision": combined,
        "decision, question words dropping": lambda j: combined(j) and words_hold(j),
    }


def report(model, dev: list[Run], test: list[Run], judgement_alone=None) -> dict:
    """Figures of each policy on dev and on test (with 95 % intervals), and test per article."""
    out = {}
    for name, passes in policies(model, judgement_alone).items():
        entry = {"dev": figures(dev, passes), "test": figures(test, passes)}
        t = entry["test"]
        for key, n in (("answerable_right", t["answerable"]), ("unanswerable_refused", t["unanswerable"])):
            entry["test"][key + "_95"] = interval(t[key], n)
        entry["test"]["false_refusals_95"] = interval(t["false_refusals"], t["answerable"])
        entry["per_article"] = {a: figures([r for r in test if r.article == a], passes) for a in articles(test)}
        out[name] = entry
    return out


def early_figures(model, runs: list[Run]) -> dict | None:
    """What the early refusal does on runs: the unanswerable questions it refuses, the answerable questions the
    decision answered right that it loses, and the seconds it saves (median, over the questions it refuses)."""
    import math
    import statistics

    if model.early is None:
        return None
    passes = policies(model)["decision"]

    def early(run: Run) -> bool:
        return run.question_logit is not None and 1 / (1 + math.exp(-run.question_logit)) < model.early

    refused = [r for r in runs if early(r)]
    right = [r for r in runs if r.answerable and outcome(r, passes) == "right"]
    return {
        "unanswerable_refused_early": sum(not r.answerable for r in refused)
        / max(1, sum(not r.answerable for r in runs)),
        "answerable_right_lost": sum(early(r) for r in right) / max(1, len(right)),
        "seconds_saved_p50": statistics.median([r.after_question for r in refused]) if refused else 0.0,
    }


def aucs(runs: list[Run], linear) -> dict[str, float]:
    """ROC AUC over runs' judged sentences of the judgement's P(yes) and of linear (the decision); on dev the
    decision's is in-sample."""
    from sklearn.metrics import roc_auc_score

    judged = [j for r in runs for j in r.judged]
    labels = [j.label for j in judged]
    return {
        "judgement": round(roc_auc_score(labels, [j.values["logit_yes"] for j in judged]), 3),
        "decision": round(roc_auc_score(labels, [linear.probability(j.values) for j in judged]), 3),
    }


def articles(runs: list[Run]) -> list[str]:
    return sorted({r.article for r in runs})


def split_runs(args, ctx) -> tuple[list[Run], list[Run]]:
    """(dev runs, test runs): from their stores, or with --hold-out, the named articles of the dev store held out
    as the test (a look at the fit while the test articles' runs are still being collected)."""
    dev = load_runs(args.dev, ctx)
    if not args.hold_out:
        return dev, load_runs(args.test, ctx)
    return [r for r in dev if r.article not in args.hold_out], [r for r in dev if r.article in args.hold_out]


def fit(args) -> tuple:
    """Fit probes, combiner and fallback on dev; keep the probes that help on test; return (model, report)."""
    from assistant.answer.decision import SIGNALS, DecisionModel, Probe
    from assistant.index.models import known_sha256
    from assistant.settings import Settings

    ctx = context(args.workdir)
    dev, test = split_runs(args, ctx)
    extra = question_states(args.dev, dev)
    names = [n for n in SIGNALS if n != "logit_claim" or args.claim]
    fallback, fb_threshold = fit_combiner(dev, names)
    probes = []
    for place, layer in args.probes:
        probe = add_probe(dev, test, place, layer, extra)
        if probe is not None:
            probes.append(Probe(place=place, layer=layer, model=probe))
    probe_names = [f"probe_{p.place}" for p in probes]
    combiner, threshold = fit_combiner(dev, names + probe_names) if probes else (fallback, fb_threshold)
    settings = Settings()
    from assistant.index.models import chat_model_file

    model = DecisionModel(
        model_sha256=known_sha256(settings, chat_model_file(settings)) or "unknown",
        fitted_on=articles(dev),
        reported_on=articles(test),
        data=ATTRIBUTION,
        command="python -m benchmarks.decision " + " ".join(args.argv),
        combiner=combiner,
        fallback=fallback,
        threshold=threshold,
        fallback_threshold=fb_threshold,
        probes=probes,
    )
    if any(p.place == "question" for p in probes):
        model.early = early_threshold(dev, policies(model)["decision"])
    figures_ = report(model, dev, test, fit_combiner(dev, ["logit_yes"]))
    figures_["roc_auc"] = {name: aucs(runs, model.combiner) for name, runs in (("dev", dev), ("test", test))}
    figures_["early refusal"] = {"threshold": model.early, "test": early_figures(model, test)}
    decision = figures_["decision"]["test"]
    model.metrics = {k: round(v, 4) for k, v in decision.items() if isinstance(v, float)}
    model.metrics["test_questions"] = float(decision["answerable"] + decision["unanswerable"])
    return model, figures_


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decision", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fit", "report"))
    parser.add_argument("--dev", type=Path, default=DEFAULT_STORE / "dev")
    parser.add_argument("--test", type=Path, default=DEFAULT_STORE / "test")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--hold-out", nargs="*", default=[], help="report on these dev articles instead of --test")
    parser.add_argument("--claim", action="store_true", help="weigh the second judgement framing too")
    parser.add_argument(
        "--probe",
        dest="probes",
        nargs=2,
        action="append",
        default=[],
        metavar=("PLACE", "LAYER"),
        help="a probe to weigh: question|answer|judgement and a layer (repeat for several)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "assistant" / "answer" / "decision.json")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "decision.json")
    args = parser.parse_args(argv)
    args.probes = [(place, int(layer)) for place, layer in args.probes]
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    model, figures_ = fit(args)
    text = json.dumps(figures_, indent=1)
    print(text)
    if args.command == "fit":
        args.out.write_text(model.model_dump_json(indent=1) + "\n", encoding="utf-8")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            json.dumps({"commit": tree_commit(), "command": model.command, "figures": figures_}, indent=1) + "\n"
        )
        say(f"Wrote {args.out} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
