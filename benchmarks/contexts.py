"""Two llama.cpp contexts sharing the weights, or one context and a saved partial state: how a reading gives way.

    python -m benchmarks.contexts [TOKENS] [REPEATS]      # defaults: 3072 tokens read, 2 repeats

A reading of TOKENS tokens of a SQuAD article (in 512-token chunks) with three questions (a 500-token prompt and 30
decoded tokens each) coming at 4, 18 and 32 s, in five arrangements, interleaved and repeated in the same run:
reading alone; question alone; A: one context, the chunk in progress dropped (abort callback) and the partial state
put back after the question (what the assistant does); B, pause: the reading in a second context over the same
weights, dropped and resumed the same way (nothing to put back); B, concurrent: the second context reads on while
the question runs. Prints each trial's question times and reading time, then what putting back and copying the
partial state cost. Data: SQuAD 2.0 (CC BY-SA 4.0), see benchmarks/squad.py.
"""

import copy
import ctypes
import json
import sys
import threading
import time
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp import _internals as internals

from assistant.llamacpp.states import put_back, snapshot
from benchmarks.squad_data import DEFAULT_DATA

MODEL = Path.home() / ".cache" / "nato-assistant" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
CHUNK = 512
ASK_AT = [4.0, 18.0, 32.0]
KINDS = ["alone-read", "alone-q", "A-one-context-partial", "B-two-contexts-pause", "B-two-contexts-concurrent"]
NO_ABORT = None  # set in main(): a null ggml_abort_callback


class Setup:
    """The model, a second context over its weights, the texts and the abort flag of one run."""

    def __init__(self, tokens: int):
        self.llm = Llama(str(MODEL), n_ctx=16384, n_threads=2, verbose=False)
        data = json.loads(DEFAULT_DATA.read_text(encoding="utf-8"))["data"]
        text = "\n".join(p["context"] for p in data[0]["paragraphs"])
        other = "\n".join(p["context"] for p in data[3]["paragraphs"])
        self.read_tokens = self.llm.tokenize(text.encode())[:tokens]
        self.prompt = self.llm.tokenize(other.encode())[:500]
        self.generated = self.llm.tokenize(other.encode())[600:630]
        self.ctx2 = second(self.llm)
        self.flag = [False]
        self.callback = llama_cpp.ggml_abort_callback(lambda _: self.flag[0])


def second(llm):
    """A second llama.cpp context over llm's weights, with a cache of its own."""
    c = copy.copy(llm)
    c._ctx = internals.LlamaContext(model=llm._model, params=llm.context_params, verbose=False)
    c._batch = internals.LlamaBatch(n_tokens=llm.n_batch, embd=0, n_seq_max=llm.context_params.n_ctx, verbose=False)
    c.input_ids = np.ndarray((llm._n_ctx,), dtype=np.intc)
    c.scores = np.ndarray((llm.n_batch, llm._n_vocab), dtype=np.single)
    c.n_tokens = 0
    return c


def question(s: Setup, m) -> float:
    t = time.perf_counter()
    m.reset()
    m.eval(s.prompt)
    for tok in s.generated:
        m.eval([tok])
    return time.perf_counter() - t


def read(s: Setup, m, lock, busy, pause, use_partial):
    """Read the text into m in chunks; pause (abort) while busy() when pause is set. Returns wall time, chunks redone."""
    t = time.perf_counter()
    partial, done, redone = None, 0, 0
    m.reset()
    while done < len(s.read_tokens):
        while pause and busy():
            time.sleep(0.02)
        with lock:
            if partial is None and m.n_tokens != done:
                m.reset()
            elif use_partial and partial is not None and m.input_ids[: m.n_tokens].tolist() != partial.tokens:
                put_back(m, partial)
            if pause:
                llama_cpp.llama_set_abort_callback(m._ctx.ctx, s.callback, None)
            try:
                m.eval(s.read_tokens[done : done + CHUNK])
            except RuntimeError:
                redone += 1
                continue
            finally:
                if pause:
                    llama_cpp.llama_set_abort_callback(m._ctx.ctx, NO_ABORT, None)
            done = m.n_tokens
            if use_partial:
                partial = snapshot(m)
    return time.perf_counter() - t, redone


def trial(s: Setup, kind: str) -> dict:
    if kind == "alone-read":
        return {"read": read(s, s.llm, threading.Lock(), lambda: False, False, True)[0]}
    if kind == "alone-q":
        return {"q": [question(s, s.llm)]}
    lock, asking, lat, out = threading.Lock(), [0], [], {}
    rm = s.llm if kind == "A-one-context-partial" else s.ctx2
    pause = kind != "B-two-contexts-concurrent"
    qlock = lock if rm is s.llm else threading.Lock()

    def reader():
        out["read"], out["redone"] = read(s, rm, lock, lambda: asking[0] > 0, pause, rm is s.llm)

    th = threading.Thread(target=reader)
    start = time.perf_counter()
    th.start()
    for at in ASK_AT:
        time.sleep(max(0, start + at - time.perf_counter()))
        t = time.perf_counter()
        asking[0] += 1
        s.flag[0] = pause
        with qlock:
            question(s, s.llm)
        asking[0] -= 1
        s.flag[0] = False
        lat.append(time.perf_counter() - t)
    th.join()
    out["q"] = lat
    return out


def main() -> int:
    global NO_ABORT
    NO_ABORT = ctypes.cast(None, llama_cpp.ggml_abort_callback)
    s = Setup(int(sys.argv[1]) if len(sys.argv) > 1 else 3072)
    results = {k: [] for k in KINDS}
    for rep in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2):
        for k in KINDS if rep % 2 == 0 else KINDS[::-1]:
            r = trial(s, k)
            results[k].append(r)
            shown = {a: (np.round(b, 2).tolist() if not isinstance(b, int) else b) for a, b in r.items()}
            print(rep, k, json.dumps(shown), flush=True)
    s.llm.reset()
    s.llm.eval(s.read_tokens)
    p = snapshot(s.llm)
    t = time.perf_counter()
    put_back(s.llm, p)
    print("put_back of", len(p.tokens), "tokens:", round(time.perf_counter() - t, 3), "s", p.nbytes / 1e6, "MB")
    t = time.perf_counter()
    snapshot(s.llm)
    print("snapshot:", round(time.perf_counter() - t, 3), "s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
