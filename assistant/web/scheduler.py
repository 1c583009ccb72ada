"""Web stage, scheduler: the page's questions per session, answered in the order asked. No Gradio here: handlers.py
shows, streams and saves; this keeps who waits for what.

A question is queued for its session when it is shown (add), taken by the call that answers it (take), waits there
while an earlier question of its conversation is still being answered (wait_for_earlier) and is let go once answered,
failed or cancelled (forget). The scheduler also knows which turns each session has on its screen, and which
question of a stored conversation is still being answered (live).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from ..reading.priority import Ticket
from ..store.turn import Turn
from .workspace import Recorder

ORDER_POLL_S = 0.1  # how often a question checks that the one asked before it has its answer (several at once only)


@dataclass
class Asked:
    """A question shown and stored, waiting for its answer: the turn on the page, the session's turns it was
    asked in (another conversation may be on screen by the time it is answered) and where its answer is saved."""

    turn: Turn
    turns: list[Turn]
    recorder: Recorder
    scope: str | None
    session: str
    ticket: Ticket | None = None  # in flight from the moment it is shown: readings give way to it

    @property
    def key(self) -> tuple:
        """(user, conversation, position): the stored turn this question is answered into."""
        return self.recorder.user, self.recorder.conversation, self.recorder.position


def earlier_turns(asked: Asked) -> list[Turn]:
    """The turns asked before asked's, in its conversation."""
    return asked.turns[: next(i for i, t in enumerate(asked.turns) if t is asked.turn)]


class Scheduler:
    """Each session's questions, oldest first, and the turns on each session's screen; thread-safe (one lock)."""

    def __init__(self, poll_s: float = ORDER_POLL_S):
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._asked: dict[str, deque[Asked]] = {}  # per session, oldest first
        self._shown: dict[str, list[Turn]] = {}  # per session, the turns on its screen
        self._live: dict[tuple, Asked] = {}  # (user, conversation, position) of questions not yet answered
        self._busy: set[int] = set()  # id() of the turns being answered now

    def add(self, asked: Asked) -> None:
        """Queue asked for its session; its turns are now that session's screen."""
        with self._lock:
            self._asked.setdefault(asked.session, deque()).append(asked)
            self._shown[asked.session] = asked.turns
            if asked.recorder.position is not None:
                self._live[asked.key] = asked

    def take(self, session: str) -> Asked | None:
        """The session's oldest waiting question, now being answered; None when none waits."""
        with self._lock:
            waiting = self._asked.get(session)
            asked = waiting.popleft() if waiting else None
            if asked is not None:
                self._busy.add(id(asked.turn))
        return asked

    def wait_for_earlier(self, asked: Asked) -> None:
        """Wait while an earlier question of the same turns is still queued or being answered and has not ended: its
        answer is history for this one. Only a backend answering several at once (answer_concurrency) ever waits."""
        while True:
            with self._lock:
                live = self._busy | {id(a.turn) for q in self._asked.values() for a in q}
            if not any(id(t) in live and not t.ended for t in earlier_turns(asked)):
                return
            time.sleep(self.poll_s)

    def forget(self, asked: Asked) -> None:
        """asked is answered, failed or cancelled: close its ticket, and no later question waits for it."""
        if asked.ticket is not None:
            asked.ticket.close()
        with self._lock:
            self._busy.discard(id(asked.turn))
            if self._live.get(asked.key) is asked:
                del self._live[asked.key]

    def show(self, session: str, turns: list[Turn]) -> None:
        """Record that turns are now on the session's screen (a conversation opened, a new chat)."""
        with self._lock:
            self._shown[session] = turns

    def shown(self, session: str) -> list[Turn] | None:
        """The turns on the session's screen, None before it showed any."""
        with self._lock:
            return self._shown.get(session)

    def live(self, user: str, conversation: str, position: int | None) -> Asked | None:
        """The question still being answered into that stored turn, None when none is."""
        with self._lock:
            return self._live.get((user, conversation, position))
