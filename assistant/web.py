"""Web chat: a Gradio page that streams cited answers about the article, and the `/answer` API endpoint."""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .answerability import VerifierModelError
from .answering import Answer, Assistant
from .cite import MARKER, NEAREST, highlight, strip_markers
from .corpus import CorpusError, Passage, load_passages
from .generation import ModelUnavailable, PromptError
from .guard import InvalidQuestion, validate_question
from .indexing import IndexStoreError
from .models import ModelError
from .settings import Settings
from .workspace import STORE_ERRORS, Conversations, Examples, Recorder, session_of, user_of

log = logging.getLogger(__name__)

MAX_EXAMPLES = 6  # example questions shown under the chat, from the documents' NAME.meta.json
LOADING = "Loading the model… first answers may take a few seconds."
READY = "Ready: ask a question about the article."
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
ORDER_POLL_S = 0.1  # how often a question checks that the one asked before it has its answer (several at once only)
HISTORY_MESSAGES = 20  # the engine reads only the last few turns; a long chat must not hit its history limit
GENERIC_ERROR = "Something went wrong while answering; the error was logged. Please try again."
API_DOC = """Answer a question about the article, from the article only, with citations.

Call it with gradio_client: `Client("http://127.0.0.1:7860").predict("Who opened the new library?",
"[]", api_name="/answer")`. The second argument, history_json, is an optional JSON list of earlier messages
`[{"role": "user"|"assistant", "content": "..."}]` for follow-up questions. The result is a dict: text (with [n]
citation markers), abstained (true when the article does not say or the request is off task), reason (answered,
not_in_article, unsupported, off_task or greeting), standalone_question, citations (one per marker: index,
passage_id, number (paragraph), section, text (the whole passage), quote (the exact supporting span), start/end and
passage_start/passage_end (character offsets in the document), doc_id, title, source), closest (with a refusal: the
article's sentence nearest to what was asked, as a citation of the same shape, or null) and timings (seconds per
stage). An optional third argument, article, names one document (its id: the file name without its suffix) to answer from when
the corpus holds several. An invalid question (empty, too long) or history, or an unavailable model, raises an error with a readable
message.
"""

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$^=:])")
_EXPECTED_ERRORS = (ModelUnavailable, ModelError, IndexStoreError, CorpusError, PromptError, VerifierModelError)

CSS = """
.upload-result { padding: 6px 10px; border-radius: 6px; }
.upload-result.ok { background: #e9f7ec; color: #1d6b32; }
.upload-result.failed { background: #fdecea; color: #8a1c12; }
#status .status { padding: 6px 10px; border-radius: 6px; font-size: 0.95em; }
#status .status.loading { background: #fff7e0; color: #7a5b00; }
#status .status.ready { background: #e9f7ec; color: #1d6b32; }
#status .status.failed { background: #fdecea; color: #8a1c12; }
#status .status.reading { background: #eef3fb; color: #1f3d6b; margin-top: 4px; }
#status .status.reading progress { width: 8em; vertical-align: middle; }
#chat .refusal, #chat .waiting { font-style: italic; color: #6b7280; }
#chat .closest, #sources .closest .source-head { color: #374151; font-size: 0.95em; }
#chat .chat-error { color: #b42318; }
#chat a.cite { text-decoration: none; font-size: 0.85em; vertical-align: super; padding: 0 1px; }
#sources .source { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 10px; margin: 6px 0; }
#sources .source.focused { border-color: #f59e0b; box-shadow: 0 0 0 2px #fde68a; }
#sources .turn-sources { margin-bottom: 12px; }
#sources .source-head { font-weight: 600; }
#sources .source-meta, #sources .turn-question { color: #6b7280; font-size: 0.85em; }
#sources .passage { margin: 6px 0 0 0; padding-left: 8px; border-left: 3px solid #e5e7eb; }
#sources .refusal { font-style: italic; color: #6b7280; }
#sources mark, #article mark { background: #fde68a; padding: 0 1px; }
#article { max-width: 52rem; }
#article .article-note { color: #6b7280; font-size: 0.85em; }
#article .para-no { color: #9ca3af; font-size: 0.8em; margin-right: 4px; }
"""

# A click on a citation marker in the chat scrolls its entry in the sources panel into view and outlines it.
HEAD = """
<script>
document.addEventListener("click", function (event) {
  var link = event.target && event.target.closest ? event.target.closest('a[href^="#src-"]') : null;
  if (!link) return;
  var target = document.getElementById(link.getAttribute("href").slice(1));
  if (!target) return;
  event.preventDefault();
  event.stopPropagation();
  document.querySelectorAll(".source.focused").forEach(function (el) { el.classList.remove("focused"); });
  target.classList.add("focused");
  target.scrollIntoView({block: "nearest"});
}, true);
</script>
"""


# ----- rendering helpers (pure functions of their arguments) ---------------------------------------------------
def escape(value: object) -> str:
    """Return value as text that is safe inside HTML, attributes included."""
    return html.escape(str(value), quote=True)


def chat_text(value: object) -> str:
    """Return text for a Chatbot message that shows literally: Markdown and HTML characters are escaped."""
    return escape(_MARKDOWN_SPECIAL.sub(r"\\\1", str(value)))


def source_id(turn: int, index: int) -> str:
    """The HTML id of citation index of chat turn (0-based) in the sources panel."""
    return f"src-{turn}-{index}"


