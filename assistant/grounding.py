"""Grounding stage: check each answer sentence against the passages, find its supporting span, drop what is unsupported."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .corpus import Passage, split_sentences
from .text import content_stems, entity_words, find_entity, fold, lowercase_words, numbers

# The model's own references ("[2]", "(¶5)", "Paragraph 3:") are never trusted: citations are attached by code.
_MODEL_MARKERS = re.compile(
    r"\s*(\[(?:\s*(?:¶|p|para\.?|paragraph)?\s*\d+\s*[,;–-]?\s*)+\]|\((?:¶|para\.?|paragraph)\s*\d+\)|¶\s*\d+)", re.I
)
_LEADS = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+|(?:answer|a)\s*:\s*)", re.I)
_DECLINE = re.compile(
    r"\b(article|text|passage|context)s?\b.{0,30}\b(does not|doesn't|do not|did not|didn't|not|never)\b.{0,25}"
    r"\b(say|said|mention|state|specify|provide|contain|include|give|discuss|address|cover|indicate|reveal|name|identify)"
    r"|\bnot (mentioned|stated|specified|provided|given|discussed|included) in\b"
    r"|\b(no|any) (information|mention|details?)\b.{0,40}\b(article|text|provided)"
    r"|\b(i (cannot|can't|can not|am unable to|don't know|do not know)|i'm (sorry|unable)|unable to (answer|determine|find))\b"
    r"|\bnot (possible|able) to (determine|answer|say)\b",
    re.I,
)


@dataclass(frozen=True)
class Support:
    """Why one answer sentence may stand: the passages and the span in them that say the same."""

    sentence: str
    passages: tuple[Passage, ...]
    quotes: tuple[tuple[int, int], ...]  # document offsets of the supporting span in each passage
    coverage: float


def clean_sentence(sentence: str) -> str:
    """Remove the model's own reference markers and list bullets from a sentence."""
    sentence = _MODEL_MARKERS.sub("", sentence)
    sentence = _LEADS.sub("", sentence)
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


class Grounder:
    """Decides which passages support an answer sentence; built once per corpus."""

    def __init__(self, passages: list[Passage], doc_texts: dict[str, str], min_support: float = 0.5):
        self.passages = passages
        self.doc_texts = doc_texts
        self.min_support = min_support
        self._stems = {p.passage_id: content_stems(p.text) for p in passages}
        self._numbers = {p.passage_id: numbers(p.text) for p in passages}
        self._vocabulary = lowercase_words(" ".join(p.text for p in passages))

    def claim_terms(self, sentence: str) -> tuple[set[str], list[str], set[str]]:
        """Content stems, names and numbers of a sentence: what a supporting passage must contain."""
        return content_stems(sentence), entity_words(sentence, lowercase_vocabulary=self._vocabulary), numbers(sentence)

    def support(self, sentence: str, candidates: list[Passage] | None = None, question: str = "") -> Support | None:
        """Return the support of one sentence, or None when no passage (or pair of passages) backs it.

        Names the question itself uses (already checked against the corpus) may be repeated without support.
        """
        stems, names, nums = self.claim_terms(sentence)
        names = [n for n in names if not find_entity(n, question)]
        if not stems:
            return None
        pool = candidates or self.passages
        ranked = sorted(pool, key=lambda p: -len(stems & self._stems[p.passage_id]))
        best = ranked[0]
        chosen = [best]
        covered = stems & self._stems[best.passage_id]
        if not self._complete(covered, stems, names, nums, chosen):
            # A sentence may join facts from two paragraphs (multi-hop): add the one that covers most of the rest.
            missing = stems - covered
            second = max(ranked[1:], key=lambda p: len(missing & self._stems[p.passage_id]), default=None)
            if second is not None and missing & self._stems[second.passage_id]:
                chosen.append(second)
                covered = covered | (stems & self._stems[second.passage_id])
            if not self._complete(covered, stems, names, nums, chosen):
                return None
        coverage = len(covered) / len(stems)
        quotes = tuple(self._quote(p, stems) for p in chosen)
        return Support(sentence, tuple(chosen), quotes, coverage)

    def _complete(self, covered: set[str], stems: set[str], names: list[str], nums: set[str], chosen) -> bool:
        if len(covered) / len(stems) < self.min_support:
            return False
        text = " ".join(p.text for p in chosen)
        have_numbers = set().union(*(self._numbers[p.passage_id] for p in chosen))
        # Names and numbers are where small models invent: each must appear in the supporting passages.
        return nums <= have_numbers and all(find_entity(name, text) for name in names)

    def _quote(self, passage: Passage, stems: set[str]) -> tuple[int, int]:
        """Document offsets of the sentence (or two adjacent sentences) of passage that best match stems."""
        doc = self.doc_texts[passage.doc_id]
        spans = list(passage.sentences) or [(passage.start, passage.end)]
        overlap = [len(stems & content_stems(doc[s:e])) for s, e in spans]
        i = max(range(len(spans)), key=lambda j: (overlap[j], -j))
        start, end = spans[i]
        best_alone = overlap[i]
        for j in (i - 1, i + 1):
            if 0 <= j < len(spans):
                joined = len(stems & content_stems(doc[min(start, spans[j][0]) : max(end, spans[j][1])]))
                if joined > best_alone:
                    start, end = min(start, spans[j][0]), max(end, spans[j][1])
                    best_alone = joined
                    break
        return start, end


def mark_sentence(sentence: str, markers: list[int]) -> str:
    """Put citation markers like [1][2] before a sentence's final stop, or after a closing quote."""
    tags = "".join(f"[{m}]" for m in markers)
    match = re.search(r"[.!?]+$", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {tags}{match.group()}"
    return f"{sentence} {tags}"


def folded_overlap(a: str, b: str) -> float:
    """Share of a's content words that also occur in b (used to spot leaked prompt text)."""
    sa, sb = content_stems(fold(a)), content_stems(fold(b))
    return len(sa & sb) / len(sa) if sa else 0.0
