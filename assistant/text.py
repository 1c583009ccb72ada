"""Text helpers shared by the stages: folding, word stems, stop words and matching of names across spellings."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

# Hand-written, not a library's: scikit-learn's list and the stop-words package's drop words answers depend on
# ("half", "million", "years", "states", "nine"); measured in issue 12's note.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "its",
        "itself",
        "just",
        "least",
        "less",
        "let",
        "like",
        "made",
        "make",
        "many",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "per",
        "quite",
        "rather",
        "same",
        "say",
        "says",
        "said",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yes",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "according",
        "article",
        "text",
        "passage",
        "tell",
        "told",
        "describe",
        "described",
        "explain",
        "mention",
        "mentioned",
        "give",
        "given",
        "name",
        "named",
        "one",
        "ones",
        "thing",
        "things",
        "kind",
        "way",
        "get",
        "got",
        "still",
        "even",
        "well",
        "often",
        "every",
    ]
)

_WORD_RE = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")


def fold(text: str) -> str:
    """Lowercase, strip accents and unify quotes and dashes, keeping the length of nothing in particular."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = text.replace("—", " ").replace("–", " ").replace("-", " ")
    return text.lower()


def words(text: str) -> list[str]:
    """Folded words of text, possessives cut ("Norway's" -> "norway")."""
    out = []
    for word in _WORD_RE.findall(fold(text)):
        if word.endswith("'s"):
            word = word[:-2]
        out.append(word.strip("'."))
    return [w for w in out if w]


_STEMMER_LOCK = threading.Lock()  # a Snowball stemmer keeps its word in itself while it works


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    """The Snowball (Porter2) stem of a folded word: 'spending'/'spend' and 'allies'/'ally' meet; numbers stay whole."""
    if word[:1].isdigit():
        return word
    with _STEMMER_LOCK:
        return _stemmer().stemWord(word)


def content_stems(text: str) -> set[str]:
    """Stems of the words that carry meaning (stop words removed)."""
    return {stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())}


def content_stem_list(text: str) -> list[str]:
    """Like content_stems, in order and with repeats (for BM25)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def numbers(text: str) -> set[str]:
    """Numbers written with digits, normalised ("3,5" and "3.5" both give "3.5")."""
    return {n.replace(",", ".").rstrip(".") for n in _NUMBER_RE.findall(text)}


_SPELLED = {
    w: str(n) for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}


def spelled_numbers(text: str) -> set[str]:
    """The small numbers text spells out ("five" gives "5"), normalised as numbers() gives them."""
    return {_SPELLED[w] for w in words(text) if w in _SPELLED}


def number_stems() -> dict[str, str]:
    """The stem of each spelled-out small number, with its value: {"five": "5", "twelv": "12"}."""
    return {stem(w): n for w, n in _SPELLED.items()}


_LIST_ITEM = r"(?:the\s+)?[A-Z][\w'’-]*(?:\s+(?:of\s+)?[A-Z][\w'’-]*){0,3}"
_NAME_LIST = re.compile(rf"{_LIST_ITEM}(?:,\s+{_LIST_ITEM})*,?\s+(?:and|or)\s+{_LIST_ITEM}")
_LIST_JOINT = re.compile(r",\s+(?:(?:and|or)\s+)?|\s+(?:and|or)\s+")


def list_sizes(text: str) -> set[str]:
    """How many names each list of names in text counts ("Denmark, Estonia and Poland" counts 3), as numbers:
    what "how many" asks, when the article names the things without counting them."""
    return {str(len(_LIST_JOINT.split(m.group()))) for m in _NAME_LIST.finditer(text)}


# Capitalised only because they open a sentence or a clause; the stop words are such words too.
_OPENERS = frozenset(
    "please answer question list however additionally furthermore moreover overall meanwhile therefore thus "
    "specifically instead finally first second several various certain since although though sure sorry "
    "unfortunately okay ok".split()
)
_NAME_RE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ž][\w'’.-]*")


def entity_words(text: str, skip_first: bool = False, lowercase_vocabulary: frozenset[str] = frozenset()) -> list[str]:
    """Capitalised words and acronyms that look like names ("Italy", "Smith", "UNESCO"), in order, without repeats.

    A sentence's first word is capitalised anyway: with skip_first it is passed over unless it is an acronym or a
    possessive; otherwise it counts unless it is a word lowercase_vocabulary knows in lower case.
    """
    found: list[str] = []
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n+", text):
        for i, match in enumerate(_NAME_RE.finditer(sentence)):
            raw = match.group().rstrip(".'’-")
            possessive = bool(re.search(r"['’]s$", raw))
            word = re.sub(r"['’]s$", "", raw)
            lower = fold(word)
            acronym = word.isupper() and len(word) > 1  # "US" is a name, "I" and "A" are not
            if not word[:1].isupper() or lower in _OPENERS or (lower in STOPWORDS and not acronym):
                continue
            if i == 0 and not (word.isupper() or possessive) and (skip_first or lower in lowercase_vocabulary):
                continue
            if word not in found:
                found.append(word)
    return found


def lowercase_words(text: str) -> frozenset[str]:
    """Words that text uses in lower case somewhere (so they are ordinary words, not names)."""
    return frozenset(fold(m.group()) for m in re.finditer(r"\b[a-zà-ÿ][\w'’-]*", text))


def _roots(word: str) -> list[tuple[str, bool]]:
    """Spellings to look for, each with whether a prefix match is enough."""
    w = words(word)
    if not w:
        return []
    key = " ".join(w)
    # A demonym and its country ("Norwegian", "Norway") share a root; short names must match whole.
    return [(key[: max(5, len(key) - 3)], True) if len(key) > 5 and " " not in key else (key, False)]


CAPITAL_RUN = re.compile(r"[A-Z][\w'’-]*(?: +(?:of +)?[A-Z][\w'’-]*)+")  # "Supreme Court of Norway"


def spells_acronym(acronym: str, text: str) -> bool:
    """True when text holds capitalised words in a row whose initials spell acronym ("the United States" for "US")."""
    if not (2 <= len(acronym) <= 6 and acronym.isalpha() and acronym.isupper()):
        return False
    return any(acronym in "".join(w[0] for w in run.split() if w[0].isupper()) for run in CAPITAL_RUN.findall(text))


def abbreviates(acronym: str, name: str) -> bool:
    """True when acronym's letters run, in order, through the letters of name's last few words: the looser rule
    for an acronym written right after the name it shortens ("Supreme Allied Commander Europe (SACEUR)"), where
    spells_acronym, which must find a name for it anywhere in a passage, asks for initials."""
    names, letters = name.split(), fold(acronym)
    for k in range(len(names)):
        tail = fold(" ".join(names[k:]))
        rest = iter(tail)
        if tail.startswith(letters[0]) and all(ch in rest for ch in letters):
            return True
    return False


def find_entity(word: str, text: str) -> bool:
    """True when text mentions the name word, allowing demonyms and inflections that share its spelling, and an
    acronym spelled out."""
    if spells_acronym(word, text):
        return True
    haystack = " " + " ".join(words(text)) + " "
    for root, prefix in _roots(word):
        if prefix:
            if f" {root}" in haystack:
                return True
        elif re.search(rf" {re.escape(root)}(?:s|n|ns)? ", haystack):
            return True
    return False
