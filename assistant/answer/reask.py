"""Reask stage: when the answer to the model's rewrite of a follow-up found no support, the model reads the last
exchange itself and answers the question as asked."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .generate import Streamed, write
from .rewrite import with_last_question
from .state import AnswerState

if TYPE_CHECKING:
    from .parts import Parts


def reask(state: AnswerState, parts: Parts) -> Streamed:
    """When the answer to the model's rewrite of a follow-up found no support, let the model read the last exchange
    itself and answer the question as asked.

    A small model's rewrite can carry the answer into the question ("what is her job?" becomes "what is the job of
    the harbour master Anna Berg?"): its answer to that is muddled, and a right one adds nothing the word check
    accepts.
    So the word check now reads the question as asked (with the last one), and the judge still reads the rewrite.
    The names the rewrite gave "he" or "it" must still stand in the passage an answer cites, as if the answer said
    them: a near miss about someone else ("he" said what another person said) fails as it would have.
    """
    draft = state.draft
    if not (state.rewrite and state.rewrite.source == "model") or draft.declined or draft.reply.kept:
        return {}
    if draft.failed_verification:
        return {}  # the judge refused the answer to a clear question: asking again would only blur it
    with state.timings.timed("reask"):
        fallback = with_last_question(state.question, state.turns, parts.settings)
        rewritten = replace(fallback, judged=state.rewrite.question)
        update = {"rewrite": rewritten, "draft": state.draft.restarted()}
        return (yield from write(state, parts, state.question, state.turns[-2:], update))
