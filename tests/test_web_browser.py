"""End-to-end test of the web chat in a real headless Chromium (Debian's), with the real default models."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import web
from assistant.answering import NOT_IN_ARTICLE, Assistant
from assistant.index.corpus import load_documents
from assistant.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.browser, pytest.mark.real]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "artifacts"
WAIT_MS = 180_000  # two cores, often shared with other work: an answer can take a minute or more
SPENDING = "Which countries will exceed the new spending target?"
XSS = "<img src=x onerror=alert(1)>"
# Finished bot messages: a checked answer, a refusal or an error.
FINISHED = "#chat .answer:not(.streaming), #chat .refusal, #chat .chat-error"


@pytest.fixture(scope="module")
def server(free_port, assistant, tmp_path_factory):
    # A corpus and data folder of its own (the workspace tests add an article), and the session's warmed model.
    folder = tmp_path_factory.mktemp("web")
    shutil.copytree(PROJECT_ROOT / "corpus", folder / "corpus")
    settings = Settings(
        port=free_port(), corpus_dir=folder / "corpus", index_dir=folder / "index", data_dir=folder / "data"
    )
    bot = Assistant(settings, chat_model=assistant.chat_model, embeddings=assistant.index.embeddings)
    demo = web.build_app(settings, bot)
    url = web.launch(demo, settings, block=False)
    yield url, demo
    demo.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# How Playwright reports a reload that raced the page's own (Gradio's client reloads it after a server restart).
RACED_NAVIGATION = ("ERR_ABORTED", "Not attached to an active page", "interrupted by another navigation")
RELOAD_TRIES = 3


class Chat:
    """One browser tab on the chat page, recording every JavaScript dialog that opens."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.dialogs: list[str] = []

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.goto(url)
        self.box = self.page.locator("#question textarea")

    def reload(self) -> None:
        """Reload the page. After a server restart Gradio's own client may reload it at the same moment, which
        aborts this navigation (net::ERR_ABORTED) or detaches the frame it started in ("Not attached to an active
        page"): then the page is already loading, so wait for that load, and reload again if it did not come."""
        from playwright.sync_api import Error as PlaywrightError

        for _ in range(RELOAD_TRIES - 1):
            try:
                self.page.reload()
                return
            except PlaywrightError as error:
                if not any(sign in str(error) for sign in RACED_NAVIGATION):
                    raise
            try:
                self.page.wait_for_load_state("load", timeout=WAIT_MS)
                return
            except PlaywrightError:
                continue
        self.page.reload()

    def wait_ready(self) -> str:
        """Wait until the status says the model is loaded (ready, or answering while it reads an article added by an
        earlier test); return the status first shown."""
        first = self.page.locator("#status .status").first.inner_text(timeout=WAIT_MS)
        self.page.wait_for_selector("#status .status.ready, #status .status.busy", timeout=300_000)
        return first

    def finished_count(self) -> int:
        return self.page.locator(FINISHED).count()

    def ask(self, question: str) -> tuple[float, float]:
        """Type question and press Enter; return seconds to the first streamed text and to the finished answer."""
        before_finished = self.finished_count()
        before_text = self.page.locator("#chat .answer, #chat .refusal, #chat .chat-error").count()
        self.box.fill(question)
        started = time.perf_counter()
        self.box.press("Enter")
        self.page.wait_for_function(
            "n => document.querySelectorAll('#chat .answer, #chat .refusal, #chat .chat-error').length > n",
            arg=before_text,
            timeout=WAIT_MS,
        )
        first_text = time.perf_counter() - started
        self.page.wait_for_function(
            f"n => document.querySelectorAll('{FINISHED}').length > n", arg=before_finished, timeout=WAIT_MS
        )
        return first_text, time.perf_counter() - started

    def last_bot_message(self):
        return self.page.locator('#chat [data-testid="bot"]').last

    def close(self):
        self.page.close()


@pytest.fixture
def chat(browser, server):
    tab = Chat(browser, server[0])
    yield tab
    tab.close()


