"""Giving way with the real model: llama.cpp drops a chunk stopped halfway through its abort callback, keeps what was
read before it, and the reading goes on to the very state a reading never stopped reaches."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.llamacpp.abort import decode_unless
from assistant.settings import Settings

pytestmark = pytest.mark.real


def last_logits(llm) -> np.ndarray:
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()


def stop_after(calls: int):
    """A stop callback that says stop at its calls-th question (llama.cpp asks once per graph node)."""
    asked = [0]

    def stop() -> bool:
        asked[0] += 1
        return asked[0] >= calls

    return stop


def test_a_chunk_stopped_halfway_leaves_the_cache_as_before_and_reads_again_the_same(assistant):
    model = assistant.chat_model
    llm = model.load()
    article = (Settings().paths.corpus_dir / "nato-3-0.txt").read_text(encoding="utf-8")
    tokens = llm.tokenize(article.encode("utf-8"))[:600]
    with model._lock:
        model._current = None  # the cache is this test's now: the next answer puts its article back
        llm.reset()
        llm.eval(tokens[:512])
        assert not decode_unless(llm, tokens[512:], stop_after(50))  # stopped in the middle of the graph
        assert llm.n_tokens == 512
        assert decode_unless(llm, tokens[512:], stop_after(10**9))
        again = last_logits(llm)
        llm.reset()
        llm.eval(tokens)
        straight = last_logits(llm)
    assert np.array_equal(again, straight)


def test_a_reading_that_gave_way_keeps_the_state_of_one_that_never_did(assistant, monkeypatch):
    from assistant.llamacpp import chat

    model = assistant.chat_model
    article = (Settings().paths.corpus_dir / "nato-3-0.txt").read_text(encoding="utf-8")
    system = SystemMessage("Read this part of an article; later questions are about it.\n\n" + article[:3000])
    prompts = [[system, HumanMessage(q)] for q in ("A", "B")]
    decoded, asked = [], []
    real = chat.decode_unless

    def recorded(llm, tokens, stop) -> bool:
        decoded.append(real(llm, tokens, stop))
        return decoded[-1]

    monkeypatch.setattr(chat, "decode_unless", recorded)

    def pause() -> bool:  # a question comes once, well into the second chunk's graph, and is gone at once
        if decoded == [True]:
            asked.append(True)
        return len(asked) == 50 and decoded == [True]

    model.forget(system.content)
    assert model.read(prompts, pause=pause) == "computed"
    assert decoded[:3] == [True, False, True]  # the second chunk gave way, and was read again
    gave_way = model._store.get(system.content)
    model.forget(system.content)
    monkeypatch.setattr(chat, "decode_unless", real)
    assert model.read(prompts) == "computed"
    straight = model._store.get(system.content)
    model.forget(system.content)
    assert gave_way.tokens == straight.tokens and bytes(gave_way.state) == bytes(straight.state)
