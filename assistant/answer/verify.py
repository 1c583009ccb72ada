"""Verify stage: the judge (judge.py) says whether the cited sentences answer this very question, and the fitted
decision (decision.py), when there is one, weighs that with the other signals."""

from __future__ import annotations

import logging
from dataclasses import replace

from .decision import signals
from .grounding import Support, quotes
from .judge import Verdict
from .parts import Parts, model_failure
from .question_words import Unmatched
from .state import AnswerState

log = logging.getLogger(__name__)


def verify(state: AnswerState, parts: Parts, sentence: str, support: Support, unmatched: Unmatched) -> bool:
    """Ask the judge whether the cited sentences answer this very question, and let the decision weigh that with
    the other signals; record the verdict in the draft."""
    verifier, draft = parts.verifier, state.draft
    if verifier is None:
        return True
    claim = " ".join([*draft.reply.pending, sentence])
    evidence = [parts.doc_text(p.doc_id)[start:end] for p, start, end in quotes(support)]
    context = state.system if parts.verify_with_article else None
    with state.timings.timed("verify"):
        try:
            verdict = verifier.judge(state.judged_question, claim, evidence, context)
            verdict = decide(state, parts, verdict, support, unmatched, evidence, context)
        except Exception as exc:
            raise model_failure(exc, parts.settings) from exc
    draft.verdicts.append(verdict)
    if not verdict.passed and draft.turned_down is None:
        draft.turned_down = quotes(support)[0]
    return verdict.passed


def decide(state: AnswerState, parts: Parts, verdict: Verdict, support: Support, unmatched, evidence, context):
    """The verdict with the decision's signals and states, passed when the fitted decision says so (when there is
    one; else the judgement's threshold stands)."""
    cited = tuple(p.passage_id for p in support.passages)
    states = {"question": state.draft.question_state, "answer": state.draft.sentence_state, "judgement": verdict.states}
    decision = parts.decision
    p_claim = None
    if decision is not None and decision.needs_claim and verdict.source == "logprobs":
        p_claim = parts.fact_checker.judge(state.judged_question, verdict.sentence, evidence, context).p_yes
    retrieved = [(p.passage_id, p.distance) for p in state.found.passages] if state.found else []
    values = signals(state.judged_question, verdict.sentence, verdict.p_yes, unmatched, retrieved, cited, p_claim)
    verdict = replace(verdict, passages=cited, states=states, signals=values)
    if decision is None or verdict.source != "logprobs":
        return verdict
    score, threshold = decision.probability(values, states)
    if score < threshold:
        log.info("Decision: %.3f < %.2f for %r (%r)", score, threshold, verdict.sentence, state.judged_question)
    return replace(verdict, score=score, passed=score >= threshold)
