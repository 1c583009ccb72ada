"""The correct stage: a refusal that says what the article does say, checked by words and judged (fake models)."""

from __future__ import annotations

import pytest
from fakes import make

from assistant.answer.correct import checked_correction, parse_correction
from assistant.answering import NOT_IN_ARTICLE

BRIDGE = "The mayor opened the bridge in 1998."
GOVERNOR = "When did the governor open the bridge?"


def test_a_correction_is_read_from_its_one_form_and_its_common_variants():
    c = parse_correction("The article does not say that the governor opened it; it says the mayor opened it in 1998.")
    assert (c.premise, c.fact) == ("that the governor opened it", "the mayor opened it in 1998")
    assert c.text == "The article does not say that the governor opened it; it says the mayor opened it in 1998."
    assert c.statement == "The mayor opened it in 1998."
    variant = parse_correction(
        "The article does not mention the governor opening it, but it states that the mayor did."
    )
    assert (variant.premise, variant.fact) == ("the governor opening it", "the mayor did")
    assert variant.text == "The article does not say the governor opening it; it says the mayor did."


@pytest.mark.parametrize(
    "reply",
    [
        "The mayor opened the bridge in 1998.",
        "The article does not say.",
        "The article does not say that the governor opened it; it says the mayor did. He also built a road.",
        "The article does not say that ; it says the mayor opened it.",
    ],
)
def test_a_reply_not_of_the_form_is_no_correction(reply):
    assert parse_correction(reply) is None


def test_a_correction_whose_words_stand_in_the_sentence_passes_the_word_check():
    reply = "The article does not say that the governor opened the bridge; it says the mayor opened it in 1998."
    assert checked_correction(reply, GOVERNOR, BRIDGE) is not None


@pytest.mark.parametrize(
    "reply",
    [
        # what it says the article says puts the question's premise back, or changes the number
        "The article does not say that the governor opened the bridge; it says the governor opened it in 1998.",
        "The article does not say that the governor opened the bridge; it says the mayor opened it in 1997.",
        "The article does not say that the governor opened the bridge; it says the mayor did not open it.",
        # what it says the article does not say keeps nothing the question changed: it would deny the article
        "The article does not say that the mayor opened the bridge; it says the mayor opened it in 1998.",
        # ... or invents a name
        "The article does not say that Governor Smith opened the bridge; it says the mayor opened it in 1998.",
    ],
)
def test_a_correction_that_misstates_the_sentence_or_the_question_is_turned_down(reply):
    assert checked_correction(reply, GOVERNOR, BRIDGE) is None


def test_a_negated_question_needs_a_negated_premise():
    asked = "Who did not open the bridge?"
    kept = "The article does not say who did not open the bridge; it says the mayor opened it in 1998."
    dropped = "The article does not say that someone opened the bridge; it says the mayor opened it in 1998."
    assert checked_correction(kept, asked, BRIDGE) is not None
    assert checked_correction(dropped, asked, BRIDGE) is None


# ----- wiring: the stage after a refusal ----------------------------------------------------------------------------
ASKED = "Which general described the moment as NATO 3.0?"
DRAFT = "Eldridge Colby described the moment as NATO 3.0."
CORRECTION = (
    "The article does not say that a general described the moment as NATO 3.0; "
    "it says Under Secretary of War Eldridge Colby described it as the dawn of NATO 3.0."
)


def correcting(settings, embeddings, *replies):
    """An assistant with the fake model and the correction at its default (the engine tests turn it off)."""
    settings.verification.correct_premise = "near_miss"
    return make(settings, embeddings, *replies)


def test_a_refusal_near_a_sentence_says_what_the_sentence_says_once_judged(settings, embeddings):
    assistant = correcting(settings, embeddings, DRAFT, CORRECTION)
    assistant.chat_model.p_yes_seq = [0.3, 0.9, 0.2]  # the answer turned down; "it says" stated; the premise not
    answer = assistant.answer(ASKED)
    assert answer.abstained and answer.reason == "unverified" and answer.citations == []
    assert answer.text == CORRECTION.rstrip(".") + "."
    assert "Eldridge Colby" in answer.closest.quote  # the correction's citation: the sentence it restates
    correction_prompt = assistant.chat_model.prompts[-1][0]
    assert ASKED in correction_prompt and answer.closest.quote in correction_prompt and "Rutte" not in correction_prompt
    judged = assistant.chat_model.judgements[-2][0]  # the last: whether the paragraph states the premise
    assert "Under Secretary of War Eldridge Colby described it as the dawn of NATO 3.0." in judged
    assert [v.passed for v in answer.verdicts] == [False, True] and "correct" in answer.timings


