"""Answer stage, decision: whether an answer sentence, checked by words and judged by the model, is shown.

One logistic regression over the pipeline's own signals decides, in the manner of Kamath, Jia and Liang (2020),
"Selective Question Answering under Domain Shift": a calibrator fitted on what the system itself saw when it answered
(the judgement's P(yes), the question's words the cited passage lacks, whether the answer is of the kind asked,
how near retrieval found the evidence, and probes of the model's hidden states where they measured better), with
the label "the answer given was right, or the question had no answer". It is fitted on runs of the real pipeline
over SQuAD 2.0's dev articles (`python -m benchmarks.decision`), and its coefficients are a JSON file with a checked
header: the model file it was fitted for, the articles, the test figures and the command. Nothing is fitted here.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ..errors import AssistantError
from ..settings import Settings

log = logging.getLogger(__name__)

PLACES = ("question", "answer", "judgement")  # where a hidden state is read (see generate.sentences and verify.py)
# The signals of one judged sentence, as signals() computes them (a probe adds probe_<place>).
SIGNALS = (
    "logit_yes",  # the judgement's P(yes) (prompts/verify.txt), as log-odds
    "logit_claim",  # P(yes) of the second framing (prompts/entails.txt: does the evidence state the answer?)
    "unmatched_names",  # names the answer takes from the question that the cited passage does not match
    "unmatched_numbers",
    "negation_mismatch",  # a negation in the question or answer that the cited sentences lack, or the reverse
    "antonym",  # a word of the question whose opposite the cited sentences hold instead
    "unmatched_other",  # content words the answer takes from the question that the passage does not match
    "type_fit",  # the answer holds the kind of thing asked for (a time for "when", a quantity for "how long")
    "best_distance",  # retrieval's cosine distance of the best passage
    "cited_rank",  # retrieval's rank of the cited passage (top_k when retrieval did not find it)
    "answer_words",  # the sentence's length in words, log
)
_LOGIT_LIMIT = 8.0
_UNRANKED = 10.0


def log_odds(p: float | None) -> float:
    """log(p / (1 - p)), bounded; 0 (no opinion) when there is no probability."""
    if p is None:
        return 0.0
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-_LOGIT_LIMIT, min(_LOGIT_LIMIT, math.log(p / (1 - p))))


def signals(
    question: str,
    sentence: str,
    p_yes: float | None,
    unmatched,
    retrieved: list[tuple[str, float | None]],
    cited: tuple[str, ...],
    p_claim: float | None = None,
) -> dict[str, float]:
    """Every signal of SIGNALS for one judged sentence: unmatched is question_words.Unmatched, retrieved the
    (passage id, cosine distance) of each retrieved passage, best first, cited the passage ids of its evidence."""
    from ..text import words
    from .grounding import fits_question

    ranks = [i for i, (pid, _) in enumerate(retrieved) if pid in cited]
    distances = [d for _, d in retrieved if d is not None]
    return {
        "logit_yes": log_odds(p_yes),
        "logit_claim": log_odds(p_claim),
        **unmatched.signals(),
        "type_fit": float(fits_question(question, sentence)),
        "best_distance": min(distances) if distances else 1.0,
        "cited_rank": float(min(ranks)) if ranks else _UNRANKED,
        "answer_words": math.log(1 + len(words(sentence))),
    }


class Linear(BaseModel):
    """A logistic regression: weights over (x - mean) / scale, and an intercept. A probe's 1,536 inputs carry no
    means or scales (the standardisation is folded into its weights), which keeps the file small."""

    names: list[str] = Field(description="What each input is, in the order of the weights; empty: a vector (a probe).")
    means: list[float] = Field(default_factory=list, description="Empty: the inputs are used as they are.")
    scales: list[float] = Field(default_factory=list)
    weights: list[float]
    intercept: float

    @model_validator(mode="after")
    def _consistent(self) -> Linear:
        if len(self.means) != len(self.scales) or (self.means and len(self.means) != len(self.weights)):
            raise ValueError("means, scales and weights must be of one length")
        if self.names and len(self.names) != len(self.weights):
            raise ValueError("names and weights must be of one length")
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        return self

    def logit(self, values) -> float:
        """The log-odds for values (a mapping by name, or a sequence in the order of the weights)."""
        import numpy as np

        if isinstance(values, dict):
            values = [values[n] for n in self.names]
        x = np.asarray(values, dtype=np.float64)
        if self.means:
            x = (x - np.asarray(self.means)) / np.asarray(self.scales)
        z = self.intercept + float(x @ np.asarray(self.weights))
        return max(-50.0, min(50.0, z))

    def probability(self, values) -> float:
        return 1 / (1 + math.exp(-self.logit(values)))


class Probe(BaseModel):
    """A probe of one place's hidden state: which layer, and the regression over its vector."""

    place: Literal["question", "answer", "judgement"]
    layer: int
    model: Linear


