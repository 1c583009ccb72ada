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


_CLAUSE_SPLIT = re.compile(
    r",?\s+(?:and|but|while|whereas|because|although|as well as)\s+|;\s+|,\s+(?:which|who|whereas|while)\s+", re.I
)
_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|myself)\b|(?i:\bas an ai\b)")
_MIN_CLAUSE_WORDS = 3  # a clause with fewer content words ("Germany and ...") is no claim of its own

_WHEN = re.compile(
    r"^\W*(?:(?:on|in|at|by|from|until) )?(when|what (date|day|year|month|time)|which (date|day|year|month)|what year)\b",
    re.I,
)
_YEAR = re.compile(r"\b(what|which|in what|in which|by what|by which) year\b", re.I)
_WHO = re.compile(r"^\W*(who|whom|whose)\b", re.I)
_HOW_MUCH = re.compile(
    r"\b(how (many|much|large|big|often)|what (percentage|percent|share|proportion|amount|figure|sum|number))\b", re.I
)
_TIME_WORDS = re.compile(
    r"\d|\b(january|february|march|april|may|june|july|august|september|october|november|december|monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday|days?|weeks?|months?|years?|decades?|century|ago|today|yesterday|"
    r"tomorrow|recent(ly)?|soon|now|already|currently|schedule|after|before|during|since|until|once|latest|"
    r"gradual(ly)?|future|past|historically|long-standing|underway)\b",
    re.I,
)
_QUANTITY_WORDS = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|thousand|million|billion|"
    r"half|third|quarter|majority|most|several|few|many|more|less|fewer|percent|share|all|none|some|single|both)\b",
    re.I,
)


def fits_question(question: str, answer: str) -> bool:
    """False when the answer cannot be of the kind asked: a 'when' without any time, a 'which year' without a year,
    a 'how much' without any quantity, a 'who' that names no one the question did not already name (the small
    model's favourite ways of answering a question the article leaves open)."""
    answer = re.sub(r"\s*\[\d+\]", "", answer)  # citation markers are not numbers of the answer
    if _YEAR.search(question) and not re.search(r"\b\d{4}\b", answer):
        return False
    if _WHEN.search(question) and not _TIME_WORDS.search(answer):
        return False
    if _HOW_MUCH.search(question) and not _QUANTITY_WORDS.search(answer):
        # A list of three or more names answers "how many" well enough.
        return answer.count(",") >= 2
    if _WHO.search(question):
        asked = {fold(n) for n in entity_words(question)}
        return any(fold(n) not in asked and not find_entity(n, question) for n in entity_words(answer))
    return True


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
        """Return the support of one sentence, or None when nothing backs it.

        One claim needs one passage that holds its content words, every name and every number. A sentence that joins
        claims ("X did A, and Y did B") may join passages, but only clause by clause: a name from one paragraph and a
        number from another never make a fact together.
        """
        if _FIRST_PERSON.search(sentence):
            return None  # the model talking about itself ("I can provide…") is never a fact from the article
        pool = candidates or self.passages
        asked = content_stems(question)
        whole = self._single(sentence, pool, asked)
        if whole is not None:
            return whole
        clauses = [c for c in _CLAUSE_SPLIT.split(sentence) if c and c.strip(" ,.")]
        if len(clauses) < 2:
            return None
        parts = []
        for clause in clauses:
            if not content_stems(clause) - asked:
                continue  # a clause that only repeats the question ("Rutte said") carries no claim of its own
            part = self._single(clause, pool, asked)
            if part is None or len(self.claim_terms(clause)[0]) < _MIN_CLAUSE_WORDS:
                return None
            parts.append(part)
        if not parts:
            return None
        spans: dict[str, tuple[Passage, int, int]] = {}
        for part in parts:
            passage, (start, end) = part.passages[0], part.quotes[0]
            if passage.passage_id in spans:
                _, s0, e0 = spans[passage.passage_id]
                start, end = min(start, s0), max(end, e0)
            spans[passage.passage_id] = (passage, start, end)
        coverage = sum(p.coverage for p in parts) / len(parts)
        chosen = tuple(v[0] for v in spans.values())
        return Support(sentence, chosen, tuple((v[1], v[2]) for v in spans.values()), coverage)

    def _single(self, claim: str, pool: list[Passage], asked: set[str] = frozenset()) -> Support | None:
        stems, names, nums = self.claim_terms(claim)
        # What the sentence adds to the question is the answer: it, not the echo of the question's own words,
        # needs support; a sentence that adds nothing ("The agreement came out of the talks") answers nothing.
        novel = stems - asked
        if not novel:
            return None
        name_stems = {n: content_stems(n) & novel for n in names}

        def covered(passage: Passage) -> set[str]:
            # A name counts as covered in any spelling the passage uses ("the Netherlands" for "Dutch").
            found = novel & self._stems[passage.passage_id]
            for name, its_stems in name_stems.items():
                if its_stems and find_entity(name, passage.text):
                    found |= its_stems
            return found

        scored = sorted(((len(covered(p)), i, p) for i, p in enumerate(pool)), key=lambda t: (-t[0], t[1]))
        for hits, _, passage in scored[:5]:
            coverage = hits / len(novel)
            if coverage < self.min_support:
                break
            # Names and numbers are where small models invent: each must stand in this very passage, and names
            # in or just before the sentence that carries the claim ("Rutte emphasized… That, he argued, …"), so a
            # minister is not credited with the words of the one quoted after him.
            if nums <= self._numbers[passage.passage_id] and self._attributed(passage, novel, names):
                return Support(claim, (passage,), (self._quote(passage, stems),), coverage)
        return None

    def _attributed(self, passage: Passage, novel: set[str], names: list[str]) -> bool:
        if not all(find_entity(n, passage.text) for n in names):
            return False
        doc = self.doc_texts[passage.doc_id]
        spans = list(passage.sentences) or [(passage.start, passage.end)]
        # The claim is what the sentence says about the names, so the names themselves do not locate it.
        claim = novel - content_stems(" ".join(names)) or novel
        overlap = [len(claim & content_stems(doc[s:e])) for s, e in spans]
        if not any(overlap):
            return True  # nothing locates the claim more closely than the passage, which holds every name
        for i in sorted(range(len(spans)), key=lambda j: -overlap[j])[:2]:
            window = doc[spans[max(0, i - 1)][0] : spans[i][1]]
            if overlap[i] and all(find_entity(n, window) for n in names):
                return True
        return False

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
