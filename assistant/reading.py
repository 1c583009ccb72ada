"""Answer stage, reading: the model reads a whole article once, and every later question re-reads only itself.

An article that fits the context goes into a fixed system prompt; llama.cpp keeps the state after reading it, so a
question costs its own tokens only. A short article is read at once; a long one in a background thread while
questions meanwhile are answered from the retrieved passages (see pipeline.gate). Reading shows progress.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .corpus import Passage
from .settings import Settings
from .state import View

log = logging.getLogger(__name__)


@dataclass
class Reading:
    """How far the model has read a whole text (for progress bars): tokens done of total, and how it ended."""

    titles: list[str]
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None

    @property
    def active(self) -> bool:
        """True while the reading goes on (neither finished nor failed)."""
        return not self.finished and not self.error

    @property
    def share(self) -> float:
        """The part read, 0 to 1."""
        return 1.0 if self.finished else self.done / self.total if self.total else 0.0


class ArticleReader:
    """Has the chat model read views' whole texts, now or in the background, and says which it has read.

    It outlives reloads of the corpus (the model keeps what it read), so it takes the model and the answer prompt
    through getters: both are built on first use.
    """

    def __init__(self, settings: Settings, model: Callable, answer_prompt: Callable):
        self.settings = settings
        self._model = model
        self._answer_prompt = answer_prompt
        self.readings: dict[str, Reading] = {}  # per system prompt, for progress bars
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()  # two readings would only take turns on the same cores
        self._threads: list[threading.Thread] = []  # background readings, stopped before the process exits

    def ready(self, view: View) -> bool:
        """True when the model can answer from the whole text of view now: it fits and has been read (or the
        backend keeps its own cache, as remote servers do)."""
        if view.system is None or not self.settings.whole_article:
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

        With wait False, nothing waits for a text already read ("ready") or being read ("reading"), and a text
        longer than read_wait_tokens is read in the background ("reading") while questions meanwhile are answered
        from retrieval.
        """
        model = self._model()
        if view.system is None or not self.settings.whole_article or not hasattr(model, "read"):
            return "skipped"
        if not wait:
            reading = self.readings.get(view.system)
            if model.has_read(view.system):
                return "ready"
            if reading is not None and reading.active:
                return "reading"
            if self._tokens(view.system) > self.settings.read_wait_tokens:
                return "reading" if self.start(view) else "skipped"
        return self._read_now(view, progress)

    def _tokens(self, text: str) -> float:
        """The tokens of text: counted by the local model (English runs near 4.5 characters a token, a safe
        chars_per_token 3.0 would make a 1,100-token article look like 1,500), else estimated."""
        from .llamacpp.chat import LlamaCppChat

        model = self._model()
        if isinstance(model, LlamaCppChat):  # LangChain's default counter would fetch GPT-2's tokenizer
            return model.get_num_tokens(text)
        return len(text) / self.settings.chars_per_token

    def progress(self, view: View) -> Reading | None:
        """The progress of reading view's whole text, if it was ever started in this process."""
        return self.readings.get(view.system or "")

    def _prefix_prompts(self, view: View) -> list:
        """Two prompts of view that differ only in the question: what they share is what every question reads."""
        prompt = self._answer_prompt()
        return [prompt.format_messages(title=view.title, context=view.context, question=q) for q in "AB"]

    def _read_now(self, view: View, progress=None, background: bool = False) -> str:
        reading = self.readings.setdefault(view.system, Reading(view.titles))
        reading.error = None

        def report(done: int, total: int) -> None:
            reading.done, reading.total = done, total
            if progress:
                progress(done, total)

        try:
            how = self._model().read(self._prefix_prompts(view), progress=report, background=background)
        except Exception as exc:
            reading.error = str(exc)
            raise
        if how == "stopped":
            reading.error = "stopped before the process exited"
        else:
            reading.finished = True
        return how

    def start(self, view: View) -> Reading | None:
        """Read view's whole text in a background thread (once); return its progress, None when nothing to read."""
        if view.system is None or not self.settings.read_in_background or not hasattr(self._model(), "read"):
            return None
        with self._lock:
            reading = self.readings.get(view.system)
            if reading is not None and not reading.error:
                return reading
            reading = self.readings[view.system] = Reading(view.titles)

        def work() -> None:
            try:
                with self._one_at_a_time:
                    self._read_now(view, background=True)
            except Exception as exc:  # recorded in reading.error; questions go on from retrieval
                log.warning("Reading %s failed: %s", view.titles, exc)

        thread = threading.Thread(target=work, name="article-read", daemon=True)
        with self._lock:
            if not self._threads:
                atexit.register(self.stop)
            self._threads.append(thread)
        thread.start()
        return reading

    def stop(self, timeout: float = 120.0) -> None:
        """Stop the background readings after their current chunk (at exit: llama.cpp must not be freed while a
        thread is inside it, which crashed the interpreter). What was read is lost; the next process reads again."""
        stop = getattr(self._model(), "stop_reading", None)
        if stop is not None:
            stop()
        for thread in list(self._threads):
            thread.join(timeout)
