"""An offline, cited question-answering assistant for a news article: answer() and retrieve() are the entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .answering import Answer, Assistant, Citation
    from .corpus import Passage
    from .guard import InvalidQuestion
    from .settings import Settings

__all__ = ["Answer", "Assistant", "Citation", "InvalidQuestion", "Passage", "Settings", "answer", "retrieve"]

_LAZY = {
    "Answer": "answering",
    "Assistant": "answering",
    "Citation": "answering",
    "InvalidQuestion": "guard",
    "Passage": "corpus",
    "Settings": "settings",
}


def answer(question: str, history: list[dict] | None = None) -> Answer:
    """Answer a question about the article with the default assistant (built from ASSISTANT_* settings on first call)."""
    from .answering import default_assistant

    return default_assistant().answer(question, history)


def retrieve(question: str, k: int = 4) -> list[Passage]:
    """Return the k passages of the corpus that best match question, ranked, with scores and offsets."""
    from .answering import default_assistant

    return default_assistant().retrieve(question, k)


def __getattr__(name: str):
    # Heavy modules load only when a name from them is first used: `import assistant` stays instant.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
