"""The types the answer stages exchange: the caller's Question, the AnswerState one question carries through the
stages (see pipeline.py), the Update each stage returns, and the Answer it ends as."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, TypedDict

from ..index.corpus import Passage
from ..text import entity_words, find_entity
from .cite import Citation, Reply

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from .judge import Verdict

# Why an answer ended as it did. Every refusal has one; "answered" is the only one with citations.
Reason = Literal["answered", "not_in_article", "unsupported", "unverified", "off_task", "greeting"]
REASONS: tuple[Reason, ...] = ("answered", "not_in_article", "unsupported", "unverified", "off_task", "greeting")

NOT_IN_ARTICLE = "The article does not say."


@dataclass
class Answer:
    """The result of one question: text with [n] markers, the citations they point at, and how it was made."""

    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    passages: list[Passage] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    standalone_question: str = ""
    reason: Reason = "answered"
    draft: str = ""  # what the model wrote, before the grounding check
    verdicts: list[Verdict] = field(default_factory=list)  # the verification of each checked sentence
    closest: Citation | None = None  # with a refusal: the article's sentence nearest to what was asked, quoted

    def to_dict(self) -> dict:
        """Return the answer as plain data (for JSON and the web API)."""
        return {
            "question": self.question,
            "text": self.text,
            "abstained": self.abstained,
            "reason": self.reason,
            "standalone_question": self.standalone_question,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "timings": self.timings,
            "draft": self.draft,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "closest": self.closest.to_dict() if self.closest else None,
        }


@dataclass(frozen=True)
class View:
    """The part of the corpus a conversation draws on, and its fixed system prompt when it fits the context."""

    doc_id: str | None
    passages: list[Passage]
    text: str
    context: str | None  # the whole text laid out for the prompt, when it fits the context window
    system: str | None  # the rules and that text: the fixed prefix llama.cpp caches, re-reading only the question
    titles: list[str] = field(default_factory=list)
    retriever: object = None  # the LangChain retriever over these passages (retrieve.FusedRetriever)

    @property
    def title(self) -> str:
        """The title the prompt gives the text: the article's own when it is one article, whole in the prompt."""
        return self.titles[0] if len(self.titles) == 1 and self.context is not None else "Articles"


@dataclass(frozen=True)
class Question:
    """What a caller asks: the question, the conversation so far, and which article it is about (a doc_id; None:
    all of them). Checked and cleaned by the guard before any stage runs (see answering.Assistant.stream)."""

    question: str
    history: list[dict] | None = None
    scope: str | None = None


@dataclass
class Gate:
    """How near the question is to the corpus at all: what the answerability gate decides on."""

    best_distance: float  # cosine distance of the nearest passage (0 same, 1 unrelated)
    lexical_overlap: float  # share of the question's content words found in the best BM25 passage
    distances: dict[str, float]  # passage id -> cosine distance, for the passages the dense search ranked


@dataclass
class Retrieval:
    """Ranked passages for one question, plus what the answerability gate needs."""

    passages: list[Passage]
    gate: Gate

    @property
    def best_distance(self) -> float:
        return self.gate.best_distance

    @property
    def lexical_overlap(self) -> float:
        return self.gate.lexical_overlap


@dataclass(frozen=True)
class Rewrite:
    """The question the later stages work on, and where it came from."""

    question: str
    source: Literal["as_asked", "model", "last_question"]  # last_question: the model's rewrite was rejected
    judged: str | None = None  # the question the judge reads, when not this one (it names who "he" is)

    @property
    def needs_history(self) -> bool:
        """True when the model must read the last exchange itself to make sense of the question."""
        return self.source == "last_question"


class Timings(dict):
    """Seconds per stage, filled by timed() blocks and marks, rounded when the answer is made."""

    def __init__(self):
        super().__init__()
        self.started = time.perf_counter()

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the block to stage (a stage may run in pieces)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start

    def mark(self, name: str, since: float) -> None:
        """Record, once, the seconds from since to now (the first token, the first checked text)."""
        self.setdefault(name, time.perf_counter() - since)

    def final(self) -> dict[str, float]:
        """The timings with the total, rounded for reports."""
        self["total"] = time.perf_counter() - self.started
        return {k: round(v, 4) for k, v in self.items()}


