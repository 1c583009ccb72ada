"""Holding an answer to the question's own words: made-up trap shapes are caught, paraphrases still pass.

Unit tests with the real embedding model (the session's, from conftest.py) for the "close word" match;
everything else is word rules.
"""

from __future__ import annotations

import pytest

from assistant.answer.question_words import QuestionWords, Unmatched, negation_differs, opposites_in
from assistant.text import stem


@pytest.fixture(scope="module")
def checker(embeddings):
    return QuestionWords(embeddings.embed_documents, 0.75)


# (question, answer sentence, cited passage): the made-up shapes SQuAD 2.0's traps were written in.
TRAPS = {
    "swapped word": (
        "Which presidents introduce council bills?",
        "Presidents in the governing party introduce council bills.",
        "Ministers in the governing party introduce council bills, which the assembly then debates.",
    ),
    "flipped negation": (
        "What did the mayor announce she would not do?",
        "The mayor announced that she would not step down.",
        "The mayor announced that she would step down at the end of the year.",
    ),
    "invented event": (
        "When did Norland invade Eastmark?",
        "Norland invaded Eastmark in 1979.",
        "In 1979 Norland and Eastmark signed a trade treaty.",
    ),
    "dropped negation": (
        "Why are harbour seals fed by the keepers?",
        "Harbour seals are fed by the keepers because they hunt poorly in winter.",
        "Harbour seals are not fed by the keepers because they hunt well even in winter.",
    ),
    "opposite": (
        "Who opened the bridge after the storm?",
        "Mayor Jane Hill opened the bridge.",
        "Mayor Jane Hill opened the new bridge before the storm of 2004.",
    ),
    "swapped name": (
        "What did Lars Holm sign in 1998?",
        "Lars Holm signed the harbour charter in 1998.",
        "In 1998 Anna Berg signed the harbour charter on behalf of the town.",
    ),
    "swapped number": (
        "What happened to the ferry in 2011?",
        "In 2011 the ferry was replaced.",
        "The ferry was replaced in 2009 by a larger boat.",
    ),
}

PARAPHRASES = {
    "same words": (
        "When did Norland sign a treaty with Eastmark?",
        "Norland signed a treaty with Eastmark in 1979.",
        "In 1979 Norland and Eastmark signed a trade treaty.",
    ),
    "a frame word": (
        "What is the name of the ferry?",
        "The name of the ferry is Saga.",
        "The island's ferry, Saga, doubles its crossings this summer.",
    ),
    "the kind asked for": (
        "Which country's minister is Boris Holm?",
        "Boris Holm is Norway's minister.",
        "Norway's Fisheries Minister Boris Holm said the quota must fall.",
    ),
    "a name's other form": (
        "When did Holland join the alliance?",
        "Holland joined the alliance in 1949.",
        "The Netherlands joined the alliance in 1949 as a founding member.",
    ),
    "a demonym": (
        "What did the Norwegian minister announce?",
        "The Norwegian minister announced a lower quota.",
        "Norway's minister announced a lower quota for the coming season.",
    ),
    "a spelled-out number": (
        "Which ship carried 3 engines?",
        "The Saga carried 3 engines.",
        "The Saga carried three engines and a crew of twelve.",
    ),
    "negated alike": (
        "Which town did not sign the charter?",
        "Dunmore did not sign the charter.",
        "Every town but Dunmore signed the charter; Dunmore did not sign it until 2001.",
    ),
    "a bare answer": ("When did the mayor open the bridge?", "In 1998.", "The mayor opened the bridge in 1998."),
}


@pytest.mark.parametrize("shape", TRAPS)
def test_each_trap_shape_leaves_a_word_of_the_question_unmatched(checker, shape):
    question, answer, passage = TRAPS[shape]
    unmatched = checker.unmatched(question, answer, passage)
    assert unmatched != Unmatched(), shape
    kinds = {k for k, v in unmatched.signals().items() if v}
    expected = {
        "swapped word": "unmatched_other",
        "flipped negation": "negation_mismatch",
        "invented event": "unmatched_other",
        "dropped negation": "negation_mismatch",
        "opposite": "antonym",
        "swapped name": "unmatched_names",
        "swapped number": "unmatched_numbers",
    }[shape]
    assert expected in kinds, (shape, unmatched)


@pytest.mark.parametrize("case", PARAPHRASES)
def test_a_paraphrase_matches_every_word_it_takes(checker, case):
    question, answer, passage = PARAPHRASES[case]
    assert checker.unmatched(question, answer, passage) == Unmatched(), case


def test_decisive_kinds_are_names_numbers_negations_and_opposites():
    assert Unmatched(names=("Holm",)).decisive and Unmatched(numbers=("2011",)).decisive
    assert Unmatched(negation=True).decisive and Unmatched(antonyms=("after",)).decisive
    assert not Unmatched(other=("president",)).decisive


def test_without_an_embedding_model_only_exact_forms_match():
    plain = QuestionWords()
    question, answer, passage = PARAPHRASES["a name's other form"]
    assert plain.unmatched(question, answer, passage).names == ("Holland",)
    assert plain.unmatched(*PARAPHRASES["same words"]) == Unmatched()


def test_negation_and_opposites_by_word_rules():
    assert negation_differs("What did she not do?", "She did resign.")
    assert not negation_differs("What did she not do?", "She did not resign.")
    assert not negation_differs("What is No. 5?", "No. 5 is a ferry.")  # a numero is no negation
    assert opposites_in({stem("after")}, {stem("before"), "storm"}) == [stem("after")]
    assert opposites_in({stem("unestablished")}, {stem("established")}) == [stem("unestablished")]
    assert opposites_in({"storm"}, {"storm"}) == []


def test_the_word_check_can_name_a_title_the_article_gives():
    checker = QuestionWords()

    def named(name, text):  # as Grounder.named_in: the article calls the mayor Jane Hill
        return name == "Mayor" or name in text

    question = "What did the Mayor open?"
    assert (
        checker.unmatched(question, "The Mayor opened the bridge.", "Jane Hill opened the bridge.", named=named).names
        == ()
    )
