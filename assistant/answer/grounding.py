"""Grounding stage: check each answer sentence against the passages, find its supporting span, drop what is unsupported."""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from dataclasses import dataclass

from ..index.corpus import Passage
from ..text import (
    CAPITAL_RUN,
    STOPWORDS,
    content_stems,
    entity_words,
    find_entity,
    fold,
    list_sizes,
    lowercase_words,
    number_stems,
    numbers,
    spelled_numbers,
    stem,
    words,
)
from .cite import strip_markers

_CLAUSE_SPLIT = re.compile(
    r",?\s+(?:and|but|while|whereas|because|although|as well as)\s+|;\s+|,\s+(?:which|who|whereas|while)\s+", re.I
)
_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|myself)\b|(?i:\bas an ai\b)")
_MIN_ECHO_WORDS = 5  # a copied phrase this long is the question's premise, restated
_MIN_CLAUSE_WORDS = 3  # a clause with fewer content words ("Germany and ...") is no claim of its own
_PAIR_POOL = 4  # a claim read across two passages starts from one of the four covering most of it
_NAME_GAP = 3  # words a name's parts may stand apart in the passage ("Mayor [of Dunmore Lars] Holm")
_MAX_FRAGMENT_WORDS = 10  # a reply this short with nothing of the question's wording is a bare answer ("Smith")

_WHEN = re.compile(
    r"^\W*(?:(?:on|in|at|by|from|until) )?(when|what (date|day|year|month|time)|which (date|day|year|month)|what year)\b",
    re.I,
)
_YEAR = re.compile(r"\b(what|which|in what|in which|by what|by which) year\b", re.I)
_WHO = re.compile(r"^\W*(who|whom|whose)\b", re.I)
_HOW_MANY = re.compile(r"\bhow many\b", re.I)
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
    answer = strip_markers(answer)  # citation markers are not numbers of the answer
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


def quotes(support: Support) -> list[tuple[Passage, int, int]]:
    """(passage, start, end) of each span that supports a sentence."""
    return [(p, start, end) for p, (start, end) in zip(support.passages, support.quotes, strict=True)]


