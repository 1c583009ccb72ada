"""Generate stage, reading the reply: the model's streamed text split into sentences, each cleaned of what the
model adds on its own (its reference markers, list bullets, "The article states that", acronyms it coined), and its
ways of saying it cannot answer."""

from __future__ import annotations

import re

from ..index.corpus import split_sentences
from ..text import abbreviates
from .cite import strip_model_markers

_LEADS = re.compile(
    r"^\s*(?:[-*•]\s+|\d+[.)]\s+|(?:answer|a)\s*:\s*|(?:the )?article (?:states|says|mentions|notes|reports|explains|suggests) that\s+)",
    re.I,
)
_DECLINE = re.compile(
    r"\b(article|text|passage|context)s?\b.{0,30}\b(does not|doesn't|do not|did not|didn't|not|never)\b.{0,25}"
    r"\b(say|said|mention|state|specify|provide|contain|include|give|discuss|address|cover|indicate|reveal|name|identify)"
    r"|\bnot (mentioned|stated|specified|provided|given|discussed|included) in\b"
    r"|\b(no|any) (information|mention|details?)\b.{0,40}\b(article|text|provided)"
    r"|\b(i (cannot|can't|can not|am unable to|don't know|do not know)|i'm (sorry|unable)|unable to (answer|determine|find))\b"
    r"|\bnot (possible|able) to (determine|answer|say)\b",
    re.I,
)
_ACRONYM_AFTER = re.compile(r"((?:[A-Z][\w'’-]* +)+)\(([A-Z]{2,})\)")


def clean_sentence(sentence: str) -> str:
    """Remove the model's own reference markers, list bullets and acronyms it coined for the article's names."""
    sentence = strip_model_markers(sentence)
    # "World Health Organization (WHO)" where the article never writes "WHO": the acronym is the model's, not the article's; the name is enough.
    sentence = _ACRONYM_AFTER.sub(
        lambda m: m.group(1).rstrip() if abbreviates(m.group(2), m.group(1)) else m.group(), sentence
    )
    sentence = _LEADS.sub("", sentence).strip()
    sentence = sentence[:1].upper() + sentence[1:]
    return re.sub(r"\s+([.,;:!?])", r"\1", sentence).strip()


def is_decline(text: str) -> bool:
    """True when the model says it cannot answer from the article."""
    return bool(_DECLINE.search(text))


def split_answer(text: str) -> list[str]:
    """Split model output into sentences (also at line breaks, for lists)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.extend(line[s:e].strip() for s, e in split_sentences(line))
    return [s for s in out if s]


def complete_sentences(buffer: str) -> tuple[list[str], str]:
    """Split streamed text into the sentences that are complete and the rest, which may still grow."""
    parts = split_answer(buffer)
    if buffer.endswith("\n"):
        return parts, ""
    if len(parts) > 1:
        return parts[:-1], parts[-1]
    return [], buffer
