"""The one answer normaliser, for the eval and the benchmarks alike: SQuAD 2.0's, kept exact so that the SQuAD
benchmark's figures mean what SQuAD's do, and the typographic folding the eval puts before it."""

from __future__ import annotations

import re
import string
import unicodedata

from ..answer.cite import MARKER
from ..text import fold

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")
# Unicode's punctuation and symbol categories: the typographic marks SQuAD's ASCII list does not hold.
_MARK_CATEGORIES = ("P", "S")


def normalize_answer(text: str) -> str:
    """SQuAD 2.0's normalisation, as its official evaluate-v2.0.py does it: lower case, ASCII punctuation removed
    (so "one-eighth" becomes "oneeighth"), the articles a/an/the removed, white space collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def fold_answer(text: str) -> str:
    """What the eval folds before normalize_answer, because its article is typeset and its answers are matched
    against a model's wording: citation markers go, accents, curly quotes and dashes are folded (hyphens become
    spaces: "Indo-Pacific" matches "Indo Pacific"), possessives go ("Germany's" matches "Germany"), and so do the
    Unicode punctuation marks and symbols SQuAD's ASCII list misses."""
    text = _POSSESSIVE.sub("", fold(MARKER.sub(" ", text)))
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(_MARK_CATEGORIES))


def normalize_folded(text: str) -> str:
    """The form the eval compares answers in: fold_answer, then the SQuAD normalisation."""
    return normalize_answer(fold_answer(text))
