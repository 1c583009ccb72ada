"""Whole articles read once and kept per article; longer corpora answered from bounded retrieved sentences.

Wiring only, with a fake chat model that records what it reads; the real model's reading, saving and putting back
are tested in test_generation.py and test_long_article.py.
"""

from __future__ import annotations

import shutil
import threading

import pytest
from fakes import CORPUS, RecordingModel
from langchain_core.messages import AIMessage

from assistant.answer.generation import bounded_context
from assistant.answering import Assistant
from assistant.index.corpus import load_passages
from assistant.settings import Settings

LONG_PARAGRAPHS = [
    "The harbour board met on Monday. It approved a new ferry schedule for the winter. Crossings start at six.",
    "Mayor Jane Hill opened the new bridge in 1998. The bridge carries two lanes. It cost four million pounds.",
    "Fishing boats use the north quay. The quay was rebuilt after the storm of 2004. Repairs took two years.",
]


class StoppableReader(RecordingModel):
    """A fake chat model whose background reading goes on until stop_reading, as LlamaCppChat's does by chunks."""

    stop: object = None

    def read(self, prompts, progress=None, background=False, **_gives_way) -> str:
        return "stopped" if self.stop.wait(10) else "computed"

    def stop_reading(self) -> None:
        self.stop.set()


class ReadingModel(RecordingModel):
    """A fake chat model that 'reads' a system prompt (recording it) and says which ones it has read."""

    read_systems: list = []
    gate: object = None  # a threading.Event the read waits for, to hold a reading in the background

    def has_read(self, system: str) -> bool:
        return system in self.read_systems

    def read(self, prompts, progress=None, background=False, **_gives_way) -> str:
        if self.gate is not None:
            self.gate.wait(10)
        for done in (1, 2):
            if progress:
                progress(done, 2)
        self.read_systems.append(str(prompts[0][0].content))
        return "computed"


def reader(*replies: str, gate=None) -> ReadingModel:
    return ReadingModel(
        messages=iter([AIMessage(r) for r in replies]), prompts=[], judgements=[], read_systems=[], gate=gate
    )


@pytest.fixture
def two_articles(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "harbour.txt").write_text("\n".join(LONG_PARAGRAPHS) + "\n", encoding="utf-8")
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")


def test_bounded_context_keeps_the_best_sentences_within_the_budget(tmp_path):
    (tmp_path / "harbour.txt").write_text("\n".join(LONG_PARAGRAPHS) + "\n", encoding="utf-8")
    _, passages = load_passages(tmp_path)
    # Each passage gives its best sentence before any passage gives a neighbour.
    tight = Settings(context_token_budget=30, chars_per_token=3.0)
    text = bounded_context([passages[1], passages[2]], "Who opened the bridge?", tight)
    assert "Mayor Jane Hill opened the new bridge in 1998." in text
    assert "Fishing boats use the north quay." in text
    assert "two lanes" not in text and "four million" not in text
    # The best passage's best sentence is sent even when it alone is over the budget.
    assert "Mayor Jane Hill opened" in bounded_context(
        [passages[1]], "Who opened the bridge?", Settings(context_token_budget=1)
    )
    roomy = Settings(context_token_budget=1000)
    whole = bounded_context([passages[1], passages[2]], "Who opened the bridge?", roomy)
    assert all(p.text in whole for p in passages[1:])


def test_bounded_context_marks_left_out_sentences(tmp_path):
    (tmp_path / "harbour.txt").write_text("\n".join(LONG_PARAGRAPHS) + "\n", encoding="utf-8")
    _, passages = load_passages(tmp_path)
    # The best sentence and its neighbour fit; the sentence after a gap is marked as one.
    text = bounded_context(
        [passages[2]], "When was the quay rebuilt after the storm?", Settings(context_token_budget=40)
    )
    assert "The quay was rebuilt after the storm of 2004." in text
    assert "…" not in text or text.index("…") > 0


def test_an_unread_article_is_answered_from_retrieval_while_it_is_read(two_articles, embeddings):
    gate = threading.Event()
    model = reader("Mayor Jane Hill opened the new bridge in 1998.", gate=gate)
    bot = Assistant(
        two_articles.updated(read_wait_tokens=0, context_token_budget=12),
        chat_model=model,
        embeddings=embeddings,
    )
    answer = bot.answer("Who opened the new bridge?", scope="harbour")
    assert not answer.abstained, (answer.reason, answer.draft, model.prompts)
    system = model.prompts[0][0]
    assert (
        system.count("Mayor Jane Hill opened the new bridge") == 1 and "Fishing boats" not in system
    )  # retrieved only
    reading = bot.reading_of("harbour")
    assert reading is not None and not reading.finished  # the whole article is being read meanwhile
    gate.set()
    for _ in range(200):
        if reading.finished:
            break
        threading.Event().wait(0.01)
    assert reading.finished and reading.share == 1.0
    model.messages = iter([AIMessage("Mayor Jane Hill opened the new bridge in 1998.")])
    bot.answer("Who opened the new bridge?", scope="harbour")
    assert "Fishing boats use the north quay." in model.prompts[-1][0]  # now the whole article


