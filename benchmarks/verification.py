"""Measure how well forms of the verification judgement separate right answers from near-miss ones (dev split only).

python -m benchmarks.verification                     # every dev split under tests/data/generalization
python -m benchmarks.verification --forms FILE.yaml   # other judgement prompts (name: template) to compare

Each dev case is answered once with verification on but a threshold of 0, so every checked sentence is kept and
recorded with its question, its evidence sentences and the system prompt it was answered under. Every form is then
put to the model on those same records. A record is positive when its case is answerable and the answer was
accepted, negative when the case must be refused. The report gives, per form, the mean P(yes) of each side, the
ROC AUC, the best threshold on these records and what it would refuse, and the judgement's own time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERALIZATION = ROOT / "tests" / "data" / "generalization"


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def collect(case_files: list[Path]) -> tuple[list[dict], object]:
    """Answer every case of case_files (threshold 0); return one record per checked sentence, and the chat model."""
    from assistant.eval import for_suite, load_suite, score_case, warmed
    from assistant.settings import Settings

    base = Settings(verify_threshold=0.0)
    records, bot = [], None
    for path in case_files:
        suite = load_suite(path, base.paths.corpus_dir)
        settings = for_suite(base, suite)
        bot = warmed(settings, bot)
        texts = {d.doc_id: d.text for d in bot.documents}
        for case in suite.cases:
            answer = bot.answer(case.question, list(case.history) or None)
            result = score_case(case, answer, texts, settings.retrieval.top_k)
            label = 0 if case.must_refuse else (1 if result.answer_ok else None)
            system = bot.view().system
            for verdict in answer.verdicts:
                records.append(
                    {
                        "case": case.id,
                        "tags": list(case.tags),
                        "label": label,
                        "question": answer.standalone_question,
                        "sentence": verdict.sentence,
                        "evidence": list(verdict.evidence),
                        "system": system,
                        "p_yes": verdict.p_yes,
                    }
                )
            print(f"{case.id}: {answer.text[:90]!r} {[v.p_yes for v in answer.verdicts]}", file=sys.stderr)
    return records, bot.chat_model


def missing_terms(question: str, evidence: list[str]) -> str:
    """The question's content words and names that the evidence does not use, for forms that point at them."""
    from assistant.text import content_stems, words

    said = content_stems(" ".join(evidence))
    missing = [w for w in dict.fromkeys(words(question)) if content_stems(w) and not content_stems(w) & said]
    return ", ".join(missing) or "none"


def score_form(model, template: str, records: list[dict], with_article: bool = True) -> dict:
    """P(yes) of every labelled record under template, and the separation figures.

    with_article=False sends the judgement without the article's system prompt (to measure what it adds).
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    from assistant.answer.judge import Verifier
    from assistant.eval import compute_percentile

    verifier = Verifier(model, template, threshold=0.5)
    scored, seconds = [], []
    for r in sorted((r for r in records if r["label"] is not None), key=lambda r: r["system"]):
        t = time.perf_counter()
        prompt = template.format(
            evidence="\n".join(f"- {e}" for e in r["evidence"]),
            question=r["question"],
            answer=r["sentence"],
            missing=missing_terms(r["question"], r["evidence"]),
        )
        messages = [SystemMessage(r["system"]), HumanMessage(prompt)] if with_article else [HumanMessage(prompt)]
        p, _ = verifier.probability(messages)
        seconds.append(time.perf_counter() - t)
        scored.append((r, p))
    positive = [p for r, p in scored if r["label"] == 1]
    negative = [p for r, p in scored if r["label"] == 0]
    best = max(
        (t / 100 for t in range(1, 100)),
        key=lambda thr: (sum(p >= thr for p in positive) + sum(p < thr for p in negative), -abs(thr - 0.5)),
    )
    return {
        "auc": auc(positive, negative),
        "mean_yes_right": statistics.mean(positive) if positive else None,
        "mean_yes_near_miss": statistics.mean(negative) if negative else None,
        "best_threshold": best,
        "kept_right": sum(p >= best for p in positive) / max(1, len(positive)),
        "refused_near_miss": sum(p < best for p in negative) / max(1, len(negative)),
        "p50_seconds": compute_percentile(seconds, 50),
        "n": (len(positive), len(negative)),
        "scores": [(r["case"], r["label"], round(p, 4)) for r, p in scored],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verification", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--forms",
        type=Path,
        help="YAML mapping of form name to judgement template ({evidence}, {question}, {answer}, {missing}); "
        "a name starting 'bare:' is judged without the article's system prompt",
    )
    parser.add_argument("--only-forms", action="store_true", help="leave out prompts/verify.txt")
    parser.add_argument("--records", type=Path, help="reuse the records of an earlier run (JSON) instead of answering")
    parser.add_argument("--out", type=Path, default=Path("verification-forms.json"), help="where to write the figures")
    args = parser.parse_args()

    import logging

    import yaml

    logging.disable(logging.WARNING)
    from assistant.answer.generation import build_chat_model, load_prompt
    from assistant.settings import Settings

    forms = {} if args.only_forms else {"prompts/verify.txt": load_prompt(Settings().paths.prompts_dir, "verify")}
    if args.forms:
        forms.update(yaml.safe_load(args.forms.read_text(encoding="utf-8")))
    if args.records:
        records = json.loads(args.records.read_text(encoding="utf-8"))
        model = build_chat_model(Settings())
    else:
        records, model = collect(sorted(GENERALIZATION.glob("*/dev.yaml")))
        args.out.with_suffix(".records.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    results = {
        name: score_form(model, template, records, with_article=not name.startswith("bare:"))
        for name, template in forms.items()
    }
    print(
        f"{'form':<28} {'AUC':>5} {'P(yes) right':>12} {'near-miss':>9} {'thr':>5} {'kept':>5} {'refused':>7} {'p50 s':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:<28} {r['auc']:5.2f} {r['mean_yes_right']:12.2f} {r['mean_yes_near_miss']:9.2f} "
            f"{r['best_threshold']:5.2f} {r['kept_right']:5.2f} {r['refused_near_miss']:7.2f} {r['p50_seconds']:6.2f}"
        )
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
