"""Ingest stage: turn a user's file or pasted text into a new corpus document (text plus metadata), or remove one.

Accepted: .txt, .md, .html/.htm and .pdf. The stored file holds one paragraph per line, the layout corpus.py reads
as passages. Every rejection raises UploadError before anything on disk is touched; a successful add writes the
metadata sidecar first and the text file last, each atomically, so a reader never sees half a document.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .corpus import DOCUMENT_SUFFIXES, Document, load_documents, load_passages
from ..errors import AssistantError
from ..settings import Settings

TYPES = {".txt": "txt", ".md": "md", ".html": "html", ".htm": "html", ".pdf": "pdf"}
ACCEPTED = ".txt, .md, .html (.htm) or .pdf"
PASTED = "pasted text"
MAX_SLUG = 60
MAX_TITLE = 200
_WRAP_LIMIT = 200  # a block with a line longer than this is one paragraph per line, not hard-wrapped text
_SHORT = 0.6  # a line shorter than this share of its block's width is a paragraph's end or a heading
_TERMINAL = tuple('.!?:;"”’)]…')
_ITEM = re.compile(r"(#{1,6}\s|[-*+•]\s|\d{1,3}[.)]\s|\|)")
_RULE = re.compile(r"([-*_=])(\s*\1){2,}")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
_lock = threading.Lock()  # one writer at a time in this process: choosing a free name and taking it is one step


class UploadError(AssistantError, ValueError):
    """A file or text cannot become a corpus document; the message says what to do. Nothing was changed."""


@dataclass(frozen=True)
class Added:
    """The document an upload became."""

    doc_id: str
    title: str
    path: Path
    chars: int


def add_document(
    settings: Settings, data: bytes, filename: str, title: str | None = None, source: str | None = None
) -> Added:
    """Add a user's file to the corpus: extract its text, store it with metadata, and return what was added."""
    # Only the last part of the name counts, and it is shown in messages: no folders, no terminal control codes.
    name = _squash(PurePosixPath(str(filename).replace("\\", "/")).name) or "upload"
    suffix = PurePosixPath(name).suffix.lower()
    kind = TYPES.get(suffix)
    if kind is None:
        what = f"{suffix} files are" if suffix else "Files without a suffix are"
        raise UploadError(f"{name}: {what} not accepted. Upload a {ACCEPTED} file, or paste the text.")
    _check_size(settings, name, len(data))
    paragraphs, found_title = _EXTRACT[kind](data, name)
    given, stem = _clean_title(title), PurePosixPath(name).stem
    title = next((t for t in (given, found_title, _clean_title(stem)) if any(ch.isalnum() for ch in t)), "Untitled")
    return _store(settings, paragraphs, title, _clean_title(source) or name, kind, given or stem, name)


def add_text(settings: Settings, text: str, title: str) -> Added:
    """Add pasted text as a new document; the title is required."""
    title = _clean_title(title)
    if not title:
        raise UploadError("Give the pasted text a title; it names the article in citations.")
    _check_size(settings, "The pasted text", len(text.encode("utf-8", "surrogatepass")))
    if "\x00" in text:
        raise UploadError("The pasted text holds binary data (NUL characters); paste plain text.")
    paragraphs = _nonempty(reflow(text), "The pasted text", extracted=False)
    return _store(settings, paragraphs, title, PASTED, "text", title, "The pasted text")


def remove_document(settings: Settings, doc_id: str) -> None:
    """Delete a document's text file and its metadata sidecar, never the corpus's last document."""
    with _lock:
        documents = load_documents(settings.paths.corpus_dir)
        known = [d.doc_id for d in documents]
        if doc_id not in known:
            raise UploadError(f"No document {doc_id!r} in the corpus; the documents are: {', '.join(known)}.")
        if len(known) == 1:
            raise UploadError(
                f"{doc_id!r} is the only document of the corpus, and the assistant needs one to answer from. "
                "Add another article first, then remove this one."
            )
        corpus = Path(settings.paths.corpus_dir)
        # The text goes first: a crash in between leaves a stray sidecar, never a document without its metadata.
        for suffix in DOCUMENT_SUFFIXES:
            (corpus / f"{doc_id}{suffix}").unlink(missing_ok=True)
        (corpus / f"{doc_id}.meta.json").unlink(missing_ok=True)
        _sync_dir(corpus)


