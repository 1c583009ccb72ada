"""Answer stage, check: hold an answer sentence to the question's own words.

A trap question borrows a true fact and changes one thing: a swapped word ("Which presidents introduce council
bills?" where the passage says ministers), a flipped negation ("What did the mayor say she would not do?"), an
event the passage never states ("When did Norland invade Eastmark?" where it names both and a year). The model's
answer echoes the changed word, and the word check (grounding.py) looks only at what an answer adds to the
question, so that word was never looked for. Here every name, number, negation and content word an answer
sentence takes from the question must also stand in the passage it cites, or be matched there: by its stem, a
number spelled out, a name's other form (a demonym, an acronym, a title the article gives the person), or a word
the embedding model finds close ("Burma" for "Myanmar"). A bare answer ("In 1979.") takes the whole
question as its premise. A negation or an opposite ("before" for "after") in the question but not in the cited
sentence, or the other way round, is a mismatch too.

What finds no match is returned by kind (`Unmatched`): the check can drop the sentence, and the decision
(decision.py) weighs each kind.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..text import STOPWORDS, content_stems, entity_words, find_entity, numbers, spelled_numbers, stem, words

NEGATIONS = frozenset("not no never none neither nor without cannot n't nobody nothing".split())
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "anti", "mis")
# General English opposites, not any article's words; matched by stem, both ways.
OPPOSITES = (
    "first last, before after, earlier later, early late, increase decrease, rise fall, more less, most least, "
    "many few, high low, higher lower, highest lowest, large small, larger smaller, largest smallest, big small, "
    "major minor, long short, longest shortest, old new, oldest newest, old young, strong weak, fast slow, best "
    "worst, good bad, better worse, win lose, victory defeat, success failure, positive negative, maximum minimum, "
    "begin end, start end, open close, north south, east west, northern southern, eastern western, upper lower, "
    "inner outer, inside outside, internal external, import export, include exclude, accept reject, allow forbid, "
    "allow prohibit, support oppose, agree disagree, public private, rich poor, wealthy poor, same different, "
    "full empty, hot cold, heavy light, top bottom, above below, over under, front back, left right, gain loss, "
    "lose gain, true false, legal illegal, war peace, birth death, born died, entrance exit, buy sell, lend borrow, "
    "attack defend, enter leave, arrive depart, add remove, create destroy, build destroy, always never, all none, "
    "ancient modern, primary secondary, common rare, simple complex, easy difficult, direct indirect, male female"
)
_NUMERO = re.compile(r"\bNo\.?\s*(?=\d)")  # "No. 15" is no negation
_WH = frozenset("what which who whom whose when where why how".split())
# Words that frame a question rather than state its premise: an answer may repeat them ("The name of the ferry
# is …") where the passage never uses them ("the ferry Saga").
_FRAME = frozenset(
    "name named names call called known term termed refer referred describe described mean meant type kind sort "
    "example examples happen happened also".split()
)


def negated(text: str) -> bool:
    """True when text says not, never, no one, without..."""
    return any(w in NEGATIONS or w.endswith("n't") for w in words(_NUMERO.sub(" ", text)))


def _negated_stems(text: str) -> set[str]:
    """Content stems of the few words after each negation word: what the negation is about."""
    said = words(_NUMERO.sub(" ", text))
    return {t for i, w in enumerate(said) if negated(w) for t in content_stems(" ".join(said[i + 1 : i + 4]))}


def _negated_heads(text: str) -> set[str]:
    """The first content stem after each negation word: the thing negated ("did not sign" -> sign)."""
    said = words(_NUMERO.sub(" ", text))
    heads = set()
    for i, w in enumerate(said):
        if negated(w):
            head = next((content_stems(t) for t in said[i + 1 : i + 4] if content_stems(t)), set())
            heads |= head
    return heads


def negation_differs(question: str, sentence: str) -> bool:
    """Whether the question is negated and the sentence is not, or a word both share is negated in one only (a
    long sentence often negates something else)."""
    if negated(question) and not negated(sentence):
        return True
    if _negated_heads(question) & _negated_heads(sentence):
        return False  # both negate the same thing ("did not sign")
    shared = content_stems(question) & content_stems(sentence)
    return bool((_negated_stems(question) ^ _negated_stems(sentence)) & shared)


@lru_cache(maxsize=1)
def _opposite_stems() -> dict[str, frozenset[str]]:
    """Each listed word's stem, with the stems of its opposites (read on first use, not at import)."""
    out: dict[str, set[str]] = {}
    for pair in OPPOSITES.split(","):
        a, b = (stem(w) for w in pair.split())
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return {k: frozenset(v) for k, v in out.items()}


def opposites_in(asked: set[str], held: set[str]) -> list[str]:
    """The stems of asked missing from held whose opposite held has: a listed pair, or the same word (four letters
    or more) with a negating prefix ("unestablished" for "established")."""
    found = []
    for q in sorted(asked - held):
        if _opposite_stems().get(q, frozenset()) & held:
            found.append(q)
            continue
        for p in NEGATING_PREFIXES:
            if (q.startswith(p) and len(q) - len(p) >= 4 and q[len(p) :] in held) or (len(q) >= 4 and p + q in held):
                found.append(q)
                break
    return found


# Nouns that name the kind of answer asked for ("what year", "which country", "how many people"): an answer may
# repeat one ("in the year 1979") where the passage never says it ("in 1979").
_ANSWER_KINDS = frozenset(
    "year years date day days month months century centuries decade decades time times era period age country "
    "countries nation nations city cities town place places region area location language languages number "
    "numbers percentage percent amount sum figure person people group organization organisation company thing "
    "things way ways reason reasons".split()
)


