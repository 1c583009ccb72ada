"""Correct stage: a refusal that says what the article does say, in the model's words, checked like an answer.

When the article does not answer but one of its sentences comes close (point.py found it: the sentence the
judge turned down, or the one sharing most words with the question), the model is asked for one sentence of the form
"The article does not say that <what the question takes for granted>; it says <what that sentence says instead>."
A near-miss question ("When did the governor open the bridge?") then corrects its own premise, and a false refusal
still tells the reader what the passage holds. It is shown only when every check passes; otherwise the refusal stays
"The article does not say." with the sentence quoted beside it:

- the reply has that form;
- what it says the article says stands in the sentence: each name and number, and every content word but at most
  one, and never a word of the question the sentence lacks (that word is the question's premise, put back);
- what it says the article does not say adds no name or number, and at most one word, that neither the question
  nor the sentence holds (it is what the article does not say: a paraphrase there misleads no one), and keeps what the question changed: a word of the question the sentence lacks, or the question's negation
  (without it, "does not say that X" would deny what the article says);
- no sentence of the article holds every word, name and number of what it says the article does not say, negated
  alike: the nearest sentence is not the only one, and a false refusal must not deny what another paragraph says
  ("…does not say that X was overthrown" where a later paragraph says he was);
- the judge finds the sentence states what the reply says it says (P(yes) at the verification threshold), and does
  not find that the sentence's paragraph states what the reply says it does not: a right answer the judge turned
  down ("Which country's minister is Anna Berg?", the paragraph saying "Norway's Anna Berg") must not become
  "The article does not say that she is a minister of Norway".

The answer stays a refusal: Answer.abstained is True, the text is the correction, and Answer.closest is its citation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..text import content_stems, entity_words, find_entity, numbers
from .question_words import negated
from .state import AnswerState, Update

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)

# The one form a correction takes; "it says that" and a comma for the semicolon are the model's common variants.
_FORM = re.compile(
    r"^\W*the article does not (?:say|state|mention)\s+(?P<premise>.+?)\s*[;,:]\s*"
    r"(?:but\s+|instead,?\s+)?it (?:says|states)\s+(?P<fact>.+?)[\s.!]*$",
    re.I | re.S,
)
_THAT = re.compile(r"^that\s+", re.I)


@dataclass(frozen=True)
class Correction:
    """A refusal's two halves: what the question took for granted, and what the article says instead."""

    premise: str  # as the model put it: "that the governor opened it", "who opened it"
    fact: str  # without a leading "that"

    @property
    def text(self) -> str:
        """The reply shown in place of the bare refusal."""
        return f"The article does not say {self.premise}; it says {self.fact}."

    @property
    def premise_statement(self) -> str:
        """What the correction says the article does not say, as a sentence of its own."""
        premise = _THAT.sub("", self.premise)
        return f"{premise[:1].upper()}{premise[1:]}."

    @property
    def statement(self) -> str:
        """What the article is said to say, as a sentence of its own: the claim the judge reads."""
        return f"{self.fact[:1].upper()}{self.fact[1:]}."


def parse_correction(reply: str) -> Correction | None:
    """The correction in the model's reply, or None when it is not one sentence of the asked-for form."""
    match = _FORM.match(reply.strip())
    if match is None or re.search(r"[.!?]\s+\S", match["fact"]):
        return None
    premise, fact = match["premise"].strip(" \"'"), _THAT.sub("", match["fact"].strip(" \"'"))
    if not content_stems(_THAT.sub("", premise)) or not content_stems(fact):
        return None
    return Correction(premise, fact)


def _names_and_numbers_in(claim: str, *sources: str) -> bool:
    names = entity_words(claim, skip_first=True)
    if not all(any(find_entity(n, s) for s in sources) for n in names):
        return False
    held = set().union(*(numbers(s) for s in sources))
    return numbers(claim) <= held


