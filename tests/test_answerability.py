"""Unit tests of the learned verifier: its signals, its coefficients file, the refit, and its wiring (fake logprobs)."""

from __future__ import annotations

import json
import math

import pytest
from fakes import fake

from assistant.answerability import (
    FEATURES,
    VerifierModel,
    VerifierModelError,
    load_verifier_model,
    log_odds,
    signals,
    type_fit,
)
from assistant.settings import Settings
from assistant.verify import Verifier
from benchmarks.answerability import best_threshold, evaluate, fit_model, operating_point, sentence_around

EVIDENCE = "The bridge was opened by the mayor, Anna Berg, in 1998, after six years of work."


def test_signals_see_a_swapped_name():
    right = signals("Who opened the bridge?", [EVIDENCE], 0.9)
    swapped = signals("When did the governor Paul Kern open the bridge?", [EVIDENCE], 0.9)
    assert right["name_coverage"] == 1.0 and right["missing_names"] == 0.0
    assert swapped["name_coverage"] == 0.0 and swapped["missing_names"] == 2.0
    assert swapped["stem_coverage"] < right["stem_coverage"]


def test_signals_see_a_negation_and_a_missing_number():
    assert signals("Who did not open the bridge?", [EVIDENCE], 0.5)["negation_mismatch"] == 1.0
    assert signals("Who opened the bridge?", [EVIDENCE], 0.5)["negation_mismatch"] == 0.0
    assert signals("Who opened the bridge in 2004?", [EVIDENCE], 0.5)["number_missing"] == 1.0
    assert signals("Who opened the bridge in 1998?", [EVIDENCE], 0.5)["number_missing"] == 0.0


def test_type_fit_asks_for_what_the_wh_words_want():
    assert type_fit("When was the bridge opened?", EVIDENCE) == 1.0
    assert type_fit("How many years did the work take?", "The work took six years.") == 1.0
    assert type_fit("When was the bridge opened?", "The bridge was opened by the mayor.") == 0.0
    assert type_fit("Who opened the bridge?", "The bridge was opened by the mayor.") == 0.0
    assert type_fit("Who opened the bridge?", EVIDENCE) == 1.0
    assert type_fit("Why was the bridge built?", "It was built for trade.") == 1.0  # nothing checkable by words


def test_every_signal_is_given_and_bounded():
    values = signals("", [""], None)
    assert list(values) == list(FEATURES)
    assert values["logit_yes"] == 0.0  # no probability: no opinion
    assert log_odds(1.0) == pytest.approx(8.0) and log_odds(0.0) == pytest.approx(-8.0)
    assert log_odds(0.5) == 0.0


def model(**changes) -> VerifierModel:
    n = len(FEATURES)
    base = dict(
        features=list(FEATURES),
        means=[0.0] * n,
        scales=[1.0] * n,
        weights=[1.0] + [0.0] * (n - 1),
        intercept=0.0,
        threshold=0.5,
        judgement="verify.txt",
        fitted_on=["a"],
        data="test",
    )
    return VerifierModel(**{**base, **changes})


def test_the_model_is_a_logistic_regression_over_standardised_signals():
    values = signals("Who opened the bridge?", [EVIDENCE], 0.8)
    assert model().probability(values) == pytest.approx(0.8)  # weight 1 on log-odds gives P(yes) back
    shifted = model(means=[math.log(4)] + [0.0] * (len(FEATURES) - 1))
    assert shifted.probability(values) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "changes",
    [{"weights": [1.0]}, {"features": ["logit_yes", "unknown"], "means": [0, 0], "scales": [1, 1], "weights": [1, 1]}],
)
def test_a_malformed_coefficients_file_is_refused(changes):
    with pytest.raises(ValueError):
        model(**changes)


def test_loading_a_bad_file_says_what_to_do(tmp_path):
    path = tmp_path / "verifier.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(VerifierModelError, match="ASSISTANT_VERIFY_LEARNED=false"):
        load_verifier_model(path)
    with pytest.raises(VerifierModelError, match="Restore the file"):
        load_verifier_model(tmp_path / "missing.json")


def test_the_committed_coefficients_load():
    learned = load_verifier_model(Settings().verifier_model)
    assert learned.features == list(FEATURES) and 0.0 < learned.threshold < 1.0
    assert learned.metrics["test_auc"] > 0.5


