"""The generalization set: articles of other genres that the code was never tuned for, each split into dev and test.

The unit tests check the set is what issue 11 asks for; the real test runs each article's test split through
`assistant eval` (one process, one model) and gates it on the thresholds in its file, which come from a real run. The
dev splits are for tuning, and are gated by hand while tuning (`assistant eval tests/data/generalization/*/dev.yaml`):
answering them here too would cost about ten minutes of a CI run that must stay under an hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.eval import SPLITS, Suite, load_suite
from assistant.index.corpus import load_documents
from assistant.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT / "tests" / "data" / "generalization"
ARTICLES = sorted(p for p in ROOT.iterdir() if p.is_dir())
NEAR_MISS_KINDS = {"swap-entity", "swap-word", "neighbour", "absent-number"}


def suites(article: Path) -> dict[str, Suite]:
    return {split: load_suite(article / f"{split}.yaml", []) for split in SPLITS}


def test_there_are_four_articles_or_more_each_with_its_own_corpus():
    assert len(ARTICLES) >= 4
    for article in ARTICLES:
        (document,) = load_documents(article / "corpus")
        paragraphs = [line for line in document.text.splitlines() if line.strip() and not line.startswith("#")]
        assert 4 <= len(paragraphs) <= 15, article.name
        assert "licen" in (article / "README.md").read_text().lower() or "CC0" in (article / "README.md").read_text()


@pytest.mark.parametrize("article", ARTICLES, ids=lambda p: p.name)
def test_each_article_has_a_dev_and_a_test_split_of_every_kind(article):
    split = suites(article)
    assert {name: s.split for name, s in split.items()} == {"dev": "dev", "test": "test"}
    assert all(s.corpus == (article / "corpus").resolve() for s in split.values())
    cases = [c for s in split.values() for c in s.cases]
    assert len(cases) >= 25
    assert len({c.id for c in cases}) == len(cases), "ids must be unique across the splits"
    near_miss = [c for c in cases if "near-miss" in c.tags]
    assert all(c.must_refuse for c in near_miss)
    assert len(near_miss) >= 0.4 * len(cases)
    assert {t for c in near_miss for t in c.tags} >= NEAR_MISS_KINDS
    for tag in ("paraphrase", "multi-hop", "follow-up"):
        assert [c for c in cases if tag in c.tags], f"{article.name} has no {tag} case"
    assert all(c.history for c in cases if "follow-up" in c.tags)
    assert any("common-knowledge" in c.tags for c in cases)


def test_the_nato_set_has_near_misses_and_common_knowledge_paraphrases():
    suite = load_suite(PROJECT_ROOT / "tests" / "questions.yaml", PROJECT_ROOT / "corpus")
    near_miss = [c for c in suite.cases if "near-miss" in c.tags]
    assert len(near_miss) >= 12 and all(c.must_refuse for c in near_miss)
    assert {t for c in near_miss for t in c.tags} >= NEAR_MISS_KINDS
    assert len([c for c in suite.cases if "common-knowledge" in c.tags and c.answers]) >= 6


@pytest.mark.real
def test_every_generalization_test_split_meets_its_thresholds(tmp_path):
    files = [str(a / "test.yaml") for a in ARTICLES]
    result = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "eval", *files, "--report", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    reports = {f.name: json.loads((f / "eval.json").read_text()) for f in sorted(tmp_path.iterdir())}
    failed = {name: report["failures"] for name, report in reports.items() if report["failures"]}
    assert not failed, f"thresholds missed: {failed}"  # named first: the eval's own output is long
    assert result.returncode == 0, f"eval failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    for report in reports.values():
        assert report["thresholds"] and report["settings"]["verify"] is True