def answer_html(turn: dict, number: int) -> str:
    """Return the Chatbot content of one answer turn: markers linked to the sources, refusals and errors styled."""
    if turn.get("error"):
        return f'<span class="chat-error">⚠ {chat_text(turn["error"])}</span>'
    if turn.get("waiting"):
        return f'<span class="waiting">{chat_text(WAITING)}</span>'
    if turn.get("unanswered"):
        return f'<span class="unanswered">{chat_text(UNANSWERED)}</span>'
    if turn.get("elsewhere"):
        return f'<span class="waiting elsewhere">{chat_text(ELSEWHERE)}</span>'
    text = turn.get("answer", "")
    if turn.get("abstained"):
        reason = re.sub(r"[^a-z_]", "", str(turn.get("reason", "")))
        return f'<em class="refusal reason-{reason}">{chat_text(text)}</em>{closest_html(turn, number)}'
    known = {c["index"] for c in turn.get("citations", [])} if turn.get("done") else set()
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
    css = "answer" if turn.get("done") else "answer streaming"
    return f'<span class="{css}">{"".join(parts)}</span>'


def closest_html(turn: dict, number: int) -> str:
    """After a refusal: the article's nearest sentence, quoted, linked to its passage in the sources ("" if none)."""
    closest = turn.get("closest")
    if not closest or not turn.get("done"):
        return ""
    link = f'<a class="cite" href="#{source_id(number, closest["index"])}" title="Nearest passage">¶{closest["number"]}</a>'
    return f'<br><span class="closest">{chat_text(CLOSEST)} “{chat_text(closest["quote"])}” {link}</span>'


def chat_messages(turns: list[dict]) -> list[dict]:
    """Return the Chatbot messages ({"role", "content"} dicts, content escaped HTML) for the session's turns."""
    messages = []
    for number, turn in enumerate(turns):
        messages.append({"role": "user", "content": chat_text(turn["question"])})
        if has_reply(turn):
            messages.append({"role": "assistant", "content": answer_html(turn, number)})
    return messages


def has_reply(turn: dict) -> bool:
    """True when the chat shows a bot message after turn's question: an answer so far, an error or a note."""
    return any(turn.get(key) for key in ("answer", "error", "done", "waiting", "unanswered", "elsewhere"))


def engine_history(turns: list[dict]) -> list[dict]:
    """Return the plain-text history for the engine: recent finished turns, without HTML or citation markers."""
    history: list[dict] = []
    for turn in turns:
        if turn.get("done") and not turn.get("error"):
            history.append({"role": "user", "content": turn["question"]})
            history.append({"role": "assistant", "content": strip_markers(turn["answer"])})
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


def sources_html(turns: list[dict]) -> str:
    """Return the sources panel: the cited passages of every answered turn, the latest first."""
    blocks = []
    for number in range(len(turns) - 1, -1, -1):
        turn = turns[number]
        if not turn.get("done") or turn.get("error"):
            continue
        head = f'<div class="turn-question">Q{number + 1}: {escape(turn["question"])}</div>'
        if turn.get("citations"):
            body = "".join(source_html(c, number) for c in turn["citations"])
        else:
            body = '<p class="refusal">No source cited: the article does not answer this.</p>'
            if turn.get("closest"):
                heading = f"{NEAREST}: ¶{turn['closest']['number']}"
                body += f'<div class="closest">{source_html(turn["closest"], number, heading)}</div>'
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


def status_html(state: str, detail: str = "", readings: list | None = None) -> str:
    """Return the status line for a warm-up state (loading, ready or failed), with a bar per article being read."""
    text = {"loading": LOADING, "ready": READY}.get(state, f"The model could not be loaded: {detail}")
    bars = "".join(reading_html(r) for r in readings or [])
    return f'<div class="status {escape(state)}">{escape(text)}</div>{bars}'


def reading_html(reading) -> str:
    """A progress bar for the model reading one article once, and what that means for answers meanwhile."""
    title = ", ".join(reading.titles)
    if reading.error:
        text = f"Reading “{title}” failed ({reading.error}); it is answered from retrieved passages."
        return f'<div class="status reading failed">{escape(text)}</div>'
    percent = round(100 * reading.share)
    text = (
        f"Reading “{title}” once: {percent} % ({reading.done:,} of {reading.total:,} tokens). Until it is read, "
        "questions about it are answered from the passages retrieval finds; after, from the whole article, faster."
    )
    return f'<div class="status reading"><progress max="100" value="{percent}"></progress> {escape(text)}</div>'


def error_message(exc: BaseException) -> str:
    """Return what the page says about an error: the engine's own advice for known errors, else a generic line."""
    if isinstance(exc, InvalidQuestion):
        return str(exc)
    if isinstance(exc, _EXPECTED_ERRORS):
        return f"The assistant cannot answer right now: {exc}"
    return GENERIC_ERROR


def api_result(answer: Answer) -> dict:
    """Return the JSON result of the API endpoint for an Answer."""
    data = answer.to_dict()
    keys = ("question", "text", "abstained", "reason", "standalone_question", "citations", "closest", "timings")
    return {key: data[key] for key in keys}


# ----- the model's warm-up ------------------------------------------------------------------------------------
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
        except _EXPECTED_ERRORS as exc:
            log.error("Warm-up failed: %s", exc)
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # the page must still come up and say so
            log.exception("Warm-up failed")
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            self.done.set()

    def html(self) -> str:
        """The status line for the page, with the articles being read."""
        readings = [r for r in list(self.assistant.reading.values()) if not r.finished]
        return status_html(self.state, self.error, readings)

    @property
    def busy(self) -> bool:
        """True while the page should keep polling: loading, or an article being read."""
        return self.state == "loading" or any(r.active for r in list(self.assistant.reading.values()))


