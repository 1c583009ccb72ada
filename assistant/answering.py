"""The Assistant: the one object callers hold. It wires the layers together (the loaded corpus, library.py; the chat
model; the reader of whole articles, reading/; the judges) into the Parts the answer stages use, and runs a question
through the pipeline (answer/pipeline.py). `Assistant.runnable()` (and `assistant.chain()`) is the same as a LangChain
Runnable.

Its public surface is what the page, the CLI and the evaluation use: answer, stream, runnable, retrieve, warm_up,
load, view, documents, passages and index_report, the reading of whole articles (reading_of, readings, read_article,
start_reading, read_when_idle, article_ready, forget_queued), the questions in flight (question_waiting, asking) and
new articles (articles_on_disk, index_new_articles).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from .answer.cite import Citation
from .answer.decision import Decision, load_decision
from .answer.generation import load_while
from .answer.guard import InvalidQuestion, greeting_reply, normalize_history, off_task_reply, validate_question
from .answer.parts import Parts
from .answer.pipeline import run
from .answer.question_words import QuestionWords
from .answer.state import NOT_IN_ARTICLE, Answer, AnswerState, Question, Timings, View
from .index.corpus import Document, Passage, load_passages
from .library import Library
from .reading.priority import Questions, Ticket, questions_for
from .reading.reader import ArticleReader, Reading
from .settings import Settings

log = logging.getLogger(__name__)


class Assistant:
    """Answers questions about the corpus; heavy parts (index, models) load on first use or on load()."""

    def __init__(self, settings: Settings | None = None, chat_model=None, embeddings=None):
        self.settings = settings or Settings()
        self.library = Library(self.settings, embeddings)
        self._chat_model = chat_model
        self._lock = threading.RLock()
        self._warm = False
        self._parts: tuple[int, Parts] | None = None  # the parts, and the library load they were built from
        # The questions in flight (this process's and, through a lock file, other processes'): readings give way.
        self.questions: Questions = questions_for(self.settings)
        self.reader = ArticleReader(
            self.settings, lambda: self.chat_model, lambda: self.library.prompts.answer, questions=self.questions
        )

    # ----- the corpus (library.py) --------------------------------------------------------------------------
    def load(self) -> Assistant:
        """Read the corpus, open (or build) the index and prepare the prompts; reloads when the corpus or index changed."""
        with self._lock:
            if self.library.load() and self.library.loads > 1:
                self._warm = False  # a new corpus: its articles' saved states are looked up again
            return self

    def view(self, scope: str | None = None) -> View:
        """What a conversation may draw on: every document, or only the one named by scope (a doc_id)."""
        self.load()
        return self.library.view(scope)

    @property
    def documents(self) -> list[Document]:
        return self.library.documents

    @property
    def passages(self) -> list[Passage]:
        return self.library.passages

    @property
    def index(self):
        """The open passage index (index/indexing.py), None before the first load."""
        return self.library.index

    @property
    def index_report(self):
        return self.library.index_report

    @property
    def prompts(self):
        return self.library.prompts

    @property
    def retriever(self):
        """The LangChain retriever (a BaseRetriever) over the whole corpus: usable in any LCEL chain."""
        return self.view().retriever

    @property
    def whole_corpus(self) -> bool:
        """True when the whole corpus sits in the fixed prompt prefix."""
        return self.view().system is not None

    def doc_text(self, doc_id: str) -> str:
        """The whole text of document doc_id."""
        return self.library.texts[doc_id]

    # ----- the model and the parts the stages use -----------------------------------------------------------
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
        """What the answer stages use (see answer/parts.py): built once per load of the corpus, on the first
        question, since only then is the model file needed. A change on disk is found by view(), which every
        question calls first."""
        with self._lock:
            if not self.library.loaded:
                self.load()
            library = self.library
            if self._parts is None or self._parts[0] != library.loads:
                self._parts = (library.loads, self._build_parts())
            return self._parts[1]

    def _build_parts(self) -> Parts:
        s, library = self.settings, self.library
        return Parts.build(
            s,
            library.prompts,
            self.chat_model,
            grounder=library.grounder,
            search=library.search,
            views=library,
            reader=self.reader,
            texts=library.texts,
            question_words=QuestionWords(
                library.index.embeddings.embed_documents, s.deciding.question_words_similarity
            ),
            decision=Decision(load_decision(s.deciding.decision_model), s.deciding.probes)
            if s.deciding.decision
            else None,
        )

    def warm_up(self, scope: str | None = None, wait: bool = True) -> str:
        """Load everything and have the model read the article prefix now, so the first question is fast.

        The model file loads in a second thread meanwhile the index opens (see generation.load_while). The text
        read is scope's (a doc_id; an unknown one raises InvalidQuestion), or all articles together for None. With
        wait False, a long article never read before is read in the background (see ArticleReader.read).
        """

        def open_views() -> View:
            self.load()
            view = self.view()
            self.view(scope)
            return view

        view = load_while(self.chat_model, open_views)
        result = self.reader.read(view if scope is None else self.view(scope), wait=wait)
        self._warm = True
        return result

    # ----- reading whole articles (reading/reader.py) -------------------------------------------------------
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

    def readings(self) -> list[Reading]:
        """Every reading started in this process, with its progress (finished and failed ones too)."""
        return list(self.reader.readings.values())

    def forget_queued(self) -> None:
        """Forget the readings queued for later (an article was removed), then queue what the corpus holds now."""
        self.load()
        self.reader.drop()
        self.read_when_idle()

    # ----- questions in flight (reading/priority.py) --------------------------------------------------------
    def question_waiting(self, wait_s: float | None = None) -> Ticket:
        """A question that waits its turn (on the page) holds the readings until its ticket is closed, or for at
        most wait_s seconds."""
        return self.questions.ask(wait_s)

    def asking(self) -> bool:
        """True while a question is in flight here or in another process on this machine."""
        return self.questions.busy()

    # ----- adding articles (index/ingest.py) ----------------------------------------------------------------
    def articles_on_disk(self) -> tuple[list[Document], list[Passage]]:
        """The corpus's documents and passages as they are on disk now, without opening the index (the page
        shows the article while the index and the model still load)."""
        if self.library.current():
            return self.documents, self.passages
        return load_passages(self.settings.paths.corpus_dir)

    def index_new_articles(self, progress=None) -> None:
        """Embed the passages of articles added to the corpus (with the embedding model already in memory, if
        any; progress(done, total) after each batch), then reload."""
        from .index.ingest import reindex

        index = self.library.index
        reindex(self.settings, progress, index.embeddings if index else None)
        self.load()

    # ----- answering -----------------------------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, scope: str | None = None) -> list[Passage]:
        """Return the k passages that best match question (within one document when scope names it), ranked."""
        self.load()
        text = validate_question(question, self.settings.limits.max_question_chars)
        return self.library.search(text, self.view(scope), k=k or self.settings.retrieval.top_k).passages

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
        # Closed here, not whenever the garbage collector finds it: until then its question counts as in flight,
        # and readings wait for it.
        with contextlib.closing(self._items(iter([input]), config)) as items:
            for item in items:
                if isinstance(item, Answer):
                    return item
        raise RuntimeError("The answer stream ended without an Answer.")  # a bug, never a user error

    def _items(self, inputs: Iterator[dict | str], config: RunnableConfig) -> Iterator[str | Answer]:
        for input in inputs:
            asked = chain_input(input)
            yield from self.assistant.stream(asked.question, asked.history, asked.scope, config=config)


def chain_input(input: dict | str) -> Question:
    """The Question of a chain's input; anything else is an InvalidQuestion that says what is wanted."""
    if isinstance(input, str):
        return Question(input)
    if not isinstance(input, dict) or not set(input) <= {"question", "history", "scope"} or "question" not in input:
        raise InvalidQuestion(
            'The input must be a question, or a mapping with "question" and optional "history" and "scope".'
        )
    return Question(input["question"], input.get("history"), input.get("scope"))


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
    "Question",
    "default_assistant",
    "greeting_reply",
    "off_task_reply",
]
