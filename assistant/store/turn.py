"""Conversations stage, record: one chat turn, a question and its answer, the one shape the conversation store keeps,
the web page shows and streams into, and the Markdown export reads.

A turn's state is its whole life: "waiting" for the model, "streaming" its answer, then "done" or "error". The store
keeps the last three (STORED_STATES). A row read back still "streaming" either belongs to a request answering it
now or was cut off when the process stopped; only the page knows which, and calls it "stopped", or "elsewhere" when
another tab's request is answering it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..answer.state import Answer

TurnState = Literal["waiting", "streaming", "done", "error", "stopped", "elsewhere"]
StoredState = Literal["streaming", "done", "error"]
STORED_STATES: tuple[StoredState, ...] = ("streaming", "done", "error")
FAILED = "This answer failed."  # a failed turn's message when the store kept none


@dataclass
class Turn:
    """A question and its answer so far. The page changes its turn in place while the answer streams: the same
    object is in the session's gr.State, on its screen and in the queue of questions waiting for the model."""

    question: str
    answer: str = ""  # the text shown so far, with its [n] markers
    position: int | None = None  # its place in the stored conversation; None when it could not be saved
    state: TurnState = "streaming"
    abstained: bool = False
    reason: str = ""  # why a finished answer ended as it did (state.Reason)
    citations: list[dict] = field(default_factory=list)  # Citation.to_dict() of each marker, once done
    closest: dict | None = None  # with a refusal: the article's nearest sentence, as a citation's data
    error: str = ""  # what the page says about a failed answer
    answer_json: dict | None = None  # Answer.to_dict() once done, kept whole for the feedback that replays it
    created: float = 0.0
    updated: float = 0.0

    @classmethod
    def stored(cls, position: int, question: str, answer: str, data: dict | None, state: StoredState, **times):
        """A turn as the store keeps it: the answer's fields read back from its Answer.to_dict() (or its error)."""
        turn = cls(question, answer, position, state, answer_json=data, **times)
        data = data if isinstance(data, Mapping) else {}
        if state == "error":
            turn.error = str(data.get("error") or FAILED)
        elif state == "done":
            turn.abstained, turn.reason = bool(data.get("abstained", False)), str(data.get("reason", "answered"))
        turn.citations = [c for c in data.get("citations") or [] if isinstance(c, Mapping)]
        closest = data.get("closest")
        turn.closest = closest if isinstance(closest, Mapping) else None
        return turn

    def finish(self, answer: Answer) -> None:
        """The engine's finished answer, with its citations as data."""
        self.answer, self.abstained, self.reason, self.state = answer.text, answer.abstained, answer.reason, "done"
        self.citations = [c.to_dict() for c in answer.citations]
        self.closest = answer.closest.to_dict() if answer.closest else None
        self.answer_json = answer.to_dict()

    def fail(self, message: str) -> None:
        """The answer failed: the page shows message, and the store keeps it."""
        self.error, self.state, self.answer_json = message, "error", {"error": message}

    @property
    def stored_state(self) -> StoredState:
        """The state the store keeps: a turn not yet done or failed is 'streaming' there."""
        return self.state if self.state in ("done", "error") else "streaming"

    @property
    def ended(self) -> bool:
        """No more text will come for it on this page: answered, failed or stopped."""
        return self.state in ("done", "error", "stopped")

    @property
    def answered(self) -> bool:
        """It has an answer to read, rate and carry as history: done, or stopped part-way with what was shown."""
        return self.state == "done" or (self.state == "stopped" and bool(self.answer))
