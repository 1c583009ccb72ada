"""The corpus as loaded: its documents and passages, the open index, the word check, the prompts, and the view of
each scope a conversation may draw on. Reloaded whenever the corpus or the index changes on disk, and reopened
when the store breaks under a search. The Assistant (answering.py) owns one; the answer stages see it only through
the Search and Views interfaces of answer/parts.py.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from langchain_core.runnables import RunnableConfig

from .answer.generation import Prompts, load_prompts, render_context, system_prompt
from .answer.grounding import Grounder
from .answer.guard import InvalidQuestion
from .answer.state import Retrieval, View
from .index.corpus import Document, Passage, load_passages
from .settings import Settings

log = logging.getLogger(__name__)


def fingerprint(settings: Settings) -> tuple:
    """Sizes and times of the corpus files and the index manifest: cheap to take before every question.

    The store's own database file changes whenever anyone merely queries it, so only its existence counts; a store
    damaged in place surfaces as a retrieval error, which reopens it (see Library.search).
    """

    def stamp(path: Path):
        try:
            stat = path.stat()
            return stat.st_mtime_ns, stat.st_size
        except OSError:
            return None

    corpus = Path(settings.paths.corpus_dir)
    try:
        # Dot files are an upload's temp files in the middle of being written: not part of the corpus yet.
        entries = [(p.name, stamp(p)) for p in sorted(corpus.iterdir()) if p.is_file() and p.name[0] != "."]
    except OSError:
        entries = [("corpus", None)]
    if not settings.index.chroma_host:
        index_dir = Path(settings.paths.index_dir)
        entries += [
            ("manifest", stamp(index_dir / "manifest.json")),
            ("store", (index_dir / "chroma.sqlite3").exists()),
        ]
    return tuple(entries)


class Library:
    """The loaded corpus, index and views; `load()` brings them up to date with the disk."""

    def __init__(self, settings: Settings, embeddings=None):
        self.settings = settings
        self._embeddings = embeddings
        self._lock = threading.RLock()
        self._loaded: tuple = ()
        self.loads = 0  # how many times it (re)loaded: what was built from it is stale when this moves
        self.documents: list[Document] = []
        self.passages: list[Passage] = []
        self.texts: dict[str, str] = {}  # each document's whole text, by doc_id
        # Set by load(): None before it, so a caller can tell a loaded library without guessing.
        self.index = self.index_report = self.grounder = self.prompts = None
        self._by_id: dict[str, Passage] = {}
        self._views: dict[str | None, View] = {}

    @property
    def loaded(self) -> bool:
        return self.loads > 0

    def current(self) -> bool:
        """True when loaded and nothing changed on disk since."""
        return self.loaded and fingerprint(self.settings) == self._loaded

    def load(self) -> bool:
        """Read the corpus, open (or build) the index and prepare the prompts, unless nothing changed on disk;
        True when it (re)loaded."""
        with self._lock:
            if self.current():
                return False
            from .index.indexing import forget_open_stores

            if self.loaded:
                # Someone edited the corpus or touched the index under a running assistant: never answer from the
                # old state; reopen the store from disk (it updates or rebuilds itself as needed).
                log.warning("The corpus or the index changed on disk; reloading.")
                forget_open_stores(self.settings)
            self._read()
            return True

    def _read(self) -> None:
        from .index.indexing import PassageIndex

        self.documents, self.passages = load_passages(self.settings.paths.corpus_dir)
        # A reload keeps the embedding model already in memory.
        embeddings = self._embeddings or getattr(self.index, "embeddings", None)
        self.index = PassageIndex(self.settings, embeddings)
        self.index_report = self.index.open(self.documents, self.passages)
        self.texts = {d.doc_id: d.text for d in self.documents}
        self.grounder = Grounder(self.passages, dict(self.texts), self.settings.retrieval.min_support)
        self.prompts: Prompts = load_prompts(self.settings.paths.prompts_dir)
        self._by_id = {p.passage_id: p for p in self.passages}
        self._views = {}
        self._loaded = fingerprint(self.settings)
        self.loads += 1

    def view(self, scope: str | None = None) -> View:
        """What a conversation may draw on: every document, or only the one named by scope (a doc_id)."""
        with self._lock:
            self.load()
            if scope not in self._views:
                self._views[scope] = self._make_view(scope)
            return self._views[scope]

    def _make_view(self, scope: str | None) -> View:
        from .answer.retrieve import build_retriever

        if scope is not None and scope not in self.texts:
            names = ", ".join(d.doc_id for d in self.documents)
            raise InvalidQuestion(f"There is no article {scope!r}; choose one of: {names}.")
        documents = [d for d in self.documents if scope in (None, d.doc_id)]
        passages = [p for p in self.passages if scope in (None, p.doc_id)]
        text = "\n".join(d.text for d in documents)
        # The whole text goes into a fixed prompt prefix when it fits: llama.cpp then re-reads only the question.
        # Past that, each prompt carries the retrieved passages instead.
        s = self.settings
        budget_chars = (
            s.generation.llm_context - s.generation.max_answer_tokens - s.generation.prompt_margin_tokens
        ) * s.generation.chars_per_token
        context = render_context(passages) if len(text) <= budget_chars else None
        titles = [d.title for d in documents]
        system = None
        if context is not None:
            system = system_prompt(self.prompts, titles[0] if len(titles) == 1 else "Articles", context)
        retriever = build_retriever(self.passages, self.index.store, s, scope)
        return View(scope, passages, text, context, system, titles, retriever)

    def search(
        self, question: str, view: View, k: int | None = None, config: RunnableConfig | None = None
    ) -> Retrieval:
        """Retrieve for question within view; a store that broke under us is reopened once."""
        from .answer.retrieve import search

        try:
            return search(question, view.retriever, self.index.store, self._by_id, k, config)
        except Exception as exc:  # the store broke under us (files deleted or damaged while running)
            from .index.indexing import IndexStoreError, forget_open_stores

            log.warning("Retrieval failed (%s); reopening the index.", exc)
            with self._lock:
                forget_open_stores(self.settings)
                self._read()
                view = self.view(view.doc_id)
            try:
                return search(question, view.retriever, self.index.store, self._by_id, k, config)
            except Exception as again:
                raise IndexStoreError(
                    f"The index cannot be searched ({again}). Run `assistant index --rebuild`."
                ) from again
