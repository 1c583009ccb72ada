"""Answer stage: the Assistant that owns the corpus, index and models, and runs a question through the pipeline.

The stages themselves are in pipeline.py; `Assistant.runnable()` (and `assistant.chain()`) is the same as a LangChain
Runnable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from .answer.cite import Citation
from .answer.decision import Decision, load_decision
from .answer.generation import Prompts, load_prompts, render_context
from .answer.grounding import Grounder
from .answer.guard import InvalidQuestion, greeting_reply, normalize_history, off_task_reply, validate_question
from .answer.parts import Parts
from .answer.pipeline import run
from .answer.question_words import QuestionWords
from .answer.state import NOT_IN_ARTICLE, Answer, AnswerState, Timings, View
from .index.corpus import Document, Passage, load_passages
from .reading.priority import Questions, questions_for
from .reading.reader import ArticleReader, Reading
from .settings import Settings

log = logging.getLogger(__name__)


class Assistant:
    """Answers questions about the corpus; heavy parts (index, models) load on first use or on load()."""

    def __init__(self, settings: Settings | None = None, chat_model=None, embeddings=None):
        self.settings = settings or Settings()
        self._chat_model = chat_model
        self._embeddings = embeddings
        self._lock = threading.RLock()
        self._ready = False
        self._warm = False
        self._loaded: tuple = ()
        self.documents: list[Document] = []
        self.passages: list[Passage] = []
        self.index_report = None
        # Set by load(): None before it, so a caller can tell a loaded assistant without guessing.
        self.index = self.grounder = self.prompts = self.decision = None
        self._parts: Parts | None = None
        # The questions in flight (this process's and, through a lock file, other processes'): readings give way.
        self.questions: Questions = questions_for(self.settings)
        self.reader = ArticleReader(
            self.settings, lambda: self.chat_model, lambda: self.prompts.answer, questions=self.questions
        )

    # ----- loading -------------------------------------------------------------------------------------------
    def _fingerprint(self) -> tuple:
        """Sizes and times of the corpus files and the index manifest: cheap to take before every question.

        The store's own database file changes whenever anyone merely queries it, so only its existence counts;
        a store damaged in place surfaces as a retrieval error, which reopens it (see _retrieve).
        """

        def stamp(path: Path):
            try:
                stat = path.stat()
                return stat.st_mtime_ns, stat.st_size
            except OSError:
                return None

        corpus = Path(self.settings.paths.corpus_dir)
        try:
            # Dot files are an upload's temp files in the middle of being written: not part of the corpus yet.
            entries = [(p.name, stamp(p)) for p in sorted(corpus.iterdir()) if p.is_file() and p.name[0] != "."]
        except OSError:
            entries = [("corpus", None)]
        if not self.settings.index.chroma_host:
            index_dir = Path(self.settings.paths.index_dir)
            entries += [
                ("manifest", stamp(index_dir / "manifest.json")),
                ("store", (index_dir / "chroma.sqlite3").exists()),
            ]
        return tuple(entries)

    def load(self) -> Assistant:
        """Read the corpus, open (or build) the index and prepare the prompts; reloads when the corpus or index changed."""
        with self._lock:
            if self._ready and self._fingerprint() == self._loaded:
                return self
            from .index.indexing import PassageIndex, forget_open_stores

            if self._ready:
                # Someone edited the corpus or touched the index under a running assistant: never answer from the
                # old state; reopen the store from disk (it updates or rebuilds itself as needed).
                log.warning("The corpus or the index changed on disk; reloading.")
                forget_open_stores(self.settings)
                self._ready = self._warm = False
            self.documents, self.passages = load_passages(self.settings.paths.corpus_dir)
            # A reload keeps the embedding model already in memory.
            embeddings = self._embeddings or getattr(self.index, "embeddings", None)
            self.index = PassageIndex(self.settings, embeddings)
            self.index_report = self.index.open(self.documents, self.passages)
            self.grounder = Grounder(
                self.passages, {d.doc_id: d.text for d in self.documents}, self.settings.retrieval.min_support
            )
            self.prompts: Prompts = load_prompts(self.settings.paths.prompts_dir)
            self.decision = (
                Decision(load_decision(self.settings.deciding.decision_model), self.settings.deciding.probes)
                if self.settings.deciding.decision
                else None
            )
            self._by_id = {p.passage_id: p for p in self.passages}
            self._texts = {d.doc_id: d.text for d in self.documents}
            self._views: dict[str | None, View] = {}
            self._parts = None
            self._loaded = self._fingerprint()
            self._ready = True
            return self

    def view(self, scope: str | None = None) -> View:
        """What a conversation may draw on: every document, or only the one named by scope (a doc_id)."""
        with self._lock:
            self.load()
            if scope not in self._views:
                self._views[scope] = self._make_view(scope)
            return self._views[scope]

    def _make_view(self, scope: str | None) -> View:
        from .answer.retrieve import build_retriever

        if scope is not None and scope not in self._texts:
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
            title = titles[0] if len(titles) == 1 else "Articles"
            system = self.prompts.system.format(title=title, context=context)
        retriever = build_retriever(self.passages, self.index.store, s, scope)
        return View(scope, passages, text, context, system, titles, retriever)

    @property
    def retriever(self):
        """The LangChain retriever (a BaseRetriever) over the whole corpus: usable in any LCEL chain."""
        return self.view().retriever

    @property
    def whole_corpus(self) -> bool:
        """True when the whole corpus sits in the fixed prompt prefix."""
        return self.view().system is not None

    @property
    def chat_model(self):
        """The chat model, built from settings on first use."""
        with self._lock:
            if self._chat_model is None:
                from .answer.generation import build_chat_model

                self._chat_model = build_chat_model(self.settings)
            return self._chat_model

    @property
    def parts(self) -> Parts:
        """What the answer stages use (see parts.py): built once per load, on the first question, since only then
        is the model file needed. A change on disk is found by view(), which every question calls first."""
        with self._lock:
            if not self._ready:
                self.load()
            if self._parts is None:
                s = self.settings
                self._parts = Parts.build(
                    self.settings,
                    self.prompts,
                    self.chat_model,
                    grounder=self.grounder,
                    search=self.search,
                    views=self.view,
                    reader=self.reader,
                    texts=self._texts,
                    question_words=QuestionWords(
                        self.index.embeddings.embed_documents, s.deciding.question_words_similarity
                    ),
                    decision=self.decision,
                )
            return self._parts

    def doc_text(self, doc_id: str) -> str:
        """The whole text of document doc_id."""
        return self._texts[doc_id]

    def warm_up(self, scope: str | None = None, wait: bool = True) -> str:
        """Load everything and have the model read the article prefix now, so the first question is fast.

        The model file loads in a second thread meanwhile the index opens: llama.cpp works outside the GIL, so on
        two cores a fresh process pays for the longer of the two instead of their sum. The text read is scope's
        (a doc_id; an unknown one raises InvalidQuestion), or all articles together for None. With wait False, a
        long article never read before is read in the background (see ArticleReader.read).
        """
        model = self.chat_model
        failed: list[BaseException] = []

        def load_model() -> None:
            try:
                model.load()
            except BaseException as exc:  # re-raised below, in the caller's thread
                failed.append(exc)

        loading = threading.Thread(target=load_model, name="model-load") if hasattr(model, "load") else None
        if loading:
            if hasattr(model, "import_engine"):
                model.import_engine()  # imports stay in this thread: only llama.cpp's own work runs beside it
            loading.start()
        try:
            self.load()
            view = self.view()
            self.view(scope)
        finally:
            if loading:
                loading.join()
        if failed:
            raise failed[0]
        result = self.reader.read(view if scope is None else self.view(scope), wait=wait)
        self._warm = True
        return result

    # ----- reading whole articles (see reading.py) ---------------------------------------------------------------
    def article_ready(self, view: View) -> bool:
        """True when the model can answer from the whole text of view now (see ArticleReader.ready)."""
        return self.reader.ready(view)

    def read_article(self, view: View, wait: bool = True, progress=None) -> str:
        """Have the model read view's whole text (see ArticleReader.read)."""
        return self.reader.read(view, wait, progress)

    def start_reading(self, view: View) -> Reading | None:
        """Read view's whole text in the background, before those only queued for later (see ArticleReader.want)."""
        return self.reader.want(view)

    def read_when_idle(self) -> None:
        """Queue every text that fits (each article, and all of them together) to be read in the background when
        nothing else waits: no question in flight, no text a conversation is in."""
        for document in self.documents:
            self.reader.later(self.view(document.doc_id))
        if len(self.documents) > 1:
            self.reader.later(self.view())

    def reading_of(self, scope: str | None = None) -> Reading | None:
        """The progress of reading scope's whole text, if it was ever started in this process."""
        return self.reader.progress(self.view(scope))

    # ----- answering -----------------------------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, scope: str | None = None) -> list[Passage]:
        """Return the k passages that best match question (within one document when scope names it), ranked."""
        self.load()
        text = validate_question(question, self.settings.limits.max_question_chars)
        return self.search(text, self.view(scope), k=k or self.settings.retrieval.top_k).passages

    def answer(self, question: str, history: list[dict] | None = None, scope: str | None = None) -> Answer:
        """Answer question (with optional chat history) from the article(s) only; see Answer."""
        return self.runnable().invoke({"question": question, "history": history, "scope": scope})

    def stream(
        self,
        question: str,
        history: list[dict] | None = None,
        scope: str | None = None,
        config: RunnableConfig | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as checked sentences become ready, then the final Answer.

        scope restricts the conversation to one document (its doc_id); None searches them all. config carries
        LangChain callbacks to every model and retriever call. Raises InvalidQuestion (a ValueError) for an empty,
        over-long or non-text question, a malformed history or an unknown scope.
        """
        timings = Timings()
        text = validate_question(question, self.settings.limits.max_question_chars)
        turns = normalize_history(history, self.settings.limits.max_history_messages)
        with self.questions.asking():  # from here to the Answer, readings give way to this question
            if not self._warm:
                self.warm_up(scope, wait=False)  # restores a saved article state: the first answer is fast too
            view = self.view(scope)
            yield from run(AnswerState(text, turns, view, config, timings), self.parts)

    def runnable(self) -> AnswerChain:
        """This assistant as a LangChain Runnable (see AnswerChain)."""
        return AnswerChain(self)

    # ----- what the stages call -----------------------------------------------------------------------------
    def search(self, question: str, view: View, k: int | None = None, config: RunnableConfig | None = None):
        """Retrieve for question within view; a store that broke under us is reopened once."""
        from .answer.retrieve import retrieve

        try:
            return retrieve(question, view.retriever, self.index.store, self._by_id, k, config)
        except Exception as exc:  # the store broke under us (files deleted or damaged while running)
            from .index.indexing import IndexStoreError, forget_open_stores

            log.warning("Retrieval failed (%s); reopening the index.", exc)
            with self._lock:
                forget_open_stores(self.settings)
                self._ready = False
                self.load()
                view = self.view(view.doc_id)
            try:
                return retrieve(question, view.retriever, self.index.store, self._by_id, k, config)
            except Exception as again:
                raise IndexStoreError(
                    f"The index cannot be searched ({again}). Run `assistant index --rebuild`."
                ) from again


class AnswerChain(Runnable[dict, Answer]):
    """The assistant as a LangChain Runnable: {"question": str, "history": list, "scope": str | None} in, Answer out.

    invoke, batch, ainvoke and the rest work as for any Runnable, and callbacks and tags reach the retriever and
    the model calls. stream() yields the answer's text as checked sentences become ready, then the Answer.
    A bare string is taken as the question.
    """

    def __init__(self, assistant: Assistant):
        self.assistant = assistant

    def invoke(self, input: dict | str, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        return self._call_with_config(self._answer, input, config, run_type="chain", **kwargs)

    def stream(self, input: dict | str, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[str | Answer]:
        yield from self._transform_stream_with_config(iter([input]), self._items, config, run_type="chain", **kwargs)

    def _answer(self, input: dict | str, config: RunnableConfig) -> Answer:
        for item in self._items(iter([input]), config):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("The answer stream ended without an Answer.")  # a bug, never a user error

    def _items(self, inputs: Iterator[dict | str], config: RunnableConfig) -> Iterator[str | Answer]:
        for input in inputs:
            question, history, scope = chain_input(input)
            yield from self.assistant.stream(question, history, scope, config=config)


def chain_input(input: dict | str) -> tuple[Any, Any, Any]:
    """(question, history, scope) of a chain's input; anything else is an InvalidQuestion that says what is wanted."""
    if isinstance(input, str):
        return input, None, None
    if not isinstance(input, dict) or not set(input) <= {"question", "history", "scope"} or "question" not in input:
        raise InvalidQuestion(
            'The input must be a question, or a mapping with "question" and optional "history" and "scope".'
        )
    return input["question"], input.get("history"), input.get("scope")


_default: Assistant | None = None
_default_lock = threading.Lock()


def default_assistant() -> Assistant:
    """The process-wide Assistant built from environment settings on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Assistant(Settings())
        return _default


__all__ = [
    "NOT_IN_ARTICLE",
    "Answer",
    "AnswerChain",
    "Assistant",
    "Citation",
    "InvalidQuestion",
    "default_assistant",
    "greeting_reply",
    "off_task_reply",
]
