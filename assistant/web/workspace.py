"""Web stage, workspace: conversations kept per user, feedback on answers, and articles added from the page.

Web-side glue over conversations.py (SQLite) and examples.py (a new article's example questions); the page itself is
built in app.py. Nothing here may break answering: a store that fails is logged and the chat goes on without it.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from ..store.conversations import ConversationError, ConversationStore
from ..store.transcript import conversation_markdown
from ..store.turn import Turn

log = logging.getLogger(__name__)

# What a store may raise that must not stop an answer: a full or locked disk, a database from elsewhere.
STORE_ERRORS = (sqlite3.Error, OSError, LookupError, ConversationError, ValueError)


def user_of(request) -> str:
    """The signed-in user (basic auth), or "" when the page has no login."""
    return str(getattr(request, "username", None) or "")


def session_of(request) -> str:
    """The page session (one browser tab) a request comes from, "" outside the page."""
    return str(getattr(request, "session_hash", None) or "")


def web_turn(turn: Turn) -> Turn:
    """A stored turn as the page shows it when no request of this process is answering it: one the store still
    calls 'streaming' was cut off when the process stopped (handlers.live_turn swaps in the live ones)."""
    return replace(turn, state="stopped") if turn.state == "streaming" else turn


@dataclass
class Recorder:
    """Writes one turn of one conversation as it streams; every write is durable when it returns."""

    store: ConversationStore | None
    user: str
    conversation: str | None
    position: int | None = None

    def start(self, question: str, scope: str | None) -> str | None:
        """Open the turn (and the conversation, on its first question); return the conversation id."""
        if self.store is None:
            return self.conversation
        try:
            if self.conversation is None:
                self.conversation = self.store.create(self.user, question, scope)
            self.position = self.store.start_turn(self.conversation, self.user, question)
        except STORE_ERRORS as exc:
            self._failed(exc)
        return self.conversation

    def write(self, turn: Turn) -> None:
        """Record what the reader has been shown of turn so far, and its answer's data once it has ended."""
        if self.store is None or self.position is None:
            return
        try:
            self.store.update_turn(
                self.conversation, self.user, self.position, turn.answer, turn.answer_json, turn.stored_state
            )
        except STORE_ERRORS as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        log.error(
            "Could not save the conversation (%s: %s); answering goes on without saving.", type(exc).__name__, exc
        )
        self.store = None


class Conversations:
    """The page's conversation list: open, delete and export a user's conversations."""

    def __init__(self, store: ConversationStore | None):
        self.store = store

    def choices(self, user: str) -> list[tuple[str, str]]:
        """(label, id) of the user's conversations, newest first."""
        if self.store is None:
            return []
        try:
            return [(c.title, c.id) for c in self.store.list(user)]
        except STORE_ERRORS as exc:
            log.error("Could not list the conversations (%s: %s).", type(exc).__name__, exc)
            return []

    def turns(self, user: str, conversation: str) -> tuple[list[Turn], str | None]:
        """The conversation's turns as the page keeps them, and its scope."""
        stored = self.store.get(user, conversation)
        return [web_turn(t) for t in stored.turns], stored.scope

    def delete(self, user: str, conversation: str) -> bool:
        return bool(self.store and self.store.delete(user, conversation))

    def markdown_file(self, user: str, conversation: str) -> Path:
        """Write the conversation as Markdown to a fresh temporary file, for the page to offer as a download."""
        text = conversation_markdown(self.store.get(user, conversation))
        folder = Path(tempfile.mkdtemp(prefix="conversation-"))
        path = folder / f"conversation-{conversation[:8]}.md"
        path.write_text(text, encoding="utf-8")
        return path


class Examples:
    """Example questions per article: the metadata's, or written once in the background for a new article."""

    def __init__(self, assistant):
        self.assistant = assistant
        self._running: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def of(self, scope: str | None, limit: int) -> list[str]:
        """The examples of the chosen article (of every article when none is chosen), at most limit."""
        documents = self.assistant.documents or []
        return [q for d in documents if scope in (None, "", d.doc_id) for q in d.examples][:limit]

    def fill_later(self, doc_id: str) -> None:
        """Write examples for doc_id in a background thread, once (the model answers them to check them)."""
        with self._lock:
            if doc_id in self._running:
                return
            self._running.add(doc_id)
        thread = threading.Thread(target=self._fill, args=(doc_id,), name=f"examples-{doc_id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait for the examples being written; True when none is left (for shutdown and the tests)."""
        for thread in list(self._threads):
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def _fill(self, doc_id: str) -> None:
        from ..examples import fill_examples

        try:
            kept = fill_examples(self.assistant, doc_id)
            log.info("Example questions for %s: %s", doc_id, kept)
        except Exception:  # examples are a convenience: never let them take the page down
            log.exception("Could not write example questions for %s", doc_id)
        finally:
            with self._lock:
                self._running.discard(doc_id)