def update_metadata(settings: Settings, doc_id: str, **fields) -> dict:
    """Set fields of a document's NAME.meta.json (written atomically, other fields kept); return the metadata."""
    path = Path(settings.paths.corpus_dir) / f"{doc_id}.meta.json"
    with _lock:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            meta = {}
        except ValueError as exc:
            raise UploadError(f"{path} is not valid JSON ({exc}); fix or delete it.") from exc
        meta.update(fields)
        _write_atomic(path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def reindex(settings: Settings, progress: Callable[[int, int], None] | None = None, embeddings=None):
    """Bring the index in step with the corpus (only new or changed documents are embedded) and return its report.

    progress(done, total) is called after each batch of passages embedded.
    """
    from .indexing import PassageIndex

    documents, passages = load_passages(settings.paths.corpus_dir)
    return PassageIndex(settings, embeddings).open(documents, passages, progress=progress)


# ----- checks ------------------------------------------------------------------------------------------------------
def _check_size(settings: Settings, name: str, size: int) -> None:
    limit = settings.uploads.max_upload_bytes
    if size > limit:
        raise UploadError(
            f"{name} is larger than {limit / 1e6:.3g} MB ({limit:,} bytes), the limit for a new article. Upload a "
            "shorter article, or raise the limit with the setting ASSISTANT_MAX_UPLOAD_BYTES."
        )


def _check_no_nul(data: bytes, name: str) -> None:
    if b"\x00" in data:
        raise UploadError(f"{name} is not a text file (it holds binary data). Upload a {ACCEPTED} file.")


def _nonempty(paragraphs: list[str], name: str, extracted: bool = True) -> list[str]:
    if not any(p.lstrip("#").strip() for p in paragraphs):
        where = "no article text could be found in it" if extracted else "it is empty"
        raise UploadError(f"{name} holds no text: {where}. Check that this is the right file, or paste the text.")
    return paragraphs


# ----- extraction: each returns (paragraphs, title or "") ------------------------------------------------------------
def _extract_plain(data: bytes, name: str, markdown: bool = False) -> tuple[list[str], str]:
    _check_no_nul(data, name)
    if data.startswith(b"%PDF-"):
        raise UploadError(f"{name} is a PDF, not text; rename it to .pdf and upload it again.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(
            f"{name} is not UTF-8 text (undecodable byte at position {exc.start}). Re-save it as UTF-8 (in most "
            "editors: Save as → Encoding: UTF-8) and upload it again, or paste the text."
        ) from exc
    paragraphs = _nonempty(reflow(text, markdown=markdown), name, extracted=False)
    title = next((p.lstrip("#").strip() for p in paragraphs if re.match(r"#\s", p)), "") if markdown else ""
    return paragraphs, _clean_title(title)


def _extract_markdown(data: bytes, name: str) -> tuple[list[str], str]:
    return _extract_plain(data, name, markdown=True)


def _extract_html(data: bytes, name: str) -> tuple[list[str], str]:
    _check_no_nul(data, name)
    if not re.search(rb"<[a-zA-Z!]", data):
        raise UploadError(f"{name} does not look like an HTML page (it has no tags); save it as .txt instead.")
    import trafilatura

    # trafilatura only parses the markup (lxml): no script runs, nothing is fetched or rendered.
    found = trafilatura.bare_extraction(
        data, with_metadata=True, include_comments=False, include_tables=True, include_links=False
    )
    body = getattr(found, "body", None)
    paragraphs = list(_html_blocks(body)) if body is not None else []
    return _nonempty(paragraphs, name), _clean_title(getattr(found, "title", None) or "")


def _html_blocks(element) -> Iterator[str]:
    """Yield trafilatura's XML body as paragraphs, headings marked with '#' so they always become sections."""
    for child in element:
        if not isinstance(child.tag, str):  # comments and processing instructions
            continue
        if child.tag == "row":
            text = " | ".join(_inline(cell) for cell in child if isinstance(cell.tag, str))
        elif any(isinstance(c.tag, str) and c.tag in _HTML_BLOCKS for c in child):
            if child.text and child.text.strip():
                yield _squash(child.text)
            yield from _html_blocks(child)
            continue
        else:
            text = _inline(child)
        if text.strip(" |"):
            yield f"# {text}" if child.tag == "head" else text


_HTML_BLOCKS = {"p", "head", "list", "item", "table", "row", "quote", "code", "div", "section"}


def _inline(element) -> str:
    for br in element.iter("lb"):
        br.tail = " " + (br.tail or "")
    return _squash("".join(element.itertext()))


def _extract_pdf(data: bytes, name: str) -> tuple[list[str], str]:
    if b"%PDF-" not in data[:1024]:
        raise UploadError(f"{name} is not a PDF (it lacks the %PDF- header); check the file or its suffix.")
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UploadError(f"{name} is password-protected; save an unprotected copy, or paste the text.")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = getattr(reader.metadata, "title", None) or ""
    except UploadError:
        raise
    except Exception as exc:  # a damaged PDF surfaces as many kinds of error inside pypdf
        raise UploadError(
            f"{name} could not be read as a PDF ({type(exc).__name__}: {exc}); it may be damaged. "
            "Export or download it again, or paste the text."
        ) from exc
    if not any(ch.isalnum() for page in pages for ch in page):
        raise UploadError(
            f"{name} has no text layer: it looks scanned (pictures of pages). Run OCR on it first "
            "(e.g. `ocrmypdf in.pdf out.pdf`), or paste the article's text."
        )
    paragraphs = _nonempty(reflow("\n\n".join(pages), from_pdf=True), name)
    title = _clean_title(str(meta_title))
    # Producers often leave the source file's name as the title; that is no title.
    if re.search(r"\.(docx?|odt|pdf|rtf|txt)$|^microsoft word", title, re.IGNORECASE):
        title = ""
    return paragraphs, title


_EXTRACT = {"txt": _extract_plain, "md": _extract_markdown, "html": _extract_html, "pdf": _extract_pdf}


# ----- re-flowing text into paragraphs -------------------------------------------------------------------------------
def _squash(text: str) -> str:
    """One line of text: invisible and control characters gone, every run of white space a single space."""
    text = text.translate(_INVISIBLE)
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def reflow(text: str, markdown: bool = False, from_pdf: bool = False) -> list[str]:
    """Return text's paragraphs, one string each.

    Text without blank lines between its lines already holds one paragraph per line (the corpus's own layout), and
    keeps them. Otherwise blank lines separate paragraphs, and inside a block hard-wrapped lines are joined again: a
    line ends its paragraph when the next word would have fitted on it and it is short or ends a sentence. A PDF's
    lines are always wrapped lines, and a hyphen at a line's end there usually splits a word.
    """
    lines = [_squash(raw) for raw in text.splitlines()]
    spaced = from_pdf or any(not line for line in _trim_blank(lines))
    paragraphs: list[str] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line:
            block.append(line)
        elif block:
            block = _markdown_rules(block) if markdown else block
            paragraphs += _block_paragraphs(block, from_pdf) if spaced else block
            block = []
    return paragraphs


def _trim_blank(lines: list[str]) -> list[str]:
    start = next((i for i, line in enumerate(lines) if line), len(lines))
    end = next((i for i in range(len(lines), 0, -1) if lines[i - 1]), start)
    return lines[start:end]


def _markdown_rules(lines: list[str]) -> list[str]:
    """Turn setext underlines into '#' headings and drop thematic breaks ('---'), which are no text."""
    out: list[str] = []
    for line in lines:
        if _RULE.fullmatch(line):
            if out and line[0] in "=-" and not out[-1].startswith("#"):
                out[-1] = ("# " if line[0] == "=" else "## ") + out[-1]
            continue
        out.append(line)
    return out


def _block_paragraphs(lines: list[str], from_pdf: bool) -> list[str]:
    if not lines:  # a block that held only a thematic break
        return []
    width = max(len(line) for line in lines)
    # Outside PDFs, a block is joined only when it looks wrapped: short lines, most of them nearly full.
    inner = lines[:-1]
    full = sum(len(x) >= _SHORT * width for x in inner)
    wrapped = from_pdf or (bool(inner) and width <= _WRAP_LIMIT and 2 * full >= len(inner))
    paragraphs, current = [], [lines[0]]
    for line in lines[1:]:
        prev = current[-1]
        if not wrapped or prev.startswith("#") or _ITEM.match(line) or _ends_paragraph(prev, line, width):
            paragraphs.append(_join(current, from_pdf))
            current = []
        current.append(line)
    paragraphs.append(_join(current, from_pdf))
    return paragraphs


def _ends_paragraph(line: str, following: str, width: int) -> bool:
    fits = len(line) + 1 + len(following.split()[0]) <= width
    return fits and (len(line) < _SHORT * width or line.endswith(_TERMINAL))


def _join(lines: list[str], dehyphenate: bool) -> str:
    text = lines[0]
    for line in lines[1:]:
        if text.endswith("-") and text[-2:-1].isalpha():
            # A PDF's line-end hyphen usually splits a word; a text file's is usually a compound's own hyphen.
            text = text[:-1] + line if dehyphenate and line[:1].islower() else text + line
        else:
            text = f"{text} {line}"
    return text


# ----- naming and storing ------------------------------------------------------------------------------------------
def _clean_title(title: str | None) -> str:
    return _squash(title or "")[:MAX_TITLE].strip()


def slugify(text: str) -> str:
    """A safe document id: lowercase ASCII letters, digits and hyphens, at most 60 characters, maybe empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:MAX_SLUG].strip("-")


def _fingerprint(paragraphs: list[str]) -> str:
    # Headings compare without their '#', so the same article as .md, .txt or pasted text is one text.
    canonical = "\n".join(p.lstrip("#").strip() for p in paragraphs)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _existing_documents(corpus: Path) -> list[Document]:
    readable = corpus.is_dir() and any(
        p.suffix in DOCUMENT_SUFFIXES and not p.name.startswith(".") and p.name.lower() != "readme.md"
        for p in corpus.iterdir()
    )
    return load_documents(corpus) if readable else []  # an empty or missing folder is a corpus yet to be filled


def _check_duplicate(documents: list[Document], paragraphs: list[str], stored: str, name: str) -> None:
    wanted, raw = _fingerprint(paragraphs), hashlib.sha256(stored.encode("utf-8")).hexdigest()
    for doc in documents:
        if doc.sha256 == raw or _fingerprint(reflow(doc.text, markdown=doc.path.suffix == ".md")) == wanted:
            raise UploadError(
                f"{name}: this text is already in the corpus as {doc.doc_id!r} ({doc.title}); nothing was added. "
                f"To replace it, remove {doc.doc_id!r} first."
            )


def _free_id(corpus: Path, base: str) -> str:
    taken = {p.name.split(".", 1)[0] for p in corpus.iterdir()} if corpus.is_dir() else set()
    taken.add("readme")  # corpus.load_documents skips readme.md
    doc_id, n = base, 1
    while doc_id in taken:
        n += 1
        tail = f"-{n}"
        doc_id = base[: MAX_SLUG - len(tail)].rstrip("-") + tail
    return doc_id


def _store(
    settings: Settings, paragraphs: list[str], title: str, source: str, kind: str, id_hint: str, name: str
) -> Added:
    suffix = ".md" if kind == "md" else ".txt"
    # Blank lines keep a stored .md valid Markdown; corpus.py skips them either way.
    stored = ("\n\n" if kind == "md" else "\n").join(paragraphs) + "\n"
    meta = {
        "title": title,
        "source": source,
        "added": datetime.now(UTC).isoformat(timespec="seconds"),
        "original_type": kind,
    }
    corpus = Path(settings.paths.corpus_dir)
    with _lock:
        _check_duplicate(_existing_documents(corpus), paragraphs, stored, name)
        doc_id = _free_id(corpus, slugify(id_hint) or slugify(title) or "document")
        path = corpus / f"{doc_id}{suffix}"
        meta_path = corpus / f"{doc_id}.meta.json"
        try:
            corpus.mkdir(parents=True, exist_ok=True)
            _write_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            _write_atomic(path, stored)
        except OSError as exc:
            meta_path.unlink(missing_ok=True)
            raise UploadError(f"Could not write to {corpus} ({exc}); check the folder exists and is writable.") from exc
    return Added(doc_id=doc_id, title=title, path=path, chars=len(stored))


def _write_atomic(path: Path, text: str) -> None:
    """Write text to path all at once: a hidden temp file beside it (corpus.py skips dot files), then a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
