"""The embedding model through onnxruntime: the export made at set-up gives sentence-transformers' own vectors."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from assistant.index.corpus import load_passages
from assistant.index.embedding import (
    EXPORT_FILE,
    STAMP_FILE,
    OnnxEmbeddings,
    export_dir,
    export_onnx,
    load_embeddings,
    load_onnx,
)
from assistant.index.indexing import embedded_text
from assistant.index.models import ModelError
from assistant.settings import Settings


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fresh export into a private cache, as `assistant warm` makes it at set-up."""
    settings = Settings(cache_dir=tmp_path_factory.mktemp("cache"))
    _, passages = load_passages(settings.paths.corpus_dir)
    how = export_onnx(settings, [embedded_text(p) for p in passages])
    assert how.startswith("exported"), how
    return settings


@pytest.fixture(scope="module")
def reference(exported):
    return load_embeddings(exported.updated(embedding_runtime="torch"))


def _cosines(a, b) -> np.ndarray:
    return (np.array(a) * np.array(b)).sum(axis=1)


def test_onnx_vectors_match_sentence_transformers_on_the_corpus_and_on_questions(exported, reference):
    onnx = load_embeddings(exported)
    assert isinstance(onnx, OnnxEmbeddings)
    _, passages = load_passages(exported.paths.corpus_dir)
    texts = [embedded_text(p) for p in passages]
    assert _cosines(onnx.embed_documents(texts), reference.embed_documents(texts)).min() >= 0.999
    questions = ["Who spoke first?", "What was agreed, and by whom?", "x" * 3000, "Grüße aus Köln – ça va?"]
    ours = [onnx.embed_query(q) for q in questions]
    assert _cosines(ours, [reference.embed_query(q) for q in questions]).min() >= 0.999
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in ours)


def test_answering_needs_no_torch(exported):
    """The point of the export: a process that embeds a question never imports torch."""
    import subprocess

    code = (
        "import sys; from assistant.index.embedding import load_embeddings; from assistant.settings import Settings; "
        f"e = load_embeddings(Settings(cache_dir={str(exported.paths.cache_dir)!r})); e.embed_query('hello'); "
        "print(type(e).__name__, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["OnnxEmbeddings", "False", "False"]


def test_an_export_of_other_weights_is_not_used(exported):
    folder = export_dir(exported)
    stamp = json.loads((folder / STAMP_FILE).read_text())
    try:
        (folder / STAMP_FILE).write_text(json.dumps({**stamp, "weights": [["model.safetensors", 1, 1]]}))
        assert load_onnx(exported) is None
        assert not isinstance(load_embeddings(exported), OnnxEmbeddings)
    finally:
        (folder / STAMP_FILE).write_text(json.dumps(stamp))


def test_the_same_weights_installed_again_reuse_the_export(exported):
    """Two clones share one cache: their weight files differ only in mtime, so neither exports over the other."""
    folder = export_dir(exported)
    stamp = json.loads((folder / STAMP_FILE).read_text())
    assert stamp["digest"]
    other_mtimes = [[name, size, mtime + 1] for name, size, mtime in stamp["weights"]]
    try:
        (folder / STAMP_FILE).write_text(json.dumps({**stamp, "weights": other_mtimes}))
        assert isinstance(load_onnx(exported), OnnxEmbeddings)
        (folder / STAMP_FILE).write_text(json.dumps({**stamp, "weights": other_mtimes, "digest": "0" * 64}))
        assert load_onnx(exported) is None  # other content, same sizes: not these weights
    finally:
        (folder / STAMP_FILE).write_text(json.dumps(stamp))


def test_a_damaged_export_falls_back_to_sentence_transformers_and_says_how_to_redo_it(tmp_path, exported, caplog):
    settings = exported.updated(cache_dir=tmp_path)
    folder = export_dir(settings)
    folder.mkdir(parents=True)
    (folder / STAMP_FILE).write_text((export_dir(exported) / STAMP_FILE).read_text())
    (folder / EXPORT_FILE).write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING):
        embeddings = load_embeddings(settings)
    assert not isinstance(embeddings, OnnxEmbeddings)
    assert "assistant warm" in caplog.text
    with pytest.raises(ModelError, match="assistant warm"):
        load_embeddings(settings.updated(embedding_runtime="onnx"))


def test_a_second_export_reuses_the_first_and_torch_runtime_skips_it(exported):
    assert export_onnx(exported, ["a passage"]) == "reused"
    assert export_onnx(exported.updated(embedding_runtime="torch"), ["a"]).startswith("skipped")


def test_an_export_that_drifts_is_not_kept(tmp_path, exported):
    settings = exported.updated(cache_dir=tmp_path, onnx_min_cosine=1.5)
    how = export_onnx(settings, ["one passage", "another passage"])
    assert how.startswith("not kept")
    assert not export_dir(settings).exists()
    assert load_onnx(settings) is None
