"""Unit tests of the verification stage: reading yes/no probabilities, and its wiring into the engine (fake model)."""

from __future__ import annotations

import math

import pytest
from fakes import fake, judgement, make
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from assistant.answer.judge import Verifier, text_verdict, yes_probability
from assistant.answering import NOT_IN_ARTICLE


def logprobs(*pairs: tuple[str, float]) -> dict:
    top = [{"token": t, "logprob": math.log(p)} for t, p in pairs]
    return {"content": [{**top[0], "top_logprobs": top}]}


def test_yes_probability_weighs_yes_against_no():
    assert yes_probability(logprobs(("Yes", 0.6), ("No", 0.2))) == pytest.approx(0.75)
    # Spellings of one word add up; other tokens do not count.
    assert yes_probability(logprobs(("Yes", 0.3), (" yes", 0.3), ("NO", 0.2), ("The", 0.2))) == pytest.approx(0.75)


@pytest.mark.parametrize("data", [None, {}, {"content": []}, logprobs(("The", 0.9), ("It", 0.1))])
def test_yes_probability_is_none_without_a_yes_or_no(data):
    assert yes_probability(data) is None


def test_worded_replies_count_yes_as_one_and_anything_else_as_zero():
    assert text_verdict("Yes, it does.") == 1.0
    assert text_verdict("no") == 0.0
    assert text_verdict("The evidence says so") == 0.0
    assert text_verdict("") == 0.0


class Judge(GenericFakeChatModel):
    """Answers every judgement with a fixed P(yes), remembering the calls' options."""

    calls: list = []
    p_yes: float = 0.9

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls.append(kwargs)
        return judgement(self.p_yes)


class WordsOnly(GenericFakeChatModel):
    """A backend that rejects logprobs options and only answers in words."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if "logprobs" in kwargs:
            raise TypeError("unexpected keyword argument 'logprobs'")
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_verifier_passes_at_or_above_the_threshold():
    template = "{evidence} | {question} | {answer}"
    judge = Judge(messages=iter([]), calls=[], p_yes=0.7)
    verdict = Verifier(judge, template, threshold=0.7).judge("Who won?", "Ann won.", ["Ann won the race."])
    assert verdict.passed and verdict.p_yes == pytest.approx(0.7) and verdict.source == "logprobs"
    assert judge.calls[0]["logprobs"] is True and judge.calls[0]["max_tokens"] == 1
    verdict = Verifier(judge, template, threshold=0.71).judge("Who won?", "Ann won.", ["Ann won the race."])
    assert not verdict.passed


def test_verifier_falls_back_to_words_without_logprobs():
    model = WordsOnly(messages=iter([AIMessage("No."), AIMessage("Yes")]))
    verifier = Verifier(model, "{evidence} {question} {answer}", threshold=0.5)
    first = verifier.judge("Q?", "A.", ["E."])
    second = verifier.judge("Q?", "A.", ["E."], context="S")
    assert (first.passed, first.p_yes, first.source) == (False, 0.0, "text")
    assert (second.passed, second.p_yes) == (True, 1.0)


def test_each_answer_sentence_is_judged_against_its_cited_sentences_with_the_question(settings, embeddings):
    assistant = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.")
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert not answer.abstained and [v.passed for v in answer.verdicts] == [True]
    # The in-process model judges the evidence alone: no article before it.
    ((prompt,),) = assistant.chat_model.judgements
    assert "Who described the moment as NATO 3.0?" in prompt and "Eldridge Colby described the moment" in prompt
    # The cited sentence, not the whole paragraph: the paragraph's last sentence is not shown.
    assert "Europe should provide the majority of forces" not in prompt
    assert answer.verdicts[0].evidence == (answer.citations[0].quote,)


def test_a_remote_model_judges_after_the_cached_article_prefix(settings, embeddings):
    # The fake model stands in for the server; only the prompt's shape matters.
    settings.generation.llm_backend = "openai"
    assistant = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.")
    assistant.answer("Who described the moment as NATO 3.0?")
    (system, prompt), (answer_system, _) = assistant.chat_model.judgements[0], assistant.chat_model.prompts[0]
    assert system == answer_system and "Eldridge Colby described the moment" in prompt


def test_a_sentence_that_fails_verification_is_dropped(settings, embeddings):
    assistant = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.", p_yes=0.3)
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert answer.abstained and answer.text == NOT_IN_ARTICLE and answer.reason == "unverified"
    assert answer.citations == [] and answer.verdicts[0].p_yes == pytest.approx(0.3)
    assert "verify" in answer.timings


def test_only_the_verified_sentences_of_an_answer_are_kept(settings, embeddings):
    model = fake(
        "Mark Rutte described the meeting as one of the most pivotal in his experience. "
        "Rutte pointed to a genuine change in mindset."
    )
    model.p_yes_seq = [0.9, 0.1]
    assistant = make(settings, embeddings)
    assistant._chat_model = model
    answer = assistant.answer("How did Rutte describe the meeting?")
    assert not answer.abstained and "pivotal" in answer.text and "mindset" not in answer.text
    assert [v.passed for v in answer.verdicts] == [True, False]


def test_the_threshold_is_a_setting(settings, embeddings):
    settings.verification.verify_threshold = 0.99
    answer = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.").answer(
        "Who described the moment as NATO 3.0?"
    )
    assert answer.abstained and answer.reason == "unverified"


def test_verification_can_be_turned_off(settings, embeddings):
    settings.verification.verify = False
    assistant = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.", p_yes=0.01)
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert not answer.abstained and assistant.chat_model.judgements == [] and answer.verdicts == []


def test_a_declined_close_question_is_asked_again_with_only_the_best_passages(settings, embeddings):
    assistant = make(
        settings, embeddings, "The article does not say.", "Eldridge Colby described the moment as NATO 3.0."
    )
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert not answer.abstained and "Colby" in answer.text and "retry" in answer.timings
    first, retry = assistant.chat_model.prompts
    assert len(retry[0]) < len(first[0])  # a short context: the best passages, not the whole article
    assert "Eldridge Colby" in retry[0]
    assert answer.verdicts and answer.verdicts[0].passed  # the retry's answer is verified too


def test_an_answer_the_word_check_drops_whole_is_asked_again_with_the_best_passages(settings, embeddings):
    made_up = "Eldridge Colby described the moment as NATO 3.0 in 1999."  # a year no passage holds
    settings.verification.retry_unsupported = True
    assistant = make(settings, embeddings, made_up, "Eldridge Colby described the moment as NATO 3.0.")
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert not answer.abstained and "1999" not in answer.text and "retry" in answer.timings
    assert len(assistant.chat_model.prompts) == 2 and answer.verdicts[0].passed
    # off (the default), the word check's refusal stands
    settings.verification.retry_unsupported = False
    assistant = make(settings, embeddings, made_up, "Eldridge Colby described the moment as NATO 3.0.")
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert answer.abstained and answer.reason == "unsupported" and len(assistant.chat_model.prompts) == 1


def test_an_answer_the_judge_turned_down_is_not_asked_again(settings, embeddings):
    settings.verification.retry_unsupported = True
    assistant = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.", p_yes=0.2)
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert answer.abstained and answer.reason == "unverified" and len(assistant.chat_model.prompts) == 1


def test_a_declined_far_question_is_not_retried(settings, embeddings):
    settings.verification.retry_distance = 0.0
    assistant = make(settings, embeddings, "The article does not say.")
    answer = assistant.answer("Who described the moment as NATO 3.0?")
    assert answer.abstained and answer.reason == "not_in_article" and len(assistant.chat_model.prompts) == 1
