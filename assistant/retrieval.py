"""Retrieval stage: dense (Chroma) and BM25 search over the passages, fused by reciprocal rank."""

from __future__ import annotations

from dataclasses import dataclass

from .corpus import Passage
from .text import content_stem_list, content_stems

_RRF_K = 60  # the usual reciprocal-rank-fusion constant: flattens rank differences deep in the lists


@dataclass
class Retrieval:
    """Ranked passages for one question, plus what the answerability gate needs."""

    passages: list[Passage]
    best_distance: float  # cosine distance of the nearest passage (0 same, 1 unrelated)
    lexical_overlap: float  # share of the question's content words found in the best lexical passage


class HybridRetriever:
    """Dense plus BM25 retrieval; BM25 statistics are built once, at construction."""

    def __init__(self, passages: list[Passage], dense_search):
        from rank_bm25 import BM25Okapi

        self.passages = passages
        self.by_id = {p.passage_id: p for p in passages}
        self.dense_search = dense_search  # callable (query, k, doc_id) -> [(passage_id, distance)]
        tokens = [content_stem_list(f"{p.section} {p.text}") for p in passages]
        self.bm25 = BM25Okapi(tokens)
        self._stems = [set(t) for t in tokens]

    def retrieve(self, question: str, k: int = 4, doc_id: str | None = None) -> Retrieval:
        """Return the k best passages for question (only from doc_id when given) with fused scores and gate figures."""
        allowed = [i for i, p in enumerate(self.passages) if doc_id in (None, p.doc_id)]
        depth = min(len(allowed), max(20, 4 * k))
        dense = self.dense_search(question, depth, doc_id) if depth else []
        distances = dict(dense)
        query = content_stem_list(question)
        lexical = self.bm25.get_scores(query) if query else [0.0] * len(self.passages)
        lexical_rank = sorted(allowed, key=lambda i: -lexical[i])[:depth]

        fused: dict[str, float] = {}
        for rank, (pid, _) in enumerate(dense):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (_RRF_K + rank + 1)
        for rank, i in enumerate(lexical_rank):
            if lexical[i] <= 0:
                break
            pid = self.passages[i].passage_id
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (_RRF_K + rank + 1)
        ranked = sorted(fused, key=lambda pid: -fused[pid])[:k]
        passages = [self.by_id[pid].with_scores(round(fused[pid], 6), distances.get(pid)) for pid in ranked]

        query_stems = content_stems(question)
        best_lexical = lexical_rank[0] if lexical_rank and lexical[lexical_rank[0]] > 0 else None
        overlap = (
            len(query_stems & self._stems[best_lexical]) / len(query_stems)
            if best_lexical is not None and query_stems
            else 0.0
        )
        best_distance = min(distances.values()) if distances else 1.0
        return Retrieval(passages, best_distance, overlap)
