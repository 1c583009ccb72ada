"""Shared by the generation and web stages: an iterator run from start to end on one worker thread, its items read in
the caller's thread.

A generator that holds a lock across its yields must be resumed, and closed, by the thread that took the lock; Gradio
resumes a sync generator on whichever worker thread is free. Here only the worker iterates the source; the caller
reads a queue, so it may move between threads freely.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END = "item", "error", "end"


def relay(produce: Callable[[], Iterator[T]], name: str) -> Iterator[T]:
    """Yield the items of the iterator produce() returns, produce() and the iteration run on a thread named name.

    An error the source raises is raised here, in the reader's thread. When the reader stops early (this generator
    is closed), the source is closed after the item it is making: a generator source sees GeneratorExit at its yield.
    """
    items: queue.Queue = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        source = None
        try:
            source = produce()
            for item in source:
                items.put((_ITEM, item))
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader, which raises it in its own thread
            items.put((_ERROR, exc))
        finally:
            try:
                if source is not None and hasattr(source, "close"):
                    source.close()
            finally:
                items.put((_END, None))

    threading.Thread(target=pump, name=name, daemon=True).start()
    try:
        while True:
            kind, value = items.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stop.set()
