"""Example questions for an article: from its NAME.meta.json, or written once by the model and kept only when the
assistant answers them with a checked citation.

Writing them is background work that gives way to questions: it waits until the article is read (the request then
reads only its own few tokens on top of the article's kept state, instead of the whole article again) and until no
question is in flight before each model call; the answers that check them pause nothing.
"""

from __future__ import annotations

import logging
import re

from .answer.reply import is_decline
from .answering import Assistant

log = logging.getLogger(__name__)

_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def candidates(reply: str, limit: int) -> list[str]:
    """The questions in the model's reply: one per line, numbering dropped, each ending in '?', no repeats."""
    found: list[str] = []
    for line in reply.splitlines():
        question = _NUMBERING.sub("", line).strip().strip('"“”').strip()
        fresh = question.casefold() not in {q.casefold() for q in found}
        if question.endswith("?") and 10 <= len(question) <= 150 and not is_decline(question) and fresh:
            found.append(question)
    return found[:limit]


def suggest(assistant: Assistant, doc_id: str) -> list[str]:
    """Ask the model for questions about document doc_id; keep those the assistant answers with a citation."""
    settings = assistant.settings
    view = assistant.view(doc_id)
    if view.context is None:
        return []  # too long to show the model whole: no examples rather than examples about a part
    if not assistant.reader.ready(view):
        assistant.reader.wait_read(view)  # read once first (in the background, giving way to questions)
    reply = write_candidates(assistant, view)
    kept = []
    for question in candidates(reply, settings.uploads.example_candidates):
        assistant.questions.wait_quiet()
        with assistant.questions.aside():  # background work: it must not hold up readings as a question does
            answer = assistant.answer(question, scope=doc_id)
        if not answer.abstained and answer.citations:
            kept.append(question)
        else:
            log.info("Example %r dropped: %s", question, answer.reason)
        if len(kept) == settings.uploads.examples_kept:
            break
    return kept


def write_candidates(assistant: Assistant, view) -> str:
    """The model's example questions for view, written when no question is in flight; a question that comes while
    they are written stops them, and they are written again after it (from the kept article: a few seconds)."""
    settings, questions = assistant.settings, assistant.questions
    messages = assistant.prompts.examples.format_messages(
        title=view.title, context=view.context, count=settings.uploads.example_candidates
    )
    while True:
        questions.wait_quiet()
        reply = []
        for token in assistant.parts.tokens(messages, max_tokens=settings.uploads.example_max_tokens):
            if questions.busy():
                break
            reply.append(token)
        else:
            return "".join(reply)


def fill_examples(assistant: Assistant, doc_id: str) -> list[str]:
    """Give document doc_id checked example questions when its metadata has none; return its examples."""
    from .index.ingest import update_metadata

    assistant.load()
    document = next(d for d in assistant.documents if d.doc_id == doc_id)
    if document.examples:
        return list(document.examples)
    examples = suggest(assistant, doc_id)
    if examples:
        update_metadata(assistant.settings, doc_id, examples=examples)
    return examples