def asked_type(question: str) -> set[str]:
    """The stem of a word naming the kind of answer asked for ("what year", "which country", "how many people")
    when it is one of the general kinds a passage seldom names ("which presidents" asks about presidents)."""
    said = [*words(question), ""]
    after = [i + 1 for i, w in enumerate(said) if w in ("what", "which", "whose")]
    after += [i + 2 for i, w in enumerate(said[:-1]) if w == "how" and said[i + 1] in ("many", "much")]
    return {stem(said[i]) for i in after if i < len(said) and said[i] in _ANSWER_KINDS}


@dataclass(frozen=True)
class Unmatched:
    """The question's words an answer sentence takes that its cited evidence does not match, by kind."""

    names: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    negation: bool = False
    antonyms: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

    @property
    def decisive(self) -> bool:
        """True when words alone say the evidence states something else: a name, number, negation or opposite."""
        return bool(self.names or self.numbers or self.negation or self.antonyms)

    def signals(self) -> dict[str, float]:
        """What the decision weighs: how many of each kind found no match."""
        return {
            "unmatched_names": float(len(self.names)),
            "unmatched_numbers": float(len(self.numbers)),
            "negation_mismatch": float(self.negation),
            "antonym": float(bool(self.antonyms)),
            "unmatched_other": float(len(self.other)),
        }


Similar = Callable[[Sequence[str], Sequence[str]], list[float]]  # for each word, its best cosine among others


class QuestionWords:
    """Matches the question's words an answer sentence repeats against the passage it cites.

    similar(words, candidates), when given, is the embedding model's best cosine of each word among the
    candidates; words at or above min_similarity count as matched. Word vectors are computed once and kept.
    """

    def __init__(self, embed: Callable[[list[str]], list[list[float]]] | None = None, min_similarity: float = 0.75):
        self._embed = embed
        self.min_similarity = min_similarity
        self._vectors: dict[str, object] = {}
        self._lock = threading.Lock()

    def similarity(self, asked: Sequence[str], candidates: Sequence[str]) -> list[float]:
        """Each asked word's best cosine among candidates (0 without an embedding model)."""
        if self._embed is None or not candidates or not asked:
            return [0.0] * len(asked)
        import numpy as np

        with self._lock:
            fresh = sorted({*asked, *candidates} - self._vectors.keys())
            if fresh:
                for word, vector in zip(fresh, self._embed(fresh), strict=True):
                    v = np.asarray(vector, dtype=np.float32)
                    self._vectors[word] = v / (np.linalg.norm(v) or 1.0)
            a = np.stack([self._vectors[w] for w in asked])
            c = np.stack([self._vectors[w] for w in candidates])
        return (a @ c.T).max(axis=1).tolist()

    def unmatched(self, question: str, sentence: str, passage: str, quote: str = "", named=None) -> Unmatched:
        """What of the question the sentence takes that passage (the cited paragraph; quote, the cited sentences,
        for negations and opposites) does not match. named(name, text), when given, is the word check's own test
        of a name (titles an article gives a person), tried before the other forms."""
        quote = quote or passage
        echoed = _echoed(question, sentence)
        said = words(passage)
        held = {stem(w) for w in said}
        found_name = named or find_entity
        names = [n for n in echoed["names"] if not found_name(n, text=passage)]
        names = self._unclose(names, [w for w in entity_words(passage)], lower=True)
        have = numbers(passage) | spelled_numbers(passage)
        missing_numbers = tuple(sorted(n for n in echoed["numbers"] if n not in have))
        other = [w for w in echoed["words"] if stem(w) not in held and stem(w) not in echoed["name_stems"]]
        other = self._unclose(other, sorted({w for w in said if w not in STOPWORDS and not w.isdigit()}))
        asked_stems = {stem(w) for w in words(question)}  # every word: "after" is a stop word with an opposite
        return Unmatched(
            names=tuple(names),
            numbers=missing_numbers,
            negation=negation_differs(question, quote) or negation_differs(sentence, quote),
            antonyms=tuple(opposites_in(asked_stems, {stem(w) for w in words(quote)})),
            other=tuple(other),
        )

    def _unclose(self, asked: list[str], candidates: list[str], lower: bool = False) -> list[str]:
        """The asked words no candidate is close to (by the embedding model)."""
        if not asked or self._embed is None:
            return asked
        keys = [w.lower() if lower else w for w in asked]
        pool = [w.lower() if lower else w for w in candidates]
        best = self.similarity(keys, pool)
        return [w for w, s in zip(asked, best, strict=True) if s < self.min_similarity]


def _echoed(question: str, sentence: str) -> dict:
    """The question's names, numbers and content words that the sentence takes; all of the question's
    when the sentence takes none of its content words (a bare answer borrows the whole question as its premise)."""
    q_words = [w for w in words(question) if w not in STOPWORDS and w not in _WH and w not in _FRAME]
    kind = asked_type(question)
    q_words = [w for w in q_words if stem(w) not in kind and not w.isdigit()]
    s_stems = content_stems(sentence)
    bare = not (s_stems & {stem(w) for w in q_words})
    take = (lambda _w: True) if bare else (lambda w: stem(w) in s_stems)
    names = [n for n in entity_words(question, skip_first=True) if bare or find_entity(n, sentence)]
    q_numbers = numbers(question) | spelled_numbers(question)
    s_numbers = numbers(sentence) | spelled_numbers(sentence)
    return {
        "names": names,
        "name_stems": {stem(w) for n in names for w in words(n)},
        "numbers": q_numbers if bare else q_numbers & s_numbers,
        "words": list(dict.fromkeys(w for w in q_words if take(w))),
    }