class Grounder:
    """Decides which passages support an answer sentence; built once per corpus."""

    def __init__(self, passages: list[Passage], doc_texts: dict[str, str], min_support: float = 0.5):
        self.passages = passages
        self.doc_texts = doc_texts
        self.min_support = min_support
        self._stems = {p.passage_id: content_stems(p.text) for p in passages}
        self._spread = Counter(stem for stems in self._stems.values() for stem in stems)
        self._numbers = {p.passage_id: numbers(p.text) for p in passages}
        self._counts: dict[str, set[str]] = {}  # filled as "how many" questions come (see _countable)
        self._said: dict[str, list[str]] = {}  # each passage's stems in order, filled as names come (_extractive)
        self._number_stems = number_stems()
        self._vocabulary = lowercase_words(" ".join(p.text for p in passages))
        self._corpus_words = frozenset(w for p in passages for w in words(p.text))
        by_doc: dict[str, list[Passage]] = {}
        for p in passages:
            by_doc.setdefault(p.doc_id, []).append(p)
        self._links = {doc_id: title_links(text, by_doc.get(doc_id, [])) for doc_id, text in doc_texts.items()}

    def _weight(self, stem: str) -> float:
        """Smoothed inverse document frequency: a word most passages use ("defence" in a defence article) says little
        about which passage a sentence came from; a word no passage uses says the most."""
        return math.log((1 + len(self.passages)) / (1 + self._spread[stem])) + 1

    def _countable(self, passage: Passage) -> set[str]:
        """What "how many" may be answered with from passage: a number it writes, spells out, or leaves to the
        reader to count ("Denmark, Estonia and Poland will…": three countries). Read on the first such question,
        not at start-up."""
        if passage.passage_id not in self._counts:
            self._counts[passage.passage_id] = (
                self._numbers[passage.passage_id] | spelled_numbers(passage.text) | list_sizes(passage.text)
            )
        return self._counts[passage.passage_id]

    def _named(self, name: str, passage: Passage, text: str) -> bool:
        """True when text mentions name, or the person the article gives that title or first name to."""
        if find_entity(name, text):
            return True
        return any(find_entity(person, text) for person in self._links.get(passage.doc_id, {}).get(fold(name), ()))

    def named_in(self, name: str, passages: tuple[Passage, ...], text: str) -> bool:
        """True when text (of passages) mentions name, or the person one of their articles gives that title."""
        return any(self._named(name, p, text) for p in passages)

    def _stranger(self, name: str, question: str) -> bool:
        """True when name comes from the question and no passage of the corpus uses it."""
        return find_entity(name, question) and not all(w in self._corpus_words for w in words(name))

    def claim_terms(self, sentence: str) -> tuple[set[str], list[str], set[str]]:
        """Content stems, names and numbers of a sentence: what a supporting passage must contain."""
        return content_stems(sentence), entity_words(sentence, lowercase_vocabulary=self._vocabulary), numbers(sentence)

    def support(
        self, sentence: str, candidates: list[Passage] | None = None, question: str = "", about: tuple[str, ...] = ()
    ) -> Support | None:
        """Return the support of one sentence, or None when nothing backs it.

        One claim needs one passage that holds its content words, every name and every number. A sentence that joins
        claims ("X did A, and Y did B") may join passages, but only clause by clause: a name from one paragraph and a
        number from another never make a fact together. about: names the sentence is about without saying them
        (whom "he" means in a follow-up), which its passage must hold as if it said them.
        """
        if _FIRST_PERSON.search(sentence):
            return None  # the model talking about itself ("I can provide…") is never a fact from the article
        pool = candidates or self.passages
        asked = content_stems(question)
        echoed = echoed_premise(sentence, question)
        whole = self._single(sentence, pool, asked, echoed, question, about)
        if whole is not None:
            return whole
        clauses = split_clauses(sentence)
        if len(clauses) < 2:
            return None
        parts = []
        for clause in clauses:
            if not content_stems(clause) - asked:
                continue  # a clause that only repeats the question ("Smith said") carries no claim of its own
            part = self._single(clause, pool, asked, echoed, question, about)
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

    def nearest(
        self, sentence: str, candidates: list[Passage] | None = None, question: str = "", about: tuple[str, ...] = ()
    ) -> Support | None:
        """The passage a sentence the word check turned down stays closest to, for the judge to settle; or None.

        Words alone cannot tell a paraphrase, a one-letter answer ("T cells") or a question's own wrong word ("the
        adaptive nervous system") from a sentence the passages do not back; the judge reads meaning and can. What
        words do settle stays settled: every name and number the sentence says must stand in that passage, and
        most of its content words (weighted by how rarely the passages use them); a bare answer's passage must hold
        the question's predicate; and the sentence must add a word to the question. A claim that runs on across a
        paragraph break may stand on a passage and the one next to it together, the judge reading both.
        """
        if _FIRST_PERSON.search(sentence):
            return None
        asked_words = set(words(question))
        if not [w for w in words(sentence) if w not in asked_words and w not in STOPWORDS]:
            return None
        asked = content_stems(question)
        stems, names, nums = self.claim_terms(sentence)
        names = [n for n in [*names, *about] if not self._stranger(n, question)]
        if not stems:
            return None
        weights = {stem: self._weight(stem) for stem in stems}
        total = sum(weights.values())

        def coverage(*passages: Passage) -> float:
            held = set().union(*(self._stems[p.passage_id] for p in passages))
            return sum(weights[stem] for stem in stems & held) / total

        def holds(*passages: Passage) -> bool:
            return (
                nums <= set().union(*(self._numbers[p.passage_id] for p in passages))
                and all(any(self._named(n, p, p.text) for p in passages) for n in names)
                and all(self._holds_predicate(p, sentence, stems, asked, question) for p in passages)
            )

        pool = candidates or self.passages
        alone = {p.passage_id: coverage(p) for p in pool}
        ranked = sorted(pool, key=lambda p: -alone[p.passage_id])  # stable: equals keep the order they came in
        chosen = next((p for p in ranked if alone[p.passage_id] >= self.min_support and holds(p)), None)
        if chosen is not None:
            return Support(sentence, (chosen,), (self._quote(chosen, stems),), alone[chosen.passage_id])
        # Two passages at most: one of the best-covering and the paragraph next to it, a claim that runs on across
        # a paragraph break. Never two paragraphs apart, where a name from one and a number from another would
        # make a fact the article never states.
        at = {(p.doc_id, p.number): p for p in pool}
        pairs = [
            (a, b)
            for a in ranked[:_PAIR_POOL]
            for b in (at.get((a.doc_id, a.number - 1)), at.get((a.doc_id, a.number + 1)))
            if b is not None
        ]
        pairs.sort(key=lambda ab: -coverage(*ab))
        pair = next((ab for ab in pairs if coverage(*ab) >= self.min_support and holds(*ab)), None)
        if pair is None:
            return None
        pair = tuple(sorted(pair, key=lambda p: p.number))
        return Support(sentence, pair, tuple(self._quote(p, stems) for p in pair), coverage(*pair))

    def _single(
        self,
        claim: str,
        pool: list[Passage],
        asked: set[str] = frozenset(),
        echoed: tuple = (frozenset(), frozenset()),
        question: str = "",
        about: tuple[str, ...] = (),
    ) -> Support | None:
        stems, names, nums = self.claim_terms(claim)
        counting = bool(_HOW_MANY.search(question))
        if counting:  # "Five countries…": the count is a number, never a name that opens the sentence
            names, nums = [n for n in names if not spelled_numbers(n)], nums | spelled_numbers(claim)
        names = names + [n for n in about if n not in names]
        echoed_names, premise = echoed
        premise_names = [n for n in names if fold(n) in echoed_names]
        # A name the question brings and the corpus never uses ("Burma" for "Myanmar") is the user's own
        # wording: words cannot settle it either way, so verification by meaning does.
        names = [n for n in names if fold(n) not in echoed_names and not self._stranger(n, question)]
        # What the sentence adds to the question is the answer: it, not the echo of the question's own words,
        # needs support; a sentence that adds nothing ("The agreement came out of the talks") answers nothing.
        novel = stems - asked
        if not novel:
            return None
        name_stems = {n: content_stems(n) & novel for n in names}

        def covered(passage: Passage) -> set[str]:
            # A name counts as covered in any spelling the passage uses ("Norway" for "Norwegian").
            found = novel & self._stems[passage.passage_id]
            for name, its_stems in name_stems.items():
                if its_stems and self._named(name, passage, passage.text):
                    found |= its_stems
            if counting:  # "five" stands for the five things the passage lists
                found |= {s for s in novel if self._number_stems.get(s, s) in self._countable(passage)}
            return found

        for hits, passage in self._ranked(pool, covered, asked):
            coverage = hits / len(novel)
            if coverage < self.min_support:
                break
            if not self._holds_predicate(passage, claim, stems, asked, question):
                continue
            if not all(self._named(n, passage, passage.text) for n in premise_names) and not (
                premise & self._stems[passage.passage_id]
            ):
                continue  # the question's premise names what this passage never speaks to
            # Names and numbers are where small models invent: each must stand in this very passage, and names
            # in or just before the sentence that carries the claim ("Smith emphasized… That, she argued, …"), so a
            # minister is not credited with the words of the one quoted after him.
            known = self._countable(passage) if counting else self._numbers[passage.passage_id]
            if nums <= known and self._attributed(passage, novel, names) and self._extractive(passage, claim, question):
                return Support(claim, (passage,), (self._quote(passage, stems),), coverage)
        return None

    def _ranked(self, pool: list[Passage], covered, asked: set[str]) -> list[tuple[int, Passage]]:
        """(how many of the claim's stems it covers, passage) for the five passages of pool covering the most.

        Of passages that hold the answer alike, the one that also holds what was asked comes first ("Galileo" is
        named in the lede and in the paragraph on falling bodies; the question is about falling bodies); when the
        question does not tell them apart either, the earlier in pool (a news lede states what later paragraphs
        repeat).
        """
        scored = sorted(
            ((len(covered(p)), len(asked & self._stems[p.passage_id]), i, p) for i, p in enumerate(pool)),
            key=lambda t: (-t[0], -t[1], t[2]),
        )
        return [(hits, passage) for hits, _, _, passage in scored[:5]]

    def _holds_predicate(self, passage: Passage, claim: str, stems: set[str], asked: set[str], question: str) -> bool:
        """False for a bare answer whose passage lacks what the question asks about.

        A bare answer ("Jane Smith") borrows its predicate from the question, so its passage must hold that predicate
        too: a name is no answer to "who agreed" when its paragraph says nothing about agreeing.
        """
        if not asked or stems & asked or len(words(claim)) > _MAX_FRAGMENT_WORDS:
            return True
        return bool(asked & self._stems[passage.passage_id]) or any(
            self._named(n, passage, passage.text) for n in entity_words(question)
        )

    def _extractive(self, passage: Passage, claim: str, question: str) -> bool:
        """False when a name of several words the claim adds to the question is not one name in the passage: its
        last two words (the name proper, after any title) there in another order, or far apart ("Anna Holm" from
        "Anna Berg … Lars Holm").

        The answer's key phrase must be the passage's own: each word standing somewhere is not enough. Words before
        the last two are titles and demonyms ("Norwegian Fisheries Minister"), which a passage may say elsewhere.
        """
        asked = set(words(question))
        # Only a run's names, not the titles a model puts before them ("Norwegian Fisheries Minister Anna Berg" for
        # "Norway's Anna Berg"): a word the corpus also writes in lower case is a title or a common word.
        runs = [
            [stem(w) for w in words(run) if w not in STOPWORDS and w not in self._vocabulary]
            for run in CAPITAL_RUN.findall(claim)
        ]
        asked_stems = {stem(w) for w in asked}
        runs = [r for r in runs if not set(r) <= asked_stems]
        if not runs:
            return True
        if passage.passage_id not in self._said:  # read on the first name to check, not at start-up
            self._said[passage.passage_id] = [stem(w) for w in words(passage.text)]
        return all(in_order(run[-2:], self._said[passage.passage_id], _NAME_GAP) for run in runs)

    def _attributed(self, passage: Passage, novel: set[str], names: list[str]) -> bool:
        if not all(self._named(n, passage, passage.text) for n in names):
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
            if overlap[i] and all(self._named(n, passage, window) for n in names):
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


