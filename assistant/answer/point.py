"""Point stage: a refusal quotes the article's sentence nearest to what was asked, as data beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cite import Citation
from .grounding import closest_sentence
from .state import AnswerState, Update

if TYPE_CHECKING:
    from .parts import Parts


def point(state: AnswerState, parts: Parts) -> Update:
    """With a refusal, quote the article's sentence nearest to what was asked, as data beside the refusal: a near
    miss then shows what the article does say, and a false refusal the passage that holds the answer.

    The sentence the judge turned down comes first (it is what the question nearly matched); otherwise the best
    retrieved passage's sentence sharing most words with the question. It is quoted verbatim, never rewritten.
    """
    s = parts.settings.verification  # its own section
    if state.reason not in ("not_in_article", "unsupported", "unverified") or not s.point_to_closest:
        return {}
    nearest = state.draft.turned_down  # it held the answer's words: near enough at any retrieval distance
    found = state.found
    if nearest is None and found and found.passages and found.best_distance <= s.closest_max_distance:
        nearest = closest_sentence(found.passages[: s.closest_passages], state.standalone, s.closest_min_words)
    if nearest is None:
        return {}
    passage, start, end = nearest
    return {"closest": Citation.of(passage, 1, start, end, parts.doc_text(passage.doc_id))}
