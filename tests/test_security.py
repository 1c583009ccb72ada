"""Security defaults: loopback binding, no stray files served, secrets never shown or logged, documented limits."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from assistant import web
from assistant.answering import Assistant
from assistant.settings import PROJECT_ROOT, Settings

SECRET = "sk-test-0123456789-very-secret"


def test_defaults_bind_loopback_without_share():
    settings = Settings()
    assert settings.web.host == "127.0.0.1" and settings.web.share is False and settings.web.auth is None
    assert web.is_loopback(settings.web.host)


def test_api_key_is_hidden_in_settings_repr_and_dump():
    settings = Settings(llm_api_key=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())  # settings-codemod: ok
    assert SECRET not in str(settings.flat_dump()) and SECRET not in str(settings.flat_dump(mode="json"))
    assert settings.generation.llm_api_key.get_secret_value() == SECRET


@pytest.fixture(scope="module")
def server(free_port):
    settings = Settings(port=free_port(), llm_api_key=SECRET, llm_base_url="http://127.0.0.1:9/v1")
    chat = GenericFakeChatModel(messages=iter([AIMessage("Mark Rutte is NATO Secretary General.")] * 50))
    demo = web.build_app(settings, Assistant(settings, chat_model=chat))
    url = web.launch(demo, settings, block=False)
    assert demo.warmup.done.wait(120)
    yield url.rstrip("/")
    demo.close()


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@pytest.mark.parametrize(
    "path",
    [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../etc/passwd",
        f"/gradio_api/file={PROJECT_ROOT}/pyproject.toml",
        f"/gradio_api/file={PROJECT_ROOT}/prompts/system.txt",
        "/file=/etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
    ],
)
def test_no_files_outside_the_page_are_served(server, path):
    status, body = fetch(server + path)
    assert status >= 400 or ("root:" not in body and "[project]" not in body and "Follow these rules" not in body)


def test_page_and_config_never_show_the_api_key_or_prompts(server, caplog):
    with caplog.at_level(logging.DEBUG):
        pages = [fetch(server + "/")[1], fetch(server + "/config")[1], fetch(server + "/gradio_api/info")[1]]
    for body in pages:
        assert SECRET not in body
        assert "Follow these rules" not in body  # the system prompt stays on the server
    assert SECRET not in caplog.text


def test_limits_are_documented():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    security = (PROJECT_ROOT / "SECURITY.md").read_text(encoding="utf-8")
    for doc in (readme, security):
        assert "2,000 characters" in doc and "500" in doc
    assert "127.0.0.1" in security and "ASSISTANT_AUTH" in security