def in_order(run: list[str], said: list[str], gap: int) -> bool:
    """True when the words of run that said holds stand there in run's order, each at most gap words after the last."""
    held = set(said)
    present = [w for w in run if w in held]
    if len(present) < 2:
        return True
    ends = {i for i, w in enumerate(said) if w == present[0]}
    for word in present[1:]:
        ends = {j for j, w in enumerate(said) if w == word and any(0 < j - i <= gap + 1 for i in ends)}
        if not ends:
            return False
    return True


def echoed_premise(sentence: str, question: str) -> tuple[frozenset[str], frozenset[str]]:
    """Names the sentence uses only inside a long phrase copied from the question, and that phrase's other stems.

    "A key sign that Norway's policy has really changed is …": "Norway" belongs to the question's premise, not
    to the claim, so the passage that backs the claim need not name it, as long as it speaks to the premise at all
    ("A key sign of that shift…"). Short echoes ("Norway wants …") do not count.
    """
    said, asked = words(sentence), words(question)
    if not said or not asked:
        return frozenset(), frozenset()
    inside = [False] * len(said)
    for block in difflib.SequenceMatcher(None, said, asked, autojunk=False).get_matching_blocks():
        if block.size >= _MIN_ECHO_WORDS:
            inside[block.a : block.a + block.size] = [True] * block.size
    question_names = {fold(n) for n in entity_words(question)}
    names = frozenset(n for n in question_names if n in said and all(inside[i] for i, w in enumerate(said) if w == n))
    premise = content_stems(
        " ".join(w for w, kept in zip(said, inside, strict=True) if kept and w not in question_names)
    )
    return names, frozenset(premise)