def states_fact(correction: Correction, question: str, evidence: str) -> bool:
    """True when what the correction says the article says stands in the evidence sentence, word for word."""
    stems, held, asked = content_stems(correction.fact), content_stems(evidence), content_stems(question)
    missing = stems - held
    if missing & asked or len(missing) > 1 or negated(correction.fact) != negated(evidence):
        return False
    return bool(stems & held) and _names_and_numbers_in(correction.fact, evidence)


def keeps_premise(correction: Correction, question: str, evidence: str) -> bool:
    """True when the premise invents nothing and keeps what the question changed from the evidence."""
    premise, held, asked = content_stems(correction.premise), content_stems(evidence), content_stems(question)
    if len(premise - held - asked) > 1 or not _names_and_numbers_in(correction.premise, question, evidence):
        return False
    if negated(question) != negated(evidence):
        return negated(correction.premise) == negated(question)
    return bool(premise & (asked - held))


def said_in(claim: str, sentences: Iterable[str]) -> bool:
    """True when one of sentences holds every content word, name and number of claim, negated alike."""
    stems = content_stems(_THAT.sub("", claim))
    return any(
        stems <= content_stems(s) and negated(claim) == negated(s) and _names_and_numbers_in(claim, s)
        for s in sentences
    )


def checked_correction(reply: str, question: str, evidence: str, article: Iterable[str] = ()) -> Correction | None:
    """The correction in reply when its words pass every check (the judge comes after), else None.

    article: the sentences of the text the question was asked of, none of which may state the premise.
    """
    correction = parse_correction(reply)
    if correction is None:
        return None
    if not (states_fact(correction, question, evidence) and keeps_premise(correction, question, evidence)):
        return None
    return None if said_in(correction.premise, article) else correction


def correct(state: AnswerState, parts: Parts) -> Update:
    """With a refusal that quotes a nearest sentence, say what the question took for granted and what that
    sentence says instead, in the model's words; shown only when its words and the judge pass it.

    By default only after the judge turned the model's answer down: a near miss, whose premise is worth correcting.
    After the other refusals the quote alone is shown, because a correction costs a generation (about 7 s on two
    cores) and on the SQuAD test articles half of all questions are refused; see BENCHMARKS.md.
    """
    s, checker = parts.settings.verification, parts.fact_checker  # its own section
    near_miss = state.draft.turned_down is not None or state.draft.refused_early
    wanted = s.correct_premise == "always" or (s.correct_premise == "near_miss" and near_miss)
    if state.closest is None or checker is None or not wanted:
        return {}
    from langchain_core.messages import SystemMessage

    evidence = state.closest.quote
    # A remote server keeps one cached prefix: after the article, as the judgement does, it stays the article's.
    context = state.system if parts.verify_with_article else None
    article = [SystemMessage(context)] if context else []
    messages = parts.prompts.correct.format_messages(article=article, evidence=evidence, question=state.standalone)
    with state.timings.timed("correct"):
        try:
            tokens = parts.tokens(messages, config=state.config, max_tokens=s.correct_max_tokens)
            said = (parts.doc_text(p.doc_id)[start:end] for p in state.view.passages for start, end in p.sentences)
            correction = checked_correction("".join(tokens), state.standalone, evidence, said)
            verdict = correction and checker.judge(state.standalone, correction.statement, [evidence], context)
            if verdict and verdict.passed:
                denied = checker.judge(state.standalone, correction.premise_statement, [state.closest.text], context)
        except Exception:  # the refusal stands on its own: a failed correction must not turn it into an error
            log.warning("No correction for %r: the model failed", state.standalone, exc_info=True)
            return {}
    if correction is None:
        log.info("No correction of %r kept: it was not of the form, or its words do not stand", state.standalone)
        return {}
    judged = {"draft": replace(state.draft, verdicts=[*state.draft.verdicts, verdict])}
    if verdict.passed and denied.passed:
        log.info("No correction of %r: its paragraph may state %r", state.standalone, correction.premise_statement)
    elif verdict.passed:
        return {**judged, "text": correction.text}
    return judged
