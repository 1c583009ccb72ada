"""The prompt templates: loaded from prompts/, their variables checked (answer/generation.py)."""

from __future__ import annotations

import pytest

from assistant.answer.generation import (
    OPTIONAL_VARIABLES,
    PROMPT_VARIABLES,
    PromptError,
    load_prompt,
    load_prompts,
)
from assistant.settings import PROJECT_ROOT


# ----- prompts -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PROMPT_VARIABLES))
def test_prompt_templates_have_their_placeholders(name):
    template = load_prompt(PROJECT_ROOT / "prompts", name)
    used = set(template.input_variables)
    assert PROMPT_VARIABLES[name] <= used <= PROMPT_VARIABLES[name] | OPTIONAL_VARIABLES.get(name, set())


def test_prompts_are_chat_prompt_templates():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.prompts import ChatPromptTemplate

    prompts = load_prompts(PROJECT_ROOT / "prompts")
    assert isinstance(prompts.answer, ChatPromptTemplate)
    assert set(prompts.answer.input_variables) == {"title", "context", "question"}  # history is optional
    turns = [{"role": "user", "content": "Who spoke?"}, {"role": "assistant", "content": "Ann spoke [1]."}]
    messages = prompts.answer.format_messages(
        title="T", context="Ann spoke {loudly}.", question="Why?", history=prompts.history(turns)
    )
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert "Ann spoke {loudly}." in messages[0].content  # the article's braces are text, not placeholders
    assert messages[2].content == "Ann spoke." and messages[-1].content.endswith("Why?")


@pytest.mark.parametrize("text", ["Q: {query}", "Q: {question", "No question at all"])
def test_prompt_with_wrong_placeholder_is_refused(tmp_path, text):
    (tmp_path / "question.txt").write_text(text)
    with pytest.raises(PromptError, match="question"):
        load_prompt(tmp_path, "question")
