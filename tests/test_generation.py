"""The in-process llama.cpp chat model wrapper: serialised, thread-safe streaming (with a stand-in for llama.cpp)."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import HumanMessage

from assistant.generation import LlamaCppChat


class FakeLlama:
    """Streams the words of the prompt back slowly and notes any overlap between two generations."""

    def __init__(self):
        self.busy = False
        self.overlaps = 0

    def create_chat_completion(self, messages, **kwargs):
        if self.busy:
            self.overlaps += 1
        self.busy = True
        try:
            for word in messages[-1]["content"].split():
                time.sleep(0.005)
                yield {"choices": [{"delta": {"content": word + " "}}]}
        finally:
            self.busy = False


def model() -> LlamaCppChat:
    chat = LlamaCppChat(model_path="unused.gguf")
    chat._llm = FakeLlama()
    return chat


def test_stream_can_be_resumed_on_another_thread():
    chat = model()
    stream = chat.stream([HumanMessage("one two three four")])
    first = next(stream).content
    rest = []
    worker = threading.Thread(target=lambda: rest.extend(c.content for c in stream))
    worker.start()
    worker.join(10)
    assert first + "".join(rest) == "one two three four "


def test_concurrent_streams_are_serialised_and_not_mixed():
    chat = model()
    prompts = [" ".join(f"w{i}-{j}" for j in range(20)) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        outputs = list(pool.map(lambda p: "".join(c.content for c in chat.stream([HumanMessage(p)])), prompts))
    assert outputs == [p + " " for p in prompts]
    assert chat._llm.overlaps == 0


def test_abandoned_stream_releases_the_model():
    chat = model()
    stream = chat.stream([HumanMessage(" ".join(["x"] * 200))])
    next(stream)
    stream.close()
    done = chat.invoke([HumanMessage("after")])
    assert done.content == "after "


@pytest.mark.real
def test_saved_article_state_answers_exactly_like_reading_the_article(tmp_path):
    from langchain_core.messages import SystemMessage

    from assistant.models import chat_model_file
    from assistant.settings import Settings

    settings = Settings()
    article = (settings.corpus_dir / "nato-3-0.txt").read_text(encoding="utf-8")
    prefix = [SystemMessage(f"Answer from this article only.\n\n{article}")]
    question = [*prefix, HumanMessage("Which countries will exceed the 3.5% target?")]

    def fresh() -> LlamaCppChat:
        path = str(chat_model_file(settings))
        return LlamaCppChat(model_path=path, n_ctx=settings.llm_context, max_tokens=40, state_dir=str(tmp_path))

    first = fresh()
    assert first.warm(prefix) == "computed"
    read = first.invoke(question).content
    del first
    second = fresh()
    assert second.warm(prefix) == "restored"
    assert second.invoke(question).content == read
    assert "Denmark" in read
    # A damaged state file is a lost shortcut, never an error.
    for state in tmp_path.glob("state-*.pkl"):
        state.write_bytes(state.read_bytes()[:1000])
    assert fresh().warm(prefix) == "computed"


def ask(assistant, question: str):
    """The messages the assistant sends for question: the whole article in the cached prefix, then the question."""
    view = assistant.view()
    return assistant.prompts.answer.format_messages(title=view.title, context=view.context, question=question)


@pytest.mark.real
def test_the_article_prefix_is_put_back_after_another_prompt(assistant):
    # A judgement or a retry without the article takes llama.cpp's only cache; the article's KV cache, kept in RAM
    # since the warm-up, comes back for the next question, which answers exactly as before.
    model = assistant.chat_model
    question = ask(assistant, "Which countries will exceed the 3.5% target?")
    before = model.invoke(question).content
    model.invoke([HumanMessage("Reply with one word: hello")])
    assert model._away
    after = model.invoke(question).content
    assert after == before and not model._away


@pytest.mark.real
def test_first_token_logprobs_come_from_the_real_model(assistant):
    model = assistant.chat_model
    messages = ask(assistant, "Is the article about NATO? Reply with yes or no.")
    reply = model.invoke(messages, logprobs=True, top_logprobs=10, max_tokens=1)
    (first,) = reply.response_metadata["logprobs"]["content"]
    probabilities = [math.exp(c["logprob"]) for c in first["top_logprobs"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0.5 < sum(probabilities) <= 1.0001
    assert first["token"].strip().lower() == "yes" and reply.content.strip().lower() == "yes"
