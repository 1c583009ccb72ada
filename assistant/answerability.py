"""Answerability: cheap signals of whether evidence answers a question, and the small fitted model that weighs them.

The judgement's P(yes) alone separates right answers from near misses only so far: a question that swaps one name,
adds a negation or asks for a date the evidence lacks reads, to a small model, much like the true one. The signals
here look at exactly those places, by words, and a logistic regression fitted on labelled SQuAD 2.0 questions
(`python -m benchmarks.answerability`, split by article) weighs them with P(yes). Its coefficients are a JSON file
checked by `VerifierModel`; nothing here is fitted at run time.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from .errors import AssistantError
from .text import content_stem_list, content_stems, entity_words, find_entity, numbers, words

# Each signal, in the order the coefficients list them.
FEATURES = (
    "logit_yes",  # the judgement's P(yes), as log-odds
    "stem_coverage",  # share of the question's content words found in the evidence
    "missing_stems",  # how many of them are not (capped)
    "name_coverage",  # share of the question's names found in the evidence
    "missing_names",  # how many are not (capped)
    "number_missing",  # the question gives a number the evidence lacks
    "negation_mismatch",  # one of them is negated and the other is not
    "type_fit",  # the evidence holds the kind of thing the question asks for (a number, a name, ...)
    "bigram_coverage",  # share of the question's adjacent content-word pairs adjacent in the evidence too
)
_LOGIT_LIMIT = 8.0
_MISSING_CAP = 4
_NEGATIONS = frozenset("not no never none neither nor without cannot n't nobody nothing".split())
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand "
    "million billion first second third half dozen century centuries decade".split()
)
# What a question asks for, by its opening words: a quantity or time, or a name.
_ASKS_NUMBER = re.compile(
    r"\b(how (many|much|long|old|far|large|big|often)|when|what (year|percentage|percent|number|date|century|decade)|"
    r"(which|in what) (year|century|decade))\b",
    re.I,
)
_ASKS_NAME = re.compile(r"\b(who|whom|whose)\b", re.I)


def log_odds(p: float | None) -> float:
    """log(p / (1 - p)), bounded; 0 (no opinion) when there is no probability."""
    if p is None:
        return 0.0
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-_LOGIT_LIMIT, min(_LOGIT_LIMIT, math.log(p / (1 - p))))


def negated(text: str) -> bool:
    """True when text says not, never, no one, without..."""
    return any(w in _NEGATIONS or w.endswith("n't") for w in words(text))


def _has_number(text: str, besides: str) -> bool:
    """Whether text holds a number (digits or a number word) that besides does not."""
    if numbers(text) - numbers(besides):
        return True
    return bool(({w for w in words(text)} & _NUMBER_WORDS) - set(words(besides)))


def type_fit(question: str, evidence: str) -> float:
    """1.0 when the evidence holds what the question's wh-words ask for (a number or time, a name), or asks for
    nothing checkable by words; else 0.0."""
    if _ASKS_NUMBER.search(question):
        return float(_has_number(evidence, question))
    if _ASKS_NAME.search(question):
        asked = {w.casefold() for w in entity_words(question)}
        return float(any(w.casefold() not in asked for w in entity_words(evidence, skip_first=True)))
    return 1.0


def _bigrams(stems: list[str]) -> set[tuple[str, str]]:
    return set(zip(stems, stems[1:], strict=False))


def signals(question: str, evidence: list[str] | str, p_yes: float | None) -> dict[str, float]:
    """Every signal of FEATURES for a question judged against its evidence sentences."""
    text = evidence if isinstance(evidence, str) else " ".join(evidence)
    asked, held = content_stems(question), content_stems(text)
    missing = asked - held
    names = entity_words(question, skip_first=True)
    absent = [n for n in names if not find_entity(n, text)]
    pairs = _bigrams(content_stem_list(question))
    return {
        "logit_yes": log_odds(p_yes),
        "stem_coverage": 1 - len(missing) / len(asked) if asked else 1.0,
        "missing_stems": float(min(len(missing), _MISSING_CAP)),
        "name_coverage": 1 - len(absent) / len(names) if names else 1.0,
        "missing_names": float(min(len(absent), _MISSING_CAP)),
        "number_missing": float(bool(numbers(question) - numbers(text))),
        "negation_mismatch": float(negated(question) != negated(text)),
        "type_fit": type_fit(question, text),
        "bigram_coverage": len(pairs & _bigrams(content_stem_list(text))) / len(pairs) if pairs else 1.0,
    }


class VerifierModel(BaseModel):
    """A fitted logistic regression over the signals: standardised inputs, weights, and the threshold to pass."""

    version: Literal[1] = 1
    features: list[str] = Field(description="Signal names, in the order of means, scales and weights.")
    means: list[float]
    scales: list[float]
    weights: list[float]
    intercept: float
    threshold: float = Field(ge=0.0, le=1.0, description="Probability at or above which a sentence passes.")
    judgement: str = Field(description="The judgement prompt whose P(yes) is logit_yes (a file name in prompts/).")
    fitted_on: list[str] = Field(description="The articles the model was fitted on (never those it reports on).")
    data: str = Field(description="Where the labelled examples come from, with their licence.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Held-out figures, for the record.")

    @model_validator(mode="after")
    def _consistent(self) -> VerifierModel:
        if not (len(self.features) == len(self.means) == len(self.scales) == len(self.weights)):
            raise ValueError("features, means, scales and weights must be of one length")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown signals: {', '.join(sorted(unknown))}")
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        return self

    def probability(self, values: dict[str, float]) -> float:
        """The fitted probability that the evidence answers the question."""
        z = self.intercept + sum(
            w * (values[f] - m) / s
            for f, m, s, w in zip(self.features, self.means, self.scales, self.weights, strict=True)
        )
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, z))))


class VerifierModelError(AssistantError, ValueError):
    """The verifier's coefficients file is missing or not what VerifierModel expects."""


def load_verifier_model(path: Path) -> VerifierModel:
    """Read and check a coefficients file; the error says which file and what to do."""
    try:
        return VerifierModel.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VerifierModelError(
            f"Cannot use the verifier coefficients {path}: {exc}. Restore the file from the repository, refit it "
            "with python -m benchmarks.answerability fit, or set ASSISTANT_VERIFY_LEARNED=false."
        ) from exc
