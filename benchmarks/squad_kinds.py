"""Which kind of SQuAD 2.0 question it is: a rule-based tagger, so that a missed target can say what fails.

SQuAD 2.0 gives no labels for how its unanswerable questions were made. Rajpurkar, Jia and Liang (ACL 2018, Table 2)
sorted a sample by hand into negation, antonym, entity swap, mutual exclusion, impossible condition and other. The
rules below approximate those categories by words alone: they compare the question with the gold paragraph's
sentence that holds its plausible (trap) answer, which is the true fact the question was bent from. They are an
approximation, not a label: a paraphrase reads as a changed word, a pronoun hides a name, and a question that
changes two things gets the first rule that fires. Use the shares to see which kind of question fails, not as exact
counts.

The trap sentence is the paragraph's sentence (split as the corpus loader splits) that holds a trap span, the one
sharing most content words with the question when there are several; with no trap found, the sentence sharing most
content words. Its window is that sentence and the one before it, since a question often names what the sentence
calls "he" or "it". An unanswerable question gets the first of these that holds, in this order:

1. negation: the question holds a negation word (not, no, never, none, nor, without, n't, ...) and the trap
   sentence none, or a word both share follows a negation (within three words) in one of them only, while no word
   follows a negation in both: a long sentence often negates something else. "No." before a number is no negation.
   This is the product's own test (assistant/answer/question_words.py, negation_differs), so the two agree. First, because
   a negated question usually matches its sentence word for word otherwise, and later rules would call it "other".
2. antonym: a word of the question missing from the window whose opposite is in the window: a pair of the
   product's short general English list (question_words.OPPOSITES: first/last, before/after, increase/decrease,
   ...) or the same word (four letters or more) with a negating prefix (un-, in-, dis-, non-, ...). Only antonyms
   the list or a prefix can show are found; the rest land in rule 5 or 6.
3. impossible condition: the question adds a restriction the window does not state: a number after a condition
   word (before, after, since, more than, at least, ...), a number where the window has none to be swapped for, or
   an ordinal or superlative (first, only, largest, ...) the window lacks. Before rule 4, which would otherwise take
   every missing number.
4. swapped entity: a name (a capitalised word or acronym) or a number of the question missing from the window,
   whether it is absent from the paragraph or taken from elsewhere in it.
5. neighbouring thing (the paper's mutual exclusion): the question asks for something besides the answer (other,
   another, else, besides, except, instead) that the window does not, or a content word of the question missing
   from the window is found elsewhere in the paragraph: it asks about the thing next to the answer.
6. other word changed: a content word of the question is in neither the window nor the paragraph: an antonym the
   list does not know, a synonym, a paraphrase, or an irregular form the stemmer does not join ("build" and
   "built"). A general noun naming the kind of answer after what, which, whose or how many/much (year, country,
   people, ...: "what year", "how many people"; question_words.asked_type) is no change: sentences seldom name it.
   This bucket stands in for the antonyms, swaps and neighbours that words alone cannot show.
7. other: every word of the question is near the trap; what changed is how they are related.

An answerable question is tagged by what it asks for, from its first wh-word: who (who, whom, whose), when (when,
and what/which followed within two words by a time noun: year, century, date, ...), how many/much (how many, how
much, and how with a measure: long, old, far, large, ...), where (where, and what/which with a place noun: country,
city, ...), what/which, why/how, and other (no wh-word). The same holds for any question with wh_kind().
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from assistant.answer.question_words import asked_type, negation_differs, opposites_in
from assistant.index.corpus import split_sentences
from assistant.text import content_stems, entity_words, find_entity, numbers, spelled_numbers, stem, words

UNANSWERABLE = (
    "negation",
    "antonym",
    "impossible condition",
    "swapped entity",
    "neighbouring thing",
    "other word changed",
    "other",
)
ANSWERABLE = ("who", "when", "how many/much", "where", "what/which", "why/how", "other")

_CONDITION = re.compile(
    r"\b(?:before|after|since|until|till|prior to|following|earlier than|later than|more than|less than|"
    r"fewer than|over|under|above|below|at least|at most|between|within|by)\s+(?:[a-z]+\s+){0,2}?(\d[\d,.]*)"
)
_RESTRICTING = frozenset(
    "first last only sole earliest latest oldest newest largest smallest biggest highest lowest longest shortest "
    "greatest tallest strongest weakest richest poorest fastest slowest deepest widest heaviest most least best worst "
    "main primary".split()
)
_EXCLUDING = frozenset("other another else besides except instead apart aside".split())
_WH = re.compile(r"\b(who|whom|whose|when|where|why|how|what|which)\b")
_TIME_NOUNS = frozenset(
    "year years century centuries decade decades date dates day days month months era period".split()
)
_PLACE_NOUNS = frozenset(
    "country countries city cities place places region regions continent location locations town towns area areas "
    "nation nations island islands river rivers street building".split()
)
_MEASURES = frozenset("many much long old far large big often tall high wide deep fast heavy".split())


def wh_kind(question: str) -> str:
    """What an answerable question asks for, by its first wh-word (see the module docstring)."""
    text = " ".join(words(question))
    match = _WH.search(text)
    if not match:
        return "other"
    wh, after = match.group(1), text[match.end() :].split()
    if wh in ("who", "whom", "whose"):
        return "who"
    if wh in ("when", "where"):
        return wh
    if wh == "how":
        return "how many/much" if after[:1] and after[0] in _MEASURES else "why/how"
    if wh == "why":
        return "why/how"
    if _TIME_NOUNS & set(after[:2]):
        return "when"
    if _PLACE_NOUNS & set(after[:2]):
        return "where"
    return "what/which"


def trap_window(question: str, paragraph: str, traps: Iterable[str]) -> tuple[str, str]:
    """(the trap sentence, that sentence with the one before it) of the paragraph; see the module docstring."""
    spans = split_sentences(paragraph) or [(0, len(paragraph))]
    sentences = [paragraph[a:b] for a, b in spans]
    folded = [" ".join(words(s)) for s in sentences]
    spots = [" ".join(words(t)) for t in traps]
    holding = [i for i, s in enumerate(folded) if any(t and f" {t} " in f" {s} " for t in spots)]
    asked = content_stems(question)
    best = max(holding or range(len(sentences)), key=lambda i: (len(asked & content_stems(sentences[i])), -i))
    return sentences[best], " ".join(sentences[max(0, best - 1) : best + 1])


def _all_numbers(text: str) -> set[str]:
    return numbers(text) | (spelled_numbers(text) - {"1"})  # "one of" is seldom a count


def _impossible_condition(question: str, window: str) -> bool:
    held = _all_numbers(window)
    conditioned = {n.replace(",", ".").rstrip(".") for n in _CONDITION.findall(" ".join(words(question)))}
    if conditioned - held:
        return True
    if not held and _all_numbers(question):
        return True
    return bool((set(words(question)) & _RESTRICTING) - set(words(window)))


def _swapped_entity(question: str, window: str) -> bool:
    if _all_numbers(question) - _all_numbers(window):
        return True
    return any(not find_entity(name, window) for name in entity_words(question, skip_first=True))


def unanswerable_kind(question: str, paragraph: str, traps: Iterable[str] = ()) -> str:
    """How an unanswerable question was made, as the first rule of the module docstring that holds."""
    sentence, window = trap_window(question, paragraph, traps)
    if negation_differs(question, sentence):
        return "negation"
    if opposites_in({stem(w) for w in words(question)}, {stem(w) for w in words(window)}):
        return "antonym"
    if _impossible_condition(question, window):
        return "impossible condition"
    if _swapped_entity(question, window):
        return "swapped entity"
    missing = content_stems(question) - content_stems(window) - asked_type(question)
    if (set(words(question)) & _EXCLUDING) - set(words(window)) or missing & content_stems(paragraph):
        return "neighbouring thing"
    return "other word changed" if missing else "other"


def question_kind(question: str, paragraph: str, traps: Iterable[str] = (), answerable: bool = True) -> str:
    """The kind of a question: what it asks for when answerable, how it was made when not."""
    return wh_kind(question) if answerable else unanswerable_kind(question, paragraph, traps)
