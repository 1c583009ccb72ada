"""Questions go first: a reading pauses for a question in flight and resumes where it was, and the background reader
reads the scopes a conversation is in before the others, never while a question waits.

Wiring only, with fakes: a stand-in for llama.cpp whose decode asks the stop callback after each token, as llama.cpp
asks its abort callback between graph nodes. That llama.cpp itself drops an aborted chunk and reads it again to the
same logits is tested with the real model in test_give_way_real.py.
"""

from __future__ import annotations

import html
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fakes import CORPUS, RecordingModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from test_reading import LONG_PARAGRAPHS

from assistant.answer.state import View
from assistant.answering import Assistant
from assistant.llamacpp import chat as chat_module
from assistant.llamacpp.chat import LlamaCppChat
from assistant.llamacpp.states import Prefix
from assistant.reading.priority import Questions, questions_for
from assistant.reading.reader import ArticleReader
from assistant.settings import Settings

CHUNK = 4


class FakeLlama:
    """llama_cpp.Llama as LlamaCppChat.read uses it: a cache of tokens, decoded whole chunks at a time."""

    def __init__(self):
        self.input_ids = np.zeros(1000, dtype=np.intc)
        self.n_tokens = 0
        self.decoded: list[list[int]] = []  # every chunk that went into the cache, in order
        self.dropped: list[list[int]] = []  # every chunk stopped halfway (nothing of it stays)
        self.during: list = []  # called with (llm, tokens, position) before each token of a decode
        outer = self

        class Ctx:
            def kv_cache_seq_rm(self, _seq, start, _end):
                outer.n_tokens = min(outer.n_tokens, start)

        self._ctx = Ctx()

    def reset(self):
        self.n_tokens = 0

    def decode(self, tokens, stop) -> bool:
        for position in range(len(tokens)):
            for hook in list(self.during):
                hook(self, tokens, position)
            if stop is not None and stop():
                self.dropped.append(list(tokens))
                return False
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)
        self.decoded.append(list(tokens))
        return True

    def tokenize(self, text, add_bos=False, special=True):
        return list(text)


@pytest.fixture
def fake_llama(monkeypatch):
    """A LlamaCppChat over FakeLlama: prompts are tokens of their characters, states are copies of the cache."""
    llm = FakeLlama()
    monkeypatch.setattr(chat_module, "decode_unless", lambda llm, tokens, stop: llm.decode(tokens, stop))
    monkeypatch.setattr(chat_module, "prompt_tokens", lambda llm, dicts: [ord(c) for d in dicts for c in d["content"]])
    monkeypatch.setattr(
        chat_module, "snapshot", lambda llm: Prefix(llm.input_ids[: llm.n_tokens].tolist(), bytes(llm.n_tokens))
    )

    def put_back(llm, prefix):
        llm.input_ids[: len(prefix.tokens)] = prefix.tokens
        llm.n_tokens = len(prefix.tokens)
        return True

    monkeypatch.setattr(chat_module, "put_back", put_back)
    chat = LlamaCppChat(model_path="unused.gguf", read_chunk_tokens=CHUNK, kept_heads=0)
    chat._llm = llm
    return chat, llm


def article_prompts(text: str = "abcdefghijklmnopqrst") -> list:
    """Two prompts sharing one system text: what they share (the text: five chunks of the fake's) is what is kept."""
    return [[SystemMessage(text), HumanMessage(q)] for q in "XY"]


def a_question_at(llm: FakeLlama, chunk: int, position: int, questions: Questions, asked: list) -> None:
    """Make a question come in the middle of the given chunk (at position), once."""

    def hook(_llm, tokens, at):
        if not asked and len(llm.decoded) == chunk and at == position:
            asked.append(questions.ask())

    llm.during.append(hook)


def test_a_question_stops_the_chunk_being_read_and_the_reading_resumes_from_the_last_chunk(fake_llama):
    chat, llm = fake_llama
    questions = Questions(None, 0.01)
    asked: list = []
    a_question_at(llm, chunk=2, position=1, questions=questions, asked=asked)

    def the_question_uses_the_model():  # it takes the model while the reading waits, then ends
        while not llm.dropped:
            time.sleep(0.005)
        with chat._lock:
            llm.reset()
            llm.decode([ord(c) for c in "question"], None)
        asked[0].close()

    helper = threading.Thread(target=the_question_uses_the_model)
    helper.start()
    seen = []
    how = chat.read(article_prompts(), progress=lambda d, t: seen.append(d), background=True, pause=questions.busy)
    helper.join(5)
    assert how == "computed"
    read = list(b"abcdefghijklmnopqrstX")  # the first prompt whole; its question then leaves the cache
    # The third chunk was dropped when the question came, read again after it; the first two never were.
    assert llm.dropped == [read[8:12]]
    assert llm.decoded == [read[0:4], read[4:8], list(b"question"), *(read[i : i + 4] for i in (8, 12, 16, 20))]
    assert chat.has_read("abcdefghijklmnopqrst") and seen == [4, 8, 12, 16, 20, 20]