def test_a_short_article_is_read_before_the_first_answer(two_articles, embeddings):
    model = reader("Mayor Jane Hill opened the new bridge in 1998.")
    bot = Assistant(two_articles, chat_model=model, embeddings=embeddings)
    bot.answer("Who opened the new bridge?", scope="harbour")
    view = bot.view("harbour")
    assert view.system in model.read_systems
    assert model.prompts[0][0] == view.system  # answered from the whole article, read first


def test_a_corpus_too_long_for_one_context_answers_from_the_best_articles_reading(two_articles, embeddings):
    tiny = two_articles.updated(llm_context=1200, prompt_margin_tokens=0, max_answer_tokens=0)
    model = reader("Mayor Jane Hill opened the new bridge in 1998.", "Mayor Jane Hill opened the new bridge in 1998.")
    bot = Assistant(tiny, chat_model=model, embeddings=embeddings)
    assert bot.view().system is None and bot.view("harbour").system is not None
    bot.read_article(bot.view("harbour"))
    bot.answer("Who opened the new bridge?")
    assert model.prompts[-1][0] == bot.view("harbour").system
    # Without a read article, the same question reads the bounded retrieved sentences.
    bot2 = Assistant(tiny.updated(whole_article=False), chat_model=model, embeddings=embeddings)
    bot2.answer("Who opened the new bridge?")
    assert model.prompts[-1][0] != bot.view("harbour").system
    assert "Mayor Jane Hill opened the new bridge in 1998." in model.prompts[-1][0]


def test_prefix_store_keeps_the_last_few_in_ram_and_all_on_disk(tmp_path):
    import ctypes

    from assistant.llamacpp import Prefix, PrefixStore

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))

    def prefix(n: int) -> Prefix:
        return Prefix(list(range(n)), (ctypes.c_uint8 * n).from_buffer_copy(bytes(range(n))))

    store = PrefixStore(tmp_path / "states", str(model), repack=True, keep=2)
    for i, text in enumerate(["first", "second", "third"], start=3):
        store.put(text, prefix(i))
    assert not store.in_ram("first") and store.in_ram("second") and store.in_ram("third")
    assert all(store.has(t) for t in ("first", "second", "third"))
    again = store.get("first")  # back from disk, exactly as saved
    assert again.tokens == [0, 1, 2] and bytes(again.state) == bytes([0, 1, 2]) and store.in_ram("first")
    assert not store.in_ram("second")  # the least recently used left RAM
    # Another model file, or the other repacking, never finds these states.
    assert not PrefixStore(tmp_path / "states", str(model), repack=False, keep=2).has("first")
    model.write_bytes(b"GGUF" + bytes(200))
    assert not PrefixStore(tmp_path / "states", str(model), repack=True, keep=2).has("first")
    model.write_bytes(b"GGUF" + bytes(100))
    # A damaged file is a lost shortcut: removed, and read again later.
    path = store.path("second")
    path.write_bytes(path.read_bytes()[:20])
    assert store.get("second") is None and not path.exists()
    # A file named like a state that holds a pickle is refused, never unpickled.
    import pickle

    path.write_bytes(pickle.dumps({"tokens": [1], "state": b"x"}))
    assert store.get("second") is None and not path.exists()
    store.forget("third")
    assert not store.has("third")
    # An interrupted save leaves no file under the real name.
    assert not [p for p in (tmp_path / "states").iterdir() if p.name.endswith(".tmp")]


def test_saved_states_past_the_disk_budget_go_least_recently_used_first(tmp_path):
    import ctypes
    import os

    from assistant.llamacpp import Prefix, PrefixStore

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    states = tmp_path / "states"

    def prefix(n: int) -> Prefix:
        return Prefix(list(range(n)), (ctypes.c_uint8 * n).from_buffer_copy(bytes(n)))

    store = PrefixStore(states, str(model), repack=True, keep=1, budget_mb=1)
    for age, text in enumerate(["old", "used", "new"]):
        store.put(text, prefix(300_000))  # about 2.7 MB each as saved
        os.utime(store.path(text), (1000 + age, 1000 + age))
    # Each save pruned down to the budget, never the file just written.
    assert [store.has(t) for t in ("old", "used", "new")] == [False, False, True]
    orphan = states / "prefix-0123456789abcdef01234567.npz"  # another model's or format's: never read again
    orphan.write_bytes(bytes(2_000_000))
    os.utime(orphan, (1, 1))
    store.budget = 10_000_000
    store.put("used", prefix(10))
    assert store.get("new") is not None  # restored from disk: now the most recently used
    store.budget = 3_000_000
    assert store.prune() == [orphan] and store.has("new") and store.has("used")


def test_background_readings_are_stopped_before_the_process_exits(two_articles, embeddings):
    import atexit

    model = StoppableReader(messages=iter([]), prompts=[], judgements=[], stop=threading.Event())
    bot = Assistant(two_articles, chat_model=model, embeddings=embeddings)
    bot.load()
    registered = []
    real_register, atexit.register = atexit.register, registered.append
    try:
        reading = bot.start_reading(bot.view("harbour"))
    finally:
        atexit.register = real_register
    assert registered == [bot.reader.stop] and reading.active
    bot.reader.stop(timeout=5)  # what the interpreter runs at exit, before it frees llama.cpp
    assert not any(t.is_alive() for t in bot.reader._threads)
    assert not reading.finished and not reading.active  # stopped, not read: the next process reads it again
