"""Gate stage: refuse a question far from every passage; otherwise choose what the model reads, the article's whole
text (read once, see reading/reader.py) or the retrieved passages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..index.corpus import Passage
from .generation import bounded_context, system_prompt
from .state import NOT_IN_ARTICLE, AnswerState, Update, ending

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)


def gate(state: AnswerState, parts: Parts) -> Update:
    """Refuse a question far from every passage; otherwise choose what the model reads.

    A word the article lacks is no reason to refuse (the user may name a place or a body in other words): only a
    question unrelated to every passage is refused here, and verification by meaning decides what an answer may say.
    """
    s, figures = parts.settings, state.found.gate
    if (
        s.retrieval.grounding_check
        and figures.best_distance > s.retrieval.max_distance
        and figures.lexical_overlap < s.retrieval.min_lexical_overlap
    ):
        log.info("Refused %r: best distance %.2f", state.standalone, figures.best_distance)
        return ending("not_in_article", NOT_IN_ARTICLE)
    if state.view.system is not None and not parts.reader.ready(state.view):
        with state.timings.timed("read"):  # a short text is read now; a long one in the background meanwhile
            parts.reader.read(state.view, wait=False)
    if (whole := parts.reader.whole_view(state.view, state.found.passages, parts.views.view)) is not None:
        return reading(parts, whole.title, whole.context, retrieved_first(whole.passages, state.found.passages))
    passages = state.found.passages
    return reading(parts, "Articles", bounded_context(passages, state.standalone, s), passages)


def retrieved_first(passages: list[Passage], found: list[Passage]) -> list[Passage]:
    """The passages a sentence may cite, those retrieval found first, each group in article order.

    Of two paragraphs supporting a sentence alike, the earlier is cited (a news lede states the facts later
    paragraphs repeat; retrieval's own ranking cost the generalization set citation precision). But a Wikipedia
    lede that only names the answer is not where the question was answered: the paragraph retrieval found is.
    """
    near = {p.passage_id for p in found}
    return sorted(passages, key=lambda p: p.passage_id not in near)  # stable: article order within each group


def reading(parts: Parts, title: str, context: str, candidates: list[Passage]) -> Update:
    """What the model reads and what its sentences may cite."""
    system = system_prompt(parts.prompts, title, context)
    return {"title": title, "context": context, "candidates": candidates, "system": system}
