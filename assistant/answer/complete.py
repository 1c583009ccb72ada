"""Complete stage: a small model tends to stop after the first of two asked-for things; ask it once for the rest."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..text import entity_words, find_entity
from .generate import Streamed, emit
from .grounding import quotes
from .guard import asks_for_several
from .reply import clean_sentence, is_decline, split_answer
from .state import AnswerState

if TYPE_CHECKING:
    from .parts import Parts


def complete(state: AnswerState, parts: Parts) -> Streamed:
    """A small model tends to stop after the first of two asked-for things: ask it once for the rest."""
    if not parts.settings.retrieval.grounding_check or state.draft.declined or len(state.draft.reply.kept) != 1:
        return {}
    if not asks_for_several(state.standalone):
        return {}
    writing = state.apply({"draft": state.draft.copy()})
    with state.timings.timed("complete"):
        writing.draft.since = time.perf_counter()
        for sentence in the_rest(writing, parts):
            yield from emit(writing, parts, sentence)
    return {"draft": writing.draft}


def the_rest(state: AnswerState, parts: Parts) -> list[str]:
    """Ask for what the first answer left out; return the sentences worth checking (at most one).

    Only a sentence about what the question names, backed by text the first answer did not cite, is kept.
    """
    reply = state.draft.reply
    turns = [{"role": "user", "content": state.standalone}, {"role": "assistant", "content": reply.kept[0]}]
    messages = parts.prompts.more.format_messages(
        title=state.title, context=state.context, history=parts.prompts.history(turns)
    )
    written = "".join(parts.tokens(messages, config=state.config))
    names = entity_words(state.standalone, skip_first=True)
    cited = [(c.doc_id, c.start, c.end) for c in reply.citations]
    for sentence in split_answer(written)[: parts.settings.generation.rest_sentences]:
        sentence = clean_sentence(sentence)
        if not sentence or is_decline(sentence) or (names and not any(find_entity(n, sentence) for n in names)):
            continue
        support = parts.grounder.support(sentence, state.candidates, state.standalone)
        if support is None or any(
            p.doc_id == doc and s < end and start < e for p, s, e in quotes(support) for doc, start, end in cited
        ):
            continue  # unsupported, or the first answer's fact again in other words
        return [sentence]
    return []
