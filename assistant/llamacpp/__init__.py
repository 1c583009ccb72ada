"""The in-process llama.cpp model: opening it (engine.py, which `assistant ask` starts before anything else and which
imports no LangChain), the states of the prompt prefixes it read (states.py), and the LangChain chat model over
both (chat.py, imported only where it is used)."""

from .engine import (
    ModelLoadError,
    import_engine,
    open_model,
    preload,
    preload_for,
    prompt_tokens,
    shared_prefix,
)
from .states import Prefix, PrefixStore, load_prefix, put_back, save_prefix, snapshot

__all__ = [
    "ModelLoadError",
    "Prefix",
    "PrefixStore",
    "import_engine",
    "load_prefix",
    "open_model",
    "preload",
    "preload_for",
    "prompt_tokens",
    "put_back",
    "save_prefix",
    "shared_prefix",
    "snapshot",
]
