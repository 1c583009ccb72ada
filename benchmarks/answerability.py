"""Fit and measure the learned verifier on labelled SQuAD 2.0 questions, split by article.

    python -m benchmarks.answerability collect [--per-article 40] [--split all]   # P(yes) from the real model
    python -m benchmarks.answerability fit [--out assistant/verifier.json]       # fit on dev, report on test
    python -m benchmarks.answerability forms --split dev [--forms benchmarks/judgement_forms.yaml]

Examples. SQuAD 2.0 gives every answerable question its gold span and every unanswerable one the span a careless
reader gives (`plausible_answers`), each with its offset in the paragraph it was written against. The sentence
holding that span, as the assistant's own loader splits the paragraph, is the evidence a verifier sees when the
answer cites it: for the gold span the evidence answers the question (label 1); for the trap span it is a near miss
(label 0). So (question, evidence, label) triples come from the data without running the pipeline.

collect puts each triple to the chat model with the judgement prompt the assistant uses and stores its P(yes) in
benchmarks/results/answerability.json (resumable: records already there are kept). Per article it takes a seeded
sample of --per-article answerable and as many unanswerable questions (those with a trap span).

fit computes the signals of assistant/answerability.py for every record, fits a logistic regression (scikit-learn,
standardised inputs) on the dev articles only, picks the threshold that maximises balanced accuracy on dev, and
reports ROC AUC and the operating point on the test articles beside today's single judgement (P(yes) at the
settings' threshold). It writes the coefficients (a few hundred bytes of JSON) and a section of BENCHMARKS.md.

forms puts the stored examples of one split to the model again under each judgement form of a YAML file (name:
template), beside prompts/verify.txt, in turn, and reports each form's ROC AUC, its operating point at the settings'
threshold and at its own best threshold, and what one judgement reads: the tokens after those it shares with the
judgement before it (the model keeps that state, so the rest is all it reads), and its time.

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.report import write_section
from benchmarks.squad import (
    ATTRIBUTION,
    DEFAULT_DATA,
    DEFAULT_WORKDIR,
    SEED,
    load_articles,
    map_paragraphs,
    short_commit,
    write_corpus,
    write_json,
)
from benchmarks.verification import auc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDS = ROOT / "benchmarks" / "results" / "answerability.json"
DEFAULT_MODEL = ROOT / "assistant" / "verifier.json"
SECTION_START, SECTION_END = "## Answerability: the learned verifier on SQuAD 2.0", "<!-- answerability:end -->"


# ----- examples -----------------------------------------------------------------------------------------------------
def sentence_around(passage, doc: str, offset: int) -> str:
    """The sentence of passage (as the loader split it) that holds the paragraph offset."""
    at = passage.start + offset
    for start, end in passage.sentences or [(passage.start, passage.end)]:
        if start <= at < end:
            return doc[start:end].strip()
    return passage.text


def span_offset(paragraph: str, span: dict) -> int | None:
    """Where the span's text is in the paragraph: at its recorded offset, or its nearest occurrence."""
    text, at = span["text"], span["answer_start"]
    if paragraph[at : at + len(text)] == text:
        return at
    hits = [i for i in range(len(paragraph)) if paragraph.startswith(text, i)]
    return min(hits, key=lambda i: abs(i - at)) if hits else None


def examples(articles, corpus_dir: Path, per_article: int) -> list[dict]:
    """Seeded (question, evidence sentence, label) examples of every article: per_article of each label."""
    passages = map_paragraphs(articles, corpus_dir)
    out = []
    for article in articles:
        doc = (corpus_dir / f"{article.slug}.txt").read_text(encoding="utf-8")
        kinds = {1: [], 0: []}
        for j, qa in sorted(article.qas, key=lambda t: t[1]["id"]):
            label = 0 if qa.get("is_impossible") else 1
            spans = qa.get("plausible_answers") if label == 0 else qa.get("answers")
            offset = span_offset(article.paragraphs[j], spans[0]) if spans else None
            if offset is None:
                continue
            evidence = sentence_around(passages[article.slug][j], doc, offset)
            kinds[label].append(
                {
                    "id": qa["id"],
                    "article": article.slug,
                    "split": article.split,
                    "label": label,
                    "question": qa["question"],
                    "span": spans[0]["text"],
                    "evidence": evidence,
                }
            )
        for label, pool in kinds.items():
            random.Random(f"{SEED}:answerability:{article.slug}:{label}").shuffle(pool)
            out += pool[:per_article]
    return out


