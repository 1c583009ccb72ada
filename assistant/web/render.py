"""Web stage, rendering: the chat's turns as escaped chat messages and HTML (answers, sources, the article, the status
line), the engine's plain-text history, and what the page and the API say about an answer or an error.

Pure functions of their arguments: no Gradio, no state.
"""

from __future__ import annotations

import html
import re

from ..answer.cite import MARKER, NEAREST, highlight, strip_markers
from ..answer.guard import InvalidQuestion
from ..answering import Answer
from ..errors import AssistantError
from ..index.corpus import Passage
from ..store.turn import Turn

LOADING = "Loading the model… first answers may take a few seconds."
READY = "Ready: ask a question about the article."
BUSY = (
    "Ask away: the model reads the articles below in the background, and gives way to every question. Until an "
    "article is read, questions about it are answered from the passages retrieval finds."
)
WAITING = (
    "Waiting for the model, which answers one question at a time: your place in the queue and the expected wait "
    "show at the foot of the chat."
)
UNANSWERED = (
    "Not answered: the assistant stopped before it could answer. Click the question to put it back in the box, "
    "then send it again."
)
CLOSEST = "The nearest the article comes:"
ELSEWHERE = "Still being answered (asked before the page was reloaded): open this conversation again in a moment."
HISTORY_MESSAGES = 20  # the engine reads only the last few turns; a long chat must not hit its history limit
GENERIC_ERROR = "Something went wrong while answering; the error was logged. Please try again."

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$^=:])")


def escape(value: object) -> str:
    """Return value as text that is safe inside HTML, attributes included."""
    return html.escape(str(value), quote=True)


def chat_text(value: object) -> str:
    """Return text for a Chatbot message that shows literally: Markdown and HTML characters are escaped."""
    return escape(_MARKDOWN_SPECIAL.sub(r"\\\1", str(value)))


def source_id(turn: int, index: int) -> str:
    """The HTML id of citation index of chat turn (0-based) in the sources panel."""
    return f"src-{turn}-{index}"


def answer_html(turn: Turn, number: int) -> str:
    """Return the Chatbot content of one answer turn: markers linked to the sources, refusals and errors styled."""
    if turn.state == "error":
        return f'<span class="chat-error">⚠ {chat_text(turn.error)}</span>'
    if turn.state == "waiting":
        return f'<span class="waiting">{chat_text(WAITING)}</span>'
    if turn.state == "elsewhere":
        return f'<span class="waiting elsewhere">{chat_text(ELSEWHERE)}</span>'
    if turn.state == "stopped" and not turn.answer:
        return f'<span class="unanswered">{chat_text(UNANSWERED)}</span>'
    text = f"{turn.answer} …" if turn.state == "stopped" else turn.answer
    if turn.abstained:
        reason = re.sub(r"[^a-z_]", "", str(turn.reason))
        return f'<em class="refusal reason-{reason}">{chat_text(text)}</em>{closest_html(turn, number)}'
    known = {c["index"] for c in turn.citations} if turn.state == "done" else set()
    parts, pos = [], 0
    for match in MARKER.finditer(text):
        parts.append(chat_text(text[pos : match.start()]))
        n = int(match.group(1))
        if n in known:
            parts.append(f'<a class="cite" href="#{source_id(number, n)}" title="Source {n}">&#91;{n}&#93;</a>')
        else:
            parts.append(f"&#91;{n}&#93;")
        pos = match.end()
    parts.append(chat_text(text[pos:]))
    css = "answer" if turn.ended else "answer streaming"
    return f'<span class="{css}">{"".join(parts)}</span>'


def closest_html(turn: Turn, number: int) -> str:
    """After a refusal: the article's nearest sentence, quoted, linked to its passage in the sources ("" if none)."""
    closest = turn.closest
    if not closest or turn.state != "done":
        return ""
    link = f'<a class="cite" href="#{source_id(number, closest["index"])}" title="Nearest passage">¶{closest["number"]}</a>'
    return f'<br><span class="closest">{chat_text(CLOSEST)} “{chat_text(closest["quote"])}” {link}</span>'


def chat_messages(turns: list[Turn]) -> list[dict]:
    """Return the Chatbot messages ({"role", "content"} dicts, content escaped HTML) for the session's turns."""
    messages = []
    for number, turn in enumerate(turns):
        messages.append({"role": "user", "content": chat_text(turn.question)})
        if has_reply(turn):
            messages.append({"role": "assistant", "content": answer_html(turn, number)})
    return messages


def has_reply(turn: Turn) -> bool:
    """True when the chat shows a bot message after turn's question: an answer so far, an error or a note."""
    return bool(turn.answer) or turn.state != "streaming"


def engine_history(turns: list[Turn]) -> list[dict]:
    """Return the plain-text history for the engine: recent finished turns, without HTML or citation markers."""
    history: list[dict] = []
    for turn in turns:
        if turn.answered:
            history.append({"role": "user", "content": turn.question})
            history.append({"role": "assistant", "content": strip_markers(turn.answer)})
    return history[-HISTORY_MESSAGES:]


def citation_label(citation: dict) -> str:
    """Return the heading of a source entry, e.g. '[1] ¶5 (A Shift in Tone — and Spending)' (not escaped)."""
    label = f"[{citation['index']}] ¶{citation['number']}"
    return f"{label} ({citation['section']})" if citation.get("section") else label


