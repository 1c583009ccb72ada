"""Check stage: an answer sentence is shown only when the passages' words support it (grounding.py), it holds to
the question's own words (question_words.py) and the judge passes it by meaning (verify.py); then it is cited.
What each check finds goes into state.draft, the streaming stage's own copy."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from .grounding import Support, quotes
from .question_words import Unmatched
from .reply import clean_sentence, is_decline
from .state import AnswerState
from .verify import verify

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)


def check(state: AnswerState, parts: Parts, sentence: str) -> str | None:
    """The sentence with its citation markers when the passages support it and it passes verification, else None."""
    draft = state.draft
    sentence = clean_sentence(sentence)
    if not sentence:
        return None
    if is_decline(sentence):
        draft.declined = True
        return None
    if not parts.settings.retrieval.grounding_check:
        return sentence
    support = parts.grounder.support(sentence, state.candidates, state.standalone, state.referents)
    if support is None and not parts.grounder.claim_terms(sentence)[0]:
        draft.reply.pending.append(sentence)  # "Yes." waits for the sentence that backs it
        return None
    if support is None and (support := nearest(state, parts, sentence)) is None:
        log.info("Dropped unsupported sentence: %r", sentence)
        return None
    unmatched = hold_to_question(state, parts, sentence, support)
    if unmatched is None or not verify(state, parts, sentence, support, unmatched):
        return None
    return draft.reply.cite(support.sentence, quotes(support), parts.doc_text)


def hold_to_question(state: AnswerState, parts: Parts, sentence: str, support: Support) -> Unmatched | None:
    """What of the question's own words the cited evidence does not match (see question_words.py); None when that
    settles it by words alone (a name, number, negation or opposite), the evidence then quoted as a near miss."""
    checker = parts.question_words
    if checker is None:
        return Unmatched()
    evidence = quotes(support)
    passage = " ".join(p.text for p in support.passages)
    quote = " ".join(parts.doc_text(p.doc_id)[start:end] for p, start, end in evidence)
    named = partial(parts.grounder.named_in, passages=support.passages)
    unmatched = checker.unmatched(state.judged_question, sentence, passage, quote, named)
    if parts.settings.deciding.question_words and unmatched.decisive:
        log.info("Dropped %r: the evidence does not match the question's %s", sentence, unmatched)
        if state.draft.turned_down is None:
            state.draft.turned_down = evidence[0]
        return None
    return unmatched


def nearest(state: AnswerState, parts: Parts, sentence: str) -> Support | None:
    """For a sentence the word check turned down, the passage the judge decides it on; None without a judge, so
    that the word check is then the last word."""
    if not (parts.settings.verification.verify_rescue and parts.settings.verification.verify):
        return None
    return parts.grounder.nearest(sentence, state.candidates, state.standalone, state.referents)
