"""Collect labelled SQuAD 2.0 (question, evidence) pairs with the judgement's P(yes); score judgement forms on them.

    python -m benchmarks.answerability collect [--per-article 40] [--split all]   # P(yes) from the real model
    python -m benchmarks.answerability forms --split dev [--forms benchmarks/judgement_forms.yaml]

Examples. SQuAD 2.0 gives every answerable question its gold span and every unanswerable one the span a careless
reader gives (`plausible_answers`), each with its offset in the paragraph it was written against. The sentence
holding that span, as the assistant's own loader splits the paragraph, is the evidence a verifier sees when the
answer cites it: for the gold span the evidence answers the question (label 1); for the trap span it is a near miss
(label 0). So (question, evidence, label) triples come from the data without running the pipeline.

collect puts each triple to the chat model with the judgement prompt the assistant uses and stores its P(yes) in
benchmarks/results/answerability.json (resumable: records already there are kept). Per article it takes a seeded
sample of --per-article answerable and as many unanswerable questions (those with a trap span).

forms puts the stored examples of one split to the model again under each judgement form of a YAML file (name:
template), beside prompts/verify.txt, in turn, and reports each form's ROC AUC, its operating point at the settings'
threshold and at its own best threshold, and what one judgement reads: the tokens after those it shares with the
judgement before it (the model keeps that state, so the rest is all it reads), and its time.

The learned verifier once fitted here is gone: on held-out pairs it separated them no better than P(yes) alone. The
decision that replaced it is fitted by `python -m benchmarks.decision`.

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.squad_data import (
    ATTRIBUTION,
    DEFAULT_DATA,
    DEFAULT_WORKDIR,
    SEED,
    load_articles,
    map_paragraphs,
    write_corpus,
)
from benchmarks.squad_engines import short_commit
from benchmarks.squad_run import write_json
from benchmarks.verification import auc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDS = ROOT / "benchmarks" / "results" / "answerability.json"


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


# ----- scores -------------------------------------------------------------------------------------------------------
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
    print(f"{len(records)} examples ({args.split}); threshold {settings.verification.verify_threshold}\n")
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

    templates = {"prompts/verify.txt": (settings.paths.prompts_dir / "verify.txt").read_text(encoding="utf-8")}
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
    from assistant.answer.judge import Verifier
    from assistant.answering import Assistant
    from assistant.llamacpp import prompt_tokens, shared_prefix

    model = Assistant(settings).load().chat_model
    llm = model.load()
    verifiers = {
        name: Verifier(model, text, settings.verification.verify_threshold) for name, text in templates.items()
    }
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
        "at_threshold": operating_point(scores, labels, settings.verification.verify_threshold),
        "best_threshold": best,
        "at_best": operating_point(scores, labels, best),
        "tokens_read_p50": compute_percentile(read, 50),
        "seconds_p50": compute_percentile(seconds, 50),
        "p_yes": [round(v, 5) for v in scores],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answerability", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["collect", "forms"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--per-article", type=int, default=40, help="examples of each label per article")
    parser.add_argument("--forms", type=Path, help="forms: YAML mapping of name to judgement template")
    parser.add_argument(
        "--forms-out", type=Path, default=ROOT / "benchmarks" / "results" / "judgement-forms.json", help="forms: JSON"
    )
    args = parser.parse_args(argv)
    args.workdir = args.workdir.expanduser()
    return {"collect": collect, "forms": forms}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