# ----- streaming ----------------------------------------------------------------------------------------------
def stream_in_thread(
    assistant: Assistant, question: str, history: list[dict], scope: str | None = None
) -> Iterator[str | Answer]:
    """Relay the assistant's Runnable stream for question and history, run from start to end in one thread of its own.

    The engine takes the model's lock inside its generator and holds it across yields. Gradio resumes a sync
    generator on whichever worker thread is free, so iterating the engine directly could release that lock from
    another thread (a RuntimeError), or let another session re-enter it on the owning thread. Here the engine is
    iterated, and closed, by one thread; the caller only reads a queue. Closing this generator early (a cancelled
    event, "New chat") stops the engine after its current sentence.
    """
    items: queue.Queue = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        engine = None
        try:
            engine = assistant.runnable().stream({"question": question, "history": history, "scope": scope})
            for item in engine:
                items.put(("item", item))
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader, which raises it in the request's thread
            items.put(("error", exc))
        finally:
            if engine is not None:
                engine.close()
            items.put(("end", None))

    threading.Thread(target=pump, name="answer-stream", daemon=True).start()
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


# ----- the app ------------------------------------------------------------------------------------------------
@dataclass
class Asked:
    """A question shown and stored, waiting for its answer: the turn dict on the page, the session's turns it was
    asked in (another conversation may be on screen by the time it is answered) and where its answer is saved."""

    turn: dict
    turns: list[dict]
    recorder: Recorder
    scope: str | None
    session: str


def earlier_turns(asked: Asked) -> list[dict]:
    """The turns asked before asked's, in its conversation."""
    return asked.turns[: next(i for i, t in enumerate(asked.turns) if t is asked.turn)]


