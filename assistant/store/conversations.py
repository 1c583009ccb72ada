"""Conversations stage: chats and the feedback users give on answers, kept in one SQLite database (the feedback
becomes regression cases in assistant.eval.feedback; nothing here depends on it)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretBytes, SecretStr

from ..errors import AssistantError
from .turn import STORED_STATES, StoredState, Turn

if TYPE_CHECKING:
    from ..settings import Settings

DATABASE_NAME = "assistant.db"
SCHEMA_VERSION = 1  # PRAGMA user_version; bump it and add a step to _MIGRATIONS when the schema changes
TITLE_CHARS = 80
FeedbackKind = Literal["correct_answer", "not_in_article"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = ("correct_answer", "not_in_article")
# Settings fields that hold credentials (the remote key, the basic-auth passwords): never written to the database.
SECRET_SETTINGS = frozenset({"llm_api_key", "auth"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    title TEXT NOT NULL,
    scope TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS turns (
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    answer_json TEXT,
    state TEXT NOT NULL DEFAULT 'streaming' CHECK (state IN ('streaming', 'done', 'error')),
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (conversation, position)
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    user TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    note TEXT NOT NULL DEFAULT '',
    kind TEXT CHECK (kind IS NULL OR kind IN ('correct_answer', 'not_in_article')),
    question TEXT NOT NULL,
    history TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    corpus_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (conversation, position, user)
);
"""
_MIGRATIONS: dict[int, str] = {}  # from version n-1 to n, for n > 1


class ConversationError(AssistantError):
    """The database cannot be used (made by a newer version of the assistant, or a bad value was given)."""


class ConversationNotFound(AssistantError, LookupError):
    """No such conversation (or turn) for this user; another user's rows are reported the same way."""


# ----- records ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConversationSummary:
    """One line of a user's conversation list."""

    id: str
    title: str
    scope: str | None
    created: float
    updated: float
    turns: int


@dataclass(frozen=True)
class Conversation:
    """A conversation with its turns in order."""

    id: str
    user: str
    title: str
    scope: str | None
    created: float
    updated: float
    turns: list[Turn] = field(default_factory=list)


@dataclass(frozen=True)
class Feedback:
    """A rating of one answer, with copies of everything needed to replay its question later."""

    id: int
    conversation_id: str
    position: int
    user: str
    rating: int  # +1 or -1
    note: str  # for a -1: the right answer, when the user gave it
    kind: FeedbackKind | None
    question: str
    history: list[dict]  # the messages before the question
    answer: dict  # Answer.to_dict()-like
    citations: list[dict]
    corpus_hash: str
    settings: dict  # without secrets
    created: float


# ----- the store ----------------------------------------------------------------------------------------------------
def make_title(question: str) -> str:
    """A conversation's title: its first question on one line, cut to TITLE_CHARS characters."""
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


def clean_settings(settings: Mapping | Any) -> dict:
    """Settings (a Settings or a mapping) as plain JSON-ready data, without the fields that hold credentials.

    A Settings is recorded flat, every field under its own name (as before sections): old and new rows read alike.
    """
    if hasattr(settings, "flat_dump"):
        settings = settings.flat_dump(mode="json")
    elif hasattr(settings, "model_dump"):
        settings = settings.model_dump(mode="json")  # a mapping-like model: settings-codemod: ok
    return _without_secrets(dict(settings))


