"""The answer pipeline: named stages over one AnswerState, in the order run() reads them.

    guard → rewrite → retrieve → gate → generate → reask → retry → complete → settle → point → correct

Each stage is a short function of the state and the Parts it uses (parts.py), in a module of its own named after
it, and returns only what it changes (an Update, state.py), which run() applies: the state itself is frozen. The
streaming stages (generate to complete) yield the answer's text as checked sentences become ready, then return
their update. A new stage is a module here with one such function, and one line below.
"""

from __future__ import annotations

from collections.abc import Iterator

from .complete import complete
from .correct import correct
from .gate import gate
from .generate import generate
from .guard import guard
from .parts import Parts
from .point import point
from .reask import reask
from .retrieve import retrieve
from .retry import retry
from .rewrite import rewrite
from .settle import settle
from .state import Answer, AnswerState

BEFORE_THE_MODEL = (guard, rewrite, retrieve, gate)
STREAMING = (generate, reask, retry, complete)
DECIDING = (settle, point)


def run(state: AnswerState, parts: Parts) -> Iterator[str | Answer]:
    """Yield the answer's text as checked sentences become ready, then the Answer."""
    for stage in BEFORE_THE_MODEL:
        state = state.apply(stage(state, parts))
        if state.reason:
            break
    else:
        for streaming in STREAMING:
            state = state.apply((yield from streaming(state, parts)))
        for stage in DECIDING:
            state = state.apply(stage(state, parts))
    if state.reason != "answered":
        yield state.text  # the refusal at once; a correction, when one passes, replaces it in the Answer
        state = state.apply(correct(state, parts))
    yield state.answer()
