"""The in-process llama.cpp chat model wrapper: serialised, thread-safe streaming (with a stand-in for llama.cpp)."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import HumanMessage

from assistant.llamacpp.chat import LlamaCppChat


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
    chat = LlamaCppChat(model_path="unused.gguf", kept_heads=0)  # the stand-in has no KV cache to keep
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

    from assistant.index.models import chat_model_file
    from assistant.settings import Settings

    settings = Settings()
    article = (settings.paths.corpus_dir / "nato-3-0.txt").read_text(encoding="utf-8")
    system = SystemMessage(f"Answer from this article only.\n\n{article}")
    prefix = [[system, HumanMessage("A")], [system, HumanMessage("B")]]
    question = [system, HumanMessage("Which countries will exceed the 3.5% target?")]

    def fresh() -> LlamaCppChat:
        path = str(chat_model_file(settings))
        return LlamaCppChat(
            model_path=path, n_ctx=settings.generation.llm_context, max_tokens=40, state_dir=str(tmp_path)
        )

    first = fresh()
    assert first.warm(prefix) == "computed"
    read = first.invoke(question).content
    del first
    second = fresh()
    assert second.warm(prefix) == "restored"
    assert second.invoke(question).content == read
    assert "Denmark" in read
    # A damaged state file is a lost shortcut, never an error.
    states = list(tmp_path.glob("prefix-*.npz"))
    assert len(states) == 1
    for state in states:
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
    assert model._current is None
    after = model.invoke(question).content
    assert after == before and model._current == question[0].content


@pytest.mark.real
def test_a_judgement_reads_only_what_follows_the_template_it_shares_with_the_last_one(assistant, monkeypatch):
    # Every judgement starts with the same template. An answer between two judgements puts the article back in
    # llama.cpp's one cache; then the state of the last judgement is put back, and only the tokens after what they
    # share (the evidence, the question) are read. The verdict is the one a whole reading gives.
    from assistant.llamacpp import prompt_tokens

    model, verifier = assistant.chat_model, assistant.parts.verifier
    first_sentence = [p.text.split(". ")[0] + "." for p in assistant.passages]
    judged = [
        verifier.messages(f"What does paragraph {i} say?", first_sentence[i], [first_sentence[i]]) for i in (1, 4)
    ]
    llm = model.load()
    read: list[int] = []
    original = llm.eval
    monkeypatch.setattr(llm, "eval", lambda tokens: read.append(len(tokens)) or original(tokens))
    verifier.probability(judged[0])
    model.invoke(ask(assistant, "Who is the NATO Secretary General?"), max_tokens=2)  # the article's prefix between
    read.clear()
    kept, _ = verifier.probability(judged[1])
    whole = len(prompt_tokens(llm, model._as_dicts(judged[1])))
    assert 0 < sum(read) <= whole - 20, (read, whole)

    kept_heads = model._heads  # a pydantic private attribute: monkeypatch's undo would delete it
    model._heads = []
    try:
        llm.reset()
        read.clear()
        again, _ = verifier.probability(judged[1])
    finally:
        model._heads = kept_heads
    assert sum(read) >= whole - 1 and abs(again - kept) < 0.02, (again, kept)


@pytest.mark.real
def test_first_token_logprobs_come_from_the_real_model(assistant):
    model = assistant.chat_model
    messages = ask(assistant, "Is the article about NATO? Reply with yes or no.")
    reply = model.invoke(messages, logprobs=True, top_logprobs=10, max_tokens=1)
    (first,) = reply.response_metadata["logprobs"]["content"]
    probabilities = [math.exp(c["logprob"]) for c in first["top_logprobs"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0.5 < sum(probabilities) <= 1.0001
    assert first["token"].strip().lower() == "yes" and reply.content.strip().lower() == "yes"


# ----- hidden states, read as the model computes ---------------------------------------------------------------------
@pytest.mark.real
def test_tapped_layers_hand_back_states_at_each_piece_and_change_no_logit(assistant):
    from assistant.answer.judge import Verifier

    plain = assistant.chat_model
    tapped = LlamaCppChat(model_path=plain.model_path, n_ctx=2048, probe_layers=(12, 27), kept_heads=0)
    untapped = LlamaCppChat(model_path=plain.model_path, n_ctx=2048, kept_heads=0)
    messages = [HumanMessage("In one short sentence: what is the capital of France?")]
    states: list = []
    # LangChain ends a stream with an empty chunk, which carries no token and so no state
    pieces = [c.content for c in tapped.stream(messages, hidden_states=states) if c.content]
    assert len(states) == len(pieces) + 1  # before each piece, and after the last
    assert all(sorted(s) == [12, 27] and s[27].shape == (1536,) for s in states)
    assert [c.content for c in untapped.stream(messages) if c.content] == pieces  # the same greedy answer
    judge = (
        "Evidence from the article:\n- Paris is the capital of France.\n\nQuestion: What is the capital of "
        "France?\n\nDoes the evidence answer exactly this question? Reply with yes or no."
    )
    with_states: list = []
    p_tapped, _ = Verifier(tapped, "{question}", 0.5).probability([HumanMessage(judge)], with_states)
    p_plain, _ = Verifier(untapped, "{question}", 0.5).probability([HumanMessage(judge)])
    assert p_tapped == p_plain and len(with_states) == 1 and sorted(with_states[0]) == [12, 27]
    assert not untapped.reads_hidden_states and tapped.reads_hidden_states


# ----- opening the model: preloaded in the background, repacking optional -----------------------------------------
def test_a_preloaded_model_is_handed_out_once(monkeypatch):
    from assistant.llamacpp import engine as llamacpp

    loads = []
    monkeypatch.setattr(llamacpp, "_load", lambda *key: loads.append((key, threading.current_thread().name)) or key)
    llamacpp.preload("m.gguf", 4096, 2, True)
    first = LlamaCppChat(model_path="m.gguf", n_ctx=4096, n_threads=2, repack_weights=True).load()
    second = LlamaCppChat(model_path="m.gguf", n_ctx=4096, n_threads=2, repack_weights=True).load()
    assert first == second == ("m.gguf", 4096, 2, True, ())
    # The preload ran in its own thread; the second model, with nothing preloaded, loaded in the caller's.
    assert [name for _, name in loads] == ["model-preload", threading.current_thread().name]


def test_a_preload_for_other_settings_is_not_taken(monkeypatch):
    from assistant.llamacpp import engine as llamacpp

    monkeypatch.setattr(llamacpp, "_load", lambda *key: key)
    llamacpp.preload("m.gguf", 4096, 2, True)
    assert LlamaCppChat(model_path="m.gguf", n_ctx=2048, n_threads=2, repack_weights=True).load()[1] == 2048
    llamacpp._PRELOADED.clear()


def test_a_failed_preload_reaches_the_caller_as_model_unavailable(monkeypatch, tmp_path):
    from assistant.errors import ModelUnavailable
    from assistant.llamacpp import engine as llamacpp

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really")
    llamacpp.preload(str(bad), 512, 1, True)
    with pytest.raises(ModelUnavailable, match="complete GGUF file"):
        LlamaCppChat(model_path=str(bad), n_ctx=512, n_threads=1, repack_weights=True).load()


def test_preload_for_starts_only_when_the_file_needs_no_work(monkeypatch, tmp_path):
    from assistant.index.models import _write_stamp
    from assistant.llamacpp import engine as llamacpp
    from assistant.settings import Settings

    started = []
    monkeypatch.setattr(llamacpp, "preload", lambda *key: started.append(key))
    model = tmp_path / "m.gguf"
    llamacpp.preload_for(Settings(llm_model_path=model))  # missing: the normal path reports it
    model.write_bytes(b"weights")
    llamacpp.preload_for(Settings(llm_model_path=model, llm_model_sha256="ab" * 32))  # not checked yet
    llamacpp.preload_for(Settings(llm_model_path=model, llm_backend="openai", llm_base_url="http://x/v1"))
    assert started == []
    _write_stamp(model, "ab" * 32)
    llamacpp.preload_for(Settings(llm_model_path=model, llm_model_sha256="ab" * 32, llm_context=1024))
    llamacpp.preload_for(Settings(llm_model_path=model))
    assert [key[:2] for key in started] == [(str(model), 1024), (str(model), Settings().generation.llm_context)]


def test_weights_are_loaded_without_repacking_only_when_asked():
    from llama_cpp import llama as llama_module

    from assistant.llamacpp.engine import _weights_repacked

    def repacked() -> bool:
        return llama_module.llama_cpp.llama_model_default_params().use_extra_bufts

    assert repacked()
    with _weights_repacked(False):
        assert not repacked()
    assert repacked()
    with _weights_repacked(True):
        assert repacked()
