"""Cite stage: citations as data, the one marker syntax ("[n]") and the one way to highlight a quote in its passage."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from html import escape

from ..index.corpus import Passage

# The only citation marker this project writes or reads: "[n]" after a sentence, n counting from 1.
MARKER = re.compile(r"\[(\d+)\]")
# How a refusal's Answer.closest is labelled wherever it is shown: a quote to read, not an answer.
NEAREST = "Nearest passage, not an answer"
_MARKERS_WITH_SPACE = re.compile(rf"\s*(?:{MARKER.pattern})+")
# The model's own references ("[2]", "(¶5)", "Paragraph 3:") are never trusted: citations are attached by code.
_MODEL_MARKERS = re.compile(
    r"\s*(\[(?:\s*(?:¶|p|para\.?|paragraph)?\s*\d+\s*[,;–-]?\s*)+\]|\((?:¶|para\.?|paragraph)\s*\d+\)|¶\s*\d+)", re.I
)


def strip_markers(text: str) -> str:
    """Remove citation markers like [1][2] (and the space before them) from an answer's text."""
    return _MARKERS_WITH_SPACE.sub("", text)


def strip_model_markers(text: str) -> str:
    """Remove the references the model wrote itself ("[2]", "[p3, 4]", "(¶5)"), before its sentence is checked."""
    return _MODEL_MARKERS.sub("", text)


def marker_numbers(text: str) -> list[int]:
    """The numbers of the citation markers in text, in order."""
    return [int(n) for n in MARKER.findall(text)]


def mark_sentence(sentence: str, markers: list[int]) -> str:
    """Put citation markers like [1][2] before a sentence's final stop, or after a closing quote."""
    tags = "".join(f"[{m}]" for m in markers)
    match = re.search(r"[.!?]+$", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {tags}{match.group()}"
    return f"{sentence} {tags}"


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the spans sorted, with overlapping or touching ones merged and empty ones dropped."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, offset: int, spans: Iterable[tuple[int, int]]) -> str:
    """Return text as escaped HTML with each span (document offsets; text starts at offset) wrapped in <mark>."""
    out, pos = [], 0
    for start, end in merge_spans(spans):
        lo, hi = max(start - offset, pos), min(end - offset, len(text))
        if hi <= lo:
            continue
        out.append(escape(text[pos:lo]))
        out.append(f"<mark>{escape(text[lo:hi])}</mark>")
        pos = hi
    out.append(escape(text[pos:]))
    return "".join(out)


@dataclass(frozen=True)
class Citation:
    """One cited passage: the marker number in the answer text and the span of the article that supports it."""

    index: int
    passage_id: str
    text: str  # the whole passage
    quote: str  # the supporting span, verbatim from the document
    start: int  # document offsets of the quote
    end: int
    source: str
    doc_id: str
    title: str
    number: int  # paragraph number in the document
    section: str
    passage_start: int  # document offsets of the whole passage
    passage_end: int

    @classmethod
    def of(cls, passage: Passage, index: int, start: int, end: int, doc_text: str) -> Citation:
        """Citation number index of the span start:end of passage's document (whose text is doc_text)."""
        return cls(
            index=index,
            passage_id=passage.passage_id,
            text=passage.text,
            quote=doc_text[start:end],
            start=start,
            end=end,
            source=passage.source,
            doc_id=passage.doc_id,
            title=passage.title,
            number=passage.number,
            section=passage.section,
            passage_start=passage.start,
            passage_end=passage.end,
        )

    def to_dict(self) -> dict:
        """Return the citation as plain data (for JSON)."""
        return dict(self.__dict__)


@dataclass
class Reply:
    """The answer as it is shown: the sentences streamed so far, those waiting for the next, and their citations.

    A passage cited by several sentences keeps one number; its quote widens to cover every span it backs.
    """

    kept: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # sentences without content words ("Yes."), shown with the next
    numbering: dict[str, int] = field(default_factory=dict)
    citations: list[Citation] = field(default_factory=list)

    def cite(self, sentence: str, quotes: list[tuple[Passage, int, int]], doc_text: Callable[[str], str]) -> str:
        """Number (or widen) the citations of sentence's supporting quotes and return it with its markers."""
        markers = []
        for passage, start, end in quotes:
            text = doc_text(passage.doc_id)
            if passage.passage_id in self.numbering:
                i = self.numbering[passage.passage_id] - 1
                old = self.citations[i]
                lo, hi = min(old.start, start), max(old.end, end)
                self.citations[i] = replace(old, start=lo, end=hi, quote=text[lo:hi])
            else:
                self.numbering[passage.passage_id] = len(self.numbering) + 1
                self.citations.append(Citation.of(passage, self.numbering[passage.passage_id], start, end, text))
            markers.append(self.numbering[passage.passage_id])
        return mark_sentence(sentence, markers)

    def add(self, marked: str) -> str:
        """Keep a checked sentence (with any pending ones before it); return the piece to stream."""
        piece = " ".join([*self.pending, marked])
        self.pending.clear()
        self.kept.append(piece)
        return (" " if len(self.kept) > 1 else "") + piece

    @property
    def text(self) -> str:
        """The answer text so far."""
        return " ".join(self.kept)
