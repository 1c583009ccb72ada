"""The word check: which passages support an answer sentence, and the span that does (answer/grounding.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import CORPUS, make

from assistant.answer.cite import mark_sentence
from assistant.answer.gate import retrieved_first
from assistant.answer.grounding import Grounder, fits_question, split_clauses
from assistant.answer.reply import clean_sentence, is_decline
from assistant.index.corpus import load_passages


# ----- grounding ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grounder():
    documents, passages = load_passages(CORPUS)
    return Grounder(passages, {d.doc_id: d.text for d in documents}), documents[0].text


# Made-up article: the name stands in the opening paragraph and in the one about what was asked.
PHYSICS = (
    "Early physics\n\nMarta Quell and others studied motion and falling bodies for centuries.\n\n"
    "Bridges were built of stone and wood in the valley.\n\n"
    "Marta Quell showed that falling bodies fall at the same speed whatever their weight.\n"
)


def made_up(tmp_path: Path, name: str, text: str):
    """A Grounder over one made-up article written to tmp_path, with its documents and passages."""
    (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    documents, passages = load_passages(tmp_path)
    return Grounder(passages, {d.doc_id: d.text for d in documents}), documents, passages


def test_of_passages_holding_an_answer_alike_the_one_holding_what_was_asked_is_cited(tmp_path):
    g, _, passages = made_up(tmp_path, "physics", PHYSICS)
    asked = "Who showed that falling bodies fall at the same speed whatever their weight?"
    assert [p.passage_id for p in g.support("Marta Quell.", question=asked).passages] == ["physics:p3"]
    # when the question tells them apart no better, the earlier paragraph is cited, as before
    assert [p.passage_id for p in g.support("Marta Quell studied motion.").passages] == ["physics:p1"]


def test_of_passages_tied_on_answer_and_question_the_one_retrieval_found_is_cited(tmp_path):
    g, _, passages = made_up(tmp_path, "physics", PHYSICS)
    first, bridges, last = passages
    assert retrieved_first(passages, [last, bridges]) == [bridges, last, first]  # article order within each group
    asked = "Who wrote on falling bodies?"  # both paragraphs hold the name and the question's words alike
    assert [p.passage_id for p in g.support("Marta Quell.", passages, asked).passages] == ["physics:p1"]
    found_last = retrieved_first(passages, [last])
    assert [p.passage_id for p in g.support("Marta Quell.", found_last, asked).passages] == ["physics:p3"]


def test_how_many_may_be_answered_by_counting_the_names_a_passage_lists(tmp_path):
    ports = (
        "Harbour news\n\nFerries from Arlo, Bexley, Corran and the Dunmore Isles will stop at the new quay.\n\n"
        "The quay cost nine million crowns to build.\n"
    )
    g, _, _ = made_up(tmp_path, "ports", ports)
    asked = "How many ferries will stop at the new quay?"
    for right in ("Four ferries will stop at the new quay.", "4 ferries will stop there.", "Four."):
        assert [p.passage_id for p in g.support(right, question=asked).passages] == ["ports:p1"], right
    for wrong in ("Five ferries will stop at the new quay.", "3 ferries will stop there."):
        assert g.support(wrong, question=asked) is None, wrong
    # counting is for "how many" alone: elsewhere a number must stand in the passage as written
    assert g.support("Four ferries will stop at the new quay.", question="Which ferries will stop there?") is None
    assert [p.passage_id for p in g.support("Nine million.", question="How many crowns did it cost?").passages] == [
        "ports:p2"
    ]


def test_a_claim_running_on_across_a_paragraph_break_goes_to_the_judge_with_both_paragraphs(tmp_path):
    mill = (
        "Island mills\n\nMarta Quell built the first tide mill on the island.\n\n"
        "The mill ground grain for 40 years before the storm.\n\n"
        "A bakery opened beside the harbour.\n\n"
        "The new bakery sold bread for 12 years.\n"
    )
    g, documents, passages = made_up(tmp_path, "mill", mill)
    asked = "How long did the tide mill grind grain?"
    claim = "Marta Quell's tide mill ground grain for 40 years."
    assert g.support(claim, question=asked) is None  # no one passage holds the name and the number
    joined = g.nearest(claim, question=asked)
    assert [p.passage_id for p in joined.passages] == ["mill:p1", "mill:p2"]
    text = documents[0].text
    assert [text[s:e] for s, e in joined.quotes] == [passages[0].text, passages[1].text]
    # two paragraphs apart never make a fact together
    assert g.nearest("Marta Quell's tide mill sold bread for 12 years.", question="What did the mill sell?") is None


def test_supported_sentence_gets_passage_and_quote(grounder):
    g, text = grounder
    support = g.support("Denmark, Estonia, Latvia, Lithuania and Poland will exceed the 3.5% target.")
    assert support is not None
    assert [p.passage_id for p in support.passages] == ["nato-3-0:p5"]
    start, end = support.quotes[0]
    assert text[start:end].startswith("Several countries — including Denmark")


@pytest.mark.parametrize(
    "sentence",
    [
        "Italy's defence minister called for a significant boost in defence production across Europe.",
        "Denmark, Estonia, Latvia, Lithuania and Poland will exceed the 4.5% target.",
        "The meeting took place in the summer in a large hall with many journalists.",
        "Mark Rutte described the meeting as pivotal, said Emmanuel Macron.",
        # A name from one paragraph and a number from another never make a fact together.
        "Germany spends 3.5% of GDP on defence.",
        "Germany and Poland will exceed the newly agreed 3.5% target.",
    ],
)
def test_unsupported_sentences_are_rejected(grounder, sentence):
    g, _ = grounder
    assert g.support(sentence) is None


def test_words_are_credited_to_the_person_who_said_them(grounder):
    g, _ = grounder
    # Paragraph 8 quotes Romania's minister first, then the Dutch one: the Dutch minister did not say this.
    wrong = (
        "Dutch Defence Minister Ruben Brekelmans called for a significant boost in defence production across Europe."
    )
    assert g.support(wrong) is None
    right = "Romania's Radu-Dinel Miruță called for a significant boost in defence production across Europe."
    assert g.support(right) is not None
    # A pronoun's antecedent stands in the sentence before: "That arrangement, he argued, …" is Rutte's.
    assert g.support("Rutte argued that the arrangement guarantees a strong and lasting US presence in Europe.")


def test_an_echo_of_the_question_is_no_answer(grounder):
    g, _ = grounder
    question = "What agreement came out of the talks between Denmark, Greenland and the United States?"
    assert (
        g.support(
            "The agreement came out of the talks between Denmark, Greenland and the United States.", question=question
        )
        is None
    )


PARAPHRASE_QUESTION = "What will happen to the rotating infantry brigade in Romania?"
PARAPHRASE = "The rotating infantry brigade in Romania will be withdrawn and not swapped out."


def test_a_paraphrase_the_word_check_turns_down_goes_to_the_judge_with_its_nearest_passage(grounder):
    g, text = grounder
    assert g.support(PARAPHRASE, question=PARAPHRASE_QUESTION) is None  # "withdrawn", "swapped": not the article's
    nearest = g.nearest(PARAPHRASE, question=PARAPHRASE_QUESTION)
    assert [p.passage_id for p in nearest.passages] == ["nato-3-0:p9"]
    start, end = nearest.quotes[0]
    assert "rotating infantry brigade in Romania" in text[start:end]
    # What words settle stays settled: a name or a number no passage holds with the rest, a bare name whose passage
    # says nothing of what was asked, and an echo of the question.
    assert (
        g.nearest(
            "US Under Secretary of War Eldridge Colby", question="Who appeared to agree that the bloc must evolve?"
        )
        is None
    )
    assert g.nearest("Mark Rutte was born in 1967 in The Hague.") is None
    assert g.nearest("Germany spends 3.5% of GDP on defence.") is None
    question = "What agreement came out of the talks between Denmark, Greenland and the United States?"
    assert (
        g.nearest(
            "The agreement came out of the talks between Denmark, Greenland and the United States.", question=question
        )
        is None
    )


def test_two_paragraph_sentence_cites_both(grounder):
    g, _ = grounder
    support = g.support(
        "Eldridge Colby called it NATO 3.0, and Denmark, Estonia, Latvia, Lithuania and Poland will exceed 3.5% of GDP."
    )
    assert support is not None
    assert {p.passage_id for p in support.passages} == {"nato-3-0:p2", "nato-3-0:p5"}


def test_titles_and_first_names_reach_the_person_the_article_gives_them_to(grounder):
    g, _ = grounder
    # Paragraph 10 only says "Rutte"; paragraph 4 calls him "NATO Secretary General Mark Rutte".
    for who in ("Mark Rutte", "The Secretary General"):
        support = g.support(f"{who} emphasized that the Supreme Allied Commander Europe must remain an American.")
        assert support is not None and support.passages[0].passage_id == "nato-3-0:p10"
    # The link runs from title to person only: Colby's title does not make him Rutte.
    assert (
        g.support("Eldridge Colby emphasized that the Supreme Allied Commander Europe must remain an American.") is None
    )


def test_short_pieces_of_a_joined_sentence_stay_with_their_clause(grounder):
    g, _ = grounder
    sentence = (
        "It guarantees a strong and lasting US presence in Europe and reflects that the American economy accounts "
        "for more than half of NATO's combined economic power."
    )
    assert split_clauses(sentence)[0] == "It guarantees a strong and lasting US presence in Europe"
    assert g.support(sentence) is not None


def test_a_bare_name_must_come_from_a_passage_about_the_question(grounder):
    g, _ = grounder
    question = "Who appeared to agree that the bloc must evolve?"
    assert g.support("US Under Secretary of War Eldridge Colby", question=question) is None
    assert g.support("US and European defence ministers", question=question) is not None
    # A whole sentence says its own predicate, and a question's name counts in any spelling ("America", "US").
    assert g.support(
        "The US wants to devote more attention and resources to other strategic priorities, particularly the "
        "Indo-Pacific.",
        question="Why is America keen for its allies across the ocean to shoulder more?",
    )
    assert g.support("Greenland.", question="Which territory were Trump's remarks about?")


def test_names_inside_a_restated_question_need_not_stand_in_the_passage(grounder):
    g, _ = grounder
    question = "What is a key indicator that Europe's attitude has really changed?"
    answer = (
        "A key indicator that Europe's attitude has really changed is that Denmark, Estonia, Latvia, Lithuania and "
        "Poland will exceed the 3.5% target."
    )
    support = g.support(answer, question=question)
    assert support is not None and support.passages[0].passage_id == "nato-3-0:p5"
    # The restated premise must still be something the passage speaks to, and a short echo is no premise.
    assert (
        g.support(
            "The decision about American troops rotating through Romania suggests that Europe is gradually taking on "
            "more of the burden that the US has historically carried in conventional deterrence.",
            question="What does the decision about American troops rotating through Romania suggest?",
        )
        is None
    )
    assert (
        g.support(
            "Europe wants to devote more attention and resources to the Indo-Pacific.",
            question="What does Europe want?",
        )
        is None
    )


def test_acronyms_the_model_coins_are_removed():
    assert (
        clean_sentence("The Supreme Allied Commander Europe (SACEUR) should remain an American.")
        == "The Supreme Allied Commander Europe should remain an American."
    )
    assert clean_sentence("It met the Foo Bar (XYZ) group.") == "It met the Foo Bar (XYZ) group."


@pytest.mark.parametrize(
    ("question", "answer", "fits"),
    [
        ("On what date did the meeting take place?", "The meeting took place in Brussels.", False),
        ("When will they exceed the target?", "They will exceed it years ahead of schedule.", True),
        ("How much does Germany spend?", "Germany spends on conventional deterrence.", False),
        ("How much of NATO's power is American?", "More than half of it.", True),
        ("How many countries will exceed it?", "Denmark, Estonia, Latvia, Lithuania and Poland.", True),
        ("Who is Rutte?", "NATO's Secretary General.", True),
        (
            "Who is the current Supreme Allied Commander Europe?",
            "The Supreme Allied Commander Europe is an official.",
            False,
        ),
        ("By which year must allies reach the target?", "Years ahead of schedule [1].", False),
        ("How many soldiers are in the brigade?", "A rotating infantry brigade [1].", False),
    ],
)
def test_answer_must_be_of_the_kind_asked(question, answer, fits):
    assert fits_question(question, answer) is fits


def test_model_markers_are_removed_and_ours_added():
    assert clean_sentence("Colby said so [2]. ") == "Colby said so."
    assert clean_sentence("- Colby said so (¶4).") == "Colby said so."
    assert mark_sentence("Colby said so.", [1, 2]) == "Colby said so [1][2]."
    assert mark_sentence('He called it "NATO 3.0."', [1]).endswith("[1]")


@pytest.mark.parametrize(
    "text",
    ["The article does not say.", "The article doesn't mention Italy.", "I'm sorry, I cannot answer that."],
)
def test_declines_are_recognised(text):
    assert is_decline(text)


@pytest.mark.parametrize(
    ("claim", "kept"),
    [
        ("William Frederick Herschel discovered the planet.", True),
        ("William Herschel discovered the planet.", True),
        ("Herschel Frederick discovered the planet.", False),  # the passage's words, not its name
        ("Anna Holm opened the bridge.", False),  # a first name and a surname from two people
        ("Under Secretary Colby opened the bridge.", True),  # a title and a surname a few words apart
        ("Defence Minister Boris Pistorius said it was natural.", True),  # the model's title, the passage's name
    ],
)
def test_a_name_an_answer_adds_must_be_one_name_in_the_passage(tmp_path, claim, kept):
    text = (
        "Stars\n\nWilliam Frederick Herschel discovered the planet in 1781.\n\n"
        "Anna Berg chaired the meeting, and the harbour master Lars Holm later opened the bridge.\n\n"
        "US Under Secretary of War Eldridge Colby opened the bridge.\n\n"
        "Germany's Boris Pistorius said it was natural. Every defence minister agreed with the German view.\n"
    )
    g, _, _ = made_up(tmp_path, "stars", text)
    assert (g.support(claim, question="Who did it?") is not None) is kept


def test_a_title_before_a_name_may_stand_elsewhere_in_the_passage(tmp_path):
    text = "Ministers\n\nGermany's Boris Pistorius said it was natural, and others shared the German view.\n"
    g, _, (passage,) = made_up(tmp_path, "ministers", text)
    # "German" stands after the name in the passage: only the name proper, its last two words, must be one name there
    assert g._extractive(passage, "German Defense Minister Boris Pistorius said it was natural.", "Who said it?")
    assert not g._extractive(passage, "Pistorius Boris said it was natural.", "Who said it?")


@pytest.mark.parametrize(
    ("p_yes", "rescue", "reason"), [(0.9, True, "answered"), (0.2, True, "unverified"), (0.9, False, "unsupported")]
)
def test_the_judge_settles_a_sentence_the_word_check_turned_down(settings, embeddings, p_yes, rescue, reason):
    assistant = make(settings.updated(verify_rescue=rescue), embeddings, PARAPHRASE, p_yes=p_yes)
    answer = assistant.answer(PARAPHRASE_QUESTION)
    assert answer.reason == reason
    assert len(assistant.chat_model.judgements) == (1 if rescue else 0)
    if reason == "answered":
        assert answer.text.startswith(PARAPHRASE[:-1]) and [c.passage_id for c in answer.citations] == ["nato-3-0:p9"]
    else:
        assert answer.abstained and answer.citations == []


def test_closest_sentence_needs_words_of_the_question(grounder):
    from assistant.answer.grounding import closest_sentence

    passages = grounder[0].passages
    found = closest_sentence(passages, "Which brigade will the US not replace in Romania?", 2)
    assert found is not None and "Romania" in found[0].text[found[1] - found[0].start : found[2] - found[0].start]
    assert closest_sentence(passages, "Which volcano erupted in Iceland?", 2) is None