def test_answer_streams_with_a_citation_that_opens_the_quoted_span(chat, server):
    first_status = chat.wait_ready()
    assert first_status in (web.LOADING, web.READY)
    assert "ready" in chat.page.locator("#status").inner_text().lower()

    first_text, finished = chat.ask(SPENDING)
    print(f"\nfirst streamed text {first_text:.2f} s after Enter; answer finished after {finished:.2f} s")

    message = chat.last_bot_message()
    text = message.inner_text()
    assert "Denmark" in text and "Poland" in text, text
    marker = message.locator("a.cite").first
    assert marker.inner_text() == "[1]"

    marker.click()
    entry = chat.page.locator(".source.focused")
    assert entry.count() == 1 and entry.get_attribute("id") == "src-0-1"
    assert entry.locator(".source-head").inner_text().startswith("[1] ¶5")
    quote = entry.locator("mark").inner_text()
    passage = entry.locator(".passage").inner_text()
    assert quote and quote in passage

    # The marked span is the engine's citation quote, character for character.
    _, demo = server
    expected = demo.assistant.answer(SPENDING)
    print(f"the same question again, in-process: engine timings {expected.timings}")
    cited = next(c for c in expected.citations if c.passage_id == "nato-3-0:p5")
    assert quote == cited.quote
    document = load_documents(demo.assistant.settings.paths.corpus_dir)[0].text
    assert document[cited.start : cited.end] == quote and quote in cited.text

    ARTIFACTS.mkdir(exist_ok=True)
    chat.page.screenshot(path=str(ARTIFACTS / "web-chat.png"), full_page=True)
    (ARTIFACTS / "web-latency.json").write_text(
        json.dumps(
            {
                "question": SPENDING,
                "first_text_seconds": round(first_text, 3),
                "finished_seconds": round(finished, 3),
                "measured": "from pressing Enter to the first answer text in the page, in headless Chromium",
                "engine_timings_of_a_repeat": expected.timings,
            },
            indent=2,
        )
        + "\n"
    )

    # The Article tab shows the whole article with the same span marked.
    chat.page.get_by_role("tab", name="Article", exact=True).click()
    article_marks = chat.page.locator("#article mark")
    article_marks.first.wait_for(timeout=10_000)
    assert [m.inner_text() for m in article_marks.all()] == [
        c.quote for c in sorted(expected.citations, key=lambda c: c.start)
    ]
    assert chat.page.locator("#article h3").count() >= 2
    assert chat.dialogs == []


def test_refusal_is_styled_as_a_note(chat):
    chat.wait_ready()
    chat.ask("What is the capital of Australia?")
    refusal = chat.last_bot_message().locator(".refusal")
    assert refusal.inner_text() == NOT_IN_ARTICLE
    assert refusal.evaluate("el => getComputedStyle(el).fontStyle") == "italic"
    assert chat.last_bot_message().locator(".answer, a.cite").count() == 0
    assert "No source cited" in chat.page.locator("#sources").inner_text()


def test_html_in_a_question_shows_as_text_and_never_runs(chat):
    chat.wait_ready()
    question = f"{XSS} What is the capital of Australia?"
    chat.ask(question)
    time.sleep(1)  # give a would-be onerror handler time to fire
    assert chat.dialogs == []
    user = chat.page.locator('#chat [data-testid="user"]').last
    assert user.inner_text().strip() == question
    assert chat.page.locator("#chat img[src='x'], #sources img").count() == 0
    assert XSS in chat.page.locator("#sources").inner_text()


def test_markup_alone_asks_for_words_and_gets_no_answer(chat):
    chat.wait_ready()
    chat.box.fill(XSS)
    chat.box.press("Enter")
    chat.page.get_by_text("no words to answer").first.wait_for(timeout=WAIT_MS)
    time.sleep(1)
    assert chat.dialogs == []
    assert chat.page.locator('#chat [data-testid="user"], #chat [data-testid="bot"]').count() == 0
    assert chat.box.input_value() == XSS  # kept in the box, not asked