class ChatHandlers:
    """The page's chat event handlers. Each session's turns live in a gr.State (the same list object for every call
    of that session); a question is written to the conversation store when it is shown, and its answer as it
    streams.

    Asking is two steps. accept() never waits in the queue: it shows the question at once with a waiting note, saves
    it and queues it for its session. respond() runs in the queue, one call per accepted question: it answers the
    session's oldest waiting question. So a question sent while another is answered, an article is read or
    another conversation is open is never dropped, and a session's questions are answered in the order asked.
    """

    def __init__(self, assistant: Assistant, passages: list[Passage], store=None):
        self.assistant = assistant
        self.passages = passages
        self.store = store
        self.conversations = Conversations(store)
        self._lock = threading.Lock()
        self._asked: dict[str, deque[Asked]] = {}  # per session, oldest first
        self._shown: dict[str, list[dict]] = {}  # per session, the turns on its screen
        self._live: dict[tuple, Asked] = {}  # (user, conversation, position) of questions not yet answered
        self._busy: set[int] = set()  # id() of the turns being answered now

    def accept(
        self,
        question: str,
        turns: list[dict] | None,
        scope: str | None = None,
        conversation: str | None = None,
        request: gr.Request = None,
    ) -> tuple:
        """Show and save question at once: (chat, turns, textbox, conversation, conversation list). A question
        that cannot be asked stays in the box, with a warning that says why."""
        try:
            text = validate_question(question, self.assistant.settings.max_question_chars)
        except InvalidQuestion as exc:
            gr.Warning(escape(str(exc)), duration=15, title="Please change the question")  # rendered as HTML
            return (gr.skip(),) * 5
        turns = turns if turns is not None else []
        recorder = Recorder(self.store, user_of(request), conversation or None)
        conversation = recorder.start(text, scope or None)
        turn = {"question": text, "answer": "", "done": False, "waiting": True, "position": recorder.position}
        turns.append(turn)
        asked = Asked(turn, turns, recorder, scope or None, session_of(request))
        with self._lock:
            self._asked.setdefault(asked.session, deque()).append(asked)
            self._shown[asked.session] = turns
            if recorder.position is not None:
                self._live[(recorder.user, conversation, recorder.position)] = asked
        return chat_messages(turns), turns, "", conversation, self.listing(recorder.user, conversation)

    def respond(self, request: gr.Request = None) -> Iterator[tuple]:
        """Answer the session's oldest waiting question, streaming: yields (chat, sources, article), each left as it
        is while another conversation is on the session's screen."""
        session = session_of(request)
        with self._lock:
            waiting = self._asked.get(session)
            asked = waiting.popleft() if waiting else None
            if asked is not None:
                self._busy.add(id(asked.turn))
        if asked is None:  # never expected: one respond follows each accept
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turn = asked.turn
        try:
            self._after_earlier(asked)
            turn["waiting"] = False
            yield self._screen(session, turn)
            answer = yield from self._stream(session, asked)
        finally:
            self._forget(asked)
        if answer is None:
            yield self._screen(session, turn, ended=True)
            return
        turn.update(
            answer=answer.text,
            abstained=answer.abstained,
            reason=answer.reason,
            done=True,
            citations=[c.to_dict() for c in answer.citations],
            closest=answer.closest.to_dict() if answer.closest else None,
        )
        asked.recorder.write(answer.text, answer.to_dict(), "done")
        yield self._screen(session, turn, ended=True)

    def _stream(self, session: str, asked: Asked) -> Iterator[tuple]:
        """Stream asked's answer into its turn and the store; return the Answer (None after an error, shown)."""
        turn, answer = asked.turn, None
        history = engine_history(earlier_turns(asked))
        try:
            for item in stream_in_thread(self.assistant, turn["question"], history, asked.scope):
                if isinstance(item, Answer):
                    answer = item
                elif item:
                    turn["answer"] += item
                    asked.recorder.write(turn["answer"])
                    yield self._screen(session, turn)
            if answer is None:
                raise RuntimeError("the engine finished without an Answer")
        except Exception as exc:
            if isinstance(exc, (InvalidQuestion, *_EXPECTED_ERRORS)):
                log.error("Could not answer %r: %s", turn["question"], exc)
            else:
                log.exception("Unexpected error answering %r", turn["question"])
            turn.update(error=error_message(exc), done=True)
            asked.recorder.write(turn["answer"], {"error": turn["error"]}, "error")
            return None
        return answer

    def _after_earlier(self, asked: Asked) -> None:
        """Wait while an earlier question of the same turns is still being answered: its answer is history for
        this one. Only a backend answering several at once (answer_concurrency) ever waits here."""
        while True:
            with self._lock:
                live = self._busy | {id(a.turn) for q in self._asked.values() for a in q}
            if not any(id(t) in live and not t.get("done") for t in earlier_turns(asked)):
                return
            time.sleep(ORDER_POLL_S)

    def _screen(self, session: str, turn: dict, ended: bool = False) -> tuple:
        """The (chat, sources, article) update for session: its screen's turns when turn is among them, else none."""
        with self._lock:
            shown = self._shown.get(session)
        if shown is None or not any(t is turn for t in shown):
            return gr.skip(), gr.skip(), gr.skip()
        if not ended:
            return chat_messages(shown), gr.skip(), gr.skip()
        article = article_html(self.assistant.passages or self.passages, turn.get("citations"))
        return chat_messages(shown), sources_html(shown), article if turn.get("citations") else gr.skip()

    def _forget(self, asked: Asked) -> None:
        with self._lock:
            self._busy.discard(id(asked.turn))
            key = (asked.recorder.user, asked.recorder.conversation, asked.recorder.position)
            if self._live.get(key) is asked:
                del self._live[key]

    def showing(self, turns: list[dict], request: gr.Request = None) -> list[dict]:
        """Record that turns are now on the session's screen (a conversation opened, a new chat); return them."""
        with self._lock:
            self._shown[session_of(request)] = turns
        return turns

    def live_turn(self, user: str, conversation: str, turn: dict, request: gr.Request = None) -> dict:
        """turn (from the store) as this session shows it. A question this session is still answering is its live
        turn, so the answer goes on streaming into the reopened conversation; one asked before a reload, or in
        another tab, says it is still being answered."""
        with self._lock:
            asked = self._live.get((user, conversation, turn.get("position")))
        if asked is None:
            return turn
        if asked.session == session_of(request):
            return asked.turn
        return {**turn, "answer": "", "done": False, "unanswered": False, "elsewhere": True}

    def listing(self, user: str, current: str | None):
        """The conversation list for user, with current selected."""
        return gr.Radio(choices=self.conversations.choices(user), value=current)

    def new_chat(self, request: gr.Request = None) -> tuple:
        """Clear the chat: no messages, no turns, no sources, the article without marks, an empty textbox. Answers
        still coming for the conversation left go on, and are saved in it."""
        turns = self.showing([], request)
        return [], turns, sources_html([]), article_html(self.passages), "", None, gr.Radio(value=None)

    def pick(self, turns: list[dict] | None, chosen: gr.SelectData) -> str | dict:
        """A question clicked in the chat goes back into the box, to be asked again (or changed first)."""
        number, role = message_of(turns or [], chosen.index)
        return turns[number]["question"] if role == "user" else gr.skip()

    def answer(self, question: str, history_json: str = "[]", article: str = "") -> dict:
        """Answer a question about the article, from the article only, with citations (see API_DOC).

        article, when given, is a document id (a corpus file name without its suffix) that restricts the answer to
        that document.
        """
        try:
            history = json.loads(history_json or "[]")
        except ValueError as exc:
            raise gr.Error(
                'history_json must be a JSON list of {"role": ..., "content": ...} messages.', print_exception=False
            ) from exc
        try:
            return api_result(self.assistant.answer(question, history, article or None))
        except (InvalidQuestion, *_EXPECTED_ERRORS) as exc:
            log.error("API could not answer %r: %s", question, exc)
            raise gr.Error(error_message(exc), print_exception=False) from exc
        except Exception as exc:
            log.exception("Unexpected error answering %r in the API", question)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from exc


