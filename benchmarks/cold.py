"""One cold run, in a fresh process: import, load, answer one question; prints JSON (python -m benchmarks.cold WHICH Q)."""

from __future__ import annotations

import json
import sys
import time

START = time.perf_counter()


def main() -> None:
    which, question = sys.argv[1], sys.argv[2]
    from assistant.settings import Settings

    settings = Settings()
    if which == "ours":
        from assistant.answering import Assistant

        answer = Assistant(settings).answer(question)
    else:
        from assistant.corpus import load_documents
        from assistant.generation import build_chat_model
        from assistant.indexing import load_embeddings
        from benchmarks.tutorial import TutorialRAG

        rag = TutorialRAG(load_embeddings(settings), build_chat_model(settings))
        rag.build_index(load_documents(settings.corpus_dir))
        answer = rag.answer(question)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - START, "peak_mb": peak_mb, "text": answer.text}))


if __name__ == "__main__":
    main()
