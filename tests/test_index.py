"""The passage index: built, kept in step with the corpus, searched (index/indexing.py)."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import make

from assistant.index.corpus import load_passages
from assistant.index.indexing import PassageIndex


# ----- index -------------------------------------------------------------------------------------------------------
def test_index_is_reused_then_updated_then_rebuilt(settings, embeddings):
    documents, passages = load_passages(settings.paths.corpus_dir)
    assert PassageIndex(settings, embeddings).open(documents, passages).action == "built"
    again = PassageIndex(settings, embeddings).open(documents, passages)
    assert again.action == "reused" and again.added == 0

    # Another document: only its passages are embedded.
    (settings.paths.corpus_dir / "extra.txt").write_text(
        "A second article about the Baltic states.\n", encoding="utf-8"
    )
    documents, passages = load_passages(settings.paths.corpus_dir)
    report = PassageIndex(settings, embeddings).open(documents, passages)
    assert (report.action, report.added, report.removed) == ("updated", 1, 0)

    # The same document edited: its old passages leave, the new ones come in.
    (settings.paths.corpus_dir / "extra.txt").write_text("Changed.\n\nNow two paragraphs.\n", encoding="utf-8")
    documents, passages = load_passages(settings.paths.corpus_dir)
    report = PassageIndex(settings, embeddings).open(documents, passages)
    assert (report.action, report.added, report.removed) == ("updated", 2, 1)

    # A different chunking or model recipe forces a full rebuild.
    manifest = settings.paths.index_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    data["chunking"]["version"] = 0
    manifest.write_text(json.dumps(data))
    assert PassageIndex(settings, embeddings).open(documents, passages).action == "built"


def test_corrupt_index_is_rebuilt(settings, embeddings):
    documents, passages = load_passages(settings.paths.corpus_dir)
    PassageIndex(settings, embeddings).open(documents, passages)
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    for path in settings.paths.index_dir.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            path.write_bytes(b"garbage" * 10)
    index = PassageIndex(settings, embeddings)
    report = index.open(documents, passages)
    assert report.action == "built"
    assert index.search("Which countries will exceed the spending target?", 1)[0][0] == "nato-3-0:p5"


def test_missing_index_is_built(settings, embeddings):
    documents, passages = load_passages(settings.paths.corpus_dir)
    assert not Path(settings.paths.index_dir).exists()
    assert PassageIndex(settings, embeddings).open(documents, passages).action == "built"


def test_retrieval_ranks_the_right_paragraph(settings, embeddings):
    assistant = make(settings, embeddings)
    hits = assistant.retrieve("Which nations will spend more than the 3.5% goal?", k=3)
    assert hits[0].passage_id == "nato-3-0:p5"
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert all(h.distance is not None for h in hits[:1])