def test_a_reading_waits_between_chunks_while_a_question_is_in_flight(fake_llama):
    chat, llm = fake_llama
    questions = Questions(None, 0.01)
    ticket = questions.ask()
    done = []
    reading = threading.Thread(
        target=lambda: done.append(chat.read(article_prompts(), background=True, pause=questions.busy))
    )
    reading.start()
    reading.join(0.3)
    assert llm.decoded == [] and reading.is_alive()  # it never started while the question was in flight
    ticket.close()
    reading.join(5)
    assert done == ["computed"] and len(llm.decoded) == 6


def test_a_reading_that_gives_way_to_another_goes_on_later_from_where_it_was(fake_llama):
    chat, llm = fake_llama
    other_first = []
    assert chat.read(article_prompts(), background=True, switch=lambda: len(llm.decoded) == 2) == "paused"
    assert chat.read(article_prompts("0123"), background=True) == "computed"  # the other text, meanwhile
    other_first.extend(llm.decoded)
    assert chat.read(article_prompts(), background=True) == "computed"
    read = list(b"abcdefghijklmnopqrstX")
    assert llm.decoded[len(other_first) :] == [read[8:12], read[12:16], read[16:20], read[20:]]  # not from the start
    assert chat.has_read("abcdefghijklmnopqrst") and chat.has_read("0123")


# ----- the background reader: what it reads, and when ------------------------------------------------------------
class Chunked(RecordingModel):
    """A fake chat model that reads a text in `chunks` steps, giving way as LlamaCppChat.read does: it waits while
    pause() is true and returns "paused" (keeping its place) when switch() is true. Each step waits for `step`."""

    chunks: int = 3
    step: object = None  # a threading.Semaphore released by the test for each step, or None: no waiting
    done_steps: dict = {}
    order: list = []  # (system, "start" | "paused" | "done")
    saw_pause: list = []

    def has_read(self, system: str) -> bool:
        return self.done_steps.get(system) == self.chunks

    def read(self, prompts, progress=None, background=False, pause=None, switch=None) -> str:
        system = str(prompts[0][0].content)
        self.order.append((system, "start"))
        while self.done_steps.get(system, 0) < self.chunks:
            while pause is not None and pause():
                self.saw_pause.append(system)
                time.sleep(0.005)
            if switch is not None and switch():
                self.order.append((system, "paused"))
                return "paused"
            if self.step is not None:
                self.step.acquire(timeout=10)
            self.done_steps[system] = self.done_steps.get(system, 0) + 1
            if progress:
                progress(self.done_steps[system], self.chunks)
        self.order.append((system, "done"))
        return "computed"


def chunked(**kwargs) -> Chunked:
    return Chunked(messages=iter([]), prompts=[], judgements=[], done_steps={}, order=[], saw_pause=[], **kwargs)


def view(name: str) -> View:
    return View(name, [], name, name, f"system of {name}", [name], None)


class Prompt:
    def format_messages(self, title, context, question):
        return [SystemMessage(f"system of {title}"), HumanMessage(question)]


def reader_of(model: Chunked, questions: Questions | None = None) -> ArticleReader:
    settings = Settings(read_wait_tokens=0)
    return ArticleReader(settings, lambda: model, lambda: Prompt(), questions=questions or Questions(None, 0.01))


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_a_scope_a_conversation_is_in_is_read_before_those_queued_for_when_nothing_waits():
    step = threading.Semaphore(0)
    model = chunked(step=step)
    reader = reader_of(model)
    reader.later(view("idle"))
    assert wait_for(lambda: model.order == [("system of idle", "start")])
    step.release()  # one chunk of the idle text is read...
    reader.want(view("asked"))  # ...then a conversation turns to another text
    for _ in range(10):
        step.release()
    assert wait_for(lambda: reader.progress(view("idle")).finished)
    assert model.order == [
        ("system of idle", "start"),
        ("system of idle", "paused"),  # it gave way between two chunks
        ("system of asked", "start"),
        ("system of asked", "done"),
        ("system of idle", "start"),
        ("system of idle", "done"),
    ]
    assert reader.progress(view("asked")).finished and reader.progress(view("asked")).how == "computed"


