"""The typed state one question carries through the answer stages (see pipeline.py), and the Answer it ends as."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..index.corpus import Passage
from ..text import entity_words, find_entity
from .cite import Citation, Reply

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from .retrieve import Retrieval
    from .verify import Verdict

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
    retriever: object = None  # the LangChain retriever over these passages (retrieval.FusedRetriever)

    @property
    def title(self) -> str:
        """The title the prompt gives the text: the article's own when it is one article, whole in the prompt."""
        return self.titles[0] if len(self.titles) == 1 and self.context is not None else "Articles"


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
class AnswerState:
    """Everything one question has gathered so far, passed from stage to stage."""

    question: str
    turns: list[dict]
    view: View
    config: RunnableConfig | None = None  # LangChain callbacks and tags, handed to every model and retriever call
    timings: Timings = field(default_factory=Timings)
    rewrite: Rewrite | None = None
    found: Retrieval | None = None
    title: str = "Articles"
    context: str = ""  # the text the model reads: the whole view, or the retrieved passages
    system: str = ""  # the system prompt made from it
    candidates: list[Passage] = field(default_factory=list)  # the passages an answer sentence may cite
    reply: Reply = field(default_factory=Reply)
    verdicts: list[Verdict] = field(default_factory=list)
    turned_down: tuple[Passage, int, int] | None = None  # the evidence of the first sentence the judge refused
    closest: Citation | None = None  # what a refusal quotes (see pipeline.point)
    draft: str = ""  # everything the model wrote
    declined: bool = False  # the model said the text does not answer
    refused_early: bool = False  # the question probe said so, before the model answered (pipeline.refuse_early)
    reason: Reason | None = None  # set once the outcome is decided
    text: str = ""  # the reply of an ending that is not an answer (greeting, off-task, refusal)
    generating_since: float = 0.0
    # The model's hidden states (layer -> vector), when it gives them: at the end of the question (before the
    # first answer token) and after the sentence being checked (see pipeline.sentences).
    question_state: dict | None = None
    sentence_state: dict | None = None

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

    @property
    def failed_verification(self) -> bool:
        """True when some sentence failed verification."""
        return any(not v.passed for v in self.verdicts)

    def end(self, reason: Reason, text: str) -> None:
        """Decide the outcome: the stages after this one are skipped."""
        self.reason, self.text = reason, text

    def answer(self) -> Answer:
        """The Answer this state ends as."""
        answered = self.reason == "answered"
        return Answer(
            self.question,
            self.reply.text if answered else self.text,
            citations=self.reply.citations if answered else [],
            abstained=not answered,
            passages=self.found.passages if self.found else [],
            timings=self.timings.final(),
            standalone_question=self.standalone,
            reason=self.reason or "unsupported",
            draft=self.draft,
            verdicts=self.verdicts,
            closest=None if answered else self.closest,
        )
