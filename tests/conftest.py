"""Shared test fixtures: free localhost ports for servers started by the tests, the real default Assistant, the
embedding model, and a copy of the corpus to change."""

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


@pytest.fixture(scope="session")
def embeddings():
    """The default embedding model, loaded once for every test module that asks for it."""
    from assistant.index.indexing import load_embeddings
    from assistant.settings import Settings

    return load_embeddings(Settings())


@pytest.fixture
def settings(tmp_path):
    """Settings over a copy of the corpus, with an index and a cache of their own."""
    import shutil

    from assistant.settings import PROJECT_ROOT, Settings

    corpus = tmp_path / "corpus"
    shutil.copytree(PROJECT_ROOT / "corpus", corpus)
    # A refusal's correction asks the model once more: the scripted replies of these tests are answers only, so it
    # is off here and tested on its own (test_correct.py).
    return Settings(
        corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", correct_premise="off"
    )
