"""Hidden states read out of llama.cpp as it computes: the last token's output of chosen layers, per decode.

llama.cpp calls a context's evaluation callback (cb_eval) for every tensor of the graph; answering "yes" for a
layer's output (`l_out-N`) gets it computed and handed over, and the last token's column is copied out (6 KB a
layer: microseconds). The callback must be set when the context is created, so `tapped()` wraps the model's load.
Only a `Taps` that is armed copies anything; otherwise it answers "no" at once, and the graph runs as without it
(same logits, bit for bit: checked when this was written).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

_LIB: dict[str, object] = {}  # libggml, with the three functions typed on first use


def _ggml():
    if not _LIB:
        from llama_cpp import _ggml

        lib = _ggml.libggml
        lib.ggml_get_name.restype, lib.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        lib.ggml_nbytes.restype, lib.ggml_nbytes.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
        lib.ggml_nrows.restype, lib.ggml_nrows.argtypes = ctypes.c_int64, [ctypes.c_void_p]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        _LIB["lib"] = lib
    return _LIB["lib"]


class Taps:
    """Copies the last token's state of the given layers at each decode while armed.

    `latest` is the state of the last decode: {layer: float32 vector}. A decode has started when the lowest
    layer's output arrives, so a fresh dict is begun then (the other layers fill it).
    """

    def __init__(self, layers: tuple[int, ...]):
        import llama_cpp

        self.layers = tuple(sorted(set(layers)))
        self._names = {f"l_out-{i}".encode(): i for i in self.layers}
        self._first = self.layers[0] if self.layers else None
        self._armed = 0
        self._guard = threading.Lock()
        self.latest: dict[int, object] = {}
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._seen)  # kept alive with the Taps

    def _seen(self, tensor, ask: bool, _user) -> bool:
        if not self._armed:
            return not ask  # asked: not wanted; computed: go on
        lib = _ggml()
        layer = self._names.get(lib.ggml_get_name(tensor))
        if layer is None:
            return not ask
        if ask:
            return True
        import numpy as np

        nbytes = lib.ggml_nbytes(tensor)
        size = nbytes // max(1, lib.ggml_nrows(tensor))  # one token's column: the last of the batch
        column = np.empty(size // 4, dtype=np.float32)
        lib.ggml_backend_tensor_get(tensor, column.ctypes.data, nbytes - size, size)
        if layer == self._first:
            self.latest = {}
        self.latest[layer] = column
        return True

    @contextlib.contextmanager
    def armed(self) -> Iterator[Taps]:
        """Copy states during the block (calls are serialised by the model's lock; the count guards nesting)."""
        with self._guard:
            self._armed += 1
            self.latest = {}
        try:
            yield self
        finally:
            with self._guard:
                self._armed -= 1


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def tapped(taps: Taps | None):
    """Create llama.cpp contexts with taps' callback during the block (llama-cpp-python takes no such argument, so
    its default context parameters are swapped for the time of one load, as engine._weights_repacked does)."""
    if taps is None or not taps.layers:
        yield
        return
    from llama_cpp import llama as llama_module

    with _PARAMS_LOCK:
        original = llama_module.llama_cpp.llama_context_default_params

        def with_callback():
            params = original()
            params.cb_eval = taps.callback
            return params

        llama_module.llama_cpp.llama_context_default_params = with_callback
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_context_default_params = original
