"""Retrieve stage: LangChain retrievers over the passages (Chroma and BM25, fused by reciprocal rank), and the gate's figures.

`build_retriever` gives a `BaseRetriever` that any LangChain chain can use: it returns `Document`s whose metadata carry
the passage id, its document offsets and its fused score. `gate_figures` measures how close the question is to the
corpus at all, for the answerability gate; `search` runs both, and `retrieve` is the pipeline's stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_classic.retrievers import EnsembleRetriever
from langchain_community.retrievers import BM25Retriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig

from ..index.corpus import Passage
from ..settings import Settings
from ..text import content_stem_list, content_stems
from .state import AnswerState, Gate, Retrieval, Update

if TYPE_CHECKING:
    from .parts import Parts


def retrieve(state: AnswerState, parts: Parts) -> Update:
    """Find the passages nearest the question, and how near they are."""
    with state.timings.timed("retrieve"):
        return {"found": parts.search(state.standalone, state.view, config=state.config)}


def passage_document(passage: Passage) -> Document:
    """The LangChain Document of a passage: its text, with id, offsets and provenance in the metadata."""
    meta = passage.to_dict()
    text = meta.pop("text")
    return Document(page_content=text, metadata=meta, id=passage.passage_id)


def _lexical_text(document: Document) -> str:
    # The heading gives a paragraph words it lacks, as it does in the dense index.
    return f"{document.metadata.get('section') or ''} {document.page_content}"


class LexicalRetriever(BM25Retriever):
    """BM25 over the passages' stems, returning only passages that share a word with the query (with their score)."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        scores = self.scores(query)
        ranked = sorted(range(len(self.docs)), key=lambda i: -scores[i])[: self.k]
        return [self.docs[i] for i in ranked if scores[i] > 0]

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every passage for query (all zero when it has no content word)."""
        terms = self.preprocess_func(query)
        return list(self.vectorizer.get_scores(terms)) if terms else [0.0] * len(self.docs)


class FusedRetriever(EnsembleRetriever):
    """Reciprocal-rank fusion of the retrievers' lists, cut to the k best, each Document carrying its fused score."""

    k: int = 4
    documents: dict[str, Document]  # passage id -> the passage's Document (Chroma returns its embedded text)

    def weighted_reciprocal_rank(self, doc_lists: list[list[Document]]) -> list[Document]:
        fused: dict[str, float] = {}
        for docs, weight in zip(doc_lists, self.weights, strict=True):
            for rank, doc in enumerate(docs, start=1):
                pid = doc.metadata[self.id_key]
                fused[pid] = fused.get(pid, 0.0) + weight / (rank + self.c)
        best = sorted(fused, key=lambda pid: -fused[pid])[: self.k]
        return [self._scored(pid, fused[pid]) for pid in best]

    def _scored(self, pid: str, score: float) -> Document:
        doc = self.documents[pid]
        return Document(page_content=doc.page_content, metadata={**doc.metadata, "score": round(score, 6)}, id=pid)


def build_retriever(passages: list[Passage], store, settings: Settings, doc_id: str | None = None) -> FusedRetriever:
    """The hybrid retriever over passages (those of doc_id only, when given) and the Chroma store that embeds them."""
    depth = max(settings.retrieval.retrieval_depth, 4 * settings.retrieval.top_k)
    documents = [passage_document(p) for p in passages if doc_id in (None, p.doc_id)]
    lexical = None
    if documents:
        lexical = LexicalRetriever.from_texts(
            [_lexical_text(d) for d in documents],
            metadatas=[d.metadata for d in documents],
            preprocess_func=content_stem_list,
            k=depth,
        )
    search = {"k": depth, **({"filter": {"doc_id": doc_id}} if doc_id else {})}
    dense = store.as_retriever(search_kwargs=search)
    retrievers: list[Any] = [dense, lexical] if lexical is not None else [dense]
    return FusedRetriever(
        retrievers=retrievers,
        weights=[1.0] * len(retrievers),
        c=settings.retrieval.rrf_k,
        id_key="passage_id",
        k=settings.retrieval.top_k,
        documents={d.metadata["passage_id"]: d for d in documents},
    )


def gate_figures(question: str, retriever: FusedRetriever, store) -> Gate:
    """Measure question against retriever's passages: the nearest dense distance and the best BM25 word overlap."""
    dense, *rest = retriever.retrievers
    found = store.similarity_search_with_score(question, **dense.search_kwargs)
    distances = {doc.metadata["passage_id"]: float(distance) for doc, distance in found}
    overlap = 0.0
    terms = content_stems(question)
    if rest and terms:
        lexical: LexicalRetriever = rest[0]
        scores = lexical.scores(question)
        best = max(range(len(scores)), key=scores.__getitem__)
        if scores[best] > 0:
            overlap = len(terms & content_stems(lexical.docs[best].page_content)) / len(terms)
    return Gate(min(distances.values(), default=1.0), overlap, distances)


def search(
    question: str,
    retriever: BaseRetriever,
    store,
    by_id: dict[str, Passage],
    k: int | None = None,
    config: RunnableConfig | None = None,
) -> Retrieval:
    """Run retriever (cut to k) and the gate's measurement; return the ranked Passages with their scores."""
    if k is not None and k != retriever.k:
        retriever = retriever.model_copy(update={"k": k})
    docs = retriever.invoke(question, config=config)
    gate = gate_figures(question, retriever, store)
    passages = [
        by_id[d.metadata["passage_id"]].with_scores(d.metadata["score"], gate.distances.get(d.metadata["passage_id"]))
        for d in docs
    ]
    return Retrieval(passages, gate)