def test_no_reading_starts_while_a_question_waits_and_a_started_one_pauses_for_it():
    model = chunked()
    questions = Questions(None, 0.01)
    reader = reader_of(model, questions)
    ticket = questions.ask()
    reading = reader.later(view("idle"))
    time.sleep(0.2)
    assert model.order == [] and reading.active and not reading.started  # queued: it waits its turn
    ticket.close()
    assert wait_for(lambda: reading.finished)
    # A reading already going pauses while a question is in flight.
    step = threading.Semaphore(0)
    model.step = step
    reading = reader.want(view("next"))
    assert wait_for(lambda: ("system of next", "start") in model.order)
    with questions.asking():
        step.release()
        assert wait_for(lambda: "system of next" in model.saw_pause)
    step.release(5)
    assert wait_for(lambda: reading.finished)


def test_a_caller_that_waits_for_a_text_read_in_the_background_waits_for_that_reading():
    step = threading.Semaphore(0)
    model = chunked(step=step)
    reader = reader_of(model)
    reader.want(view("a"))
    assert wait_for(lambda: model.order == [("system of a", "start")])
    seen = []
    waiting = threading.Thread(target=lambda: seen.append(reader.read(view("a"), progress=lambda d, t: None)))
    waiting.start()
    step.release(3)
    waiting.join(10)
    assert seen == ["computed"] and model.order.count(("system of a", "start")) == 1  # never read twice


def test_a_reading_someone_waits_for_gives_way_to_questions_too():  # `assistant add` and `assistant warm` read so
    step = threading.Semaphore(0)
    model = chunked(step=step)
    questions = Questions(None, 0.01)
    reader = reader_of(model, questions)
    done = []
    reading = threading.Thread(target=lambda: done.append(reader.read(view("added"))))
    reading.start()
    step.release()
    with questions.asking():  # another process's question, as the lock file shows it
        step.release()
        assert wait_for(lambda: "system of added" in model.saw_pause)
    step.release(5)
    reading.join(10)
    assert done == ["computed"]


# ----- questions: in this process, from the page, from other processes --------------------------------------------
@pytest.fixture
def two_articles(tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "harbour.txt").write_text("\n".join(LONG_PARAGRAPHS) + "\n", encoding="utf-8")
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", read_wait_tokens=0)


class ReadingAnswerer(Chunked):
    """Chunked, answering questions from a script too; during_answer is called as the model starts an answer."""

    during_answer: object = None

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.during_answer is not None and not kwargs.get("logprobs"):
            self.during_answer()
        return super()._generate(messages, stop, run_manager, **kwargs)

    @classmethod
    def scripted(cls, replies: list[str], step) -> ReadingAnswerer:
        """One that reads when step is released and answers with replies, in order."""
        return cls(
            messages=iter([AIMessage(r) for r in replies]),
            prompts=[],
            judgements=[],
            done_steps={},
            order=[],
            saw_pause=[],
            step=step,
        )


def test_answer_while_a_reading_runs_in_another_thread_does_not_wait_for_it(two_articles, embeddings):
    step = threading.Semaphore(0)
    model = ReadingAnswerer.scripted(["Mayor Jane Hill opened the new bridge in 1998."], step)
    bot = Assistant(two_articles, chat_model=model, embeddings=embeddings)
    bot.load()
    system = bot.view("harbour").system
    reading = bot.start_reading(bot.view("harbour"))
    step.release()
    assert wait_for(lambda: reading.done == 1)  # one chunk read; the next waits for its step

    def during_answer():  # the reading may go on now, but a question is in flight: it must wait
        step.release()
        assert wait_for(lambda: system in model.saw_pause)

    model.during_answer = during_answer
    answer = bot.answer("Who opened the new bridge?", scope="harbour")
    assert not answer.abstained and not reading.finished  # answered from retrieval while the reading goes on
    assert system in model.saw_pause and reading.done == 2
    assert not bot.questions.busy()  # the question ended with its Answer
    step.release(5)
    assert wait_for(lambda: reading.finished)


def test_a_question_in_another_process_pauses_readings_here_until_it_ends(tmp_path):
    settings = Settings(cache_dir=tmp_path / "cache", asking_poll_s=0.01)
    here = Questions(tmp_path / "cache" / "asking.lock", settings.reading.asking_poll_s)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from assistant.reading.priority import questions_for; from assistant.settings import Settings\n"
            f"with questions_for(Settings(cache_dir={str(tmp_path / 'cache')!r})).asking():\n"
            "    print('asking', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "asking"
        assert wait_for(here.busy)
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(10)
        assert wait_for(lambda: not here.busy())
    finally:
        child.kill()
    # A question here is seen there (the same lock file); one process's own questions count at once.
    assert questions_for(settings) is questions_for(settings)
    with questions_for(settings).asking():
        assert questions_for(settings).busy() and wait_for(here.busy)
    assert wait_for(lambda: not here.busy())


