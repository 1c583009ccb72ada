"""Retry stage: ask once more, with only the best passages, when the model declined a question retrieval matched
closely or wrote only what no passage holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .gate import reading
from .generate import Streamed, write
from .generation import render_context
from .state import AnswerState

if TYPE_CHECKING:
    from .parts import Parts


def retry(state: AnswerState, parts: Parts) -> Streamed:
    """A small model often reads a short context better: when it declined a question that retrieval matched
    closely, or every sentence it wrote named or counted what no passage holds (a year it made up, where the
    article says "the eighteenth century"), ask once more with only the best passages, and check and verify that
    answer like any other. Not after the judge turned an answer down: asking again would only blur it."""
    s, draft = parts.settings.verification, state.draft  # its own section
    if draft.reply.kept or draft.refused_early or state.found.best_distance > s.retry_distance:
        return {}
    dropped = s.retry_unsupported and draft.text.strip() and not draft.failed_verification
    if not (draft.declined or dropped):
        return {}
    with state.timings.timed("retry"):
        best = state.found.passages[: s.retry_passages]
        update = {**reading(parts, "Articles", render_context(best), best), "draft": state.draft.restarted()}
        return (yield from write(state, parts, state.standalone, [], update))
