"""Conversations stage, Markdown: a conversation as a Markdown transcript, its citations as footnotes quoting the
cited spans (the web page's download)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..answer.cite import MARKER, NEAREST
from .conversations import Conversation

# A marker with the space cite.mark_sentence puts before it: a footnote reference follows its word directly.
_SPACED_MARKER = re.compile(rf"[ \t]*{MARKER.pattern}")
_TURN_ENDINGS = {"streaming": "*(interrupted: the answer stopped here)*", "error": "*(the answer failed)*"}
_NOT_ANSWERED = {**_TURN_ENDINGS, "streaming": "*(not answered: the assistant stopped before answering)*"}


def one_line(text: str) -> str:
    """The text with every run of white space (line breaks too) as one space."""
    return " ".join(str(text).split())


def answer_markdown(text: str, citations: Iterable[dict], first: int = 1) -> tuple[str, list[str], int]:
    """An answer's text with its [n] markers as footnote references, numbered from first (footnote labels are
    shared by the whole document, so each answer continues the numbering); also the footnotes, and the next number.
    """
    cited = {c["index"]: c for c in citations if isinstance(c, Mapping) and "index" in c}
    labels: dict[int, int] = {}

    def reference(match: re.Match) -> str:
        n = int(match.group(1))
        if n not in cited:
            return match.group(0)
        labels.setdefault(n, first + len(labels))
        return f"[^{labels[n]}]"

    body = _SPACED_MARKER.sub(reference, text)
    notes = [f"[^{label}]: {_quoted(cited[n])}" for n, label in labels.items()]
    return body, notes, first + len(labels)


def _quoted(citation: Mapping) -> str:
    """A cited span as Markdown: the quote, then where it is."""
    where = citation.get("title") or citation.get("doc_id") or "the article"
    return f'"{one_line(citation.get("quote", ""))}" — {one_line(where)}, ¶{citation.get("number", "?")}'


def conversation_markdown(conversation: Conversation) -> str:
    """A conversation as Markdown: its title, then each question and its answer with that answer's footnotes."""
    lines = [f"# {one_line(conversation.title) or 'Conversation'}", ""]
    first = 1
    for turn in conversation.turns:
        lines += [f"**Q:** {turn.question.strip()}", ""]
        body, notes, first = answer_markdown(turn.answer, turn.citations, first)
        ending = _TURN_ENDINGS.get(turn.state) if turn.answer.strip() else _NOT_ANSWERED.get(turn.state)
        answer = " ".join(part for part in (body.strip(), ending) if part)
        if answer:
            lines += [answer, ""]
        if turn.closest:
            lines += [f"> {NEAREST}: {_quoted(turn.closest)}", ""]
        if notes:
            lines += [*notes, ""]
    return "\n".join(lines).rstrip() + "\n"