class WorkspaceHandlers:
    """The page's side list of conversations and the feedback on answers, each user's own."""

    def __init__(self, chat: ChatHandlers):
        self.chat = chat
        self.store = chat.store
        self.conversations = chat.conversations

    def listing(self, request: gr.Request = None):
        """The conversation list when the page (re)loads."""
        return self.chat.listing(user_of(request), None)

    def open(self, conversation: str | None, request: gr.Request = None) -> tuple:
        """Reopen a past conversation: (chat, turns, sources, article, conversation, scope)."""
        if not conversation or self.store is None:
            return (gr.skip(),) * 6
        user = user_of(request)
        try:
            turns, scope = self.conversations.turns(user, conversation)
        except LookupError:
            gr.Warning("That conversation is gone; it may have been deleted in another tab.")
            return (gr.skip(),) * 6
        turns = self.chat.showing([self.chat.live_turn(user, conversation, t, request) for t in turns], request)
        last = next((t.get("citations") for t in reversed(turns) if t.get("citations")), None)
        article = article_html(self.chat.assistant.passages or self.chat.passages, last)
        return chat_messages(turns), turns, sources_html(turns), article, conversation, scope or ""

    def delete(self, conversation: str | None, request: gr.Request = None) -> tuple:
        """Delete the open conversation and start a new chat."""
        user = user_of(request)
        if conversation:
            self.conversations.delete(user, conversation)
        return (*self.chat.new_chat(request)[:6], self.chat.listing(user, None))

    def export(self, conversation: str | None, request: gr.Request = None):
        """The open conversation as a Markdown file, citations as footnotes."""
        if not conversation or self.store is None:
            gr.Warning("Ask a question first: there is no conversation to export yet.")
            return gr.File(visible=False)
        try:
            path = self.conversations.markdown_file(user_of(request), conversation)
        except LookupError:
            gr.Warning("That conversation is gone; it may have been deleted in another tab.")
            return gr.File(visible=False)
        return gr.File(value=str(path), visible=True)

    def rate(self, turns: list[dict], conversation: str | None, like: gr.LikeData, request: gr.Request = None):
        """Record a 👍 at once; a 👎 too, and open the note asking what the right answer is."""
        number = turn_of_message(turns or [], like.index)
        if number is None or not conversation:
            return gr.Group(visible=False), None
        if like.liked in ("", None):  # the same thumb clicked again: the rating is taken back
            self._withdraw(turns, conversation, number, user_of(request))
            return gr.Group(visible=False), None
        liked = like.liked is True or like.liked == "Like"
        self._save(turns, conversation, number, 1 if liked else -1, "", None, user_of(request))
        if liked:
            gr.Info("Thanks: noted as a good answer.")
            return gr.Group(visible=False), None
        return gr.Group(visible=True), number

    def note(self, target: int | None, kind: str, note: str, turns, conversation, request: gr.Request = None):
        """Save the 👎's note (the right answer, or that the article does not say) and close the note."""
        if target is None or not conversation:
            return gr.Group(visible=False), None, ""
        does_not_say = kind == NOT_IN_ARTICLE_CHOICE
        text = "" if does_not_say else (note or "").strip()
        self._save(
            turns,
            conversation,
            target,
            -1,
            text,
            "not_in_article" if does_not_say else "correct_answer" if text else None,
            user_of(request),
        )
        gr.Info("Thanks: the note is saved; `assistant feedback export` turns it into a regression case.")
        return gr.Group(visible=False), None, ""

    def _withdraw(self, turns, conversation, number, user) -> None:
        if self.store is not None:
            try:
                self.store.withdraw_feedback(user, conversation, turns[number]["position"])
            except (*STORE_ERRORS, IndexError, KeyError) as exc:
                log.error("Could not take back feedback: %s", exc)

    def _save(self, turns, conversation, number, rating, note, kind, user) -> None:
        from .corpus import corpus_hash

        if self.store is None:
            return
        turn = turns[number]
        try:
            stored = self.store.get(user, conversation).turns[turn["position"]]
            self.store.add_feedback(
                user,
                conversation,
                turn["position"],
                rating,
                note,
                kind,
                question=turn["question"],
                history=engine_history(turns[:number]),
                answer=stored.answer_json or {"text": turn.get("answer", "")},
                corpus_hash=corpus_hash(self.chat.assistant.documents),
                settings=self.chat.assistant.settings,
            )
        except (*STORE_ERRORS, IndexError, KeyError, TypeError) as exc:
            log.error("Could not save feedback: %s", exc)
            gr.Warning("The feedback could not be saved for this answer.")


NOT_IN_ARTICLE_CHOICE = "The article does not say"
RIGHT_ANSWER_CHOICE = "The right answer is…"


def turn_of_message(turns: list[dict], index) -> int | None:
    """The turn whose finished answer is chat message index, None for any other message."""
    number, role = message_of(turns, index)
    if role != "assistant" or not turns[number].get("done") or turns[number].get("error"):
        return None
    return number


def message_of(turns: list[dict], index) -> tuple[int | None, str | None]:
    """(turn number, "user" or "assistant") of chat message index, as chat_messages lays them out."""
    index = index[0] if isinstance(index, (list, tuple)) else index
    position = -1
    for number, turn in enumerate(turns):
        position += 1
        if position == index:
            return number, "user"
        if has_reply(turn):
            position += 1
            if position == index:
                return number, "assistant"
    return None, None


def chat_panel(examples: list[str]) -> tuple[gr.Chatbot, gr.Textbox, gr.Button, gr.Button, gr.Dataset]:
    """The conversation (inside the page's layout): chat window, question box, Send, New chat, example questions."""
    chatbot = gr.Chatbot(
        label="Chat",
        elem_id="chat",
        height=480,
        sanitize_html=True,
        render_markdown=True,
        allow_tags=False,
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        buttons=["copy"],
        placeholder="Ask a question about the article.",
    )
    with gr.Row():
        textbox = gr.Textbox(
            placeholder="Ask about the article… (Enter to send)",
            show_label=False,
            elem_id="question",
            scale=5,
            max_lines=4,
            autofocus=True,
        )
        send = gr.Button("Send", variant="primary", elem_id="send", scale=1, min_width=80)
        clear = gr.Button("New chat", elem_id="new-chat", scale=1, min_width=80)
    shown = gr.Dataset(
        components=[gr.Textbox(visible=False)],
        samples=[[q] for q in examples],
        label="Example questions",
        elem_id="examples",
        visible=bool(examples),
    )
    shown.click(lambda sample: sample[0], inputs=[shown], outputs=[textbox], queue=False, api_visibility="private")
    return chatbot, textbox, send, clear, shown


