"""A long article with the real model: read once in chunks (a question answered from retrieval meanwhile), saved,
restored and answered from the whole text; and a fixed slice of real SQuAD 2.0 questions as a regression gate.

The article is Wikipedia's "Packet switching" as in SQuAD 2.0 (tests/data/squad/, CC BY-SA 4.0): about 4,000
tokens, so it needs the longer context (the whole NATO article is under 1,000) and takes a minute or two to read.
The thresholds of the gate come from a real run (see BENCHMARKS.md, "Real articles: SQuAD 2.0").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from assistant.answering import Assistant
from assistant.settings import Settings
from benchmarks.squad_data import article_sample, build_corpus, load_articles
from benchmarks.squad_scoring import score

DATA = Path(__file__).parent / "data" / "squad" / "packet-switching.json"
SLUG = "packet-switching"
# Measured on this slice (8 answerable, 8 unanswerable) at the commit that added it: 4 of 8 answerable right and
# 3 of 8 unanswerable refused (most of the others are answered with the trap: that is issue 20's work). The gate
# allows one case less of each, for the rounding of another CPU; anything below is a regression.
MIN_ANSWERABLE_RIGHT = 3 / 8
MIN_UNANSWERABLE_REFUSED = 2 / 8

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def long_bot(assistant, tmp_path_factory):
    """An assistant over the long article alone, sharing the session's warmed model and embeddings."""
    folder = tmp_path_factory.mktemp("long")
    articles = load_articles(DATA)
    cases = build_corpus(articles, folder / "corpus")
    settings = Settings(corpus_dir=folder / "corpus", index_dir=folder / "index")
    bot = Assistant(settings, chat_model=assistant.chat_model, embeddings=assistant.index.embeddings)
    bot.load()
    return bot, cases[SLUG]


def test_a_long_article_is_read_once_in_chunks_while_a_question_is_answered(long_bot):
    bot, cases = long_bot
    model, view = bot.chat_model, bot.view(SLUG)
    model.forget(view.system)  # a state left by an earlier run would be restored instead of read
    assert not bot.article_ready(view)
    question = next(c for c in cases if c.kind == "answerable")
    seen, meanwhile = [], []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:  # a question between two chunks: answered from retrieval, the reading goes on after
            meanwhile.append(bot.answer(question.question, scope=SLUG))

    assert bot.read_article(view, progress=progress) == "computed"
    total = seen[-1][1]
    assert total > 3000 and seen[-1][0] == total  # long: it needs more than the old 4,096-token context
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(
        seen
    ) >= total // Settings().reading.read_chunk_tokens
    answered = meanwhile[0]
    assert "read" not in answered.timings or answered.timings["read"] < 1.0  # it did not wait for the reading
    assert bot.article_ready(view)


def test_the_read_article_is_restored_from_disk_and_answers_from_the_whole_text(long_bot):
    bot, cases = long_bot
    model, view = bot.chat_model, bot.view(SLUG)
    assert model.has_read(view.system)
    model._store.drop_ram()  # as in a fresh process: only the saved file is left
    saved = model._store.path(view.system)
    written = saved.stat().st_ino  # a save replaces the file (a new inode); a restore only marks it used
    fresh = Assistant(bot.settings, chat_model=model, embeddings=bot.index.embeddings)
    fresh.warm_up(SLUG)
    assert model._store.in_ram(view.system) and saved.stat().st_ino == written  # restored, not read again
    question = next(c for c in cases if c.kind == "answerable")
    sent = Prompts()
    answer = fresh.runnable().invoke({"question": question.question, "scope": SLUG}, config={"callbacks": [sent]})
    assert sent.systems and sent.systems[0] == view.system  # the answer read the whole (restored) article
    assert "read" not in answer.timings


class Prompts(BaseCallbackHandler):
    """Records the system prompt of every chat model call."""

    def __init__(self):
        self.systems: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        first = messages[0][0] if messages and messages[0] else None
        if first is not None and first.type == "system":
            self.systems.append(str(first.content))


def test_real_squad_questions_on_the_long_article_pass_the_gate(long_bot):
    bot, cases = long_bot
    chosen = article_sample(cases, SLUG, 8, 8)
    assert len(chosen) == 16
    scored = []
    for case in chosen:
        a = bot.answer(case.question, scope=SLUG)
        cited = [{"passage_id": c.passage_id, "doc_id": c.doc_id, "number": c.number} for c in a.citations]
        scored.append((case, score(case, {"text": a.text, "abstained": a.abstained, "citations": cited})))
    right = [s["right"] for c, s in scored if c.kind == "answerable"]
    refused = [s["refused"] for c, s in scored if c.kind == "unanswerable"]
    figures = f"answerable right {sum(right)}/{len(right)}, unanswerable refused {sum(refused)}/{len(refused)}"
    report = [figures, *((c.question, s["right"], s["refused"]) for c, s in scored)]
    assert sum(right) / len(right) >= MIN_ANSWERABLE_RIGHT, report
    assert sum(refused) / len(refused) >= MIN_UNANSWERABLE_REFUSED, report
