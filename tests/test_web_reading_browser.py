"""A long article added from the page, and a question asked at once, in a real headless Chromium with the real model:
the question does not wait for the article's reading, the page shows the reading as it goes, and once it is read the
article is answered from its whole text.

The article is Wikipedia's "Huguenot" as in SQuAD 2.0 (tests/data/squad/, CC BY-SA 4.0): about 5,400 words and
7,000 tokens, a reading of three to four minutes on two cores. A line naming the run keeps its reading from being put
back from a state saved by an earlier run.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from test_web_browser import WAIT_MS, Chat, add_article, browser  # noqa: F401 - the module's Chromium

from assistant import web
from assistant.answering import Assistant
from assistant.llamacpp.chat import LlamaCppChat
from assistant.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.browser, pytest.mark.real]

DATA = Path(__file__).parent / "data" / "squad" / "huguenot.json"
AT_ONCE, AFTER = (
    q["question"] for p in json.loads(DATA.read_text(encoding="utf-8"))["data"][0]["paragraphs"] for q in p["qas"]
)
UPLOADED = "huguenot-reading"  # the upload's file name, so its doc_id
POLL_S = 1.0  # how often the test looks at the status line, as a person watching it would


@pytest.fixture(scope="module")
def server(free_port, assistant, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reading")
    shutil.copytree(PROJECT_ROOT / "corpus", folder / "corpus")
    settings = Settings(
        port=free_port(),
        corpus_dir=folder / "corpus",
        index_dir=folder / "index",
        data_dir=folder / "data",
        example_candidates=2,
        examples_kept=1,
    )
    bot = Assistant(settings, chat_model=assistant.chat_model, embeddings=assistant.index.embeddings)
    demo = web.build_app(settings, bot)
    url = web.launch(demo, settings, block=False)
    yield url, demo
    bot.reader.drop()  # all articles together would be read next: not this test's business
    demo.examples.wait(WAIT_MS / 1000)
    demo.close()
    for document in bot.documents:  # the states this test made (its article's own title) serve no other run
        if document.doc_id.startswith(UPLOADED):
            bot.chat_model.forget(bot.view(document.doc_id).system or "")
            bot.chat_model.forget(bot.view().system or "")  # all articles together: this one among them


def article_file(folder: Path) -> Path:
    """The article as a Markdown upload, its title naming this run."""
    data = json.loads(DATA.read_text(encoding="utf-8"))["data"][0]
    heading = f"# {data['title']} (browser test {uuid.uuid4().hex[:8]})"
    path = folder / f"{UPLOADED}.md"
    path.write_text("\n\n".join([heading, *(p["context"] for p in data["paragraphs"])]) + "\n", encoding="utf-8")
    return path


def bar(chat: Chat) -> int | None:
    """The percentage of the reading bar on the page, None when it shows none."""
    shown = chat.page.locator("#status progress")
    return int(shown.first.get_attribute("value")) if shown.count() else None


def test_a_question_asked_at_once_after_adding_a_long_article_does_not_wait_for_its_reading(server, browser, tmp_path):  # noqa: F811
    url, demo = server
    chat = Chat(browser, url)
    try:
        chat.page.wait_for_selector("#status .status.ready", timeout=WAIT_MS)
        message = add_article(chat, article_file(tmp_path))
        assert "Added" in message and "reads it once in the background" in message, message
        doc_id = next(d.doc_id for d in demo.assistant.documents if d.doc_id.startswith(UPLOADED))
        reading = demo.assistant.reading_of(doc_id)
        chat.page.get_by_role("tab", name="Chat", exact=True).click()
        assert web.READY not in chat.page.locator("#status").inner_text()

        first_text, finished = chat.ask(AT_ONCE)
        answer = chat.last_bot_message()
        print(f"\nasked at once: first text {first_text:.1f} s, answer {finished:.1f} s: {answer.inner_text()}")
        assert not reading.finished  # answered before the reading ended...
        assert answer.locator("a.cite").count() >= 1, answer.inner_text()  # ...with a citation

        seen = watch_the_reading(chat, reading)
        print(f"bar values seen while the article was read: {seen}")
        assert len(set(seen)) >= 3 and seen == sorted(seen)  # it moved, and only forward, with no reload

        # Its example questions are written now, from the reading; let them be, so that only the question uses
        # the model while the spy below records what each call starts from.
        assert demo.examples.wait(WAIT_MS / 1000)
        systems = []
        real = LlamaCppChat._ready_for

        def ready_for(self, messages):
            systems.append(str(messages[0].content) if messages and messages[0].type == "system" else None)
            return real(self, messages)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(LlamaCppChat, "_ready_for", ready_for)
            chat.ask(AFTER)
        after = chat.last_bot_message()
        print(f"asked after the reading: {after.inner_text()}")
        assert demo.assistant.view(doc_id).system == systems[0]  # from the article's whole text
        assert after.locator("a.cite").count() >= 1, after.inner_text()
    finally:
        chat.close()


def watch_the_reading(chat: Chat, reading) -> list[int]:
    """Look at the status line as a person would, until the reading ends; "Ready" must not show meanwhile.
    Returns the bar's values seen."""
    seen: list[int] = []
    deadline = time.monotonic() + 3 * WAIT_MS / 1000
    while not reading.finished:
        assert time.monotonic() < deadline, "the reading did not end"
        status = chat.page.locator("#status").inner_text()
        assert web.READY not in status or reading.finished, status
        value = bar(chat)
        if value is not None and not reading.finished:
            seen.append(value)
        time.sleep(POLL_S)
    chat.page.wait_for_function(
        "() => document.querySelector('#status').innerText.includes('is read')", timeout=WAIT_MS
    )  # the page says it, and what is now faster
    return seen