# ----- collect ------------------------------------------------------------------------------------------------------
def load_records(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["records"] if path.is_file() else []


def collect(args) -> int:
    """Judge every example not yet in the records file with the real model; save as it goes."""
    from assistant.answering import Assistant
    from assistant.settings import Settings

    every = load_articles(args.data)
    corpus_dir = args.workdir / "corpus"
    write_corpus(every, corpus_dir)  # all twelve, as benchmarks.squad writes it, so the folder stays shared
    wanted = examples([a for a in every if args.split in ("all", a.split)], corpus_dir, args.per_article)
    records = load_records(args.records)
    done = {r["id"] for r in records}
    todo = [e for e in wanted if e["id"] not in done]
    print(f"{len(wanted)} examples, {len(todo)} to judge", file=sys.stderr)
    verifier = Assistant(Settings()).parts.verifier
    started = time.perf_counter()
    for i, example in enumerate(todo, 1):
        messages = verifier.messages(example["question"], example["span"], [example["evidence"]])
        t = time.perf_counter()
        p_yes, _ = verifier.probability(messages)
        records.append({**example, "p_yes": round(p_yes, 5), "seconds": round(time.perf_counter() - t, 2)})
        if i % 10 == 0 or i == len(todo):
            write_json({"data": ATTRIBUTION, "records": records}, args.records)
            print(f"  {i}/{len(todo)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


# ----- fit ----------------------------------------------------------------------------------------------------------
def matrix(records: list[dict], features: tuple[str, ...]) -> list[list[float]]:
    from assistant.answerability import signals

    rows = []
    for r in records:
        values = signals(r["question"], [r["evidence"]], r["p_yes"])
        rows.append([values[f] for f in features])
    return rows


def operating_point(scores: list[float], labels: list[int], threshold: float) -> dict:
    """Share of answerable examples passed and of near misses refused at threshold."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    passed = sum(s >= threshold for s in pos) / len(pos) if pos else float("nan")
    refused = sum(s < threshold for s in neg) / len(neg) if neg else float("nan")
    return {"passed": passed, "refused": refused, "balanced": (passed + refused) / 2}


def best_threshold(scores: list[float], labels: list[int]) -> float:
    """The threshold of highest balanced accuracy, half-way down to the next lower score (so a rounded threshold
    and unseen scores near the edge fall on the side the data put them)."""
    candidates = sorted(set(scores))
    best = max(candidates, key=lambda t: (operating_point(scores, labels, t)["balanced"], -t))
    below = [c for c in candidates if c < best]
    return (best + below[-1]) / 2 if below else best


def separation(scores: list[float], labels: list[int]) -> float:
    return auc(
        [s for s, y in zip(scores, labels, strict=True) if y], [s for s, y in zip(scores, labels, strict=True) if not y]
    )


def fit_model(records: list[dict], judgement: str, regularisation: float = 1.0, features: tuple[str, ...] = ()):
    """Fit the logistic regression on records (over features, default all); return the VerifierModel, its threshold
    chosen on the same records."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from assistant.answerability import FEATURES, VerifierModel

    features = features or FEATURES
    x, y = matrix(records, features), [r["label"] for r in records]
    scaler = StandardScaler().fit(x)
    scales = [float(s) if s > 0 else 1.0 for s in scaler.scale_]
    model = LogisticRegression(C=regularisation, max_iter=1000).fit(scaler.transform(x), y)
    fitted = VerifierModel(
        features=list(features),
        means=[float(m) for m in scaler.mean_],
        scales=scales,
        weights=[float(w) for w in model.coef_[0]],
        intercept=float(model.intercept_[0]),
        threshold=0.5,
        judgement=judgement,
        fitted_on=sorted({r["article"] for r in records}),
        data=ATTRIBUTION,
    )
    scores = [fitted.probability(dict(zip(features, row, strict=True))) for row in x]
    return fitted.model_copy(update={"threshold": round(best_threshold(scores, y), 4)})


def scored(model, records: list[dict]) -> list[float]:
    features = tuple(model.features)
    return [model.probability(dict(zip(features, row, strict=True))) for row in matrix(records, features)]


def evaluate(model, records: list[dict], judge_threshold: float, words_only=None) -> dict:
    """Held-out figures of the fitted model beside the single judgement's (and a model without P(yes), if given)."""
    labels = [r["label"] for r in records]
    p_yes = [r["p_yes"] for r in records]
    fitted = scored(model, records)
    return {
        "examples": len(records),
        "answerable": sum(labels),
        "auc_judgement": separation(p_yes, labels),
        "auc_learned": separation(fitted, labels),
        "auc_words_only": separation(scored(words_only, records), labels) if words_only else float("nan"),
        "judgement": operating_point(p_yes, labels, judge_threshold),
        "learned": operating_point(fitted, labels, model.threshold),
    }


def fit(args) -> int:
    from assistant.settings import Settings

    records = load_records(args.records)
    dev = [r for r in records if r["split"] == "dev"]
    test = [r for r in records if r["split"] == "test"]
    if not dev or not test:
        print("Collect examples of both splits first: python -m benchmarks.answerability collect", file=sys.stderr)
        return 1
    from assistant.answerability import FEATURES

    model = fit_model(dev, "verify.txt", args.regularisation)
    words = fit_model(dev, "verify.txt", args.regularisation, tuple(f for f in FEATURES if f != "logit_yes"))
    threshold = Settings().verify_threshold

    def figures(subset: list[dict]) -> dict:
        return evaluate(model, subset, threshold, words)

    articles = sorted({r["article"] for r in test})
    per_article = {a: figures([r for r in test if r["article"] == a]) for a in articles}
    result = {"dev": figures(dev), "test": figures(test), "per_article": per_article}
    model = model.model_copy(
        update={
            "metrics": {
                "test_auc": round(result["test"]["auc_learned"], 4),
                "test_auc_judgement": round(result["test"]["auc_judgement"], 4),
            }
        }
    )
    args.out.write_text(model.model_dump_json(indent=1) + "\n", encoding="utf-8")
    command = "python -m benchmarks.answerability fit" + (
        f" --regularisation {args.regularisation}" if args.regularisation != 1.0 else ""
    )
    report = render(model, result, threshold, command)
    print(report)
    if not args.no_markdown:
        write_section(report, ROOT / "BENCHMARKS.md", SECTION_START, SECTION_END)
    return 0


def render(model, result: dict, threshold: float, command: str) -> str:
    """BENCHMARKS.md's section: held-out separation and operating points, overall and per test article."""
    head = [
        SECTION_START,
        "",
        "Labelled (question, evidence sentence) pairs from SQuAD 2.0: an answerable question with the sentence that "
        "holds its gold span (should pass), an adversarial unanswerable one with the sentence that holds its trap "
        "span (should be refused). The logistic regression over P(yes) and the word signals of "
        "`assistant/answerability.py` is fitted on the dev articles only; its threshold maximises balanced "
        f"accuracy on dev. The single judgement is P(yes) at the settings' threshold ({threshold}). Words only: the "
        "same regression without P(yes), i.e. what the word signals separate without the model's judgement.",
        "",
        f"Commit: `{short_commit()}`. Date: {datetime.date.today().isoformat()}. Command: `{command}` (after "
        "`python -m benchmarks.answerability collect`). Fitted on: " + ", ".join(model.fitted_on) + ".",
        "",
        "| articles | examples (answerable) | ROC AUC, judgement | ROC AUC, learned | ROC AUC, words only | "
        "judgement: passed / refused | learned: passed / refused |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("dev (fitted on)", result["dev"]), ("**test**", result["test"])] + list(result["per_article"].items())
    for name, r in rows:
        j, lr = r["judgement"], r["learned"]
        head.append(
            f"| {name} | {r['examples']} ({r['answerable']}) | {r['auc_judgement']:.3f} | {r['auc_learned']:.3f} | "
            f"{r['auc_words_only']:.3f} | "
            f"{j['passed']:.2f} / {j['refused']:.2f} | {lr['passed']:.2f} / {lr['refused']:.2f} |"
        )
    weights = ", ".join(f"{f} {w:+.2f}" for f, w in zip(model.features, model.weights, strict=True))
    head += ["", f"Weights (per standard deviation): {weights}; threshold {model.threshold}.", ""]
    head += [f"Data: {ATTRIBUTION}", "", SECTION_END]
    return "\n".join(head)


# ----- forms --------------------------------------------------------------------------------------------------------
def forms(args) -> int:
    """Score every judgement form on the stored examples of --split, forms in turn per example; print and save."""
    from assistant.settings import Settings

    settings = Settings()
    templates = form_templates(settings, args.forms)
    records = sample_records(load_records(args.records), args.split, args.per_article)
    judged = judge_forms(settings, templates, records)
    labels = [r["label"] for r in records]
    result = {
        "command": "python -m benchmarks.answerability " + " ".join(sys.argv[1:]),
        "commit": short_commit(),
        "split": args.split,
        "examples": len(records),
        "forms": {name: form_figures(templates[name], *judged[name], labels, settings) for name in templates},
    }
    print(f"{len(records)} examples ({args.split}); threshold {settings.verify_threshold}\n")
    print(
        "| form | ROC AUC | passed / refused at threshold | best threshold | passed / refused there | tokens read p50 | seconds p50 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, f in result["forms"].items():
        at, there = f["at_threshold"], f["at_best"]
        print(
            f"| {name} | {f['auc']:.3f} | {at['passed']:.2f} / {at['refused']:.2f} | {f['best_threshold']:.2f} | "
            f"{there['passed']:.2f} / {there['refused']:.2f} | {f['tokens_read_p50']:.0f} | {f['seconds_p50']:.2f} s |"
        )
    write_json(result, args.forms_out)
    return 0


def form_templates(settings, path: Path | None) -> dict[str, str]:
    """prompts/verify.txt, then each form of the YAML file at path that is not the same text."""
    import yaml

    templates = {"prompts/verify.txt": (settings.prompts_dir / "verify.txt").read_text(encoding="utf-8")}
    for name, text in (yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}).items():
        if text.strip() not in (t.strip() for t in templates.values()):
            templates[name] = text
    return templates


def sample_records(records: list[dict], split: str, per_article: int) -> list[dict]:
    """The first per_article records of each label of each article of split, in stored order."""
    taken, chosen = Counter(), []
    for r in records:
        if split in ("all", r["split"]) and taken[r["article"], r["label"]] < per_article:
            taken[r["article"], r["label"]] += 1
            chosen.append(r)
    return chosen


def judge_forms(settings, templates: dict[str, str], records: list[dict]) -> dict[str, tuple[list, list, list]]:
    """Per form: P(yes) of every record, the tokens each judgement reads after those it shares with the form's
    judgement before it, and the seconds each takes."""
    from assistant.answering import Assistant
    from assistant.llamacpp import prompt_tokens, shared_prefix
    from assistant.verify import Verifier

    model = Assistant(settings).load().chat_model
    llm = model.load()
    verifiers = {name: Verifier(model, text, settings.verify_threshold) for name, text in templates.items()}
    judged = {name: ([], [], []) for name in verifiers}
    last: dict[str, list[int]] = {name: [] for name in verifiers}
    for i, r in enumerate(records, 1):
        for name, verifier in verifiers.items():
            scores, read, seconds = judged[name]
            messages = verifier.messages(r["question"], r["span"], [r["evidence"]])
            tokens = prompt_tokens(llm, model._as_dicts(messages))
            read.append(len(tokens) - len(shared_prefix(last[name], tokens)))
            last[name] = tokens
            t = time.perf_counter()
            scores.append(verifier.probability(messages)[0])
            seconds.append(time.perf_counter() - t)
        if i % 20 == 0:
            print(f"  {i}/{len(records)}", file=sys.stderr)
    return judged


def form_figures(template: str, scores: list, read: list, seconds: list, labels: list[int], settings) -> dict:
    """One form's separation, its operating points at the settings' threshold and at its best, and its cost."""
    from assistant.eval import compute_percentile

    best = best_threshold(scores, labels)
    return {
        "template": template,
        "auc": separation(scores, labels),
        "at_threshold": operating_point(scores, labels, settings.verify_threshold),
        "best_threshold": best,
        "at_best": operating_point(scores, labels, best),
        "tokens_read_p50": compute_percentile(read, 50),
        "seconds_p50": compute_percentile(seconds, 50),
        "p_yes": [round(v, 5) for v in scores],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answerability", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["collect", "fit", "forms"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--per-article", type=int, default=40, help="examples of each label per article")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="where fit writes the coefficients")
    parser.add_argument("--regularisation", type=float, default=1.0, help="scikit-learn's C (smaller: stronger)")
    parser.add_argument("--no-markdown", action="store_true", help="fit: do not rewrite BENCHMARKS.md's section")
    parser.add_argument("--forms", type=Path, help="forms: YAML mapping of name to judgement template")
    parser.add_argument(
        "--forms-out", type=Path, default=ROOT / "benchmarks" / "results" / "judgement-forms.json", help="forms: JSON"
    )
    args = parser.parse_args(argv)
    args.workdir = args.workdir.expanduser()
    return {"collect": collect, "fit": fit, "forms": forms}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