def test_bad_input_is_explained_and_new_chat_clears(chat):
    chat.wait_ready()
    chat.box.fill("x" * 2500)
    chat.box.press("Enter")
    warning = chat.page.get_by_text("the limit is 2,000")
    warning.first.wait_for(timeout=WAIT_MS)
    assert chat.page.locator('#chat [data-testid="user"]').count() == 0
    assert chat.box.input_value() == "x" * 2500  # kept, so it can be shortened

    chat.ask("Who described the moment as NATO 3.0?")
    assert "Colby" in chat.last_bot_message().inner_text()
    chat.page.locator("#new-chat").click()
    chat.page.wait_for_function("() => !document.querySelector('#chat [data-testid=\"user\"]')", timeout=WAIT_MS)
    assert "appear here" in chat.page.locator("#sources").inner_text()
    assert chat.dialogs == []


# ----- the workspace: articles added from the page, conversations kept, feedback turned into cases -----------------
FERRY = """# Island ferry doubles its crossings

The island ferry now sails twice a day, the harbour master Ingrid Vale said on Monday.

An adult ticket for the crossing costs four euros, and children travel free.

The second daily crossing leaves the island at six in the evening.
"""


def add_article(chat: Chat, path: Path) -> str:
    """Upload path in the Add article tab; return the result line."""
    return upload_result(chat, start_upload(chat, path))


