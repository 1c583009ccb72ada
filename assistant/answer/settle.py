"""Settle stage: the kept sentences become the answer, or the answer is a refusal that says why."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .grounding import fits_question
from .state import NOT_IN_ARTICLE, AnswerState, Update, ending

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)


def settle(state: AnswerState, parts: Parts) -> Update:
    """Decide the outcome: the kept sentences as the answer, or a refusal that says why."""
    draft = state.draft
    kept = draft.reply.kept
    fits = not (parts.settings.retrieval.grounding_check and kept) or fits_question(state.standalone, draft.reply.text)
    if not fits:
        log.info("Answer %r does not fit the question %r", kept, state.standalone)
    if draft.declined or not kept or not fits:
        reason = "not_in_article" if draft.declined else "unverified" if draft.failed_verification else "unsupported"
        return ending(reason, NOT_IN_ARTICLE)
    return ending("answered", draft.reply.text)