def records(n: int = 40) -> list[dict]:
    """Labelled examples where a missing name marks the near miss, and P(yes) is only a weak hint."""
    out = []
    for i in range(n):
        label = i % 2
        question = "Who opened the bridge?" if label else "Who did the governor Paul Kern open the bridge with?"
        p = 0.55 + 0.3 * ((i * 7) % 5) / 5
        out.append({"question": question, "evidence": EVIDENCE, "p_yes": p, "label": label, "article": f"a{i % 3}"})
    return out


def test_the_refit_learns_a_signal_the_judgement_misses():
    data = records()
    fitted = fit_model(data, "verify.txt")
    assert fitted.fitted_on == ["a0", "a1", "a2"]
    figures = evaluate(fitted, data, judge_threshold=0.64)
    assert figures["auc_learned"] == 1.0 and figures["auc_judgement"] < 0.8
    assert figures["learned"]["balanced"] == 1.0
    assert fitted.weights[FEATURES.index("missing_names")] < 0  # a missing name speaks against the answer
    VerifierModel.model_validate_json(fitted.model_dump_json())  # what fit writes reads back


def test_the_threshold_of_best_balanced_accuracy():
    scores, labels = [0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]
    assert best_threshold(scores, labels) == pytest.approx(0.5)  # half-way between the last near miss and 0.6
    assert operating_point(scores, labels, 0.5) == {"passed": 1.0, "refused": 1.0, "balanced": 1.0}


def test_the_verifier_lets_the_learned_model_decide():
    from fakes import RecordingModel

    chat = fake(p_yes=0.95)
    assert isinstance(chat, RecordingModel)
    refuse_missing_names = model(weights=[0.0, 0.0, 0.0, 0.0, -5.0] + [0.0] * (len(FEATURES) - 5), intercept=2.0)
    verifier = Verifier(chat, "{evidence} {question}", threshold=0.5, learned=refuse_missing_names)
    right = verifier.judge("Who opened the bridge?", "Anna Berg opened it.", [EVIDENCE])
    swapped = verifier.judge("Who did Paul Kern and Jo Lund meet?", "Anna Berg.", [EVIDENCE])
    assert right.passed and right.p_yes == pytest.approx(0.95) and right.score > 0.5
    assert not swapped.passed and swapped.p_yes == pytest.approx(0.95) and swapped.score < 0.5
    assert json.loads(json.dumps(swapped.to_dict()))["score"] == pytest.approx(swapped.score, abs=1e-4)


def test_sentence_around_finds_the_loaders_sentence():
    from assistant.corpus import Passage

    doc = "Intro line.\nFirst sentence here. The span is in this one. Last one."
    start = doc.index("First")
    spans = [(start, start + 20), (start + 21, start + 46), (start + 47, len(doc))]
    passage = Passage("d:p1", "d", "d.txt", "D", 1, "", doc[start:], start, len(doc), sentences=spans)
    offset = doc[start:].index("span")
    assert sentence_around(passage, doc, offset) == "The span is in this one."


def test_the_engine_answers_with_the_learned_verifier(tmp_path):
    import shutil

    from test_engine import make

    from assistant.indexing import load_embeddings
    from assistant.settings import PROJECT_ROOT

    shutil.copytree(PROJECT_ROOT / "corpus", tmp_path / "corpus")
    path = tmp_path / "verifier.json"
    path.write_text(model(threshold=0.9).model_dump_json(), encoding="utf-8")  # passes at P(yes) >= 0.9
    settings = Settings(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", verify_learned=True, verifier_model=path
    )
    embeddings = load_embeddings(settings)
    for p_yes, passed in ((0.95, True), (0.8, False)):  # 0.8 passes the settings' threshold, not the model's
        answer = make(settings, embeddings, "Eldridge Colby described the moment as NATO 3.0.", p_yes=p_yes).answer(
            "Who described the moment as NATO 3.0?"
        )
        assert answer.abstained is not passed and answer.verdicts[0].score == pytest.approx(p_yes, abs=1e-3)


def test_without_logprobs_the_threshold_decides_and_no_learned_score_is_recorded():
    from langchain_core.messages import AIMessage
    from test_verify import WordsOnly

    words_only = WordsOnly(messages=iter([AIMessage("Yes")]))
    verdict = Verifier(words_only, "{evidence} {question}", threshold=0.5, learned=model()).judge(
        "Who opened the bridge?", "Anna Berg opened it.", [EVIDENCE]
    )
    assert verdict.passed and verdict.source == "text" and verdict.p_yes == 1.0 and verdict.score is None
