"""Web stage, warm-up: the index and the model load in a background thread while the page comes up; the page polls
the status line, with a bar for each article the model reads once and a line for each waiting its turn.
"""

from __future__ import annotations

import logging
import threading
import time

from ..answering import Assistant
from ..errors import AssistantError
from .render import status_html

log = logging.getLogger(__name__)


class WarmUp:
    """Loads the index and the model in a background thread; the page polls its status."""

    def __init__(self, assistant: Assistant):
        self.assistant = assistant
        self.state = "loading"
        self.error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.done = threading.Event()

    def start(self) -> WarmUp:
        """Start warming up (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="assistant-warm-up", daemon=True)
                self._thread.start()
        return self

    def _run(self) -> None:
        try:
            how = self.assistant.warm_up(wait=False)  # a long text is read in the background: questions go first
            log.info("Model ready (article prefix %s)", how)
            self.state = "ready"
            self.assistant.read_when_idle()  # each article that fits is read once, when nothing else waits
        except AssistantError as exc:
            log.error("Warm-up failed: %s", exc)
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # the page must still come up and say so
            log.exception("Warm-up failed")
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            self.done.set()

    def html(self) -> str:
        """The status line for the page: the articles being read or waiting to be, those just read, and whether
        all articles together can be read at all."""
        since = time.monotonic() - self.assistant.settings.reading.reading_note_s
        readings = [
            r
            for r in self.assistant.readings()
            if r.active or r.error or (r.read_now and r.finished_at is not None and r.finished_at >= since)
        ]
        return status_html(self.state, self.error, readings, self.assistant.asking(), self.notes())

    def notes(self) -> list[str]:
        """What the page should know about reading: all articles together too long for the model's context."""
        documents = self.assistant.documents or []
        if self.state != "ready" or len(documents) < 2 or not self.assistant.settings.reading.whole_article:
            return []
        try:
            fits = self.assistant.view().system is not None
        except Exception:  # a corpus broken on disk: the chat itself says so
            return []
        if fits:
            return []
        return [
            f"All {len(documents)} articles together are too long for the model's context "
            f"({self.assistant.settings.generation.llm_context:,} tokens), so they are not read whole: a question across all "
            "of them is answered from the passages retrieval finds (from its article's reading once that article "
            "is read). Choose one article to have it answered from its whole text."
        ]

    @property
    def busy(self) -> bool:
        """True while the page should keep polling: loading, or an article being read or waiting to be."""
        return self.state == "loading" or any(r.active for r in self.assistant.readings())