class DecisionModel(BaseModel):
    """The fitted decision: combiners over the signals (with and without hidden states), the threshold, the
    probes, the early refusal's threshold, and where it all comes from."""

    version: Literal[1] = 1
    model_sha256: str = Field(description="sha256 of the GGUF file the judgements and states were read from.")
    fitted_on: list[str] = Field(description="The articles fitted on (never those reported on).")
    reported_on: list[str] = Field(default_factory=list, description="The held-out articles metrics come from.")
    data: str = Field(description="Where the labelled runs come from, with their licence.")
    command: str = Field(description="The command that wrote this file.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Figures on the test articles.")
    combiner: Linear = Field(description="The decision over every signal, probes included.")
    fallback: Linear = Field(description="The decision without hidden states (a remote server, another model).")
    threshold: float = Field(ge=0.0, le=1.0, description="Probability at or above which a sentence is shown.")
    fallback_threshold: float = Field(ge=0.0, le=1.0)
    probes: list[Probe] = Field(default_factory=list, description="Probes the combiner reads (probe_<place>).")
    early: float | None = Field(
        None, ge=0.0, le=1.0, description="Refuse before generating when the question probe's P is below this."
    )

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({p.layer for p in self.probes}))

    @model_validator(mode="after")
    def _held_out(self) -> DecisionModel:
        if set(self.fitted_on) & set(self.reported_on):
            raise ValueError("an article both fitted on and reported on: its figures would not be held out")
        return self


class DecisionModelError(AssistantError, ValueError):
    """The decision's coefficients file is missing or not what DecisionModel expects."""


def load_decision(path: Path) -> DecisionModel:
    """Read and check a coefficients file; the error says which file and what to do."""
    try:
        return DecisionModel.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DecisionModelError(
            f"Cannot use the decision coefficients {path}: {exc}. Restore the file from the repository, refit it "
            "with python -m benchmarks.decision fit, or set ASSISTANT_DECISION=false."
        ) from exc


class Decision:
    """The fitted decision at run time: a sentence's signals, and its hidden states when the model gives them,
    become the probability that showing it is right."""

    def __init__(self, model: DecisionModel, probes: bool = True):
        self.model = model
        self.probes = {p.place: p for p in model.probes} if probes else {}

    @property
    def needs_claim(self) -> bool:
        """True when the decision weighs the second judgement framing (a second judgement per sentence)."""
        return "logit_claim" in self.model.combiner.names + self.model.fallback.names

    def _probe_logits(self, states: dict | None) -> dict[str, float] | None:
        """probe_<place> for each probe, or None when a state it reads is missing (a remote server)."""
        if not self.probes:
            return None
        out = {}
        for place, probe in self.probes.items():
            vector = ((states or {}).get(place) or {}).get(probe.layer)
            if vector is None:
                return None
            out[f"probe_{place}"] = probe.model.logit(vector)
        return out

    def probability(self, values: dict[str, float], states: dict | None = None) -> tuple[float, float]:
        """(P(showing the sentence is right), the threshold it must reach), from the combiner when every probe's
        state is there, else from the fallback."""
        probed = self._probe_logits(states)
        if probed is not None:
            return self.model.combiner.probability(values | probed), self.model.threshold
        return self.model.fallback.probability(values), self.model.fallback_threshold

    def answerable(self, question_state: dict | None) -> float | None:
        """The question probe's P(the article answers it), or None without that probe or state."""
        probe = self.probes.get("question")
        vector = (question_state or {}).get(probe.layer) if probe else None
        return None if vector is None else probe.model.probability(vector)

    def refuse_early(self, question_state: dict | None) -> bool:
        """True when the question probe says, below the early threshold, that the article does not answer."""
        p = self.answerable(question_state)
        return self.model.early is not None and p is not None and p < self.model.early


def tapped_layers(settings: Settings, model_path: Path | str) -> tuple[int, ...]:
    """The layers whose hidden states the model should hand back: settings' own, or those the decision's probes
    read when the decision file was fitted for this very model file (otherwise none, and the log says why)."""
    if settings.deciding.probe_layers is not None:
        return tuple(settings.deciding.probe_layers)
    if (
        not (settings.deciding.decision and settings.deciding.probes)
        or not Path(settings.deciding.decision_model).is_file()
    ):
        return ()
    try:
        decision = load_decision(settings.deciding.decision_model)
    except DecisionModelError:
        return ()  # loading the assistant reports it
    if not decision.probes:
        return ()
    from ..index.models import known_sha256

    sha = known_sha256(settings, Path(model_path))
    if sha != decision.model_sha256:
        log.warning(
            "Hidden-state probes not used: %s was fitted for the model file with sha256 %s…, and %s is %s.",
            settings.deciding.decision_model,
            decision.model_sha256[:12],
            Path(model_path).name,
            f"{sha[:12]}…" if sha else "not checked (set ASSISTANT_LLM_MODEL_SHA256)",
        )
        return ()
    return decision.layers
