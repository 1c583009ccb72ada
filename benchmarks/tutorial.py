"""The baseline: LangChain's RAG tutorial pipeline, built from its documented recipe on the same article and models."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from assistant.answer.reply import is_decline

# The tutorial's prompt (rlm/rag-prompt), word for word.
TUTORIAL_PROMPT = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer the "
    "question. If you don't know the answer, just say that you don't know. Use three sentences maximum and keep the "
    "answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:"
)
_DONT_KNOW = re.compile(r"\b(don't|do not) know\b|\bnot (sure|certain)\b", re.I)


@dataclass
class TutorialAnswer:
    """What the tutorial pipeline returns, shaped like assistant.Answer so the same scoring applies."""

    question: str
    text: str
    abstained: bool
    passages: list
    timings: dict
    citations: list = field(default_factory=list)  # the tutorial has no citations
    reason: str = "answered"
    draft: str = ""


class TutorialRAG:
    """RecursiveCharacterTextSplitter(1000, 200, add_start_index) → Chroma → top-4 similarity → prompt → chat model."""

    def __init__(self, embeddings, chat_model, k: int = 4):
        self.embeddings = embeddings
        self.chat_model = chat_model
        self.k = k
        self.store = None

    def build_index(self, documents) -> float:
        """Split and embed the documents into a fresh in-memory Chroma collection; return the seconds it took."""
        import uuid

        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        started = time.perf_counter()
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
        docs = [Document(page_content=d.text, metadata={"source": d.doc_id}) for d in documents]
        splits = splitter.split_documents(docs)
        client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        self.store = Chroma(
            client=client, collection_name=f"tutorial-{uuid.uuid4().hex[:8]}", embedding_function=self.embeddings
        )
        for i in range(0, len(splits), 256):
            self.store.add_documents(splits[i : i + 256])
        self.chunks = len(splits)
        return time.perf_counter() - started

    def retrieve(self, question: str) -> list:
        """Return the top-k chunks as passage-like objects (doc_id, start, end, text)."""
        docs = self.store.similarity_search(question, k=self.k)
        return [
            SimpleNamespace(
                doc_id=d.metadata["source"],
                start=d.metadata["start_index"],
                end=d.metadata["start_index"] + len(d.page_content),
                text=d.page_content,
                passage_id=f"{d.metadata['source']}@{d.metadata['start_index']}",
            )
            for d in docs
        ]

    def answer(self, question: str, history=None) -> TutorialAnswer:
        """Answer like the tutorial: no history, no citations, refusal only if the model says so."""
        from langchain_core.messages import HumanMessage

        t0 = time.perf_counter()
        passages = self.retrieve(question)
        t1 = time.perf_counter()
        prompt = TUTORIAL_PROMPT.format(question=question, context="\n\n".join(p.text for p in passages))
        text, first = "", None
        for chunk in self.chat_model.stream([HumanMessage(prompt)]):
            if first is None and chunk.content:
                first = time.perf_counter() - t1
            text += chunk.content
        total = time.perf_counter() - t0
        text = text.strip()
        abstained = bool(is_decline(text) or _DONT_KNOW.search(text))
        timings = {"retrieve": t1 - t0, "first_token": first or total, "first_text": first or total, "total": total}
        return TutorialAnswer(question, text, abstained, passages, timings, draft=text)