def examples_update(examples: list[str]) -> gr.Dataset:
    """The example questions shown, for the chosen article."""
    return gr.Dataset(samples=[[q] for q in examples], visible=bool(examples))


class ArticleHandlers:
    """Adding an article from the page (upload or paste) and removing one again."""

    def __init__(self, assistant: Assistant, examples: Examples):
        self.assistant = assistant
        self.examples = examples

    def choices(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(scope choices with "All articles" first, removable articles) from the corpus as it is now."""
        documents = self.assistant.documents
        articles = [(d.title, d.doc_id) for d in documents]
        return [("All articles", ""), *articles], articles

    def add(self, path: str | None, title: str, pasted: str, pasted_title: str, progress=gr.Progress()) -> tuple:
        """Add the uploaded file (or the pasted text): (message, scope, article, removable, examples, file, paste)."""
        from .ingest import UploadError, add_document, add_text

        settings = self.assistant.settings
        try:
            progress(0.05, desc="Reading the article…")
            if path:
                size = Path(path).stat().st_size
                if size > settings.max_upload_bytes:  # before reading a large file into memory
                    raise UploadError(upload_too_large(Path(path).name, size, settings.max_upload_bytes))
                added = add_document(settings, Path(path).read_bytes(), Path(path).name, title or None)
            elif (pasted or "").strip():
                added = add_text(settings, pasted, pasted_title or title)
            else:
                raise UploadError("Choose a file (.txt, .md, .html or .pdf), or paste the article's text.")
        except (UploadError, OSError) as exc:
            # The refused file is let go (so another can be chosen); pasted text stays, to be fixed.
            return (upload_html(str(exc), ok=False), *(gr.skip(),) * 4, None, gr.skip())
        self.index(progress)
        reading = self.assistant.start_reading(self.assistant.view(added.doc_id))
        self.examples.fill_later(added.doc_id)
        scopes, removable = self.choices()
        message = (
            f"Added “{added.title}” ({added.chars:,} characters) as {added.doc_id}. It is chosen for this "
            "conversation; example questions for it are being written and checked."
        )
        if reading is not None:
            message += (
                " The model now reads it once (the bar at the top; about a minute per 3,000 words on two cores): "
                "questions asked meanwhile are answered from the passages retrieval finds."
            )
        return (
            upload_html(message, ok=True),
            gr.Dropdown(choices=scopes, value=added.doc_id, visible=True),
            article_html(self.assistant.passages),
            gr.Dropdown(choices=removable, value=None),
            examples_update(self.examples.of(added.doc_id, MAX_EXAMPLES)),
            None,
            "",
        )

    def index(self, progress) -> None:
        """Embed the new article's passages (the bar moves batch by batch), then reload the assistant."""
        from .ingest import reindex

        def moved(done: int, total: int) -> None:
            progress(0.2 + 0.7 * done / max(total, 1), desc=f"Indexing the new article: {done}/{total} passages")

        progress(0.2, desc="Indexing the new article (only its passages are embedded)…")
        # Embedded here, with the page's bar; the assistant's reload then finds the index up to date.
        index = getattr(self.assistant, "index", None)
        reindex(self.assistant.settings, moved, index.embeddings if index else None)
        self.assistant.load()

    def remove(self, doc_id: str | None, scope: str | None) -> tuple:
        """Remove an article: (message, scope, article, removable, examples)."""
        from .ingest import UploadError, remove_document

        if not doc_id:
            return upload_html("Choose the article to remove.", ok=False), *(gr.skip(),) * 4
        try:
            remove_document(self.assistant.settings, doc_id)
        except (UploadError, OSError) as exc:
            return upload_html(str(exc), ok=False), *(gr.skip(),) * 4
        self.assistant.load()
        scopes, removable = self.choices()
        scope = "" if scope == doc_id else scope
        return (
            upload_html(f"Removed {doc_id}.", ok=True),
            gr.Dropdown(choices=scopes, value=scope, visible=len(removable) > 1),
            article_html(self.assistant.passages),
            gr.Dropdown(choices=removable, value=None),
            examples_update(self.examples.of(scope or None, MAX_EXAMPLES)),
        )

    def refresh(self) -> tuple:
        """The article choices as the corpus is now (a page loaded after an upload must list it): (scope, removable)."""
        try:
            self.assistant.load()
        except Exception:  # the status line reports a broken corpus or index; keep the choices the page has
            return gr.skip(), gr.skip()
        scopes, removable = self.choices()
        return gr.Dropdown(choices=scopes, visible=len(removable) > 1), gr.Dropdown(choices=removable, value=None)

    def scope_changed(self, scope: str | None) -> gr.Dataset:
        """Show the chosen article's example questions."""
        return examples_update(self.examples.of(scope or None, MAX_EXAMPLES))


def upload_too_large(name: str, size: int, limit: int) -> str:
    return (
        f"{name} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:g} MB (ASSISTANT_MAX_UPLOAD_BYTES). "
        "Upload a smaller file, or paste the article's text."
    )


def upload_html(message: str, ok: bool) -> str:
    """The result line of an upload or removal."""
    return f'<div class="upload-result {"ok" if ok else "failed"}">{escape(message)}</div>'


def build_app(
    settings: Settings | None = None, assistant: Assistant | None = None, warm_up: bool = True, store=None
) -> gr.Blocks:
    """Build the web chat for assistant (default: one built from settings); warm_up starts loading the model now.

    store is the conversation store (default: the SQLite database in settings.data_dir). The returned Blocks
    carries .assistant, .store, .warmup (a WarmUp) and .examples for serve() and the tests.
    """
    from .conversations import open_store

    settings = settings or (assistant.settings if assistant else Settings())
    assistant = assistant or Assistant(settings)
    documents, passages = load_passages(assistant.settings.corpus_dir)
    store = store if store is not None else open_store(assistant.settings)
    handlers = ChatHandlers(assistant, passages, store)
    side = WorkspaceHandlers(handlers)
    examples = Examples(assistant)
    articles = ArticleHandlers(assistant, examples)
    warmup = WarmUp(assistant)
    if warm_up:
        warmup.start()
    with gr.Blocks(title="Article assistant", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Ask the articles\nAnswers come from the articles only, with citations. Click a marker like [1] "
            "to see the quoted passage; add your own article in the *Add article* tab."
        )
        status_box = gr.HTML(warmup.html(), elem_id="status")
        turns, conversation, target = gr.State([]), gr.State(None), gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=200, elem_id="sidebar"):
                listing = gr.Radio(choices=[], label="Conversations", elem_id="conversations", interactive=True)
                with gr.Row():
                    delete = gr.Button("Delete", elem_id="delete-chat", size="sm")
                    export = gr.Button("Export", elem_id="export-chat", size="sm")
                exported = gr.File(label="Markdown", visible=False, elem_id="exported", interactive=False)
            with gr.Column(scale=5):
                page = layout(documents, passages, examples)
        wire_chat(demo, handlers, side, page, turns, conversation, target, listing)
        wire_side(side, page, turns, conversation, listing, delete, export, exported)
        wire_articles(demo, articles, page)
        wire_status(demo, warmup, status_box, side, listing, page["added"])
        gr.api(handlers.answer, api_name="answer", api_description=API_DOC, concurrency_id="answer")
    demo.assistant, demo.store, demo.warmup, demo.examples = assistant, store, warmup, examples
    return demo


