"""The answer stages run on a Parts object alone: no Assistant, no index, no embedding model; any part can be a fake.
Each stage returns only what it changes, and the state it is given stays as it was."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest
from fakes import fake

from assistant.answer.generation import load_prompts, render_context
from assistant.answer.grounding import Grounder
from assistant.answer.judge import Verdict
from assistant.answer.parts import Parts
from assistant.answer.pipeline import run
from assistant.answer.state import NOT_IN_ARTICLE, Answer, AnswerState, Gate, Retrieval, Timings, View
from assistant.index.corpus import load_passages
from assistant.reading.reader import ArticleReader
from assistant.settings import PROJECT_ROOT, Settings

ARTICLE = """# Harbour news

The old quay was rebuilt in 2019 after a storm.

Mayor Anna Berg opened the new bridge in 1998. It links the harbour to the island of Holm.

Fishing boats use the north quay; ferries leave from the south quay every hour.
"""


@pytest.fixture
def article(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.md").write_text(ARTICLE, encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    documents, passages = load_passages(corpus)
    return settings, documents, passages


class FoundSearch:
    """Search: finds the same passages, nearest first, for any question."""

    def __init__(self, found: list, gate: Gate):
        self.found, self.gate = found, gate

    def __call__(self, question, view, k=None, config=None) -> Retrieval:
        return Retrieval(self.found, self.gate)


class OneView:
    """Views: the one article's view, whatever the scope."""

    def __init__(self, view: View):
        self._view = view

    def view(self, scope=None) -> View:
        return self._view


def parts_for(settings, documents, passages, model, found: list, **overrides) -> tuple[Parts, View]:
    """Parts over one article, with search a fake that finds `found` (nearest first)."""
    prompts = load_prompts(PROJECT_ROOT / "prompts")
    context = render_context(passages)
    title = documents[0].title
    view = View(
        None, passages, documents[0].text, context, prompts.system.format(title=title, context=context), [title]
    )
    gate = Gate(0.2, 0.8, {p.passage_id: 0.2 for p in found})
    parts = Parts.build(
        settings,
        prompts,
        model,
        grounder=overrides.pop("grounder", Grounder(passages, {d.doc_id: d.text for d in documents})),
        search=FoundSearch(found, gate),
        views=OneView(view),
        reader=ArticleReader(settings, lambda: model, lambda: prompts.answer),
        texts={d.doc_id: d.text for d in documents},
        **overrides,
    )
    return parts, view


def answer(parts: Parts, view: View, question: str) -> Answer:
    *_, result = run(AnswerState(question, [], view, None, Timings()), parts)
    return result


def test_the_stages_answer_and_cite_from_parts_alone(article):
    settings, documents, passages = article
    bridge = passages[1]
    model = fake("Mayor Anna Berg opened the new bridge in 1998.")
    parts, view = parts_for(settings, documents, passages, model, [bridge])
    result = answer(parts, view, "Who opened the new bridge?")
    assert not result.abstained and result.text.startswith("Mayor Anna Berg opened the new bridge in 1998")
    assert [c.passage_id for c in result.citations] == [bridge.passage_id]
    assert model.prompts[0][0] == view.system and len(model.judgements) == 1  # read whole, then judged once


def test_any_part_can_be_a_fake_here_the_judge(article):
    settings, documents, passages = article
    bridge = passages[1]

    class Unconvinced:
        def judge(self, question, sentence, evidence, context=None):
            return Verdict(sentence, tuple(evidence), 0.1, False)

    model = fake("Mayor Anna Berg opened the new bridge in 1998.")
    settings = replace_settings(settings, correct_premise="off")
    parts, view = parts_for(settings, documents, passages, model, [bridge], verifier=Unconvinced())
    result = answer(parts, view, "Who opened the new bridge?")
    assert result.abstained and result.reason == "unverified" and result.text == NOT_IN_ARTICLE
    assert result.closest is not None and "opened the new bridge" in result.closest.quote
    assert model.judgements == []  # the fake judged, not the model


def test_parts_are_frozen_and_build_their_judges_from_settings(article):
    settings, documents, passages = article
    parts, _ = parts_for(settings, documents, passages, fake("x"), passages[:1])
    assert parts.verifier is not None and parts.fact_checker is not None and parts.verifier is not parts.fact_checker
    with pytest.raises(AttributeError):
        parts.settings = settings  # frozen: a stage cannot swap a part under the others
    unjudged, _ = parts_for(replace_settings(settings, verify=False), documents, passages, fake("x"), passages[:1])
    assert unjudged.verifier is None and unjudged.fact_checker is None
    assert replace(parts, verifier=None).verifier is None  # a test swaps one part by copying


def replace_settings(settings: Settings, **changes) -> Settings:
    return settings.updated(changes)


def test_each_stage_returns_only_what_it_changes(article):
    from assistant.answer.gate import gate
    from assistant.answer.guard import guard
    from assistant.answer.retrieve import retrieve
    from assistant.answer.settle import settle

    settings, documents, passages = article
    bridge = passages[1]
    parts, view = parts_for(settings, documents, passages, fake("x"), [bridge])
    state = AnswerState("Who opened the new bridge?", [], view, None, Timings())
    assert guard(state, parts) == {}
    assert guard(replace(state, question="Hello!"), parts).keys() == {"reason", "text"}
    found = retrieve(state, parts)
    assert found.keys() == {"found"} and found["found"].passages == [bridge]
    state = state.apply(found)
    read = gate(state, parts)
    assert read.keys() == {"title", "context", "candidates", "system"} and read["candidates"][0] == bridge
    assert settle(state.apply(read), parts) == {"reason": "unsupported", "text": NOT_IN_ARTICLE}  # nothing kept
    with pytest.raises(FrozenInstanceError):
        state.reason = "answered"  # a stage cannot change the state: it returns an update


def test_a_streaming_stage_yields_its_text_and_returns_its_own_draft(article):
    from assistant.answer.gate import gate
    from assistant.answer.generate import generate

    settings, documents, passages = article
    bridge = passages[1]
    parts, view = parts_for(
        settings, documents, passages, fake("Mayor Anna Berg opened the new bridge in 1998."), [bridge]
    )
    state = AnswerState("Who opened the new bridge?", [], view, None, Timings())
    state = state.apply({"found": Retrieval([bridge], Gate(0.2, 0.8, {}))})
    state = state.apply(gate(state, parts))
    stream = generate(state, parts)
    pieces = []
    try:
        while True:
            pieces.append(next(stream))
    except StopIteration as end:
        update = end.value
    assert pieces and pieces[0].startswith("Mayor Anna Berg opened the new bridge in 1998")
    assert update.keys() == {"draft"} and update["draft"].reply.kept == pieces
    assert state.draft.reply.kept == [] and state.draft.text == ""  # the given state's draft is untouched
