"""Which stemmer and stop list the word checks should use, measured on the dev question sets (no model needed).

    python -m benchmarks.words

For every dev case with evidence it measures the share of the question's content words found in its evidence
passage, against the share found in the article's other passages: a wider margin tells the right passage apart
better. It also counts the words of the expected answers that each stop list would throw away, which the grounding
check then could not compare. The library lists are used only when installed (scikit-learn comes with
sentence-transformers; `pip install stop-words` for the other).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from assistant import text
from assistant.eval import load_suite
from assistant.index.corpus import load_passages

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "tests" / "questions.yaml", *sorted((ROOT / "tests" / "data" / "generalization").glob("*/dev.yaml"))]


def cases() -> list[tuple[str, list, list, list[str]]]:
    """(question, evidence passages, the article's other passages, expected answer words) of each dev case."""
    rows = []
    for path in FILES:
        suite = load_suite(path, ROOT / "corpus")
        _, passages = load_passages(suite.corpus or ROOT / "corpus")
        for case in suite.cases:
            ids = {
                p.passage_id
                for e in case.evidence
                for p in passages
                if p.doc_id == e.doc_id and p.start <= e.start < p.end
            }
            inside = [p for p in passages if p.passage_id in ids]
            if not inside:
                continue
            outside = [p for p in passages if p.passage_id not in ids and p.doc_id == inside[0].doc_id]
            answer_words = [
                w for a in case.answers or [] for g in (a if isinstance(a, list) else [a]) for w in text.words(str(g))
            ]
            rows.append((case.question, inside, outside, answer_words))
    return rows


def margin(rows, stem: Callable[[str], str], stop: frozenset[str]) -> tuple[float, float]:
    """Mean share of question words in the evidence passage, and in the other passages."""

    def stems(t: str) -> set[str]:
        return {stem(w) for w in text.words(t) if w not in stop and (len(w) > 1 or w.isdigit())}

    hit, miss = [], []
    for question, inside, outside, _ in rows:
        q = stems(question)
        if q:
            hit.append(len(q & set().union(*(stems(p.text) for p in inside))) / len(q))
            miss.append(statistics.mean(len(q & stems(p.text)) / len(q) for p in outside) if outside else 0.0)
    return statistics.mean(hit), statistics.mean(miss)


def stop_lists() -> dict[str, frozenset[str]]:
    lists = {f"hand-written ({len(text.STOPWORDS)})": text.STOPWORDS}
    try:
        from sklearn.feature_extraction._stop_words import ENGLISH_STOP_WORDS

        lists[f"scikit-learn ({len(ENGLISH_STOP_WORDS)})"] = frozenset(ENGLISH_STOP_WORDS)
    except ImportError:
        pass
    try:
        from stop_words import get_stop_words

        words = frozenset(get_stop_words("en"))
        lists[f"stop-words package ({len(words)})"] = words
    except ImportError:
        pass
    return lists


def main() -> None:
    rows = cases()
    print(f"{len(rows)} dev cases with evidence, from {len(FILES)} files\n")
    print("| stemmer (hand-written stop list) | in evidence | elsewhere | margin |\n|---|---|---|---|")
    import snowballstemmer

    snowball = snowballstemmer.stemmer("english").stemWord
    for name, stem in (
        ("none", lambda w: w),
        ("Snowball (Porter2), used", lambda w: w if w[:1].isdigit() else snowball(w)),
    ):
        inside, outside = margin(rows, stem, text.STOPWORDS)
        print(f"| {name} | {inside:.3f} | {outside:.3f} | {inside - outside:.3f} |")
    print("\n| stop list (Snowball stems) | margin | expected-answer words dropped |\n|---|---|---|")
    answer_words = [w for *_, words in rows for w in words]
    for name, stop in stop_lists().items():
        inside, outside = margin(rows, text.stem, stop)
        dropped = sum(w in stop for w in answer_words)
        print(f"| {name} | {inside - outside:.3f} | {dropped}/{len(answer_words)} |")


if __name__ == "__main__":
    main()