def _without_secrets(value):
    if isinstance(value, Mapping):
        return {
            str(k): _without_secrets(v)
            for k, v in value.items()
            if str(k) not in SECRET_SETTINGS and not isinstance(v, SecretStr | SecretBytes)
        }
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class ConversationStore:
    """Conversations, their turns and feedback in one SQLite database, every row belonging to a user.

    Every method takes the user and never reads, changes or deletes another user's rows (with no auth the user is
    "" and sees the "" rows). One connection is shared by the web server's worker threads, one call at a time; each
    write is committed, and so durable, when the method returns.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.RLock()
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT of _transaction, never implicit ones.
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        # WAL: the web's readers do not wait for the sentence-by-sentence writes of a streaming answer, and the CLI
        # can read while the server writes. synchronous=FULL rather than NORMAL: in WAL, NORMAL already keeps every
        # commit through a kill -9 (the WAL pages sit in the OS cache: the kill test of tests/test_conversations.py
        # passed at NORMAL too), but only FULL also keeps them through a power cut or an OS crash. It costs one
        # fsync per commit (about 1 ms measured here, 0.02 ms at NORMAL), small next to generating the sentence
        # each update_turn follows.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConversationError(
                    f"{self.path} was written by a newer version of the assistant (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade the assistant or use another ASSISTANT_DATA_DIR"
                )
            # A new database gets the latest schema; an older one its missing migration steps (executescript
            # would commit halfway, so the statements run one by one inside this transaction).
            steps = [_SCHEMA] if version == 0 else [_MIGRATIONS[n] for n in range(version + 1, SCHEMA_VERSION + 1)]
            for script in steps:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction, with the lock held: IMMEDIATE for writes, so that a busy database fails fast at BEGIN."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _owned(conn: sqlite3.Connection, user: str, conversation_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM conversations WHERE id = ? AND user = ?", (conversation_id, user)).fetchone()
        if row is None:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        return row

    # ----- conversations and turns
    def create(self, user: str, first_question: str, scope: str | None = None) -> str:
        """Start a conversation titled by its first question (add that question with start_turn); return its id."""
        conversation_id, now = uuid.uuid4().hex, time.time()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO conversations (id, user, title, scope, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, user, make_title(first_question), scope, now, now),
            )
        return conversation_id

    def start_turn(self, conversation_id: str, user: str, question: str) -> int:
        """Add a question to the conversation, its answer empty and 'streaming'; return its position (from 0)."""
        now = time.time()
        with self._transaction() as conn:
            self._owned(conn, user, conversation_id)
            position = conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM turns WHERE conversation = ?", (conversation_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO turns (conversation, position, question, created, updated) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, position, question, now, now),
            )
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        return position

    def update_turn(
        self,
        conversation_id: str,
        user: str,
        position: int,
        answer_text: str,
        answer_json: dict | None = None,
        state: StoredState = "streaming",
    ) -> None:
        """Replace the turn's answer text (answer_json None keeps the stored one); committed when this returns."""
        if state not in STORED_STATES:
            raise ConversationError(f"a turn's state is one of {', '.join(STORED_STATES)}, not {state!r}")
        now = time.time()
        data = None if answer_json is None else _dumps(answer_json)
        with self._transaction() as conn:
            self._owned(conn, user, conversation_id)
            changed = conn.execute(
                "UPDATE turns SET answer = ?, answer_json = COALESCE(?, answer_json), state = ?, updated = ? "
                "WHERE conversation = ? AND position = ?",
                (answer_text, data, state, now, conversation_id, position),
            ).rowcount
            if not changed:
                raise ConversationNotFound(f"no turn {position} in conversation {conversation_id!r}")
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))

    def list(self, user: str) -> list[ConversationSummary]:
        """The user's conversations, the most recently active first."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.conversation = c.id) AS turns "
                "FROM conversations c WHERE c.user = ? ORDER BY c.updated DESC, c.created DESC, c.rowid DESC",
                (user,),
            ).fetchall()
        return [
            ConversationSummary(r["id"], r["title"], r["scope"], r["created"], r["updated"], r["turns"]) for r in rows
        ]

    def get(self, user: str, conversation_id: str) -> Conversation:
        """The user's conversation with its turns; ConversationNotFound when it is not theirs or does not exist."""
        with self._transaction(write=False) as conn:
            row = self._owned(conn, user, conversation_id)
            turns = conn.execute(
                "SELECT * FROM turns WHERE conversation = ? ORDER BY position", (conversation_id,)
            ).fetchall()
        return Conversation(
            row["id"],
            row["user"],
            row["title"],
            row["scope"],
            row["created"],
            row["updated"],
            [
                Turn.stored(
                    t["position"],
                    t["question"],
                    t["answer"],
                    json.loads(t["answer_json"]) if t["answer_json"] else None,
                    t["state"],
                    created=t["created"],
                    updated=t["updated"],
                )
                for t in turns
            ],
        )

    def delete(self, user: str, conversation_id: str) -> bool:
        """Delete the user's conversation with its turns and feedback; False when there was none of theirs."""
        with self._transaction() as conn:
            try:
                self._owned(conn, user, conversation_id)
            except ConversationNotFound:
                return False
            conn.execute("DELETE FROM feedback WHERE conversation = ?", (conversation_id,))
            conn.execute("DELETE FROM turns WHERE conversation = ?", (conversation_id,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        return True

    # ----- feedback
    def add_feedback(
        self,
        user: str,
        conversation_id: str,
        position: int,
        rating: int,
        note: str = "",
        kind: FeedbackKind | None = None,
        *,
        question: str,
        history: list[dict],
        answer: dict,
        corpus_hash: str,
        settings: Mapping | Any,
    ) -> int:
        """Record the user's rating (+1 or -1) of one turn's answer and return its id.

        A user has one rating per turn: rating it again replaces the earlier rating and keeps its id (so the
        regression case made from it keeps its id too). settings are stored without credentials.
        """
        if rating not in (1, -1) or isinstance(rating, bool):
            raise ConversationError(f"a rating is 1 or -1, not {rating!r}")
        if kind is not None and kind not in FEEDBACK_KINDS:
            raise ConversationError(f"a feedback kind is one of {', '.join(FEEDBACK_KINDS)} or None, not {kind!r}")
        values = (
            conversation_id,
            position,
            user,
            rating,
            note or "",
            kind,
            question,
            _dumps(list(history or [])),
            _dumps(answer),
            _dumps(list(answer.get("citations") or [])),
            corpus_hash,
            _dumps(clean_settings(settings)),
            time.time(),
        )
        with self._transaction() as conn:
            self._owned(conn, user, conversation_id)
            if not conn.execute(
                "SELECT 1 FROM turns WHERE conversation = ? AND position = ?", (conversation_id, position)
            ).fetchone():
                raise ConversationNotFound(f"no turn {position} in conversation {conversation_id!r}")
            return conn.execute(
                "INSERT INTO feedback (conversation, position, user, rating, note, kind, question, history, answer, "
                "citations, corpus_hash, settings, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (conversation, position, user) DO UPDATE SET rating = excluded.rating, "
                "note = excluded.note, kind = excluded.kind, question = excluded.question, "
                "history = excluded.history, answer = excluded.answer, citations = excluded.citations, "
                "corpus_hash = excluded.corpus_hash, settings = excluded.settings, created = excluded.created "
                "RETURNING id",
                values,
            ).fetchall()[0][0]

    def withdraw_feedback(self, user: str, conversation_id: str, position: int) -> bool:
        """Take back the user's rating of one turn (a 👍 or 👎 clicked again); True when there was one."""
        with self._transaction() as conn:
            self._owned(conn, user, conversation_id)
            gone = conn.execute(
                "DELETE FROM feedback WHERE conversation = ? AND position = ? AND user = ?",
                (conversation_id, position, user),
            )
            return gone.rowcount > 0

    def list_feedback(self, user: str | None = None) -> list[Feedback]:
        """The feedback of one user, or of every user when user is None (the CLI's view), oldest first."""
        query, params = "SELECT * FROM feedback", ()
        if user is not None:
            query, params = query + " WHERE user = ?", (user,)
        with self._transaction(write=False) as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [
            Feedback(
                r["id"],
                r["conversation"],
                r["position"],
                r["user"],
                r["rating"],
                r["note"],
                r["kind"],
                r["question"],
                json.loads(r["history"]),
                json.loads(r["answer"]),
                json.loads(r["citations"]),
                r["corpus_hash"],
                json.loads(r["settings"]),
                r["created"],
            )
            for r in rows
        ]


def open_store(settings: Settings) -> ConversationStore:
    """The store at settings.data_dir / assistant.db, creating the folder."""
    folder = Path(settings.paths.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return ConversationStore(folder / DATABASE_NAME)
