"""Decoding that gives way: llama.cpp's abort callback drops a chunk in progress when a question comes.

llama.cpp asks the callback between the nodes of the compute graph (hundreds of times per decode, at no measurable
cost); when it says stop, llama_decode returns at once, removes the cache entries of the batch it was decoding and
keeps the rest, and llama-cpp-python leaves n_tokens as it was. Decoding the same chunk again later gives the very
same logits (checked with the default model), so a reading can drop a chunk and read it again after the question.
The callback is set only around such a chunk: a Python callback must take the GIL, which other decodes need not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def decode_unless(llm, tokens: Sequence[int], stop: Callable[[], bool] | None) -> bool:
    """Decode tokens into llm's cache; False, with the cache as before, when stop() turned true meanwhile."""
    if stop is None:
        llm.eval(tokens)
        return True
    import ctypes

    import llama_cpp

    stopped: list[bool] = []

    def abort(_data) -> bool:
        if stop():
            stopped.append(True)
            return True
        return False

    callback = llama_cpp.ggml_abort_callback(abort)  # referenced here until unset: llama.cpp holds a bare pointer
    llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)
    try:
        llm.eval(tokens)
    except RuntimeError:  # "llama_decode returned 2": aborted; anything else is a real failure
        if not stopped:
            raise
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)  # llama.cpp dropped the batch itself; make sure
        return False
    finally:
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, ctypes.cast(None, llama_cpp.ggml_abort_callback), None)
    return True
