"""The page's scheduler (assistant/web/scheduler.py) without Gradio: a session's questions are answered in the order
asked, sessions do not wait for each other, and a question answered, failed or cancelled is let go."""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.store.turn import Turn
from assistant.web.scheduler import Asked, Scheduler, earlier_turns

POLL_S = 0.005
BLOCKED_S = 0.2  # how long a waiting question is watched to see that it does wait


@dataclass
class FakeRecorder:
    """What the scheduler reads of a Recorder: where the turn is stored."""

    user: str = ""
    conversation: str | None = "c1"
    position: int | None = None


class FakeTicket:
    def __init__(self):
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def ask(scheduler: Scheduler, turns: list[Turn], question: str, session: str = "s1", **where) -> Asked:
    """Show question in turns and queue it, as ChatHandlers.accept does."""
    turn = Turn(question, position=where.get("position"), state="waiting")
    turns.append(turn)
    asked = Asked(turn, turns, FakeRecorder(**where), None, session, FakeTicket())
    scheduler.add(asked)
    return asked


class Waiter:
    """wait_for_earlier(asked) in a thread of its own, as a second answer slot would run it."""

    def __init__(self, scheduler: Scheduler, asked: Asked):
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(scheduler, asked), daemon=True)
        self.thread.start()

    def _run(self, scheduler, asked):
        scheduler.wait_for_earlier(asked)
        self.done.set()

    def waits(self) -> bool:
        """True when it is still waiting after a while."""
        return not self.done.wait(BLOCKED_S)

    def goes_on(self) -> bool:
        """True when it stops waiting soon."""
        return self.done.wait(5)


@pytest.fixture
def scheduler():
    return Scheduler(poll_s=POLL_S)


def test_a_sessions_questions_are_taken_oldest_first(scheduler):
    turns = []
    first, second, third = (ask(scheduler, turns, q) for q in ("One?", "Two?", "Three?"))
    assert [scheduler.take("s1") for _ in range(3)] == [first, second, third]
    assert scheduler.take("s1") is None


def test_a_question_waits_while_the_one_asked_before_it_is_answered(scheduler):
    turns = []
    first, second = ask(scheduler, turns, "One?"), ask(scheduler, turns, "Two?")
    assert scheduler.take("s1") is first and scheduler.take("s1") is second
    waiter = Waiter(scheduler, second)
    assert waiter.waits()
    first.turn.state = "done"  # answered (ChatHandlers then forgets it)
    assert waiter.goes_on()


def test_a_question_waits_for_an_earlier_one_still_queued(scheduler):
    turns = []
    first, second = ask(scheduler, turns, "One?"), ask(scheduler, turns, "Two?")
    waiter = Waiter(scheduler, second)  # a slot answering the second before any took the first
    assert waiter.waits()
    assert scheduler.take("s1") is first
    assert waiter.waits()  # taken: being answered now
    scheduler.forget(first)
    assert waiter.goes_on()


def test_the_first_question_and_one_after_answered_turns_do_not_wait(scheduler):
    turns = [Turn("Before?", answer="Yes.", state="done")]
    asked = ask(scheduler, turns, "Now?")
    assert scheduler.take("s1") is asked
    assert earlier_turns(asked) == turns[:1]
    assert Waiter(scheduler, asked).goes_on()


def test_sessions_are_independent(scheduler):
    mine, theirs = [], []
    busy = ask(scheduler, mine, "Mine?", session="a")
    other = ask(scheduler, theirs, "Theirs?", session="b")
    assert scheduler.take("b") is other  # not a's older question
    assert Waiter(scheduler, other).goes_on()  # a's question being answered does not hold b's
    assert scheduler.take("a") is busy
    assert scheduler.shown("a") is mine and scheduler.shown("b") is theirs
    scheduler.show("a", [])
    assert scheduler.shown("a") == [] and scheduler.shown("b") is theirs


def test_a_new_screen_does_not_stop_the_order_of_the_conversation_left(scheduler):
    turns = []
    first, second = ask(scheduler, turns, "One?"), ask(scheduler, turns, "Two?")
    scheduler.take("s1"), scheduler.take("s1")
    scheduler.show("s1", [])  # New chat: the questions asked go on, in their own turns
    assert scheduler.shown("s1") == []
    waiter = Waiter(scheduler, second)
    assert waiter.waits()
    scheduler.forget(first)
    assert waiter.goes_on()


def test_a_cancelled_question_lets_the_next_go_on(scheduler):
    turns = []
    first, second = ask(scheduler, turns, "One?"), ask(scheduler, turns, "Two?")
    scheduler.take("s1"), scheduler.take("s1")
    waiter = Waiter(scheduler, second)
    assert waiter.waits()
    scheduler.forget(first)  # its event cancelled: respond's finally, the turn never ended
    assert first.turn.state == "waiting" and first.ticket.closes == 1
    assert waiter.goes_on()


def test_a_failed_question_lets_the_next_go_on_at_once(scheduler):
    turns = []
    first, second = ask(scheduler, turns, "One?"), ask(scheduler, turns, "Two?")
    scheduler.take("s1"), scheduler.take("s1")
    waiter = Waiter(scheduler, second)
    assert waiter.waits()
    first.turn.fail("The model is not available.")  # ended, though not yet forgotten
    assert waiter.goes_on()


def test_forgetting_a_question_closes_its_ticket_and_ends_it_as_a_live_turn(scheduler):
    turns = []
    asked = ask(scheduler, turns, "One?", user="u", conversation="c1", position=0)
    assert scheduler.live("u", "c1", 0) is asked
    assert scheduler.live("u", "c1", 1) is None and scheduler.live("other", "c1", 0) is None
    assert scheduler.take("s1") is asked
    scheduler.forget(asked)
    assert scheduler.live("u", "c1", 0) is None
    assert asked.ticket.closes == 1


def test_a_question_never_stored_is_no_live_turn(scheduler):
    ask(scheduler, [], "One?", user="u", conversation=None, position=None)  # the store failed
    assert scheduler.live("u", None, None) is None


def test_forgetting_a_stale_question_keeps_the_newer_one_of_the_same_turn(scheduler):
    old = ask(scheduler, [], "One?", user="u", conversation="c1", position=0)
    new = ask(scheduler, [], "One again?", session="s2", user="u", conversation="c1", position=0)
    scheduler.forget(old)
    assert scheduler.live("u", "c1", 0) is new


def test_forgetting_one_sessions_question_leaves_the_others(scheduler):
    mine, theirs = [], []
    a = ask(scheduler, mine, "Mine?", session="a", position=0)
    b = ask(scheduler, theirs, "Theirs?", session="b", conversation="c2", position=0)
    ask(scheduler, mine, "Mine again?", session="a", position=1)
    scheduler.take("a"), scheduler.take("b")
    scheduler.forget(a)
    assert scheduler.live("", "c2", 0) is b and b.ticket.closes == 0
    later = Turn("Theirs too?")
    waiter = Waiter(scheduler, Asked(later, [*theirs, later], FakeRecorder(), None, "b"))
    assert waiter.waits()  # b is still being answered: forgetting a did not let it go


def test_the_scheduler_does_not_import_gradio():
    source = Path(__file__).resolve().parents[1] / "assistant" / "web" / "scheduler.py"
    names = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    assert names and not any(n.split(".")[0] == "gradio" for n in names)
