"""Web stage, session state: one chat turn as a page session keeps it in its gr.State, from the moment its question
is shown until its answer is done (or failed), and as it is rebuilt from the conversation store (workspace.web_turn).

The handlers change a turn in place while it streams: the same object is on the session's screen, in its gr.State
and in the queue of questions waiting for an answer, and they find it by identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChatTurn:
    """A question on the page and its answer so far, with what the chat shows in place of an answer."""

    question: str
    answer: str = ""  # the text shown so far, with its [n] markers
    position: int | None = None  # its place in the stored conversation; None when it could not be saved
    done: bool = False
    waiting: bool = False  # shown, its answer waiting in the queue for the model
    unanswered: bool = False  # saved, but the process stopped before answering it
    elsewhere: bool = False  # being answered for another session (asked before the page was reloaded)
    interrupted: bool = False  # the process stopped while the answer streamed: answer is what was shown
    error: str = ""  # what the page says about a failed answer
    abstained: bool = False
    reason: str = ""  # why a finished answer ended as it did (state.Reason)
    citations: list[dict] = field(default_factory=list)  # Citation.to_dict() of each marker, once done
    closest: dict | None = None  # with a refusal: the article's nearest sentence, as a citation's data
