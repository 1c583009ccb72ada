"""One cold run, in a fresh process: import, load, answer one question; prints JSON (python -m benchmarks.cold WHICH Q)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

START = time.perf_counter()


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB.

    Not getrusage's ru_maxrss: Linux carries that over from the parent across fork and exec, so a child of the big
    benchmark process would report the parent's peak instead of its own. VmHWM belongs to this process's memory map.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: the best figure there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def main() -> None:
    which, question = sys.argv[1], sys.argv[2]
    from assistant.settings import Settings

    settings = Settings()
    if which == "ours":
        from assistant.llamacpp import preload_for

        preload_for(settings)  # as `assistant ask` and answer() do
        from assistant.answering import Assistant

        answer = Assistant(settings).answer(question)
    else:
        from assistant.answer.generation import build_chat_model
        from assistant.index.corpus import load_documents
        from assistant.index.indexing import load_embeddings
        from benchmarks.tutorial import TutorialRAG

        rag = TutorialRAG(load_embeddings(settings), build_chat_model(settings))
        rag.build_index(load_documents(settings.paths.corpus_dir))
        answer = rag.answer(question)
    print(json.dumps({"seconds": time.perf_counter() - START, "peak_mb": peak_rss_mb(), "text": answer.text}))


if __name__ == "__main__":
    main()
