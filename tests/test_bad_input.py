"""The bad-input set (tests/data/bad_inputs.yaml) through the Python API with the real models: an answer or a clear
error, in bounded time, and the next normal question still works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from assistant.answer.guard import InvalidQuestion
from assistant.answering import Answer

CASES = yaml.safe_load((Path(__file__).parent / "data" / "bad_inputs.yaml").read_text(encoding="utf-8"))["cases"]
TIME_LIMIT = 60  # seconds per case on a busy 2-core machine; a hang would take forever


def materialize(value):
    """Expand the file's generators ({repeat: …}, {generate: {turns: N}}) into real values."""
    if isinstance(value, dict) and set(value) == {"repeat"}:
        return value["repeat"]["text"] * value["repeat"]["times"]
    if isinstance(value, dict) and set(value) == {"generate"}:
        turns = []
        for i in range(value["generate"]["turns"]):
            turns += [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
        return turns
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


def question_of(case):
    if case.get("none"):
        return None
    if "number" in case:
        return case["number"]
    if "repeat" in case:
        return materialize({"repeat": case["repeat"]})
    if "bytes_hex" in case:
        return bytes.fromhex(case["bytes_hex"].replace(" ", ""))
    if "surrogate" in case:
        text = case["surrogate"]
        return text[:6] + "\ud800" + text[6:]
    return case["question"]


def test_the_set_is_large_and_well_formed():
    assert len(CASES) >= 30
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert all(c["expect"] in {"error", "answer", "refusal", "any"} for c in CASES)


@pytest.mark.real
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gets_an_answer_or_a_clear_error(assistant, case):
    started = time.perf_counter()
    history = materialize(case.get("history"))
    try:
        result = assistant.answer(question_of(case), history)
    except InvalidQuestion as exc:
        result = exc
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_LIMIT, f"{case['id']} took {elapsed:.0f} s"
    if case["expect"] == "error":
        assert isinstance(result, InvalidQuestion), f"{case['id']}: expected an error, got {result!r}"
        assert len(str(result)) > 20  # a sentence that says what to change, not a bare code
    else:
        assert isinstance(result, Answer), f"{case['id']}: {result}"
        assert result.text
        if case["expect"] == "answer":
            assert not result.abstained, f"{case['id']}: refused: {result.draft!r}"
            assert result.citations
        if case["expect"] == "refusal":
            assert result.abstained
        for c in result.citations:
            assert f"[{c.index}]" in result.text
    # The assistant still works after it.
    after = assistant.answer("Who is the NATO Secretary General?")
    assert not after.abstained and "Rutte" in after.text
