"""An offline, cited question-answering assistant for a news article: answer(), retrieve() and chain() are the entry points."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .answer.guard import InvalidQuestion
    from .answering import Answer, AnswerChain, Assistant, Citation
    from .index.corpus import Passage
    from .settings import Settings

__all__ = [
    "Answer",
    "AnswerChain",
    "Assistant",
    "Citation",
    "InvalidQuestion",
    "Passage",
    "Settings",
    "answer",
    "chain",
    "retrieve",
]

_LAZY = {
    "Answer": "answering",
    "AnswerChain": "answering",
    "Assistant": "answering",
    "Citation": "answering",
    "InvalidQuestion": "guard",
    "Passage": "corpus",
    "Settings": "settings",
}


def chain(settings: Settings | None = None) -> AnswerChain:
    """The assistant as a LangChain Runnable: invoke({"question": ..., "history": [...], "scope": None}) -> Answer.

    With no settings it is the process-wide default assistant (ASSISTANT_* settings); batch, stream and ainvoke work
    as for any Runnable, and callbacks reach the retriever and the model calls.
    """
    if settings is None and f"{__name__}.answering" not in sys.modules:
        # A fresh process: the model loads on the other core while LangChain and the rest are imported.
        from .llamacpp import preload_for
        from .settings import Settings

        preload_for(Settings())
    from .answering import Assistant, default_assistant

    return (default_assistant() if settings is None else Assistant(settings)).runnable()


def answer(question: str, history: list[dict] | None = None) -> Answer:
    """Answer a question about the article with the default assistant (built from ASSISTANT_* settings on first call)."""
    return chain().invoke({"question": question, "history": history})


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
