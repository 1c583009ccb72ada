"""Answer stage, reading: the model reads a whole article once, and every later question re-reads only itself.

An article that fits the context goes into a fixed system prompt; llama.cpp keeps the state after reading it, so a
question costs its own tokens only. A short article is read at once; a long one in the background while questions
meanwhile are answered from the retrieved passages (see answer/gate.py). Reading shows progress.

Questions go first: one background thread reads one text at a time, never starts while a question is in flight
(priority.Questions), and gives way to one in the middle of a chunk (LlamaCppChat.read). What it reads next: first
the scopes a conversation is in (wanted: asked about, or chosen on the page), in the order they were wanted; then,
when nothing else waits, the others queued (later). An idle reading gives way to a wanted one between two chunks and
goes on from where it was afterwards.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..answer.state import View
from ..index.corpus import Passage
from ..settings import Settings
from .priority import Questions

log = logging.getLogger(__name__)

PROGRESS_POLL_S = 0.5  # how often a caller waiting for a background reading hears of its progress


@dataclass
class Reading:
    """How far the model has read a whole text (for progress bars): tokens done of total, and how it ended."""

    titles: list[str]
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None
    how: str = ""  # how it finished: "computed" (read now), "restored" or "kept" (read before)
    wanted_at: float | None = None  # when a conversation first turned to it (None: read only when nothing waits)
    seconds: float = 0.0  # time spent reading, pauses for questions left out
    finished_at: float | None = None  # time.monotonic() at the end
    ended: threading.Event = field(default_factory=threading.Event, repr=False)  # finished, failed or stopped

    @property
    def active(self) -> bool:
        """True while the reading goes on or waits its turn (neither finished nor failed)."""
        return not self.finished and not self.error

    @property
    def started(self) -> bool:
        """True once the model has begun to read (the size is known)."""
        return self.total > 0

    @property
    def share(self) -> float:
        """The part read, 0 to 1."""
        return 1.0 if self.finished else self.done / self.total if self.total else 0.0

    @property
    def read_now(self) -> bool:
        """True when it finished by reading the text in this process (not by restoring a saved state)."""
        return self.finished and self.how == "computed"


class ArticleReader:
    """Has the chat model read views' whole texts, now or in the background, and says which it has read.

    It outlives reloads of the corpus (the model keeps what it read), so it takes the model and the answer prompt
    through getters: both are built on first use.
    """

    def __init__(
        self, settings: Settings, model: Callable, answer_prompt: Callable, questions: Questions | None = None
    ):
        self.settings = settings
        self._model = model
        self._answer_prompt = answer_prompt
        self.questions = questions or Questions(None, settings.reading.asking_poll_s)
        self.readings: dict[str, Reading] = {}  # per system prompt, for progress bars
        self._queue: dict[str, View] = {}  # per system prompt: to be read in the background, oldest first
        self._current: str | None = None  # the system prompt the background thread is reading
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # background readers, stopped before the process exits
        self._stopping = threading.Event()

    def ready(self, view: View) -> bool:
        """True when the model can answer from the whole text of view now: it fits and has been read (or the
        backend keeps its own cache, as remote servers do)."""
        if view.system is None or not self.settings.reading.whole_article:
            return False
        has_read = getattr(self._model(), "has_read", None)
        return has_read is None or has_read(view.system)

    def whole_view(self, view: View, found: list[Passage], views: Callable[[str], View]) -> View | None:
        """The view whose whole text the model reads for this question, None for the retrieved sentences.

        That is view itself once read; for a corpus too large for one context, the article of the best passage
        found (views gives it), when that article has been read: a question about one article then costs what it
        costs in that article's own scope.
        """
        if self.ready(view):
            return view
        if view.system is None and view.doc_id is None and found:
            best = views(found[0].doc_id)
            return best if self.ready(best) else None
        return None

    def read(self, view: View, wait: bool = True, progress=None) -> str:
        """Have the model read view's whole text once (or restore it); "skipped" when it does not fit.

        With wait False (a question's own call), nothing waits for a text already read ("ready") or being read
        ("reading"), and a text longer than read_wait_tokens is wanted in the background ("reading") while the
        question is answered from retrieval; a shorter one is read now, for this question. With wait True, the
        reading gives way to questions in flight, and a text already being read in the background is waited for.
        """
        model = self._model()
        if view.system is None or not self.settings.reading.whole_article or not hasattr(model, "read"):
            return "skipped"
        if not wait:
            if model.has_read(view.system):
                return "ready"
            if self._claim(view.system) and self._tokens(view.system) <= self.settings.reading.read_wait_tokens:
                return self._read_now(view, progress)
            return "reading" if self.want(view) else "skipped"
        if not self._claim(view.system):
            return self._wait_for(view, progress)
        return self._read_now(view, progress, pause=self.questions.busy)

    def want(self, view: View) -> Reading | None:
        """A conversation is in view: read its whole text in the background, before those only queued for later.
        Returns its progress, None when there is nothing to read."""
        return self._enqueue(view, wanted=True)

    def later(self, view: View) -> Reading | None:
        """Read view's whole text in the background when nothing else waits (no question, no wanted text)."""
        return self._enqueue(view, wanted=False)

    def wait_read(self, view: View) -> bool:
        """Wait until view's whole text is read in the background (wanted now); False when it cannot be."""
        if self.ready(view):
            return True
        reading = self.want(view)
        if reading is None:
            return False
        reading.ended.wait()
        return reading.finished

    def drop(self) -> None:
        """Take every text off the background queue (the corpus changed: its texts are queued again as they are
        now); the one being read stops at its next chunk, and its reading is forgotten."""
        with self._lock:
            for system in list(self._queue):
                reading = self.readings.pop(system, None)
                if reading is not None and reading.active:
                    reading.error = "dropped: the articles changed"
                    reading.ended.set()
            self._queue.clear()

    def _tokens(self, text: str) -> float:
        """The tokens of text: counted by the local model (English runs near 4.5 characters a token, a safe
        chars_per_token 3.0 would make a 1,100-token article look like 1,500), else estimated."""
        from ..llamacpp.chat import LlamaCppChat

        model = self._model()
        if isinstance(model, LlamaCppChat):  # LangChain's default counter would fetch GPT-2's tokenizer
            return model.get_num_tokens(text)
        return len(text) / self.settings.generation.chars_per_token

    def progress(self, view: View) -> Reading | None:
        """The progress of reading view's whole text, if it was ever started in this process."""
        return self.readings.get(view.system or "")

    def _prefix_prompts(self, view: View) -> list:
        """Two prompts of view that differ only in the question: what they share is what every question reads."""
        prompt = self._answer_prompt()
        return [prompt.format_messages(title=view.title, context=view.context, question=q) for q in "AB"]

    def _read_now(self, view: View, progress=None, background: bool = False, pause=None, switch=None) -> str:
        with self._lock:
            reading = self.readings.get(view.system)
            if reading is None or reading.error or reading.finished:
                reading = self.readings[view.system] = Reading(view.titles)
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            reading.done, reading.total = done, total
            if progress:
                progress(done, total)

        try:
            how = self._model().read(
                self._prefix_prompts(view), progress=report, background=background, pause=pause, switch=switch
            )
        except Exception as exc:
            reading.error = str(exc)
            reading.ended.set()
            raise
        finally:
            reading.seconds += time.monotonic() - started
        if how == "paused":
            return how  # another text went first; this one goes on later from where it was
        if how == "stopped":
            reading.error = "stopped before the process exited"
        else:
            reading.finished, reading.how, reading.finished_at = True, how, time.monotonic()
        reading.ended.set()
        return how

    # ----- the background queue --------------------------------------------------------------------------------
    def _enqueue(self, view: View, wanted: bool) -> Reading | None:
        if (
            view.system is None
            or not self.settings.reading.whole_article
            or not self.settings.reading.read_in_background
        ):
            return None
        model = self._model()
        has_read = getattr(model, "has_read", None)
        if not hasattr(model, "read") or (has_read is not None and has_read(view.system)):
            return None  # nothing to read, or read already (kept, or saved by an earlier process)
        with self._lock:
            reading = self.readings.get(view.system)
            if reading is not None and reading.finished:
                return reading
            if reading is None or reading.error:
                reading = self.readings[view.system] = Reading(view.titles)
            if wanted and reading.wanted_at is None:
                reading.wanted_at = time.monotonic()
            self._queue[view.system] = view
            if self._worker is None and not self._stopping.is_set():
                self._start_worker()
        return reading

    def _start_worker(self) -> None:
        """Start the background reader (called with the lock held)."""
        if not self._threads:
            atexit.register(self.stop)
        self._worker = threading.Thread(target=self._work, name="article-read", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [self._worker]
        self._worker.start()

    def _next(self) -> View | None:
        """What to read next: the first text wanted, else the first queued (called with the lock held)."""
        if not self._queue:
            return None
        wanted = [s for s in self._queue if self.readings[s].wanted_at is not None]
        if wanted:
            return self._queue[min(wanted, key=lambda s: self.readings[s].wanted_at)]
        return next(iter(self._queue.values()))

    def _claim(self, system: str) -> bool:
        """Take system off the background queue to read it here; False while the background thread reads it."""
        with self._lock:
            if self._current == system:
                return False
            self._queue.pop(system, None)
            return True

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                view = self._next()
                if view is None:
                    self._worker = None
                    return
                self._current = view.system
            how = "stopped"
            if self.questions.wait_quiet(self._stopping):  # a reading never starts while a question waits
                how = self._read_background(view)
            with self._lock:
                self._current = None
                if how != "paused":
                    self._queue.pop(view.system, None)
        with self._lock:
            self._worker = None

    def _read_background(self, view: View) -> str:
        reading = self.readings[view.system]

        def switch() -> bool:  # an idle reading gives way to a wanted one between two chunks, a dropped one stops
            with self._lock:
                if view.system not in self._queue:
                    return True
                following = self._next()
            return reading.wanted_at is None and following is not None and following.system != view.system

        try:
            return self._read_now(view, background=True, pause=self.questions.busy, switch=switch)
        except Exception as exc:  # recorded in reading.error; questions go on from retrieval
            log.warning("Reading %s failed: %s", view.titles, exc)
            return "failed"

    def _wait_for(self, view: View, progress=None) -> str:
        """Wait for the background thread to read view (wanted now); read it here if that reading fails."""
        reading = self.want(view)
        while reading is not None and not reading.ended.wait(PROGRESS_POLL_S):
            if progress and reading.started:
                progress(reading.done, reading.total)
        if reading is not None and reading.finished:
            if progress:
                progress(reading.total, reading.total)
            return reading.how
        return self._read_now(view, progress, pause=self.questions.busy)

    def stop(self, timeout: float = 120.0) -> None:
        """Stop the background reading at once (at exit: llama.cpp must not be freed while a thread is inside it,
        which crashed the interpreter). What was read is lost; the next process reads again."""
        self._stopping.set()
        stop = getattr(self._model(), "stop_reading", None)
        if stop is not None:
            stop()
        for thread in list(self._threads):
            thread.join(timeout)
        for reading in list(self.readings.values()):
            if reading.active:  # never to be read in this process: whoever waits for it goes on
                reading.error = "stopped before the process exited"
                reading.ended.set()
