"""Index stage: embed passages into a persistent Chroma store that records what it was built from and heals itself."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.embeddings import Embeddings

from .corpus import CHUNKING, Document, Passage, corpus_hash
from .embedding import embedding_fingerprint, load_embeddings
from ..errors import AssistantError
from ..settings import Settings

log = logging.getLogger(__name__)

INDEX_VERSION = 1
MANIFEST = "manifest.json"
_KEEP = {".gitignore", ".gitkeep", "README.md"}
_BATCH = 32
_REMOTE_KEY = "assistant_manifest"  # collection metadata key holding the manifest on a Chroma server
_REMOTE_STATE = "assistant_state"


class IndexStoreError(AssistantError):
    """The vector store cannot be opened or built; the message says what to do."""


@dataclass
class IndexReport:
    """What opening the index did."""

    action: str  # "reused", "built", "updated"
    added: int
    removed: int
    seconds: float


def _client(settings: Settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    if settings.index.chroma_host:
        return chromadb.HttpClient(
            host=settings.index.chroma_host, port=settings.index.chroma_port, settings=chroma_settings
        )
    Path(settings.paths.index_dir).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.paths.index_dir), settings=chroma_settings)


def forget_open_stores(settings: Settings) -> None:
    """Drop chromadb's cached handles on the embedded store, so the next open reads the files afresh."""
    if not settings.index.chroma_host:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()


def _wipe(settings: Settings) -> None:
    """Delete the built store but keep the folder's tracked placeholders."""
    forget_open_stores(settings)  # drop cached handles on the files about to go
    index_dir = Path(settings.paths.index_dir)
    for child in Path(index_dir).iterdir():
        if child.name in _KEEP:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _manifest_path(settings: Settings) -> Path:
    return Path(settings.paths.index_dir) / MANIFEST


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _collection_names(client) -> set[str]:
    return {c.name if hasattr(c, "name") else c for c in client.list_collections()}


class _Manifest:
    """Where the record of what the store was built from lives.

    The embedded store keeps it as index_dir/manifest.json. A Chroma server keeps it in the collection's own
    metadata, on the server: every machine and web worker sharing the server then sees the same record (a second
    machine reuses the collection instead of rebuilding it under the others), and it goes when the collection goes.
    """

    def __init__(self, settings: Settings, client):
        self.settings = settings
        self.client = client
        self.remote = bool(settings.index.chroma_host)

    def read(self) -> dict | None:
        if not self.remote:
            return _read_manifest(_manifest_path(self.settings))
        if self.settings.index.collection_name not in _collection_names(self.client):
            return None
        raw = (self.client.get_collection(self.settings.index.collection_name).metadata or {}).get(_REMOTE_KEY)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def clear(self, collection) -> None:
        """Mark the store as being built: a build cut short must not look complete."""
        if self.remote:
            # modify() replaces the metadata; the distance function stays in the collection's configuration.
            collection.modify(metadata={_REMOTE_STATE: "building"})
        else:
            _manifest_path(self.settings).unlink(missing_ok=True)

    def write(self, collection, manifest: dict) -> None:
        if self.remote:
            collection.modify(metadata={_REMOTE_KEY: json.dumps(manifest, sort_keys=True)})
            return
        path = _manifest_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        tmp.replace(path)


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="passage", file=sys.stderr, disable=total == 0, leave=False)


class QueryCache(Embeddings):
    """Embeddings that remember recent queries: retrieval and the gate embed the same question once."""

    def __init__(self, embeddings: Embeddings, size: int = 256):
        self.inner = embeddings.inner if isinstance(embeddings, QueryCache) else embeddings
        self.size = size
        self._queries: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        vector = self._queries.pop(text, None)
        if vector is None:
            vector = self.inner.embed_query(text)
        self._queries[text] = vector  # most recent last
        while len(self._queries) > self.size:
            self._queries.pop(next(iter(self._queries)))
        return vector


