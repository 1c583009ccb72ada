"""Shared test helpers: free localhost ports for servers started by the tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function returning a currently free TCP port on 127.0.0.1 (call it once per server)."""
    return _free_port


@pytest.fixture(scope="session")
def assistant():
    """The default Assistant with the real models, warmed once for every test module that asks for it."""
    from assistant.answering import Assistant
    from assistant.settings import Settings

    bot = Assistant(Settings())
    bot.warm_up()
    return bot


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory):
    """Conversations and feedback the tests make go to a folder of their own, never the user's."""
    import os

    folder = tmp_path_factory.mktemp("data")
    old = os.environ.get("ASSISTANT_DATA_DIR")
    os.environ["ASSISTANT_DATA_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("ASSISTANT_DATA_DIR", None)
    else:
        os.environ["ASSISTANT_DATA_DIR"] = old
