"""Settings in sections: every ASSISTANT_<FIELD> variable and flat keyword still reaches its field."""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr, ValidationError

from assistant.settings import FIELD_SECTIONS, PROJECT_ROOT, SECTIONS, Settings

ALL_FIELDS = sorted(FIELD_SECTIONS)


def env_name(field: str) -> str:
    return "ASSISTANT_" + field.upper()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No ASSISTANT_ variable of the caller's leaks into these tests."""
    for name in ALL_FIELDS:
        monkeypatch.delenv(env_name(name), raising=False)


def field_info(name: str):
    return SECTIONS[FIELD_SECTIONS[name]].model_fields[name]


def example(name: str, tmp_path: Path) -> tuple[str, Any]:
    """A valid value for the field other than its default: (as an environment variable, as Settings holds it)."""
    info = field_info(name)
    default = info.get_default(call_default_factory=True)
    annotation = info.annotation
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1:
        annotation = options[0]  # X | None: a value of X
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return ("false", False) if default else ("true", True)
    if annotation is int:
        value = 2 if default is None else default + 1
        return str(value), value
    if annotation is float:
        value = default / 2 if default else 0.5
        return repr(value), value
    if annotation is str:
        value = "user:secret" if name == "auth" else f"changed-{name}"
        return value, value
    if annotation is Path:
        return str(tmp_path / name), tmp_path / name
    if annotation is SecretStr:
        return "a-secret", "a-secret"
    if origin is Literal:
        value = next(v for v in typing.get_args(annotation) if v != default)
        return value, value
    if origin is dict:
        return json.dumps({"repeat_penalty": 1.0}), {"repeat_penalty": 1.0}
    if origin is tuple:
        return "[3, 5]", (3, 5)
    raise AssertionError(f"no example value for {name}: {info.annotation}")  # a new type: teach example() about it


def held(settings: Settings, name: str) -> Any:
    value = getattr(getattr(settings, FIELD_SECTIONS[name]), name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_sections_and_fields_have_distinct_names():
    assert set(SECTIONS) == set(Settings.model_fields)  # settings-codemod: ok (the sections)
    assert not set(SECTIONS) & set(FIELD_SECTIONS)
    assert len(ALL_FIELDS) == sum(len(model.model_fields) for model in SECTIONS.values())  # no field in two sections


@pytest.mark.parametrize("name", ALL_FIELDS)
def test_every_environment_variable_reaches_its_field(name, monkeypatch, tmp_path):
    raw, expected = example(name, tmp_path)
    assert held(Settings(), name) != expected
    monkeypatch.setenv(env_name(name), raw)
    settings = Settings()
    assert held(settings, name) == expected
    others = {k: v for k, v in settings.flat_dump().items() if k != name}
    assert others == {k: v for k, v in Settings().flat_dump().items() if k != name}  # and nothing else


@pytest.mark.parametrize("name", ALL_FIELDS)
def test_every_flat_keyword_reaches_its_field(name, tmp_path):
    _, expected = example(name, tmp_path)
    assert held(Settings(**{name: expected}), name) == expected
    assert held(Settings(**{FIELD_SECTIONS[name]: {name: expected}}), name) == expected
    assert held(Settings().updated(**{name: expected}), name) == expected


def test_nested_keywords_and_their_sections():
    settings = Settings(retrieval={"top_k": 3}, web={"port": 9000}, verify=False)
    assert settings.retrieval.top_k == 3 and settings.web.port == 9000 and settings.verification.verify is False
    assert settings.retrieval.max_distance == Settings().retrieval.max_distance  # the section's other fields: defaults
    assert Settings(retrieval=settings.retrieval).retrieval.top_k == 3


def test_keywords_win_over_the_environment_and_sections_merge(monkeypatch):
    monkeypatch.setenv("ASSISTANT_TOP_K", "7")
    monkeypatch.setenv("ASSISTANT_MAX_DISTANCE", "0.5")
    assert Settings().retrieval.top_k == 7
    assert Settings(top_k=3).retrieval.top_k == 3
    nested = Settings(retrieval={"top_k": 2})
    assert nested.retrieval.top_k == 2 and nested.retrieval.max_distance == 0.5
    assert Settings(top_k=3, retrieval={"top_k": 2}).retrieval.top_k == 3  # the flat name wins over its section


def test_a_section_has_no_variable_of_its_own(monkeypatch):
    monkeypatch.setenv("ASSISTANT_RETRIEVAL", '{"top_k": 9}')
    monkeypatch.setenv("ASSISTANT_WEB", '{"port": 1}')
    settings = Settings()
    assert settings.retrieval.top_k == 4 and settings.web.port == 7860


def test_an_invalid_value_names_the_field(monkeypatch):
    with pytest.raises(ValidationError, match=r"retrieval\.top_k"):
        Settings(top_k=0)
    with pytest.raises(ValidationError, match=r"verification\.verify_threshold"):
        Settings(verification={"verify_threshold": 2})
    with pytest.raises(ValidationError, match=r"generation\.llm_backend"):
        Settings().updated(llm_backend="nope")
    monkeypatch.setenv("ASSISTANT_PORT", "not-a-port")
    with pytest.raises(ValidationError, match=r"web\.port"):
        Settings()


def test_assignment_is_checked():
    settings = Settings()
    settings.retrieval.top_k = 5
    assert settings.retrieval.top_k == 5
    with pytest.raises(ValidationError, match="top_k"):
        settings.retrieval.top_k = 0
    with pytest.raises(ValidationError, match="top_k"):
        settings.retrieval = {"top_k": 0}


def test_updated_is_a_checked_copy():
    settings = Settings(top_k=3)
    copy = settings.updated({"verify": False}, retrieval={"max_distance": 0.5})
    assert copy.verification.verify is False and copy.retrieval.max_distance == 0.5 and copy.retrieval.top_k == 3
    assert settings.verification.verify is True and settings.retrieval.max_distance == 0.78  # the original stays
    with pytest.raises(ValueError, match="no_such_setting"):
        settings.updated(no_such_setting=1)


def test_the_api_key_stays_secret():
    settings = Settings(llm_api_key="hunter2")
    assert isinstance(settings.generation.llm_api_key, SecretStr)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.flat_dump(mode="json"))
    assert settings.updated(top_k=2).generation.llm_api_key.get_secret_value() == "hunter2"


def test_flat_dump_round_trips():
    settings = Settings(top_k=3, auth="a:b", llm_extra_body={"x": 1})
    flat = settings.flat_dump()
    assert set(flat) == set(FIELD_SECTIONS) and flat["top_k"] == 3
    assert Settings(**flat) == settings
    assert settings.web.auth_pairs() == [("a", "b")]


def test_the_readme_names_only_variables_that_exist():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"ASSISTANT_([A-Z0-9_]+)", readme))
    assert named, "the README lists no ASSISTANT_ variable"
    unknown = sorted(f"ASSISTANT_{n}" for n in named if n.lower() not in FIELD_SECTIONS)
    assert not unknown, f"README names variables no setting reads: {unknown}"
