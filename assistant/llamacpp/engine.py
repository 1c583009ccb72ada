"""Opening the in-process llama.cpp model, which a fresh process can start in the background from its first moment.

Kept apart from chat.py, which imports LangChain: `assistant ask` starts the model loading here first, and
imports the rest of the assistant while llama.cpp, outside the GIL, reads the weights on the other core.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from ..errors import AssistantError
from ..settings import Settings

log = logging.getLogger(__name__)

_PARAMS_LOCK = threading.Lock()
_PRELOADED: dict[tuple, Future] = {}


class ModelLoadError(AssistantError):
    """llama.cpp could not open the model file; the message says what to do."""


@contextlib.contextmanager
def _weights_repacked(repack: bool):
    """Load models with or without llama.cpp's CPU repacking of the weights.

    Repacking copies the whole model into an interleaved layout at load time (about 1 s and 0.6 GB for the default
    model) for kernels whose rounding differs: without it some answers change wording, so it stays on by default.
    llama-cpp-python has no argument for it, so its default model parameters are swapped for the time of one load.
    """
    if repack:
        yield
        return
    from llama_cpp import llama as llama_module

    with _PARAMS_LOCK:
        original = llama_module.llama_cpp.llama_model_default_params

        def without_repack():
            params = original()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_repack
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def import_engine() -> None:
    """Import llama-cpp-python, in the calling thread.

    Loading then goes on in another thread, but importing must not: numpy's C extension, which llama_cpp imports,
    fails when two threads import it for the first time at once (seen as "partially initialized module").
    """
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError("llama-cpp-python is not installed; run the set-up (`bash scripts/setup.sh`).") from exc


def _load(path: str, n_ctx: int, n_threads: int | None, repack: bool, layers: tuple[int, ...] = ()):
    import_engine()
    from llama_cpp import Llama

    from .taps import Taps, tapped

    started = time.perf_counter()
    taps = Taps(layers) if layers else None
    try:
        with _weights_repacked(repack), tapped(taps):
            llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 2, verbose=False)
    except Exception as exc:  # llama.cpp reports a bad file as a bare ValueError
        raise ModelLoadError(
            f"The model file {path} could not be loaded ({exc}). Check that it is a complete GGUF file, or delete "
            "it to have the default model assembled again."
        ) from exc
    llm.taps = taps  # the hidden states of these layers can be read (see taps.py); None: no layer is tapped
    log.info("Loaded %s in %.1f s", Path(path).name, time.perf_counter() - started)
    return llm


def preload(path: str, n_ctx: int, n_threads: int | None, repack: bool, layers: tuple[int, ...] = ()) -> None:
    """Start loading this model in a background thread; the next open_model() with the same arguments takes it."""
    key = (path, n_ctx, n_threads, repack, tuple(layers))
    try:
        import_engine()
    except ModelLoadError:
        return  # opening the model later says what to do
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(_load(*key))
        except BaseException as exc:  # handed to whoever opens the model
            future.set_exception(exc)

    _PRELOADED[key] = future
    threading.Thread(target=work, name="model-preload", daemon=True).start()


def preload_for(settings: Settings) -> None:
    """Start loading the configured in-process model now, when its file needs no assembling or checking first."""
    if settings.generation.llm_backend != "llamacpp":
        return
    from ..index.models import ready_model_file

    path = ready_model_file(settings)
    if path is not None:
        from ..answer.decision import tapped_layers

        layers = tapped_layers(settings, path)
        preload(
            str(path),
            settings.generation.llm_context,
            settings.generation.llm_threads,
            settings.generation.llm_repack_weights,
            layers,
        )


def open_model(path: str, n_ctx: int, n_threads: int | None, repack: bool, layers: tuple[int, ...] = ()):
    """A llama_cpp.Llama for this file: the one preload() started, if any (each preload is handed out once)."""
    key = (path, n_ctx, n_threads, repack, tuple(layers))
    future = _PRELOADED.pop(key, None)
    return future.result() if future is not None else _load(*key)


# ----- prompt prefixes: read once, kept in RAM and on disk, put back in the cache ------------------------------------
class _PromptCaught(Exception):
    """Raised by _PromptCatcher to stop a chat handler once it has made the prompt's tokens."""


class _PromptCatcher:
    """Stands in for a Llama in a chat handler: tokenizes with the real one, then stops before any decoding."""

    def __init__(self, llm):
        self._llm = llm

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def create_completion(self, prompt, **_kwargs):
        raise _PromptCaught(prompt)


def prompt_tokens(llm, messages: list[dict]) -> list[int]:
    """The tokens create_chat_completion would decode for messages, through the model's own chat handler.

    Asking the handler itself (rather than formatting the template here) keeps the tokens identical to the ones a
    real answer decodes, so llama.cpp's prefix match reuses every one of them.
    """
    from llama_cpp import llama_chat_format

    handler = (
        llm.chat_handler
        or llm._chat_handlers.get(llm.chat_format)
        or llama_chat_format.get_chat_completion_handler(llm.chat_format)
    )
    try:
        handler(llama=_PromptCatcher(llm), messages=messages)
    except _PromptCaught as caught:
        prompt = caught.args[0]
        return list(prompt) if not isinstance(prompt, str) else llm.tokenize(prompt.encode(), special=True)
    raise RuntimeError("the chat handler made no prompt")


def shared_prefix(first: list[int], second: list[int]) -> list[int]:
    """The tokens two prompts start with alike."""
    n = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        n += 1
    return first[:n]
