"""The fitted decision: its file, its refit, and the early refusal, with fake hidden states and fake logprobs.

Wiring only: the chat model is a fake that hands back made-up hidden states (as LlamaCppChat does with tapped
layers) and scripted judgements; the real model's states are read in test_generation.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from fakes import RecordingModel
from langchain_core.messages import AIMessage

from assistant.answer.decision import (
    SIGNALS,
    Decision,
    DecisionModel,
    DecisionModelError,
    Linear,
    Probe,
    load_decision,
    signals,
    tapped_layers,
)
from assistant.answer.question_words import Unmatched
from assistant.answering import Assistant
from benchmarks.decision import Judged, Run, best_threshold, figures, fit_linear, outcome
from benchmarks.squad_report import interval

LAYER = 7
ANSWER = "US Under Secretary of War Eldridge Colby described the moment as the dawn of NATO 3.0."
QUESTION = "Who described the moment as NATO 3.0?"


def linear(names, weights, intercept=0.0) -> Linear:
    return Linear(
        names=names, means=[0.0] * len(names), scales=[1.0] * len(names), weights=weights, intercept=intercept
    )


def model(**changes) -> DecisionModel:
    """A made-up decision: the fallback trusts P(yes); the combiner adds a question probe on one coordinate."""
    base = {
        "model_sha256": "0" * 64,
        "fitted_on": ["dev-article"],
        "data": "made up",
        "command": "python -m benchmarks.decision fit",
        "combiner": linear(["logit_yes", "probe_question"], [1.0, 1.0]),
        "fallback": linear(["logit_yes"], [1.0]),
        "threshold": 0.5,
        "fallback_threshold": 0.5,
        "probes": [Probe(place="question", layer=LAYER, model=Linear(names=[], weights=[4.0, 0.0], intercept=0.0))],
        "early": 0.2,
    }
    return DecisionModel(**{**base, **changes})


# ----- the file ------------------------------------------------------------------------------------------------
def test_the_file_round_trips_and_a_damaged_one_says_what_to_do(tmp_path):
    path = tmp_path / "decision.json"
    path.write_text(model().model_dump_json())
    assert load_decision(path) == model()
    assert load_decision(path).layers == (LAYER,)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DecisionModelError, match="ASSISTANT_DECISION=false"):
        load_decision(path)
    with pytest.raises(DecisionModelError, match="Restore the file"):
        load_decision(tmp_path / "missing.json")


def test_the_header_is_checked():
    with pytest.raises(ValueError, match="one length"):
        model(fallback=Linear(names=["logit_yes"], means=[0.0], scales=[1.0], weights=[1.0, 2.0], intercept=0.0))
    with pytest.raises(ValueError, match="one length"):
        model(fallback=Linear(names=["logit_yes", "type_fit"], weights=[1.0], intercept=0.0))
    with pytest.raises(ValueError, match="positive"):
        model(fallback=Linear(names=["logit_yes"], means=[0.0], scales=[0.0], weights=[1.0], intercept=0.0))
    with pytest.raises(ValueError):
        model(threshold=1.5)


def test_the_shipped_file_is_fitted_for_the_default_model_and_reports_on_test_articles():
    from assistant.settings import DEFAULT_MODEL_SHA256, Settings

    shipped = load_decision(Settings().deciding.decision_model)
    assert shipped.model_sha256 == DEFAULT_MODEL_SHA256
    assert shipped.metrics["test_questions"] >= 200 and len(shipped.reported_on) >= 2
    assert set(shipped.fallback.names) <= set(SIGNALS)


def test_an_article_both_fitted_on_and_reported_on_is_refused():
    with pytest.raises(ValueError, match="held out"):
        model(fitted_on=["a", "b"], reported_on=["b"])


# ----- the decision at run time --------------------------------------------------------------------------------
def test_probes_decide_with_states_and_the_fallback_without():
    decision = Decision(model())
    values = {"logit_yes": 0.0}
    answerable = {"question": {LAYER: [1.0, 0.0]}}
    unanswerable = {"question": {LAYER: [-1.0, 0.0]}}
    assert decision.probability(values, answerable)[0] > 0.9
    assert decision.probability(values, unanswerable)[0] < 0.1
    assert decision.probability(values, None)[0] == pytest.approx(0.5)  # a remote server: no states
    assert Decision(model(), probes=False).probability(values, answerable)[0] == pytest.approx(0.5)
    assert decision.refuse_early(unanswerable["question"]) and not decision.refuse_early(answerable["question"])
    assert not decision.refuse_early(None)


def test_a_probe_fitted_for_another_model_file_is_not_read(tmp_path, caplog):
    from assistant.settings import Settings

    path = tmp_path / "decision.json"
    path.write_text(model().model_dump_json())
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")
    s = Settings(decision=True, decision_model=path, llm_model_path=gguf, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert tapped_layers(s, gguf) == ()
    assert "not used" in caplog.text and "fitted for the model file" in caplog.text
    assert tapped_layers(s.updated(probe_layers=(3, 5)), gguf) == (3, 5)
    assert tapped_layers(s.updated(probes=False), gguf) == ()


def test_signals_name_every_input_the_decision_may_weigh():
    values = signals(
        QUESTION, ANSWER, 0.9, Unmatched(names=("Holm",), negation=True), [("a", 0.3), ("b", 0.5)], ("b",), 0.2
    )
    assert set(values) == set(SIGNALS)
    assert values["unmatched_names"] == 1.0 and values["negation_mismatch"] == 1.0
    assert values["cited_rank"] == 1.0 and values["best_distance"] == 0.3 and values["type_fit"] == 1.0
    assert values["logit_yes"] > 2 > values["logit_claim"]
    when = signals("When did he describe it?", "He called it a turning point.", 0.9, Unmatched(), [], ())
    assert when["type_fit"] == 0.0 and when["cited_rank"] > 4


# ----- the refit -----------------------------------------------------------------------------------------------
def runs_of(rows) -> list[Run]:
    """Runs from (answerable, [(label, logit_yes), ...]) rows."""
    runs = []
    for i, (answerable, sentences) in enumerate(rows):
        judged = [Judged(k, f"s{k}", label, {"logit_yes": x}) for k, (label, x) in enumerate(sentences)]
        runs.append(Run(f"q{i}", "a", "answerable" if answerable else "unanswerable", "", judged))
    return runs


def test_outcomes_and_the_threshold_are_read_from_the_runs_as_they_would_end():
    runs = runs_of([(True, [(1, 3.0)]), (True, [(0, 2.0), (1, 1.5)]), (False, [(0, 0.5)]), (False, []), (True, [])])
    passes_all = lambda j: True  # noqa: E731
    assert [outcome(r, passes_all) for r in runs] == ["right", "right", "wrong", "refused", "refused"]
    f = figures(runs, lambda j: j.values["logit_yes"] > 1.0)
    assert f["answerable_right"] == pytest.approx(2 / 3) and f["unanswerable_refused"] == 1.0
    assert f["false_refusals"] == pytest.approx(1 / 3)
    fitted = fit_linear([[3.0], [2.0], [1.5], [0.5]], [1, 0, 1, 0], ["logit_yes"])
    threshold = best_threshold(runs, fitted)
    assert figures(runs, lambda j: fitted.probability(j.values) >= threshold)["unanswerable_refused"] == 1.0
    vector = fit_linear([[0.0, 5.0], [1.0, 5.0], [2.0, 6.0], [3.0, 6.0]], [0, 0, 1, 1], [])
    assert vector.names == [] and vector.means == [] and vector.logit([3.0, 6.0]) > 0 > vector.logit([0.0, 5.0])
    low, high = interval(0.8, 200)
    assert 0.73 < low < 0.8 < high < 0.86


# ----- the pipeline with fake states ---------------------------------------------------------------------------
class StatesModel(RecordingModel):
    """A fake chat model that hands back a made-up hidden state with each streamed piece, as LlamaCppChat does."""

    state: list = [1.0, 0.0]

    @property
    def reads_hidden_states(self) -> bool:
        return True

    def _stream(self, messages, stop=None, run_manager=None, hidden_states=None, **kwargs):
        for chunk in super()._stream(messages, stop, run_manager, **kwargs):
            if hidden_states is not None:
                hidden_states.append({LAYER: list(self.state)})
            yield chunk
        if hidden_states is not None:
            hidden_states.append({LAYER: list(self.state)})


def bot(settings, embeddings, tmp_path, state, **changes):
    path = tmp_path / "decision.json"
    path.write_text(model().model_dump_json())
    s = settings.updated({"decision": True, "decision_model": path, "early_refusal": True, **changes})
    chat = StatesModel(messages=iter([AIMessage(ANSWER)]), prompts=[], judgements=[], p_yes=0.9, state=state)
    return Assistant(s, chat_model=chat, embeddings=embeddings), chat


def test_a_question_the_probe_finds_unanswerable_is_refused_before_any_judgement(settings, embeddings, tmp_path):
    assistant, chat = bot(settings, embeddings, tmp_path, [-1.0, 0.0])
    answer = assistant.answer(QUESTION)
    assert answer.abstained and answer.reason == "not_in_article"
    assert chat.judgements == [] and answer.verdicts == []
    assert answer.closest is not None  # the nearest sentence is still quoted


def test_a_question_the_probe_finds_answerable_is_answered_and_the_decision_scores_it(settings, embeddings, tmp_path):
    assistant, chat = bot(settings, embeddings, tmp_path, [1.0, 0.0])
    answer = assistant.answer(QUESTION)
    assert not answer.abstained and "Colby" in answer.text
    (verdict,) = answer.verdicts
    assert verdict.score is not None and verdict.score > 0.9 and verdict.passed
    assert verdict.states["question"] == {LAYER: [1.0, 0.0]} and verdict.states["answer"] == {LAYER: [1.0, 0.0]}
    assert json.loads(json.dumps(answer.to_dict()))["verdicts"][0]["signals"]["logit_yes"] > 2


def test_early_refusal_off_lets_the_answer_through_to_the_decision(settings, embeddings, tmp_path):
    assistant, chat = bot(settings, embeddings, tmp_path, [-1.0, 0.0], early_refusal=False)
    answer = assistant.answer(QUESTION)
    assert chat.judgements  # judged, then refused by the decision: P(yes) 0.9 and a probe far below
    assert answer.abstained and answer.reason == "unverified"
    assert answer.verdicts[0].score < 0.5


def test_question_words_drop_a_sentence_that_takes_a_word_the_passage_lacks(settings, embeddings):
    from fakes import fake

    s = settings.updated(question_words=True)
    trap = "Who described the moment as NATO 4.0?"
    chat = fake("US Under Secretary of War Eldridge Colby described the moment as NATO 4.0.")
    answer = Assistant(s, chat_model=chat, embeddings=embeddings).answer(trap)
    assert answer.abstained
    assert chat.judgements == []  # settled by words: no judgement
    assert answer.closest is not None and "3.0" in answer.closest.quote


# ----- the shipped decision on the real models ---------------------------------------------------------------------
@pytest.mark.real
@pytest.mark.parametrize(
    ("asked", "trap"),
    [
        # an opposite swapped in ("exceed" -> "fall short of"), a negation flipped ("will not replace" -> "will")
        (
            "Which countries are set to exceed the 3.5% target?",
            "Which countries are set to fall short of the 3.5% target?",
        ),
        (
            "Why will the US not replace the rotating infantry brigade?",
            "Why will the US replace the rotating infantry brigade?",
        ),
    ],
)
def test_the_shipped_decision_scores_a_real_answer_above_its_trap(assistant, asked, trap):
    """The real pipeline's own signals for the answer to a question and to its trap twin, weighed by the shipped
    file: the answer passes the decision's threshold, the trap's answer does not, and the trap is refused."""
    decision = Decision(load_decision(assistant.settings.deciding.decision_model))

    def scored(question):  # (answer, [(probability, threshold)] of its judged sentences)
        answer = assistant.answer(question)
        return answer, [decision.probability(v.signals, v.states) for v in answer.verdicts if v.signals]

    answered, right = scored(asked)
    refused, wrong = scored(trap)
    assert not answered.abstained and answered.citations
    assert right and any(p >= t for p, t in right)
    assert refused.abstained and not refused.citations
    assert all(p < t for p, t in wrong) and (not wrong or max(wrong) < max(right))