def test_a_question_shown_on_the_page_counts_until_answered_or_past_its_wait():
    questions = Questions(None, 0.01)
    ticket = questions.ask(wait_s=60)
    assert questions.busy()
    ticket.close()
    ticket.close()  # closing twice is closing once
    assert not questions.busy()
    expired = questions.ask(wait_s=0.0)
    assert not expired.live and not questions.busy()  # a page gone before its turn holds nothing
    with Questions.aside(), questions.asking():  # background work asking through the pipeline
        assert not questions.busy()


# ----- the page: a question counts from the moment it is shown; the status says what is read --------------------
def test_a_question_on_the_page_pauses_readings_from_the_moment_it_is_shown_until_answered():
    from test_web import PASSAGES, StubAssistant, spending_answer

    from assistant.web.handlers import ChatHandlers

    stub = StubAssistant([spending_answer()])
    handlers = ChatHandlers(stub, PASSAGES)
    handlers.accept("Which countries will exceed the new spending target?", [], "", None, None)
    assert stub.questions.busy()  # waiting in the queue: the readings already give way
    steps = list(handlers.respond(None))
    assert steps and not stub.questions.busy()


def test_the_status_says_ready_only_when_nothing_is_read_and_what_a_finished_reading_made_faster():
    from test_web import StubAssistant

    from assistant.reading.reader import Reading
    from assistant.web import render
    from assistant.web.warmup import WarmUp

    stub = StubAssistant()
    warmup = WarmUp(stub).start()
    assert warmup.done.wait(10) and render.READY in warmup.html()
    waiting = stub.reader.readings["a"] = Reading(["Harbour news"], wanted_at=1.0)
    html = warmup.html()
    assert render.READY not in html and render.BUSY in html and warmup.busy
    assert "<progress" not in html and "0 %" not in html and "“Harbour news” will be read once, next" in html
    waiting.done, waiting.total = 512, 2048  # it has started: now a bar
    assert '<progress max="100" value="25">' in warmup.html() and "Paused" not in warmup.html()
    with stub.questions.asking():
        assert "Paused while a question is answered." in warmup.html()
    waiting.finished, waiting.how, waiting.seconds, waiting.finished_at = True, "computed", 200.0, time.monotonic()
    html = warmup.html()
    assert render.READY in html and not warmup.busy
    assert "“Harbour news” is read (2,048 tokens in 3 min 20 s)" in html and "answered from the whole article" in html
    waiting.how = "restored"  # put back from disk: nothing was read now, nothing to announce
    assert "is read" not in warmup.html()


def test_all_articles_too_long_for_the_context_are_not_read_and_the_status_says_so(two_articles, embeddings):
    from assistant.web.warmup import WarmUp

    tiny = two_articles.updated(llm_context=1200, prompt_margin_tokens=0, max_answer_tokens=0)
    model = chunked()
    bot = Assistant(tiny, chat_model=model, embeddings=embeddings)
    bot.load()
    assert bot.view().system is None and bot.reader.later(bot.view()) is None  # nothing to read
    warmup = WarmUp(bot)
    warmup.state = "ready"
    note = html.unescape(warmup.html())
    assert "All 2 articles together are too long for the model's context (1,200 tokens)" in note
    bot.read_when_idle()  # each article that fits is read, when nothing else waits
    assert wait_for(lambda: all(r.finished for r in bot.reader.readings.values()))
    fitting = [bot.view(d.doc_id).system for d in bot.documents if bot.view(d.doc_id).system is not None]
    assert fitting and sorted(s for s, how in model.order if how == "done") == sorted(fitting)


def test_example_questions_are_written_from_the_articles_reading_once_it_is_read(two_articles, embeddings):
    from assistant.examples import suggest

    step = threading.Semaphore(0)
    replies = ["Who opened the new bridge?", "Mayor Jane Hill opened the new bridge in 1998."]
    model = ReadingAnswerer.scripted(replies, step)
    bot = Assistant(two_articles, chat_model=model, embeddings=embeddings)
    bot.load()
    view = bot.view("harbour")
    written = []
    writer = threading.Thread(target=lambda: written.extend(suggest(bot, "harbour")))
    writer.start()
    assert wait_for(lambda: (view.system, "start") in model.order)
    assert model.prompts == []  # nothing is asked of the model before the article is read
    step.release(3)
    writer.join(20)
    assert written == ["Who opened the new bridge?"]
    assert model.order[-1] == (view.system, "done")
    assert model.prompts[0][0] == view.system  # the request sits on the article's kept reading: only it is new
    assert not model.saw_pause  # checking the example paused no reading