@dataclass
class Draft:
    """What the model has written for one question and what the checks made of it. The streaming stages build it
    sentence by sentence (a checked sentence is shown at once, not at the stage's end); each works on its own copy
    and returns it as its update."""

    reply: Reply = field(default_factory=Reply)
    text: str = ""  # everything the model wrote, before the checks
    declined: bool = False  # the model said the text does not answer
    refused_early: bool = False  # the question probe said so, before the model answered (generate.refuse_early)
    verdicts: list[Verdict] = field(default_factory=list)
    turned_down: tuple[Passage, int, int] | None = None  # the evidence of the first sentence the judge refused
    since: float = 0.0  # when the model started writing what is being checked
    # The model's hidden states (layer -> vector), when it gives them: at the end of the question (before the
    # first answer token) and after the sentence being checked (see generate.sentences).
    question_state: dict | None = None
    sentence_state: dict | None = None

    def copy(self) -> Draft:
        """A copy a stage may change without changing the draft it was given."""
        r = self.reply
        reply = Reply(list(r.kept), list(r.pending), dict(r.numbering), list(r.citations))
        return replace(self, reply=reply, verdicts=list(self.verdicts))

    def restarted(self) -> Draft:
        """A copy for asking the model again: the draft's outcome forgotten, its text kept (for reports)."""
        draft = self.copy()
        draft.declined, draft.text = False, self.text + "\n"
        draft.reply.pending.clear()
        return draft

    @property
    def failed_verification(self) -> bool:
        """True when some sentence failed verification."""
        return any(not v.passed for v in self.verdicts)


@dataclass(frozen=True)
class AnswerState:
    """Everything one question has gathered so far. Frozen: a stage returns an Update and pipeline.run applies it."""

    question: str
    turns: list[dict]
    view: View
    config: RunnableConfig | None = None  # LangChain callbacks and tags, handed to every model and retriever call
    timings: Timings = field(default_factory=Timings)  # the one clock every stage adds its time to
    rewrite: Rewrite | None = None
    found: Retrieval | None = None
    title: str = "Articles"
    context: str = ""  # the text the model reads: the whole view, or the retrieved passages
    system: str = ""  # the system prompt made from it
    candidates: list[Passage] = field(default_factory=list)  # the passages an answer sentence may cite
    draft: Draft = field(default_factory=Draft)
    closest: Citation | None = None  # what a refusal quotes (see point.py)
    reason: Reason | None = None  # set once the outcome is decided
    text: str = ""  # the reply of an ending that is not an answer (greeting, off-task, refusal)

    @property
    def standalone(self) -> str:
        """The question the retrieval and the model work on."""
        return self.rewrite.question if self.rewrite else self.question

    @property
    def judged_question(self) -> str:
        """The question verification puts to the judge."""
        return (self.rewrite.judged if self.rewrite else None) or self.standalone

    @property
    def referents(self) -> tuple[str, ...]:
        """Names the judged rewrite gave the question's pronouns ("he" -> "Anna Berg"): an answer sentence that
        leaves them out is still about them."""
        judged = self.rewrite.judged if self.rewrite else None
        if not judged:
            return ()
        return tuple(n for n in entity_words(judged, skip_first=True) if not find_entity(n, self.question))

    def apply(self, update: Update) -> AnswerState:
        """This state with a stage's changes."""
        return replace(self, **update) if update else self

    def answer(self) -> Answer:
        """The Answer this state ends as."""
        answered = self.reason == "answered"
        return Answer(
            self.question,
            self.draft.reply.text if answered else self.text,
            citations=self.draft.reply.citations if answered else [],
            abstained=not answered,
            passages=self.found.passages if self.found else [],
            timings=self.timings.final(),
            standalone_question=self.standalone,
            reason=self.reason or "unsupported",
            draft=self.draft.text,
            verdicts=self.draft.verdicts,
            closest=None if answered else self.closest,
        )


class Update(TypedDict, total=False):
    """What one stage changes: some of AnswerState's fields, by name (as a LangGraph node returns its keys)."""

    rewrite: Rewrite
    found: Retrieval
    title: str
    context: str
    system: str
    candidates: list[Passage]
    draft: Draft
    closest: Citation
    reason: Reason
    text: str


def ending(reason: Reason, text: str) -> Update:
    """The update that decides the outcome: the stages after it are skipped."""
    return {"reason": reason, "text": text}