class PassageIndex:
    """The Chroma collection of a corpus's passages, kept in step with the corpus."""

    def __init__(self, settings: Settings, embeddings=None):
        self.settings = settings
        self.embeddings = QueryCache(embeddings or load_embeddings(settings))
        self.store = None

    def open(
        self, documents: list[Document], passages: list[Passage], rebuild: bool = False, progress=None
    ) -> IndexReport:
        """Open the store, building or updating it when the corpus, model or chunking changed; heal a broken one."""
        started = time.perf_counter()
        try:
            report = self._open(documents, passages, rebuild, progress)
        except IndexStoreError:
            raise
        except Exception as exc:  # a truncated or corrupt store surfaces as many kinds of error
            if self.settings.index.chroma_host:
                raise IndexStoreError(
                    f"The Chroma server at {self.settings.index.chroma_host}:{self.settings.index.chroma_port} failed ({exc}). "
                    "Check that it is running (`chroma run --port PORT`) or unset ASSISTANT_CHROMA_HOST."
                ) from exc
            log.warning("The index in %s is unreadable (%s); rebuilding it.", self.settings.paths.index_dir, exc)
            try:
                _wipe(self.settings)
                report = self._open(documents, passages, rebuild=True, progress=progress)
            except Exception as again:
                raise IndexStoreError(
                    f"Could not rebuild the index in {self.settings.paths.index_dir} ({again}). Delete the folder's "
                    "contents and run `assistant index --rebuild`."
                ) from again
        report.seconds = time.perf_counter() - started
        return report

    def _expected(self, documents: list[Document], passages: list[Passage]) -> dict:
        return {
            "version": INDEX_VERSION,
            "embedding": embedding_fingerprint(self.settings),
            "chunking": CHUNKING,
            "collection": self.settings.index.collection_name,
            "corpus_hash": corpus_hash(documents),
            "documents": {d.doc_id: d.sha256 for d in documents},
            "passages": len(passages),
        }

    def _open(self, documents, passages, rebuild: bool, progress=None) -> IndexReport:
        from langchain_chroma import Chroma

        client = _client(self.settings)
        expected = self._expected(documents, passages)
        record = _Manifest(self.settings, client)
        manifest = record.read()
        same_recipe = manifest is not None and all(
            manifest.get(key) == expected[key] for key in ("version", "embedding", "chunking", "collection")
        )
        if (rebuild or not same_recipe) and self.settings.index.collection_name in _collection_names(client):
            client.delete_collection(self.settings.index.collection_name)
        self.store = Chroma(
            client=client,
            collection_name=self.settings.index.collection_name,
            embedding_function=self.embeddings,
            collection_metadata={"hnsw:space": "cosine"},
        )
        collection = self.store._collection
        if same_recipe and not rebuild and manifest.get("corpus_hash") == expected["corpus_hash"]:
            if collection.count() == expected["passages"]:
                return IndexReport("reused", 0, 0, 0.0)
            log.warning("The index holds %d passages, expected %d; rebuilding.", collection.count(), len(passages))
            return self._open(documents, passages, rebuild=True, progress=progress)

        # Only documents that are new or changed are embedded again; removed ones leave the store.
        old_docs = (manifest or {}).get("documents", {}) if same_recipe and not rebuild else {}
        stale = [doc_id for doc_id, sha in old_docs.items() if expected["documents"].get(doc_id) != sha]
        fresh = {d.doc_id for d in documents if old_docs.get(d.doc_id) != d.sha256}
        record.clear(collection)  # a build cut short must not look complete
        removed = 0
        for doc_id in stale:
            ids = collection.get(where={"doc_id": doc_id}, include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
                removed += len(ids)
        todo = [p for p in passages if p.doc_id in fresh]
        bar = _progress_bar(len(todo), "Indexing passages")
        for i in range(0, len(todo), _BATCH):
            batch = todo[i : i + _BATCH]
            self.store.add_texts(
                texts=[embedded_text(p) for p in batch],
                metadatas=[_metadata(p) for p in batch],
                ids=[p.passage_id for p in batch],
            )
            bar.update(len(batch))
            if progress is not None:  # progress(done, total), e.g. the web page's bar
                progress(i + len(batch), len(todo))
        bar.close()
        if collection.count() != len(passages):
            raise IndexStoreError(
                f"The index holds {collection.count()} passages after building, expected {len(passages)}. "
                "Run `assistant index --rebuild`."
            )
        record.write(collection, expected)
        action = "updated" if old_docs else "built"
        return IndexReport(action, len(todo), removed, 0.0)

    def search(self, query: str, k: int, doc_id: str | None = None) -> list[tuple[str, float]]:
        """Return (passage_id, cosine distance) of the k nearest passages, only from doc_id when given."""
        where = {"doc_id": doc_id} if doc_id else None
        results = self.store.similarity_search_with_score(query, k=k, filter=where)
        return [(doc.metadata["passage_id"], float(distance)) for doc, distance in results]


def embedded_text(passage: Passage) -> str:
    """The text a passage is embedded as."""
    # The section heading gives a paragraph words it lacks, without being a passage itself.
    return f"{passage.section}. {passage.text}" if passage.section else passage.text


def _metadata(passage: Passage) -> dict:
    return {
        "passage_id": passage.passage_id,
        "doc_id": passage.doc_id,
        "number": passage.number,
        "section": passage.section,
        "start": passage.start,
        "end": passage.end,
        "source": passage.source,
        "title": passage.title,
    }
