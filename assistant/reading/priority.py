"""Questions first: which questions are in flight, in this process and in the others on the machine.

A question is in flight from the moment it is asked until its Answer, all its model calls included (on the page, from
the moment it is shown, while it waits in Gradio's queue). Background work gives way to it: a reading waits between
its chunks and drops the chunk in progress (see LlamaCppChat.read), and example questions wait between model calls.

Other processes see the questions of this one through an advisory lock on one file in the cache folder, held shared
while any question is in flight: a reader that cannot take it exclusively knows that someone asks. The kernel lets go
of it when a process dies, so a killed `assistant ask` never leaves a reading paused.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..settings import Settings

log = logging.getLogger(__name__)

LOCK_NAME = "asking.lock"

# Set while background work (checking example questions) asks through the same pipeline: it must not pause readings.
_aside: contextvars.ContextVar[bool] = contextvars.ContextVar("aside", default=False)


class Ticket:
    """One question in flight; close() (idempotent) ends it. A ticket with a deadline stops counting after it, so a
    question whose page went away before its turn never keeps readings paused."""

    def __init__(self, owner: Questions, deadline: float | None):
        self.owner = owner
        self.deadline = deadline
        self.closed = False

    @property
    def live(self) -> bool:
        return not self.closed and (self.deadline is None or time.monotonic() < self.deadline)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner._changed()


class Questions:
    """The questions in flight in this process (tickets), and a cheap look at those of other processes."""

    def __init__(self, lock_path: Path | None, poll_s: float):
        self.lock_path = lock_path
        self.poll_s = poll_s
        self._tickets: list[Ticket] = []
        self._guard = threading.Lock()
        self._held = None  # the lock file, open and locked shared while a ticket is live
        self._probe = None  # the lock file, open to test for other processes' questions
        self._checked = float("-inf")
        self._others = False

    def ask(self, wait_s: float | None = None) -> Ticket:
        """A question starts: readings give way until the ticket is closed (or wait_s seconds have passed)."""
        ticket = Ticket(self, None if wait_s is None else time.monotonic() + wait_s)
        if _aside.get():
            ticket.closed = True  # background work: counts for nothing
            return ticket
        with self._guard:
            self._tickets.append(ticket)
        self._changed()
        return ticket

    @contextlib.contextmanager
    def asking(self) -> Iterator[Ticket]:
        """A question in flight for the time of the block."""
        ticket = self.ask()
        try:
            yield ticket
        finally:
            ticket.close()

    @staticmethod
    @contextlib.contextmanager
    def aside() -> Iterator[None]:
        """Questions asked in this block (in this thread) are background work: they pause nothing."""
        token = _aside.set(True)
        try:
            yield
        finally:
            _aside.reset(token)

    def busy(self) -> bool:
        """True while a question is in flight here or in another process (looked at every poll_s at most)."""
        if self._live_here():
            return True
        now = time.monotonic()
        if now - self._checked >= self.poll_s:
            self._checked = now
            self._others = self._others_asking()
        return self._others

    def wait_quiet(self, stop: threading.Event | None = None) -> bool:
        """Wait until no question is in flight; False when stop was set first."""
        while self.busy():
            if stop is not None and stop.is_set():
                return False
            time.sleep(self.poll_s)
        return stop is None or not stop.is_set()

    def _live_here(self) -> bool:
        tickets = self._tickets
        if tickets and not any(t.live for t in tickets):
            self._changed()  # the last deadline passed: let other processes go on too
            return False
        return bool(tickets)

    def _changed(self) -> None:
        """Drop ended tickets; hold the shared lock exactly while some are live."""
        with self._guard:
            self._tickets = [t for t in self._tickets if t.live]
            if self._tickets and self._held is None:
                self._held = self._open_locked()
            elif not self._tickets and self._held is not None:
                self._held.close()  # closing the file releases its lock
                self._held = None

    def _open_locked(self):
        if self.lock_path is None:
            return None
        try:
            import fcntl

            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.lock_path.open("a")
            fcntl.flock(handle, fcntl.LOCK_SH)
            return handle
        except (ImportError, OSError) as exc:  # no flock here, or a read-only cache: questions still go first here
            log.info("Other processes cannot see this one's questions (%s).", exc)
            self.lock_path = None
            return None

    def _others_asking(self) -> bool:
        if self.lock_path is None:
            return False
        try:
            import fcntl

            if self._probe is None:
                self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                self._probe = self.lock_path.open("a")
            try:
                fcntl.flock(self._probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(self._probe, fcntl.LOCK_UN)
            return False
        except (ImportError, OSError) as exc:
            log.info("Cannot see other processes' questions (%s).", exc)
            self.lock_path = None
            return False


_by_path: dict[Path | None, Questions] = {}
_registry_lock = threading.Lock()


def questions_for(settings: Settings) -> Questions:
    """The process's questions for this cache folder: one object, however many assistants share the cores."""
    path = Path(settings.paths.cache_dir).expanduser() / LOCK_NAME
    with _registry_lock:
        if path not in _by_path:
            _by_path[path] = Questions(path, settings.reading.asking_poll_s)
        return _by_path[path]
