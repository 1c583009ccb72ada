"""Unit tests of benchmarks/answerability.py's helpers: the evidence sentence of a span, and the operating point."""

from __future__ import annotations

import pytest

from benchmarks.answerability import best_threshold, operating_point, sentence_around, span_offset


def test_the_threshold_of_best_balanced_accuracy():
    scores, labels = [0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]
    assert best_threshold(scores, labels) == pytest.approx(0.5)  # half-way between the last near miss and 0.6
    assert operating_point(scores, labels, 0.5) == {"passed": 1.0, "refused": 1.0, "balanced": 1.0}


def test_sentence_around_finds_the_loaders_sentence():
    from assistant.index.corpus import Passage

    doc = "Intro line.\nFirst sentence here. The span is in this one. Last one."
    start = doc.index("First")
    spans = [(start, start + 20), (start + 21, start + 46), (start + 47, len(doc))]
    passage = Passage("d:p1", "d", "d.txt", "D", 1, "", doc[start:], start, len(doc), sentences=spans)
    offset = doc[start:].index("span")
    assert sentence_around(passage, doc, offset) == "The span is in this one."


def test_span_offset_takes_the_recorded_offset_or_the_nearest_occurrence():
    paragraph = "The mill made paper. The mill burned. A new mill opened."
    assert span_offset(paragraph, {"text": "mill", "answer_start": 4}) == 4
    assert span_offset(paragraph, {"text": "mill", "answer_start": 40}) == paragraph.rindex("mill")
    assert span_offset(paragraph, {"text": "bridge", "answer_start": 0}) is None