def layout(documents, passages, examples: Examples) -> dict:
    """The page's main column: article choice, chat with sources and feedback, the article, adding articles."""
    c: dict = {}
    # With several articles, a conversation may search them all or keep to one.
    c["scope"] = gr.Dropdown(
        choices=[("All articles", "")] + [(d.title, d.doc_id) for d in documents],
        value="",
        label="Answer from",
        elem_id="scope",
        visible=len(documents) > 1,
        interactive=True,
    )
    with gr.Tabs():
        with gr.Tab("Chat", id="chat-tab"), gr.Row():
            with gr.Column(scale=3):
                c["chatbot"], c["textbox"], c["send"], c["clear"], c["examples"] = chat_panel(
                    [q for d in documents for q in d.examples][:MAX_EXAMPLES]
                )
                with gr.Group(visible=False, elem_id="feedback") as c["feedback"]:
                    c["kind"] = gr.Radio(
                        [RIGHT_ANSWER_CHOICE, NOT_IN_ARTICLE_CHOICE], value=RIGHT_ANSWER_CHOICE, label="What was wrong?"
                    )
                    c["note"] = gr.Textbox(label="The right answer (optional)", elem_id="feedback-note", max_lines=3)
                    c["send_note"] = gr.Button("Send feedback", elem_id="send-feedback", size="sm")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                c["sources"] = gr.HTML(sources_html([]), elem_id="sources")
        with gr.Tab("Article", id="article-tab"):
            c["article"] = gr.HTML(article_html(passages), elem_id="article")
        with gr.Tab("Add article", id="add-tab"):
            gr.Markdown(
                "Upload a .txt, .md, .html or .pdf file, or paste the text. Only the new article is indexed; "
                "it is then chosen for the conversation."
            )
            c["upload"] = gr.File(
                label="Article file", file_types=[".txt", ".md", ".html", ".htm", ".pdf"], elem_id="upload"
            )
            c["title"] = gr.Textbox(label="Title (optional for files)", elem_id="upload-title", max_lines=1)
            c["paste"] = gr.Textbox(label="…or paste the article's text", lines=6, elem_id="paste")
            c["add"] = gr.Button("Add article", variant="primary", elem_id="add-article")
            c["result"] = gr.HTML("", elem_id="upload-result")
            with gr.Row():
                c["remove_choice"] = gr.Dropdown(
                    choices=[(d.title, d.doc_id) for d in documents], label="Remove an article", elem_id="remove-choice"
                )
                c["remove"] = gr.Button("Remove", elem_id="remove-article", size="sm")
    return c