def start_upload(chat: Chat, path: Path) -> str:
    """Choose path in the Add article tab and press Add; return the result line shown before."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    chat.page.get_by_role("tab", name="Add article", exact=True).click()
    chosen = chat.page.locator(f'#upload td.filename[aria-label="{path.name}"]').filter(visible=True).first
    for attempt in range(3):  # the file control is re-drawn after the last upload: choose again if it missed it
        control = chat.page.locator("#upload input[type=file]")
        clear = chat.page.locator('#upload button[aria-label="Clear"]').filter(visible=True)
        if not control.count() and clear.count():  # another file still shown (the last one not yet cleared)
            clear.first.click()
            with contextlib.suppress(PlaywrightTimeout):
                control.wait_for(state="attached", timeout=10_000)
        if control.count():  # none once a file is shown: on a busy machine it can show after the wait below
            control.set_input_files(str(path))
        try:
            chosen.wait_for(timeout=20_000)
            break
        except PlaywrightTimeout:
            ARTIFACTS.mkdir(exist_ok=True)
            chat.page.screenshot(path=str(ARTIFACTS / f"upload-missed-{attempt}.png"), full_page=True)
    else:
        raise AssertionError(f"The page never showed {path.name} as chosen; see {ARTIFACTS}/upload-missed-*.png")
    shown = chat.page.locator("#upload-result .upload-result")
    previous = shown.inner_text() if shown.count() else ""
    chat.page.locator("#add-article").click()
    return previous


def upload_result(chat: Chat, previous: str) -> str:
    """Wait for the result line of the upload started after previous was shown; return it."""
    chat.page.wait_for_function(
        "prev => { const e = document.querySelector('#upload-result .upload-result');"
        " return e && e.innerText !== prev; }",
        arg=previous,
        timeout=WAIT_MS,
    )
    result = chat.page.locator("#upload-result .upload-result")
    result.wait_for(timeout=WAIT_MS)
    return result.inner_text()


def test_an_uploaded_article_is_chosen_and_answers_with_a_citation(chat, server, tmp_path):
    chat.wait_ready()
    article = tmp_path / "ferry.md"
    article.write_text(FERRY, encoding="utf-8")
    corpus = Path(server[1].assistant.settings.paths.corpus_dir)
    message = add_article(chat, article)
    assert "Added" in message and "Island ferry doubles its crossings" in message, message
    assert chat.page.locator("#scope input").input_value() == "Island ferry doubles its crossings"
    assert (corpus / "ferry.md").exists() and json.loads((corpus / "ferry.meta.json").read_text())["title"]

    chat.page.get_by_role("tab", name="Chat", exact=True).click()
    chat.ask("How much does an adult ticket for the island ferry cost?")
    message = chat.last_bot_message()
    assert "four euros" in message.inner_text(), message.inner_text()
    message.locator("a.cite").first.click()
    entry = chat.page.locator(".source.focused")
    assert "four euros" in entry.locator("mark").inner_text()
    assert "Island ferry doubles its crossings" in entry.locator(".source-meta").inner_text()

    # Its example questions were written and checked in the background; the page shows them for this article.
    assert server[1].examples.wait(WAIT_MS / 1000)
    examples = json.loads((corpus / "ferry.meta.json").read_text()).get("examples", [])
    chat.page.reload()
    chat.wait_ready()
    chat.page.locator("#scope input").click()
    chat.page.get_by_role("option", name="Island ferry doubles its crossings").click()
    shown = chat.page.locator("#examples")
    for question in examples:
        shown.get_by_text(question).first.wait_for(timeout=30_000)
    print(f"\nexample questions written for the uploaded article: {examples}")


def test_bad_uploads_are_explained_and_change_nothing(chat, server, tmp_path):
    chat.wait_ready()
    corpus = Path(server[1].assistant.settings.paths.corpus_dir)
    before = sorted((p.name, p.stat().st_size) for p in corpus.iterdir())
    empty, binary, again = tmp_path / "empty.txt", tmp_path / "photo.txt", tmp_path / "copy.txt"
    empty.write_text("   \n", encoding="utf-8")
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    again.write_bytes(next(p for p in corpus.iterdir() if p.suffix == ".txt").read_bytes())
    assert "empty" in add_article(chat, empty).lower()
    assert "not a text file" in add_article(chat, binary)
    assert "already in the corpus" in add_article(chat, again)
    assert sorted((p.name, p.stat().st_size) for p in corpus.iterdir()) == before
    assert chat.dialogs == []


def test_a_conversation_survives_a_reload_and_reopens(chat):
    chat.wait_ready()
    chat.ask(SPENDING)
    answer = chat.last_bot_message().inner_text()
    chat.page.reload()
    chat.wait_ready()
    listed = chat.page.locator("#conversations label").filter(has_text=SPENDING[:40])
    listed.first.wait_for(timeout=30_000)
    assert chat.finished_count() == 0  # a fresh page starts empty
    listed.first.click()
    chat.page.locator(FINISHED).first.wait_for(timeout=30_000)
    assert chat.last_bot_message().inner_text() == answer
    assert chat.page.locator("#chat .answer a.cite").count() >= 1  # the citations come back too


def test_a_thumbs_down_with_a_note_becomes_a_case_that_eval_runs(chat, server, tmp_path):
    chat.wait_ready()
    chat.ask(SPENDING)
    chat.page.locator('#chat button[aria-label="Dislike"]').last.click()
    chat.page.locator("#feedback-note textarea").wait_for(state="visible", timeout=30_000)
    chat.page.locator("#feedback-note textarea").fill("Denmark, Estonia, Latvia, Lithuania and Poland")
    chat.page.locator("#send-feedback").click()
    chat.page.locator("#feedback-note textarea").wait_for(state="hidden", timeout=30_000)

    settings = server[1].assistant.settings
    env = {
        **os.environ,
        "ASSISTANT_DATA_DIR": str(settings.paths.data_dir),
        "ASSISTANT_CORPUS_DIR": str(settings.paths.corpus_dir),
    }
    env["ASSISTANT_INDEX_DIR"] = str(settings.paths.index_dir)
    cases = tmp_path / "feedback.yaml"
    cli = [sys.executable, "-m", "assistant.cli"]
    exported = subprocess.run([*cli, "feedback", "export", str(cases)], env=env, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    text = cases.read_text(encoding="utf-8")
    assert SPENDING in text and "Denmark, Estonia, Latvia, Lithuania and Poland" in text
    run = subprocess.run(
        [*cli, "eval", str(cases), "--report", str(tmp_path / "report")], env=env, capture_output=True, text=True
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]  # it ran; whether the answer now passes is the case's verdict
    report = json.loads(next((tmp_path / "report").rglob("eval.json")).read_text())
    assert [c["question"] for c in report["cases"]] == [SPENDING]


def test_a_second_question_waits_in_the_queue_and_says_so(browser, server):
    tabs = [Chat(browser, server[0]) for _ in range(2)]
    try:
        for tab in tabs:
            tab.wait_ready()
        tabs[0].box.fill(SPENDING)
        tabs[1].box.fill("Who is the NATO Secretary General?")
        tabs[0].box.press("Enter")
        # The model takes the first question (its waiting note gives way to the answer); ask the second now.
        tabs[0].page.wait_for_function(
            "() => document.querySelectorAll('#chat [data-testid=\"user\"]').length > 0 && "
            "document.querySelectorAll('#chat .waiting').length === 0",
            timeout=WAIT_MS,
        )
        tabs[1].box.press("Enter")
        waiting = tabs[1].page.locator("#chat .waiting")
        waiting.wait_for(timeout=10_000)
        assert "queue" in waiting.inner_text()  # said at once, before the queue
        # Gradio's queue tells it its place ("queue: 1/1") and the time waited against the expected wait.
        tabs[1].page.get_by_text(re.compile(r"queue: \d+/\d+")).first.wait_for(timeout=10_000)
        for tab in tabs:
            tab.page.locator(FINISHED).first.wait_for(timeout=WAIT_MS)
        assert "Rutte" in tabs[1].last_bot_message().inner_text()
        assert tabs[1].page.locator("#chat .waiting").count() == 0
    finally:
        for tab in tabs:
            tab.close()


# ----- no question is ever lost (issue 21) --------------------------------------------------------------------------
USERS = '#chat [data-testid="user"]'
BOTS = '#chat [data-testid="bot"]'
THREE = [
    (SPENDING, "Denmark"),
    ("Who described the moment as NATO 3.0?", "Colby"),
    ("Where has NATO increased its vigilance?", "Arctic"),
]


def shown_questions(chat: Chat, count: int, timeout_ms: int = 10_000) -> list[str]:
    """Wait until count questions are in the chat; return them."""
    chat.page.wait_for_function(f"() => document.querySelectorAll('{USERS}').length === {count}", timeout=timeout_ms)
    return [q.strip() for q in chat.page.locator(USERS).all_inner_texts()]


def switched_to(chat: Chat, questions: list[str], timeout_ms: int = 10_000) -> list[str]:
    """Wait until the chat shows exactly these questions (after choosing a conversation); return what it shows.

    A count alone passes at once when the conversation left had as many questions as the one chosen."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # the caller's assertion shows what the page has instead
        chat.page.wait_for_function(
            "a => { const shown = [...document.querySelectorAll(a.users)].map(e => e.innerText.trim());"
            " return JSON.stringify(shown) === JSON.stringify(a.questions); }",
            arg={"users": USERS, "questions": questions},
            timeout=timeout_ms,
        )
    return [q.strip() for q in chat.page.locator(USERS).all_inner_texts()]


