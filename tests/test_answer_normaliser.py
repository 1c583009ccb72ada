"""One answer normaliser: SQuAD 2.0's, exact, in assistant/eval, used by the eval and the benchmarks alike.

The strings below are where the eval's and the SQuAD benchmark's two normalisers used to disagree: a second
normaliser with either's divergent behaviour, or a benchmark that stops using the package's, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from assistant.eval import fold_answer, normalize_answer, normalize_folded

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "squad", "folded"),
    [
        ("one-eighth (about)", "oneeighth about", "one eighth about"),  # SQuAD joins at a hyphen, the eval splits
        ("Germany's army", "germanys army", "germany army"),  # the eval drops possessives
        ("the dawn of “NATO 3.0,” [1]", "dawn of “nato 30” 1", "dawn of nato 30"),  # curly quotes, markers
        ("Romania’s Miruță", "romania’s miruță", "romania miruta"),  # accents and typographic apostrophes
        ("1562–1598 £5", "1562–1598 £5", "1562 1598 5"),  # en dash and symbols outside ASCII punctuation
    ],
)
def test_the_normaliser_is_squads_and_the_eval_folds_before_it(text, squad, folded):
    assert normalize_answer(text) == squad
    assert normalize_folded(text) == folded == normalize_answer(fold_answer(text))


def test_squad_normalisation_is_the_official_one():
    # evaluate-v2.0.py: lower, drop string.punctuation, drop the whole words a/an/the, collapse white space
    assert normalize_answer("  An apple,  a PEAR;\tthe plum. ") == "apple pear plum"
    assert normalize_answer("theatre and anthem") == "theatre and anthem"
    assert normalize_answer("The Edict of Nantes!") == "edict of nantes"


def test_the_squad_benchmark_scores_with_the_packages_normaliser():
    from benchmarks import squad_scoring

    assert squad_scoring.normalize_answer is normalize_answer


def test_no_second_normaliser_is_defined():
    defined = [
        str(path.relative_to(ROOT))
        for folder in ("assistant", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and "normali" in node.name and "answer" in node.name
    ]
    assert defined == ["assistant/eval/normalise.py"], defined