def split_clauses(sentence: str) -> list[str]:
    """Split a sentence at its joints ("and", "but", "because", ";"), keeping too-short pieces with their neighbour.

    "a strong and lasting presence" must not become a clause "a strong" that carries no claim of its own.
    """
    pieces, start = [], 0
    for match in _CLAUSE_SPLIT.finditer(sentence):
        pieces.append(sentence[start : match.start()])
        start = match.end()
        pieces.append(match.group())
    pieces.append(sentence[start:])
    clauses: list[str] = []
    current = ""
    for i in range(0, len(pieces), 2):
        current += pieces[i]
        if len(content_stems(current)) >= _MIN_CLAUSE_WORDS or i == len(pieces) - 1:
            clauses.append(current)
            current = ""
        else:
            current += pieces[i + 1]
    if len(clauses) > 1 and len(content_stems(clauses[-1])) < _MIN_CLAUSE_WORDS:
        clauses[-2:] = [clauses[-2] + " and " + clauses[-1]]
    return [c for c in clauses if c.strip(" ,.")]


def title_links(text: str, passages: list[Passage]) -> dict[str, set[str]]:
    """Titles and first names one article (text, its passages) puts before a person's name: {"jane": {"Smith"}}.

    "UN Special Envoy Jane Smith … Smith emphasized": a claim about "the Special Envoy" may stand on a
    passage that only says "Smith". Names that many passages use (a country) are places and topics, not persons.
    """
    mentions: dict[str, int] = {}
    for p in passages:
        for name in set(map(fold, entity_words(p.text))):
            mentions[name] = mentions.get(name, 0) + 1
    links: dict[str, set[str]] = {}
    for run in CAPITAL_RUN.finditer(text):
        names = entity_words(run.group())
        if len(names) < 2 or not 0 < mentions.get(fold(names[-1]), 0) < 3:
            continue
        for name in names[:-1]:
            links.setdefault(fold(name), set()).add(names[-1])
    return links


def sentence_spans(passage: Passage) -> tuple[tuple[int, int], ...]:
    """The document offsets of passage's sentences (the whole passage when it has none)."""
    return passage.sentences or ((passage.start, passage.end),)


def best_sentence(passage: Passage, wanted: set[str]) -> tuple[int, int]:
    """The index (in sentence_spans) of passage's sentence sharing most of the content stems wanted, the first of
    equals, and how many it shares."""
    shared = [
        len(wanted & content_stems(passage.text[s - passage.start : e - passage.start]))
        for s, e in sentence_spans(passage)
    ]
    best = max(range(len(shared)), key=shared.__getitem__)
    return best, shared[best]


def closest_sentence(passages: list[Passage], question: str, min_words: int) -> tuple[Passage, int, int] | None:
    """The sentence of passages (best first) sharing most content words with question, as (passage, start, end)
    in document offsets; None when none shares min_words of them (or all, when the question has fewer)."""
    wanted = content_stems(question)
    closest, shared = None, 0
    for passage in passages:
        j, n = best_sentence(passage, wanted)
        if n > shared:
            closest, shared = (passage, *sentence_spans(passage)[j]), n
    return closest if shared >= max(1, min(min_words, len(wanted))) else None