def finished(chat: Chat, count: int, timeout_ms: int = WAIT_MS) -> None:
    chat.page.wait_for_function(f"() => document.querySelectorAll('{FINISHED}').length >= {count}", timeout=timeout_ms)


def test_three_questions_typed_while_answers_stream_are_all_shown_and_answered_in_order(chat):
    chat.wait_ready()
    for number, (question, _) in enumerate(THREE):
        if number:
            time.sleep(1.5)  # typed while the first answer is still coming
        chat.box.fill(question)
        chat.box.press("Enter")
    assert shown_questions(chat, 3) == [q for q, _ in THREE]  # all three, at once, in order
    assert chat.box.input_value() == ""
    assert chat.page.locator("#chat .waiting").count() >= 1  # the later ones say they wait
    finished(chat, 3, 3 * WAIT_MS)
    bots = chat.page.locator(BOTS)
    assert bots.count() == 3 and chat.page.locator("#chat .waiting").count() == 0
    for number, (question, word) in enumerate(THREE):
        reply = bots.nth(number)
        assert word in reply.inner_text(), (question, reply.inner_text())
        assert reply.locator("a.cite").count() >= 1, (question, reply.inner_text())
    assert chat.dialogs == []


GARDEN = "# Village library opens a reading garden\n\n" + "\n\n".join(
    f"Bench {n} of the new reading garden was given by family {n} of the village, the librarian Tomas Berg said; "
    f"it stands {n * 3} metres from the pond and faces the orchard planted in spring."
    for n in range(1, 31)
)


def chosen_scope(chat: Chat) -> str:
    """The article the chat answers from ("" while the corpus has one, and the selector is hidden)."""
    selector = chat.page.locator("#scope input")
    return selector.input_value() if selector.count() else ""


