"""Web stage: a Gradio page that streams cited answers about the articles, keeps each user's conversations and takes
new articles, and the `/answer` API endpoint.

Data flows one way: render.py (pure HTML) ← handlers.py, articles.py, warmup.py (events, state) ← panels.py (the
layout, a dataclass per panel) ← app.py (wiring, serving). scheduler.py (no Gradio) keeps each session's questions
in the order asked, for handlers.py. workspace.py is the glue to the conversation store. A chat turn is
assistant.turn.Turn, the same record the store keeps.
"""

from __future__ import annotations

from .app import API_DOC, build_app, is_loopback, launch, serve
from .handlers import ChatHandlers
from .render import LOADING, READY
from .warmup import WarmUp

__all__ = ["API_DOC", "LOADING", "READY", "ChatHandlers", "WarmUp", "build_app", "is_loopback", "launch", "serve"]
