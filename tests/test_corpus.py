"""Reading the corpus: passages, offsets, sentences and sections (index/corpus.py)."""

from __future__ import annotations

import json

import pytest
from fakes import CORPUS

from assistant.index.corpus import load_passages, split_sentences
from assistant.settings import PROJECT_ROOT


# ----- corpus ------------------------------------------------------------------------------------------------------
def test_passages_are_paragraphs_with_exact_offsets():
    documents, passages = load_passages(CORPUS)
    text = documents[0].text
    assert len(passages) == 11
    assert [p.passage_id for p in passages] == [f"nato-3-0:p{i}" for i in range(1, 12)]
    for p in passages:
        assert text[p.start : p.end] == p.text
        assert all(p.start <= s < e <= p.end for s, e in p.sentences)
    # Headings are metadata of the paragraphs below them, never passages.
    assert not any(p.text.startswith("A Shift in Tone") for p in passages)
    assert passages[3].section == "A Shift in Tone — and Spending"
    assert passages[10].section == "Europe Steps Up — Cautiously"
    assert passages[4].text.startswith("A key sign of that shift is money.")


def test_corpus_file_is_the_article_byte_for_byte():
    shared = PROJECT_ROOT.parent / "shared" / "article" / "nato-3-0.txt"
    if not shared.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert (CORPUS / "nato-3-0.txt").read_bytes() == shared.read_bytes()


def test_sentences_split_at_stops_not_inside_names():
    text = "Mr. Smith met the U.S. envoy. He said “NATO 3.0.” Then he left! Fine?"
    parts = [text[s:e] for s, e in split_sentences(text)]
    assert parts == ["Mr. Smith met the U.S. envoy.", "He said “NATO 3.0.”", "Then he left!", "Fine?"]


def test_several_documents_and_markdown_headings(tmp_path):
    (tmp_path / "b.md").write_text("# Title\nFirst paragraph here.\n\n## Part two\nSecond one.\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Alpha text.\n", encoding="utf-8")
    (tmp_path / "a.meta.json").write_text(json.dumps({"title": "Alpha", "source": "alpha.example"}))
    documents, passages = load_passages(tmp_path)
    assert [d.doc_id for d in documents] == ["a", "b"]
    assert documents[0].title == "Alpha" and documents[0].source == "alpha.example"
    assert [(p.passage_id, p.section) for p in passages] == [("a:p1", ""), ("b:p1", "Title"), ("b:p2", "Part two")]
