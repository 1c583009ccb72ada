"""Integration tests with the real default models: answers are right, cited to the right paragraph, or refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from assistant.answering import NOT_IN_ARTICLE

pytestmark = pytest.mark.real

# (question, a pattern the answer must match, the paragraph a citation must point at)
ANSWERABLE = [
    ("Who described the moment as NATO 3.0?", r"Colby", "p2"),
    ("Which countries will exceed the new spending target?", r"Denmark.*Poland|Poland.*Denmark", "p5"),
    ("What is the newly agreed defence spending target?", r"3\.5\s?%", "p5"),
    ("Where did NATO's latest gathering take place?", r"Brussels", "p1"),
    ("Which region does the United States want to focus on?", r"Indo-Pacific", "p3"),
    ("Who is the NATO Secretary General?", r"Rutte", "p4"),
    ("What is Germany's defence minister called?", r"Pistorius", "p7"),
    ("Who is France's representative quoted in the article?", r"Vautrin", "p7"),
    ("What did Romania's Radu-Dinel Miruță call for?", r"(defen[cs]e )?production", "p8"),
    ("What did the Dutch defence minister highlight?", r"transparency", "p8"),
    ("What will the US not replace in Romania?", r"brigade", "p9"),
    ("Which post should remain held by an American?", r"Supreme Allied Commander", "p10"),
    ("How large a share of NATO's combined economic power does the American economy account for?", r"half", "p10"),
    ("Where has NATO increased its vigilance?", r"Arctic", "p6"),
    ("Whose pressure led to the higher spending benchmark?", r"Trump", "p5"),
    ("What do Europeans say they have begun strengthening?", r"European pillar", "p7"),
]

REFUSED = [
    "What is the capital of Australia?",
    "What did Italy's defence minister say at the meeting?",
    "On what date did the Brussels meeting take place?",
    "How old is Eldridge Colby?",
    "How much does Germany spend on defence as a share of GDP?",
    "Who won the football World Cup in 2022?",
]


@pytest.mark.parametrize(("question", "pattern", "paragraph"), ANSWERABLE)
def test_answers_are_right_and_cited(assistant, question, pattern, paragraph):
    answer = assistant.answer(question)
    assert not answer.abstained, f"refused: {answer.draft!r}"
    assert re.search(pattern, answer.text, re.I), answer.text
    cited = {c.passage_id for c in answer.citations}
    assert f"nato-3-0:{paragraph}" in cited, (answer.text, cited)
    for c in answer.citations:
        assert f"[{c.index}]" in answer.text
        assert c.quote in c.text
    # The matched fact is inside a cited passage: the citation really supports it.
    fact = re.search(pattern, answer.text, re.I).group()
    cited_text = " ".join(c.text for c in answer.citations).lower()
    for word in re.findall(r"[\w.%-]{3,}", fact):
        assert word.lower() in cited_text, (word, answer.citations)


@pytest.mark.parametrize("question", REFUSED)
def test_questions_outside_the_article_are_refused(assistant, question):
    answer = assistant.answer(question)
    assert answer.abstained, answer.text
    # the bare refusal, or one that says what the nearest sentence says instead (correct.py)
    assert answer.text.startswith(NOT_IN_ARTICLE.rstrip(".")) and answer.citations == []


def test_follow_up_uses_the_conversation(assistant):
    first = assistant.answer("Who described the moment as NATO 3.0?")
    history = [
        {"role": "user", "content": "Who described the moment as NATO 3.0?"},
        {"role": "assistant", "content": first.text},
    ]
    follow = assistant.answer("What is his job title?", history)
    assert not follow.abstained, follow.draft
    assert re.search(r"Under Secretary of War", follow.text), follow.text
    # Rewritten with the name, or carrying the earlier question as context.
    assert "Colby" in follow.standalone_question or "NATO 3.0" in follow.standalone_question
    assert follow.citations[0].passage_id == "nato-3-0:p2"


def test_chain_batch_answers_three_questions_at_once(assistant):
    # The default batch runs the three on threads of their own: the shared model must serve them one at a time.
    (q1, p1, _), (q2, p2, _) = ANSWERABLE[0], ANSWERABLE[5]
    answers = assistant.runnable().batch([{"question": q1}, {"question": REFUSED[0]}, q2])
    assert [a.question for a in answers] == [q1, REFUSED[0], q2]
    assert re.search(p1, answers[0].text) and answers[0].citations
    assert answers[1].abstained and answers[1].text != ""
    assert re.search(p2, answers[2].text) and answers[2].citations


def _fresh_ask(*args: str) -> subprocess.CompletedProcess:
    """`assistant ask` in a fresh process, reporting at exit whether it imported torch."""
    code = (
        "import sys; from assistant.cli import main; rc = main(sys.argv[1:]); "
        "print('imported torch:', 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)"
    )
    return subprocess.run([sys.executable, "-c", code, "ask", *args], capture_output=True, text=True, timeout=600)


def test_a_fresh_assistant_ask_answers_with_a_citation_without_importing_torch():
    done = _fresh_ask("--json", "Who described the moment as NATO 3.0?")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert re.search("Colby", answer["text"]) and answer["citations"][0]["passage_id"].endswith(":p2")
    assert "imported torch: False" in done.stderr


def test_a_fresh_assistant_ask_with_an_unknown_scope_says_which_exist_while_the_model_was_loading():
    done = _fresh_ask("--scope", "no-such-article", "Who spoke?")
    assert done.returncode == 2
    assert "There is no article 'no-such-article'" in done.stderr and "Traceback" not in done.stderr
