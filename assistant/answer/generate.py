"""Generate stage: stream the model's answer, sentence by sentence, each shown once it is checked, verified and
cited (check.py); an early refusal when the question probe says the article does not answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from .check import check
from .reply import complete_sentences, split_answer
from .state import AnswerState, Update

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)

Streamed = Generator[str, None, Update]  # a streaming stage: the checked text as it comes, then its update


def generate(state: AnswerState, parts: Parts) -> Streamed:
    """Stream the model's answer; after a rejected rewrite it reads the last exchange itself."""
    last_exchange = state.turns[-2:] if state.rewrite and state.rewrite.needs_history else []
    question = state.question if last_exchange else state.standalone
    with state.timings.timed("generate"):
        return (yield from write(state, parts, question, last_exchange))


def sentences(state: AnswerState, parts: Parts, question: str, turns: list[dict]) -> Iterator[str]:
    """Stream the model's reply to question, yielding each sentence once it is checked, verified and cited. What
    the checks make of it goes into state.draft, the copy the calling stage returns."""
    draft, prompts = state.draft, parts.prompts
    messages = prompts.answer.format_messages(
        title=state.title, context=state.context, history=prompts.history(turns), question=question
    )
    draft.since = since = time.perf_counter()
    buffer, hidden, read = "", [], 0
    draft.question_state = None
    try:
        for token in parts.tokens(messages, config=state.config, hidden_states=hidden):
            if not token:  # LangChain closes a stream with an empty chunk: no token, no state
                continue
            state.timings.mark("first_token", since)
            read += 1
            if draft.question_state is None and hidden:
                draft.question_state = hidden[0]  # the end of the question: what the model makes of it
                if refuse_early(state, parts):
                    return
            draft.text += token
            done, buffer = complete_sentences(buffer + token)
            for sentence in done:
                # the state after the sentence's last token: the one this token was chosen from
                draft.sentence_state = hidden[read - 1] if len(hidden) >= read else None
                yield from emit(state, parts, sentence)
            if draft.declined:
                return
    finally:
        state.timings.mark("first_token", since)
    draft.sentence_state = hidden[-1] if hidden else None  # after the reply's last token
    for sentence in split_answer(buffer):
        yield from emit(state, parts, sentence)


def refuse_early(state: AnswerState, parts: Parts) -> bool:
    """Stop before the answer when the question probe says the article does not answer (ASSISTANT_EARLY_REFUSAL):
    the refusal then comes without generating or judging, and still quotes the nearest sentence."""
    decision, draft = parts.decision, state.draft
    if not (parts.settings.deciding.early_refusal and decision and decision.refuse_early(draft.question_state)):
        return False
    log.info("Refused early %r: P(answerable) %.2f", state.standalone, decision.answerable(draft.question_state))
    draft.declined = draft.refused_early = True
    return True


def emit(state: AnswerState, parts: Parts, sentence: str) -> Iterator[str]:
    """Show sentence (with any pending ones before it) when it passes every check."""
    marked = check(state, parts, sentence)
    if marked and not state.draft.declined:
        piece = state.draft.reply.add(marked)
        state.timings.mark("first_text", state.draft.since)  # the first checked text a reader sees
        yield piece


def write(state: AnswerState, parts: Parts, question: str, turns: list[dict], update: Update | None = None) -> Streamed:
    """Ask the model for question on state with update applied, into a copy of the draft unless update gives one
    (a restarted draft, to ask again); return update with the draft written."""
    update = update or {}
    writing = state.apply({"draft": state.draft.copy(), **update})
    yield from sentences(writing, parts, question, turns)
    return {**update, "draft": writing.draft}
