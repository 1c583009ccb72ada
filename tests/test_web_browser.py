"""End-to-end test of the web chat in a real headless Chromium (Debian's), with the real default models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from assistant import web
from assistant.answering import NOT_IN_ARTICLE
from assistant.corpus import load_documents
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
def server(free_port):
    settings = Settings(port=free_port())
    demo = web.build_app(settings)
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

    def wait_ready(self) -> str:
        """Wait until the status says the model is ready; return the status first shown."""
        first = self.page.locator("#status .status").inner_text(timeout=WAIT_MS)
        self.page.wait_for_selector("#status .status.ready", timeout=300_000)
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
    document = load_documents(demo.assistant.settings.corpus_dir)[0].text
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
    chat.page.get_by_role("tab", name="Article").click()
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
    chat.ask(XSS)
    time.sleep(1)  # give a would-be onerror handler time to fire
    assert chat.dialogs == []
    user = chat.page.locator('#chat [data-testid="user"]').last
    assert user.inner_text().strip() == XSS
    assert chat.page.locator("#chat img[src='x'], #sources img").count() == 0
    assert XSS in chat.page.locator("#sources").inner_text()


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
