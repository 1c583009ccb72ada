"""Web stage, warm-up: the index and the model load in a background thread while the page comes up; the page polls
the status line, and a bar for each article the model reads once.
"""

from __future__ import annotations

import logging
import threading

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
            how = self.assistant.warm_up()
            log.info("Model ready (article prefix %s)", how)
            self.state = "ready"
            for document in self.assistant.documents:  # each article that fits is read once, in the background
                self.assistant.read_article(self.assistant.view(document.doc_id), wait=False)
        except AssistantError as exc:
            log.error("Warm-up failed: %s", exc)
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # the page must still come up and say so
            log.exception("Warm-up failed")
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            self.done.set()

    def html(self) -> str:
        """The status line for the page, with the articles being read."""
        readings = [r for r in list(self.assistant.reader.readings.values()) if not r.finished]
        return status_html(self.state, self.error, readings)

    @property
    def busy(self) -> bool:
        """True while the page should keep polling: loading, or an article being read."""
        return self.state == "loading" or any(r.active for r in list(self.assistant.reader.readings.values()))
