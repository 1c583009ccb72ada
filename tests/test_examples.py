"""Example questions for a new article: written by the model once, kept only when answered with a citation."""

from __future__ import annotations

import json
import shutil

from assistant.answering import Assistant
from assistant.examples import candidates, fill_examples
from assistant.settings import PROJECT_ROOT, Settings
from tests.fakes import fake

CORPUS = PROJECT_ROOT / "corpus"


def test_candidates_are_questions_one_per_line_without_numbering_or_repeats():
    reply = '1. Who opened the library?\n2) "Where is it?"\n- Who opened the library?\nThe article does not say.\nok?'
    assert candidates(reply, 5) == ["Who opened the library?", "Where is it?"]
    assert candidates(reply, 1) == ["Who opened the library?"]


def test_only_questions_answered_with_a_citation_are_kept_and_written_to_the_metadata(tmp_path, embeddings):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    meta = corpus / "nato-3-0.meta.json"
    data = json.loads(meta.read_text())
    data.pop("examples")
    meta.write_text(json.dumps(data))
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", examples_kept=2)
    questions = "Who described the moment as NATO 3.0?\nWhen was Mark Rutte born?\nWho is the NATO Secretary General?"
    replies = [
        questions,
        "Eldridge Colby described the moment as NATO 3.0.",  # cited: kept
        "Mark Rutte was born in 1967 in The Hague.",  # no passage says so: dropped
        "Mark Rutte is NATO Secretary General.",  # cited: kept, and the second is enough
    ]
    bot = Assistant(settings, chat_model=fake(*replies), embeddings=embeddings)
    kept = fill_examples(bot, "nato-3-0")
    assert kept == ["Who described the moment as NATO 3.0?", "Who is the NATO Secretary General?"]
    stored = json.loads(meta.read_text())
    assert stored["examples"] == kept and stored["title"] == data["title"]
    # Once an article has examples, nothing is asked again.
    again = Assistant(settings, chat_model=fake(), embeddings=embeddings)
    assert fill_examples(again, "nato-3-0") == kept