def test_a_correction_the_judge_turns_down_leaves_the_bare_refusal(settings, embeddings):
    assistant = correcting(settings, embeddings, DRAFT, CORRECTION)
    assistant.chat_model.p_yes_seq = [0.3, 0.2]
    answer = assistant.answer(ASKED)
    assert answer.abstained and answer.text == NOT_IN_ARTICLE and answer.closest is not None
    assert [v.passed for v in answer.verdicts] == [False, False]


def test_the_refusal_is_streamed_before_its_correction_is_asked_for(settings, embeddings):
    assistant = correcting(settings, embeddings, DRAFT, CORRECTION)
    assistant.chat_model.p_yes_seq = [0.3, 0.9, 0.2]
    items = iter(assistant.stream(ASKED))
    assert next(items) == NOT_IN_ARTICLE
    asked_so_far = len(assistant.chat_model.prompts)
    *_, answer = items
    assert len(assistant.chat_model.prompts) == asked_so_far + 1 and answer.text.startswith(
        "The article does not say that"
    )


def test_a_failed_correction_never_turns_the_refusal_into_an_error(settings, embeddings):
    assistant = correcting(settings, embeddings, DRAFT)  # no reply left for the correction: the fake model raises
    assistant.chat_model.p_yes_seq = [0.3]
    answer = assistant.answer(ASKED)
    assert answer.abstained and answer.text == NOT_IN_ARTICLE and answer.reason == "unverified"


def test_the_correction_is_a_setting(settings, embeddings):
    assistant = make(settings, embeddings, DRAFT, CORRECTION)  # the engine tests' settings: the correction off
    assistant.chat_model.p_yes_seq = [0.3, 0.9]
    answer = assistant.answer(ASKED)
    assert answer.text == NOT_IN_ARTICLE and len(assistant.chat_model.prompts) == 1


DECLINE = "The article does not say."
ROMANIA = "How many soldiers are in the rotating brigade in Romania?"  # close to a passage: asked again, declined again


def test_by_default_only_a_near_miss_is_corrected(settings, embeddings):
    assistant = correcting(settings, embeddings, DECLINE, DECLINE)
    answer = assistant.answer(ROMANIA)
    assert answer.reason == "not_in_article" and answer.closest is not None  # a sentence is quoted, as before
    assert len(assistant.chat_model.prompts) == 2 and "correct" not in answer.timings  # but not corrected


def test_always_corrects_any_refusal_that_quotes_a_sentence(settings, embeddings):
    assistant = correcting(settings, embeddings, DECLINE, DECLINE)
    settings.verification.correct_premise = "always"
    answer = assistant.answer(ROMANIA)
    assert len(assistant.chat_model.prompts) == 3 and "correct" in answer.timings  # the correction was asked for
    assert answer.abstained and answer.text == NOT_IN_ARTICLE  # the fake had nothing to say: the refusal stands


def test_a_premise_another_sentence_of_the_article_states_is_never_denied():
    reply = "The article does not say that the governor opened the bridge; it says the mayor opened it in 1998."
    elsewhere = ["The mayor opened the bridge in 1998.", "Years later the governor opened the bridge again."]
    assert checked_correction(reply, GOVERNOR, BRIDGE, elsewhere) is None
    unrelated = ["The governor never opened the bridge.", "The governor opened a school."]  # negated, or other words
    assert checked_correction(reply, GOVERNOR, BRIDGE, unrelated) is not None


def test_a_remote_model_is_asked_for_the_correction_after_the_cached_article_prefix(settings, embeddings):
    # The fake model stands in for the server; only the prompt's shape matters.
    settings.generation.llm_backend = "openai"
    assistant = correcting(settings, embeddings, DRAFT, CORRECTION)
    assistant.chat_model.p_yes_seq = [0.3, 0.9, 0.2]
    answer = assistant.answer(ASKED)
    answer_system, correction_prompt = assistant.chat_model.prompts[0][0], assistant.chat_model.prompts[-1]
    # the server's one cached prefix stays the article's: the next question does not read it again
    assert correction_prompt[0] == answer_system and len(correction_prompt) == 2
    assert assistant.chat_model.judgements[-1][0] == answer_system
    assert answer.text.startswith("The article does not say that a general")


def test_a_correction_whose_premise_its_paragraph_states_is_not_shown(settings, embeddings):
    # a right answer the judge turned down: the paragraph does say what the correction would deny
    assistant = correcting(settings, embeddings, DRAFT, CORRECTION)
    assistant.chat_model.p_yes_seq = [0.3, 0.9, 0.8]  # the answer refused; "it says" stated; the premise stated too
    answer = assistant.answer(ASKED)
    assert answer.abstained and answer.text == NOT_IN_ARTICLE and answer.closest is not None
    premise_judged = assistant.chat_model.judgements[-1][0]
    assert "A general described the moment as NATO 3.0." in premise_judged and answer.closest.text in premise_judged
