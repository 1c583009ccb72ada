"""The SQuAD benchmark's engines: this tree's assistant, an earlier commit's in a worker process of its own, and
the tutorial, all driven through one handle() so that they are run and timed alike."""

from __future__ import annotations

import contextlib
import inspect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.squad_data import ROOT, SquadError

ENGINES = ("ours", "retrieved", "before", "tutorial")
ASSISTANTS = ("ours", "retrieved", "before")  # the engines that are this project (cite, abstain, have targets)


def handle(bot, job: dict) -> dict:
    """Do one job with an assistant-like bot: "load" (index and model), "warm" (warm_up(scope)) or "answer".

    The same function serves every engine, here and (as source) in the worker of an earlier tree, so that all are
    driven and timed alike; it uses only the public Assistant API, which an older tree has too.
    """
    import time

    started = time.perf_counter()
    try:
        if job["do"] == "load":
            bot.load()
            model = bot.chat_model
            if hasattr(model, "load"):
                model.load()
            out = {}
        elif job["do"] == "warm":
            out = {"how": str(bot.warm_up(job["scope"]))}
        else:
            a = bot.answer(job["question"], None, scope=job["scope"])
            cited = [
                {"passage_id": c.passage_id, "doc_id": getattr(c, "doc_id", None), "number": getattr(c, "number", None)}
                for c in a.citations
            ]
            out = {
                "text": a.text,
                "abstained": bool(a.abstained),
                "reason": str(a.reason),
                "citations": cited,
                "timings": dict(a.timings),
                "draft": getattr(a, "draft", ""),
                "verdicts": [v.to_dict() for v in getattr(a, "verdicts", ())],
            }
    except Exception as exc:  # reported with the case; a failed load or warm-up stops the run (see Engine.run)
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - started, 4)
    return out


# Runs inside a worker started in another tree: one JSON job per line on stdin, one JSON result per line on stdout.
WORKER = f"""
import json, sys
sys.path.insert(0, sys.argv[1])
from assistant.answering import Assistant
from assistant.settings import Settings

{inspect.getsource(handle)}
bot = Assistant(Settings(corpus_dir=sys.argv[2], index_dir=sys.argv[3]))
print(json.dumps({{"ready": True}}), flush=True)
for line in sys.stdin:
    print(json.dumps(handle(bot, json.loads(line))), flush=True)
"""


class Engine:
    """An engine in this process: this tree's Assistant, or the tutorial behind the same interface."""

    def __init__(self, name: str, bot, cites: bool = True):
        self.name, self.bot, self.cites = name, bot, cites

    def run(self, job: dict) -> dict:
        """Do job (see handle); a failed load or warm-up is fatal, a failed answer is a case result."""
        out = self.call(job)
        if out.get("error") and job["do"] != "answer":
            raise SquadError(f"{self.name}: {job['do']} failed: {out['error']}")
        return out

    def call(self, job: dict) -> dict:
        """The job's result, unchecked."""
        return handle(self.bot, job)

    def close(self) -> None:
        """Nothing to stop for an engine in this process."""


class WorkerEngine(Engine):
    """An assistant of another tree in a worker process of its own (as benchmarks/versions.py runs one)."""

    def __init__(self, name: str, root: Path, corpus: Path, index: Path):
        super().__init__(name, None)
        args = [sys.executable, "-c", WORKER, str(root), str(corpus), str(index)]
        self.process = subprocess.Popen(args, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.read()  # ready

    def read(self) -> dict:
        """The worker's next JSON line (other output, such as a library's, is skipped)."""
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise SquadError(f"The {self.name} worker stopped (its error is above).")

    def call(self, job: dict) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        """End the worker: closing its stdin ends its loop."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


class TutorialBot:
    """LangChain's RAG tutorial (benchmarks/tutorial.py) shaped like an Assistant for handle().

    It has no scope, so warm_up(scope) builds its index over that scope's text (one article, or all of them): its
    one-time reading. It borrows the embedding and chat models of this tree's assistant, as generalization.py does.
    """

    def __init__(self, assistant):
        self.assistant = assistant
        self.pipelines: dict = {}

    def load(self):
        return self.assistant.load()

    @property
    def chat_model(self):
        return self.assistant.chat_model

    def warm_up(self, scope: str | None = None) -> str:
        """Build the tutorial's index over the scope's text (one article, or all)."""
        from benchmarks.tutorial import TutorialRAG

        rag = TutorialRAG(self.assistant.index.embeddings, self.assistant.chat_model)
        rag.build_index([d for d in self.assistant.documents if scope in (None, d.doc_id)])
        self.pipelines[scope] = rag
        return f"{rag.chunks} chunks"

    def answer(self, question: str, history=None, scope: str | None = None):
        """The tutorial's answer from the index of that scope (built now if warm_up was not called)."""
        if scope not in self.pipelines:
            self.warm_up(scope)
        return self.pipelines[scope].answer(question, history)


def short_commit(revision: str = "HEAD") -> str:
    """The short hash of revision; fails loudly on an unknown one."""
    done = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SquadError(f"git does not know {revision!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def tree_commit() -> str:
    """This tree's commit, with -dirty when tracked files differ from it."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return short_commit() + ("-dirty" if status.stdout.strip() else "")


def start_engines(args, corpus_dir: Path, tree: Path | None) -> dict[str, Engine]:
    """ours (in this process), before (a worker in tree, when given) and the tutorial, each loaded once."""
    from assistant.answering import Assistant
    from assistant.settings import Settings

    settings = Settings(corpus_dir=corpus_dir, index_dir=args.workdir / "index")
    ours = Assistant(settings)
    engines = {"ours": Engine("ours", ours)}
    if args.retrieved:
        # The same chat model, answering from the retrieved sentences even where it has read the article.
        retrieved = Assistant(settings.updated(whole_article=False), chat_model=ours.chat_model)
        engines["retrieved"] = Engine("retrieved", retrieved)
    if tree is not None:
        index = args.workdir / f"index-before-{short_commit(args.before)}"
        engines["before"] = WorkerEngine("before", tree, corpus_dir, index)
    if args.baseline_every:
        engines["tutorial"] = Engine("tutorial", TutorialBot(ours), cites=False)
    return engines


@contextlib.contextmanager
def before_tree(revision: str | None):
    """A temporary git worktree of revision (None: no tree), removed afterwards."""
    if not revision:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="squad-before-") as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True, capture_output=True
        )
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