def source_html(citation: dict, turn: int, heading: str | None = None) -> str:
    """Return one source entry: label, the passage with the quoted span marked, and where it comes from."""
    passage = highlight(citation["text"], citation["passage_start"], [(citation["start"], citation["end"])])
    return (
        f'<div class="source" id="{source_id(turn, citation["index"])}">'
        f'<div class="source-head">{escape(heading or citation_label(citation))}</div>'
        f'<blockquote class="passage">{passage}</blockquote>'
        f'<div class="source-meta">{escape(citation.get("title", ""))} — {escape(citation.get("source", ""))}</div>'
        "</div>"
    )


def sources_html(turns: list[Turn]) -> str:
    """Return the sources panel: the cited passages of every answered turn, the latest first."""
    blocks = []
    for number in range(len(turns) - 1, -1, -1):
        turn = turns[number]
        if not turn.answered:
            continue
        head = f'<div class="turn-question">Q{number + 1}: {escape(turn.question)}</div>'
        if turn.citations:
            body = "".join(source_html(c, number) for c in turn.citations)
        else:
            body = '<p class="refusal">No source cited: the article does not answer this.</p>'
            if turn.closest:
                heading = f"{NEAREST}: ¶{turn.closest['number']}"
                body += f'<div class="closest">{source_html(turn.closest, number, heading)}</div>'
        blocks.append(f'<section class="turn-sources" id="sources-{number}">{head}{body}</section>')
    if not blocks:
        return '<p class="sources-empty">Sources cited by the answers appear here.</p>'
    return "".join(blocks)


def article_html(passages: list[Passage], citations: list[dict] | None = None) -> str:
    """Return the whole article (titles, headings, numbered paragraphs) with the cited spans marked."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in citations or []:
        spans.setdefault(c["doc_id"], []).append((c["start"], c["end"]))
    if citations:
        note = "Marked: the passages cited by the last answer."
    else:
        note = "Passages cited by the last answer are marked here."
    out, doc, section = [f'<p class="article-note">{escape(note)}</p>'], None, None
    for p in passages:
        if p.doc_id != doc:
            out.append(f'<h2 class="doc-title">{escape(p.title)}</h2>')
            doc, section = p.doc_id, None
        if p.section and p.section != section:
            out.append(f"<h3>{escape(p.section)}</h3>")
        section = p.section
        body = highlight(p.text, p.start, spans.get(p.doc_id, []))
        out.append(
            f'<p class="para" id="para-{escape(p.doc_id)}-{p.number}">'
            f'<span class="para-no">¶{p.number}</span>{body}</p>'
        )
    return "".join(out)


def status_html(
    state: str, detail: str = "", readings: list | None = None, paused: bool = False, notes: list[str] | None = None
) -> str:
    """Return the status line for a warm-up state (loading, ready or failed) and the readings: "Ready" only when
    nothing is being read or waits to be; a bar for each reading that has started, a line for each still waiting
    its turn, and what is faster now for each just finished. paused: a question in flight holds the readings."""
    readings = readings or []
    text = {"loading": LOADING, "ready": READY}.get(state, f"The model could not be loaded: {detail}")
    if state == "ready" and any(r.active for r in readings):
        state, text = "busy", BUSY
    lines = "".join(reading_html(r, paused) for r in readings)
    lines += "".join(f'<div class="status note">{escape(note)}</div>' for note in notes or [])
    return f'<div class="status {escape(state)}">{escape(text)}</div>{lines}'


def reading_html(reading, paused: bool = False) -> str:
    """One reading's line: its bar while it is read, where it stands while it waits, what it changed once done."""
    title = ", ".join(reading.titles)
    if reading.error:
        text = f"Reading “{title}” failed ({reading.error}); it is answered from retrieved passages."
        return f'<div class="status reading failed">{escape(text)}</div>'
    if reading.finished:
        took = f"{reading.total:,} tokens in {duration(reading.seconds)}"
        text = (
            f"“{title}” is read ({took}). Questions about it are now answered from the whole article, and sooner: "
            "the model starts from its reading and reads only the question."
        )
        return f'<div class="status reading done">{escape(text)}</div>'
    if not reading.started:
        when = "next" if reading.wanted_at is not None else "when no question or other article waits"
        text = (
            f"“{title}” will be read once, {when}. Until then, questions about it are answered from the passages "
            "retrieval finds."
        )
        return f'<div class="status reading queued">{escape(text)}</div>'
    percent = round(100 * reading.share)
    text = (
        f"Reading “{title}” once: {percent} % ({reading.done:,} of {reading.total:,} tokens). Until it is read, "
        "questions about it are answered from the passages retrieval finds; after, from the whole article, faster."
    )
    if paused:
        text += " Paused while a question is answered."
    return f'<div class="status reading"><progress max="100" value="{percent}"></progress> {escape(text)}</div>'


def duration(seconds: float) -> str:
    """A reading's length as a person says it: 45 s, 3 min 20 s."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def error_message(exc: BaseException) -> str:
    """Return what the page says about an error: the engine's own advice for known errors, else a generic line."""
    if isinstance(exc, InvalidQuestion):
        return str(exc)
    if isinstance(exc, AssistantError):
        return f"The assistant cannot answer right now: {exc}"
    return GENERIC_ERROR


def api_result(answer: Answer) -> dict:
    """Return the JSON result of the API endpoint for an Answer."""
    data = answer.to_dict()
    keys = ("question", "text", "abstained", "reason", "standalone_question", "citations", "closest", "timings")
    return {key: data[key] for key in keys}
