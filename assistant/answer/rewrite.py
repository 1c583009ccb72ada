"""Rewrite stage: turn a follow-up ("and what did he say?") into a question that stands on its own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from ..settings import Settings
from ..text import content_stems, entity_words
from .generation import Prompts
from .guard import is_off_task, needs_rewrite, off_task_reply
from .reply import is_decline
from .state import AnswerState, Rewrite, Update, ending

if TYPE_CHECKING:
    from .parts import Parts

log = logging.getLogger(__name__)


def rewrite(state: AnswerState, parts: Parts) -> Update:
    """Make a follow-up question stand on its own, sharing the cached article prefix."""
    if not (state.turns and needs_rewrite(state.question, state.turns)):
        return {}
    variables = {"title": state.view.title, "context": state.view.context or ""}
    tokens = partial(parts.tokens, config=state.config)
    with state.timings.timed("rewrite"):  # timed only when it runs: reports give the p50 of real rewrites
        rewritten = rewrite_question(state.question, state.turns, variables, parts.prompts, tokens, parts.settings)
    if is_off_task(rewritten.question):
        return {"rewrite": rewritten, **ending("off_task", off_task_reply(state.view.titles))}
    return {"rewrite": rewritten}


# Words a rewrite may replace: they point back at the conversation.
_POINTING_WORDS = "former latter previous earlier other others same"


def history_text(turns: list[dict], settings: Settings) -> str:
    """The last few messages as the rewrite prompt shows them, each cut short."""
    recent = turns[-settings.rewriting.rewrite_messages :]
    return "\n".join(
        f"{t['role'].capitalize()}: {t['content'][: settings.rewriting.rewrite_message_chars]}" for t in recent
    )


def first_line(reply: str) -> str:
    """The rewritten question in a reply: its first line, without quotes or a label."""
    line = reply.strip().splitlines()[0].strip().strip('"“”').strip() if reply.strip() else ""
    return line.removeprefix("Rewritten question:").removeprefix("Question:").strip()


def acceptable(line: str, question: str, settings: Settings) -> bool:
    """A rewrite may only add context: it keeps every content word the user wrote, and asks rather than answers."""
    kept = content_stems(question) - content_stems(_POINTING_WORDS) <= content_stems(line)
    changed = line.casefold().rstrip("?. ") != question.casefold().rstrip("?. ")
    return (
        bool(line) and len(line) <= settings.rewriting.rewrite_max_chars and not is_decline(line) and kept and changed
    )


def rewrite_question(
    question: str,
    turns: list[dict],
    variables: dict[str, str],
    prompts: Prompts,
    tokens: Callable[..., Iterator[str]],
    settings: Settings,
) -> Rewrite:
    """Ask the model (after the cached article prefix, variables title and context) for a standalone question.

    tokens streams a model reply to messages. When the rewrite is rejected, a question that names what it is about
    stands as asked; otherwise the last user question is added, for retrieval, and the model reads the last exchange.
    """
    messages = prompts.condense.format_messages(**variables, history=history_text(turns, settings), question=question)
    line = first_line("".join(tokens(messages, max_tokens=settings.rewriting.rewrite_max_tokens)))
    if acceptable(line, question, settings):
        return Rewrite(line, "model")
    log.info("Rejected rewrite %r of %r", line, question)
    if entity_words(question, skip_first=True):
        return Rewrite(question, "as_asked")
    return with_last_question(question, turns, settings)


def with_last_question(question: str, turns: list[dict], settings: Settings) -> Rewrite:
    """The question with the last user question added, for retrieval and checks; the model reads the last exchange."""
    last = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    return Rewrite(f"{question} ({last[: settings.rewriting.rewrite_fallback_chars]})", "last_question")