def test_a_question_sent_during_an_upload_is_shown_at_once_and_answered(chat, tmp_path):
    chat.wait_ready()
    scope = chosen_scope(chat)
    article = tmp_path / "garden.md"
    article.write_text(GARDEN, encoding="utf-8")
    previous = start_upload(chat, article)
    chat.page.get_by_role("tab", name="Chat", exact=True).click()
    chat.box.fill(SPENDING)
    chat.box.press("Enter")
    assert shown_questions(chat, 1) == [SPENDING]
    during = chosen_scope(chat) == scope  # the upload had not chosen its article yet
    finished(chat, 1)
    reply = chat.last_bot_message()
    if during:  # asked in the scope it was sent in, whatever the upload chose later
        assert "Denmark" in reply.inner_text() and reply.locator("a.cite").count() >= 1, reply.inner_text()
    chat.page.get_by_role("tab", name="Add article", exact=True).click()
    assert "Added" in upload_result(chat, previous)
    print(f"\nquestion shown while the upload was still indexing: {during}")


def test_a_question_sent_while_another_conversation_streams_is_answered_and_both_are_kept(chat):
    chat.wait_ready()
    chat.box.fill(SPENDING)
    chat.box.press("Enter")
    chat.page.wait_for_function(  # the model took it (its waiting note gave way): it is being answered now
        f"() => document.querySelectorAll('{USERS}').length > 0 && !document.querySelector('#chat .waiting')",
        timeout=WAIT_MS,
    )
    chat.page.locator("#new-chat").click()
    chat.page.wait_for_function(f"() => !document.querySelector('{USERS}')", timeout=10_000)
    question = "Who is the NATO Secretary General?"
    chat.box.fill(question)
    chat.box.press("Enter")
    assert shown_questions(chat, 1) == [question]
    finished(chat, 1)
    reply = chat.last_bot_message()
    assert "Rutte" in reply.inner_text() and reply.locator("a.cite").count() >= 1
    assert shown_questions(chat, 1) == [question]  # the first conversation's answer never drew over this one
    chat.page.locator("#conversations label").filter(has_text=SPENDING[:40]).first.click()
    assert switched_to(chat, [SPENDING]) == [SPENDING]
    finished(chat, 1, 30_000)
    assert "Denmark" in chat.last_bot_message().inner_text()  # it finished meanwhile, and was kept


def start_chat_server(port: int, data_dir: Path) -> subprocess.Popen:
    """`assistant chat` in a process of its own (the default corpus and index, conversations in data_dir)."""
    env = {**os.environ, "ASSISTANT_PORT": str(port), "ASSISTANT_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "chat"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_listening(url: str, child: subprocess.Popen, timeout_s: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the chat server exited with {child.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the chat server never answered at {url}")


def test_a_question_shown_before_kill_9_is_kept_marked_and_can_be_asked_again(browser, free_port, tmp_path):
    import signal

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    child = start_chat_server(port, tmp_path / "data")
    tab = None
    try:
        wait_listening(url, child)
        tab = Chat(browser, url)
        tab.wait_ready()
        tab.box.fill(SPENDING)
        tab.box.press("Enter")
        assert shown_questions(tab, 1) == [SPENDING]
        os.kill(child.pid, signal.SIGKILL)  # shown, so saved: the process dies before it answers
        child.wait(timeout=30)
        child = start_chat_server(port, tmp_path / "data")
        wait_listening(url, child)
        tab.reload()
        tab.wait_ready()
        tab.page.locator("#conversations label").filter(has_text=SPENDING[:40]).first.click()
        assert shown_questions(tab, 1) == [SPENDING]
        note = tab.page.locator("#chat .unanswered")
        note.wait_for(timeout=30_000)
        assert "Not answered" in note.inner_text()
        tab.page.locator(USERS).first.click()  # a way to ask it again: the question goes back into the box
        tab.page.wait_for_function(
            "q => document.querySelector('#question textarea').value === q", arg=SPENDING, timeout=10_000
        )
        tab.box.press("Enter")
        finished(tab, 1)
        assert "Denmark" in tab.last_bot_message().inner_text()
        assert shown_questions(tab, 2) == [SPENDING, SPENDING]
    finally:
        if tab is not None:
            tab.close()
        child.kill()
        child.wait(timeout=30)