def wire_chat(demo, handlers: ChatHandlers, side: WorkspaceHandlers, c: dict, turns, conversation, target, listing):
    """Asking, streaming, New chat and the 👍/👎 on answers."""
    outputs = [c["chatbot"], turns, c["sources"], c["article"], c["textbox"], conversation, listing]
    # Shown and saved at once, however many are sent while an answer streams ("multiple"): the question and a
    # waiting note. Queued only so that a refusal's gr.Warning reaches the page, in a group that never waits. Its answer then waits its turn in the queue, whose place and expected wait
    # Gradio shows over the chat until the model takes it.
    for trigger in (c["textbox"].submit, c["send"].click):
        trigger(
            handlers.accept,
            inputs=[c["textbox"], turns, c["scope"], conversation],
            outputs=[c["chatbot"], turns, c["textbox"], conversation, listing],
            trigger_mode="multiple",
            api_visibility="private",
            concurrency_id="accept",  # a group of its own with no limit: it never waits behind an answer
            concurrency_limit=None,
            show_progress="hidden",
        ).then(
            handlers.respond,
            outputs=[c["chatbot"], c["sources"], c["article"]],
            api_visibility="private",
            concurrency_id="answer",
            concurrency_limit=answer_concurrency(handlers.assistant.settings),
            trigger_mode="multiple",
            show_progress="full",
            show_progress_on=[c["chatbot"]],
        )
    for trigger in (c["clear"].click, c["chatbot"].clear):  # the Chatbot's trash button empties only the display
        trigger(handlers.new_chat, outputs=outputs, queue=False, api_visibility="private")
    c["chatbot"].select(handlers.pick, inputs=[turns], outputs=[c["textbox"]], queue=False, api_visibility="private")
    c["chatbot"].like(
        side.rate, inputs=[turns, conversation], outputs=[c["feedback"], target], api_visibility="private"
    )
    c["send_note"].click(
        side.note,
        inputs=[target, c["kind"], c["note"], turns, conversation],
        outputs=[c["feedback"], target, c["note"]],
        api_visibility="private",
    )


def answer_concurrency(settings: Settings) -> int:
    """How many answers run at once: one for the in-process model (it answers one at a time on the machine's cores,
    so the rest wait in Gradio's queue, which can tell them their place), more for a server with slots."""
    return 1 if settings.llm_backend == "llamacpp" else settings.concurrency


def wire_side(side: WorkspaceHandlers, c: dict, turns, conversation, listing, delete, export, exported):
    """The conversation list: reopen, delete, export."""
    chat = [c["chatbot"], turns, c["sources"], c["article"], conversation]
    listing.input(side.open, inputs=[listing], outputs=[*chat, c["scope"]], api_visibility="private")
    delete.click(
        side.delete,
        inputs=[conversation],
        outputs=[*chat[:4], c["textbox"], conversation, listing],
        api_visibility="private",
    )
    export.click(side.export, inputs=[conversation], outputs=[exported], api_visibility="private")


def wire_articles(demo, articles: ArticleHandlers, c: dict):
    """Adding and removing articles, and the examples of the chosen one."""
    changed = [c["result"], c["scope"], c["article"], c["remove_choice"], c["examples"]]
    c["added"] = c["add"].click(
        articles.add,
        inputs=[c["upload"], c["title"], c["paste"], c["title"]],
        outputs=[*changed, c["upload"], c["paste"]],
        api_visibility="private",
        concurrency_id="answer",  # indexing shares the two cores with answering
    )
    c["remove"].click(
        articles.remove, inputs=[c["remove_choice"], c["scope"]], outputs=changed, api_visibility="private"
    )
    c["scope"].change(articles.scope_changed, inputs=[c["scope"]], outputs=[c["examples"]], api_visibility="private")
    demo.load(articles.refresh, outputs=[c["scope"], c["remove_choice"]], api_visibility="private")


def wire_status(demo, warmup: WarmUp, status_box, side: WorkspaceHandlers, listing, added):
    """The model's loading status and the articles being read, polled until done (again after an upload: the
    added event), and the user's conversations when the page loads."""

    def status():
        return warmup.html(), gr.Timer(active=warmup.busy)

    # Polled while the model loads or an article is read; an upload turns it on again (Articles.add).
    timer = gr.Timer(1.0, active=warmup.busy)
    timer.tick(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    added.then(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(side.listing, outputs=[listing], queue=False, api_visibility="private")


def is_loopback(host: str) -> bool:
    """True when host only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(settings: Settings) -> bool:
    """Log a warning, and return True, when the chat would listen beyond this machine without a login."""
    if settings.auth_pairs() or is_loopback(settings.host):
        return False
    log.warning(
        "Serving on %s without authentication: anyone who can reach this address can use the chat. "
        "Set ASSISTANT_AUTH=user:password to require a login.",
        settings.host,
    )
    return True


def launch(demo: gr.Blocks, settings: Settings, block: bool = True) -> str:
    """Queue and launch demo on settings.host:settings.port; print and return the local address.

    With block=False the server runs in a background thread and this returns at once (for tests).
    """
    auth = settings.auth_pairs() or None
    warn_if_exposed(settings)
    demo.queue(default_concurrency_limit=settings.concurrency)
    _, local_url, share_url = demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        share=settings.share,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        show_error=False,
        css=CSS,
        head=HEAD,
        footer_links=["api", "settings"],
        # Gradio refuses far larger uploads before they are read; the page explains the limit for the rest.
        max_file_size=4 * settings.max_upload_bytes,
    )
    print(f"Web chat running on {local_url}", flush=True)
    if share_url:
        print(f"Public share link: {share_url}", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return local_url


def serve(settings: Settings) -> None:
    """Build the web chat with the default assistant and serve it until interrupted (`assistant chat`)."""
    demo = build_app(settings)
    try:
        launch(demo, settings)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        log.error("Cannot serve on %s:%s: %s", settings.host, settings.port, exc)
        raise SystemExit(f"Cannot serve the web chat on {settings.host}:{settings.port}: {exc}") from exc


__all__ = ["API_DOC", "ChatHandlers", "WarmUp", "build_app", "launch", "serve"]
