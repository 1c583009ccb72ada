"""Corpus stage: read the documents in corpus/ and split them into paragraph passages with stable ids and offsets."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import AssistantError

CHUNKING = {"strategy": "paragraph", "headings": "metadata", "version": 1}
DOCUMENT_SUFFIXES = (".txt", ".md")

# A sentence ends at . ! or ? (maybe followed by closing quotes or brackets) before white space and a capital,
# a digit or an opening quote. Abbreviations are rare in news text; the few common ones are protected below.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[A-Z0-9“\"‘'(])")
_ABBREVIATIONS = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Gen|Sen|Rep|St|Jr|Sr|vs|etc|e\.g|i\.e|U\.S|U\.K|No)\.$")


@dataclass(frozen=True)
class Document:
    """One file of the corpus, its text kept byte for byte."""

    doc_id: str
    path: Path
    title: str
    source: str
    text: str
    sha256: str
    examples: tuple[str, ...] = ()  # example questions from NAME.meta.json, shown by the web chat


@dataclass(frozen=True)
class Passage:
    """One paragraph of a document: the unit that is indexed, retrieved and cited."""

    passage_id: str
    doc_id: str
    source: str
    title: str
    number: int  # 1-based paragraph number in its document, headings not counted
    section: str  # heading above the paragraph, "" before the first heading
    text: str
    start: int  # character offsets of the text in the document
    end: int
    sentences: tuple[tuple[int, int], ...] = field(default=(), repr=False)  # document offsets of each sentence
    score: float = 0.0  # set by retrieval: fused rank score, higher is better
    distance: float | None = None  # set by retrieval: cosine distance to the question, lower is closer

    @property
    def label(self) -> str:
        """Human-readable place of the passage, e.g. 'harbour-news ¶5'."""
        return f"{self.doc_id} ¶{self.number}"

    def with_scores(self, score: float, distance: float | None) -> Passage:
        """Return a copy carrying retrieval scores."""
        return replace(self, score=score, distance=distance)

    def to_dict(self) -> dict:
        """Return the passage as plain data (for JSON)."""
        return {
            "passage_id": self.passage_id,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "number": self.number,
            "section": self.section,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": self.score,
            "distance": self.distance,
        }


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Return (start, end) offsets of each sentence of text, shifted by offset."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        cut = match.start() + len(match.group().rstrip())
        if _ABBREVIATIONS.search(text[start : match.start() + 1]):
            continue
        spans.append((offset + start, offset + cut))
        start = match.end()
    if text[start:].strip():
        spans.append((offset + start, offset + len(text.rstrip())))
    return spans


def _is_heading(line: str, next_line: str | None) -> bool:
    stripped = line.strip()
    if stripped.startswith("#"):
        return True
    # A short line without closing punctuation, directly followed by body text, is a section heading.
    return (
        next_line is not None
        and len(stripped.split()) <= 10
        and not re.search(r"[.!?:;\"”’,]$", stripped)
        and len(next_line.strip()) > len(stripped)
    )


def _read_metadata(path: Path) -> dict:
    sidecar = path.with_suffix(".meta.json")
    if sidecar.exists():
        try:
            return json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorpusError(f"{sidecar} is not valid JSON ({exc}); fix or delete it.") from exc
    return {}


class CorpusError(AssistantError):
    """The corpus folder cannot be read; the message says what to fix."""


def load_documents(corpus_dir: Path) -> list[Document]:
    """Read every .txt/.md document in corpus_dir, sorted by name."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"Corpus folder {corpus_dir} does not exist; create it and put the article's .txt file in it."
        )
    documents = []
    for path in sorted(corpus_dir.iterdir()):
        if path.suffix not in DOCUMENT_SUFFIXES or path.name.startswith(".") or path.name.lower() == "readme.md":
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path} is not UTF-8 text ({exc}); re-save it as UTF-8.") from exc
        meta = _read_metadata(path)
        documents.append(
            Document(
                doc_id=path.stem,
                path=path,
                title=str(meta.get("title") or path.stem),
                source=str(meta.get("source") or path.name),
                text=text,
                sha256=hashlib.sha256(raw).hexdigest(),
                examples=tuple(str(q) for q in meta.get("examples") or () if str(q).strip()),
            )
        )
    if not documents:
        raise CorpusError(f"Corpus folder {corpus_dir} holds no .txt or .md document; add the article to it.")
    return documents


def split_passages(document: Document) -> list[Passage]:
    """Split a document into paragraph passages; headings become the section of the paragraphs below them."""
    lines, pos = [], 0
    for line in document.text.splitlines(keepends=True):
        lines.append((pos, line))
        pos += len(line)
    body = [(start, line) for start, line in lines if line.strip()]
    passages, section, number = [], "", 0
    for i, (start, line) in enumerate(body):
        following = body[i + 1][1] if i + 1 < len(body) else None
        if _is_heading(line, following):
            section = line.strip().lstrip("#").strip()
            continue
        lead = len(line) - len(line.lstrip())
        text = line.strip()
        begin = start + lead
        number += 1
        passages.append(
            Passage(
                passage_id=f"{document.doc_id}:p{number}",
                doc_id=document.doc_id,
                source=document.source,
                title=document.title,
                number=number,
                section=section,
                text=text,
                start=begin,
                end=begin + len(text),
                sentences=tuple(split_sentences(text, begin)),
            )
        )
    return passages


def load_passages(corpus_dir: Path) -> tuple[list[Document], list[Passage]]:
    """Load the corpus and return its documents and all their passages, in document order."""
    documents = load_documents(corpus_dir)
    return documents, [p for d in documents for p in split_passages(d)]


def corpus_hash(documents: list[Document]) -> str:
    """Return one hash over every document's id and content."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(f"{doc.doc_id}\0{doc.sha256}\0{doc.title}\0{doc.source}\n".encode())
    return digest.hexdigest()
