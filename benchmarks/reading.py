"""A new long article and questions asked at once: does a question wait behind the article's reading?

    python -m benchmarks.reading [--before f8402ed] [--article huguenot] [--questions 10] [--skip-before]
                                 [--out benchmarks/results/reading.json]
    python -m benchmarks.reading --render benchmarks/results/reading.json   # only rewrite BENCHMARKS.md's section

Each tree (this one, and `--before`, checked out into a git worktree) runs in worker processes of its own, one after
the other on the same cores, every worker with a fresh corpus (the default NATO article), index and cache folder (the
model file is shared, its saved states are not: every reading is a real one). Measured, per tree:

- **Asked at once.** The article (a SQuAD 2.0 article, CC BY-SA 4.0) is added as the page adds an upload
  (`ArticleHandlers.add`: index, then read in the background, example questions written), and at once the questions
  are asked one after the other as the page asks them (`ChatHandlers.accept` and `respond`), each timed from being
  shown to its Answer. Then the reading's end is waited for (time from the upload), and this tree asks the same
  questions again: answered from the whole article.
- **The reading with three questions.** In a fresh worker, the article is added without the page (no example
  questions) and read in the background (`start_reading`) alone, timed to its end; then its state is dropped and it
  is read again while three of the questions are asked, at 20 %, 45 % and 70 % of the time it took alone.
- **Retrieval when nothing is read.** This tree with `ASSISTANT_WHOLE_ARTICLE=false` answers the same questions:
  what the answers given during the reading should match.

Questions: the article's seeded sample (`benchmarks.squad_data.article_sample`), answerable and unanswerable
alternating; right means an answerable answered with a gold span, an unanswerable refused
(benchmarks.squad_scoring.score).
Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import write_section
from benchmarks.squad_data import ATTRIBUTION, DEFAULT_DATA, article_sample, build_corpus, load_articles
from benchmarks.squad_scoring import score

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "reading.json"
START, END = "<!-- reading:start -->", "<!-- reading:end -->"
QUESTION_AT = (0.20, 0.45, 0.70)  # when the three questions come, as parts of the reading's time alone
TARGETS = {"asked_at_once_p50": 15.0, "reading_ratio": 1.3}

# Runs inside a worker with the tree given: one JSON job per line on stdin, one JSON result per line on stdout.
WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from assistant.answering import Assistant
from assistant.settings import Settings
from assistant.web.articles import ArticleHandlers
from assistant.web.handlers import ChatHandlers
from assistant.web.workspace import Examples

bot = Assistant(Settings(**json.loads(sys.argv[2])))
bot.warm_up()
chat, examples = ChatHandlers(bot, bot.passages, None), Examples(bot)
started = {}

def ask(job):
    began = time.monotonic()
    _, turns, *_ = chat.accept(job["question"], [], job["scope"], None, None)
    for _ in chat.respond(None):
        pass
    turn = turns[-1]
    data = turn.answer_json or {}
    reading = bot.reading_of(job["scope"])
    return {"seconds": time.monotonic() - began, "text": data.get("text", turn.answer), "error": turn.error,
            "abstained": data.get("abstained", False), "citations": data.get("citations", []),
            "timings": data.get("timings", {}),
            "reading": None if reading is None else [reading.done, reading.total, reading.finished]}

def add(job):
    before = {d.doc_id for d in bot.documents}
    began = time.monotonic()
    if job["page"]:
        ArticleHandlers(bot, examples).add(job["path"], job["title"], "", "", progress=lambda *a, **k: None)
    else:
        from assistant.index.ingest import add_document, reindex
        add_document(bot.settings, Path(job["path"]).read_bytes(), Path(job["path"]).name, job["title"])
        reindex(bot.settings, None, bot.index.embeddings)
        bot.load()
    (doc,) = {d.doc_id for d in bot.documents} - before
    started[doc] = began
    return {"doc": doc, "seconds": time.monotonic() - began}

def read(job):
    view = bot.view(job["doc"])
    bot.chat_model.forget(view.system)
    bot.reader.readings.pop(view.system, None)
    started[job["doc"]] = time.monotonic()
    bot.start_reading(view)
    return {}

def wait_read(job):
    while True:
        reading = bot.reading_of(job["doc"])
        if reading is not None and (reading.finished or reading.error):
            return {"seconds": time.monotonic() - started[job["doc"]], "error": reading.error,
                    "tokens": reading.total}
        time.sleep(0.2)

jobs = {"ask": ask, "add": add, "read": read, "wait_read": wait_read}
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    print(json.dumps(jobs[job["do"]](job)), flush=True)
"""


class Worker:
    """One tree of the assistant in a process of its own, with a fresh corpus, index and cache folder."""

    def __init__(self, root: Path, scratch: Path, whole_article: bool = True):
        scratch.mkdir(parents=True)
        corpus = scratch / "corpus"
        corpus.mkdir()
        for path in (ROOT / "corpus").iterdir():
            (corpus / path.name).write_bytes(path.read_bytes())
        shared = Path.home() / ".cache" / "nato-assistant"  # the model file and the embedding model's export
        (scratch / "cache").mkdir()
        if (shared / "onnx").is_dir():
            (scratch / "cache" / "onnx").symlink_to(shared / "onnx")
        model = shared / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
        settings = {
            "corpus_dir": str(corpus),
            "index_dir": str(scratch / "index"),
            "cache_dir": str(scratch / "cache"),
            "data_dir": str(scratch / "data"),
            "llm_model_path": os.environ.get("ASSISTANT_LLM_MODEL_PATH", str(model)),
            "whole_article": whole_article,
        }
        args = [sys.executable, "-c", WORKER, str(root), json.dumps(settings)]
        self.process = subprocess.Popen(args, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.call_reply()

    def call_reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("A benchmark worker stopped; its error is above.")

    def call(self, do: str, **job) -> dict:
        self.process.stdin.write(json.dumps({"do": do, **job}) + "\n")
        self.process.stdin.flush()
        return self.call_reply()

    def close(self) -> None:
        self.process.kill()  # background readings would only go on: the figures are taken
        self.process.wait(timeout=60)


def say(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def asked_at_once(root: Path, scratch: Path, article: dict, cases: list, again: bool) -> dict:
    """Add the article as the page does and ask every question at once; then wait for the reading (and ask again)."""
    worker = Worker(root, scratch)
    try:
        added = worker.call("add", path=article["path"], title=article["title"], page=True)
        doc = added["doc"]
        during = [worker.call("ask", question=c.question, scope=doc) | {"qid": c.qid} for c in cases]
        say(f"  answered during the reading: p50 {median([r['seconds'] for r in during]):.1f} s")
        read = worker.call("wait_read", doc=doc)
        after = [worker.call("ask", question=c.question, scope=doc) | {"qid": c.qid} for c in cases] if again else []
    finally:
        worker.close()
    return {"added_seconds": added["seconds"], "during": during, "read": read, "after": after}


def reading_with_questions(root: Path, scratch: Path, article: dict, cases: list) -> dict:
    """The article's reading alone, then again with three questions asked during it."""
    worker = Worker(root, scratch)
    try:
        doc = worker.call("add", path=article["path"], title=article["title"], page=False)["doc"]
        worker.call("read", doc=doc)
        alone = worker.call("wait_read", doc=doc)
        say(f"  read alone in {alone['seconds']:.0f} s")
        worker.call("read", doc=doc)
        began, asked = time.monotonic(), []
        for at, case in zip(QUESTION_AT, cases, strict=False):
            time.sleep(max(0.0, began + at * alone["seconds"] - time.monotonic()))
            asked.append(worker.call("ask", question=case.question, scope=doc) | {"qid": case.qid})
        together = worker.call("wait_read", doc=doc)
    finally:
        worker.close()
    return {"alone": alone, "with_questions": together, "questions": asked}


def retrieval_only(scratch: Path, article: dict, cases: list) -> dict:
    """This tree answering from retrieval alone (whole_article off): nothing is read."""
    worker = Worker(ROOT, scratch, whole_article=False)
    try:
        doc = worker.call("add", path=article["path"], title=article["title"], page=False)["doc"]
        return {"answers": [worker.call("ask", question=c.question, scope=doc) | {"qid": c.qid} for c in cases]}
    finally:
        worker.close()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def short_commit(revision: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or revision


def prepare(args, scratch: Path) -> tuple[dict, list]:
    """The article as an upload (its paragraphs, one per line) and its sample of questions."""
    articles = {a.slug: a for a in load_articles(Path(args.data))}
    article = articles[args.article]
    cases = build_corpus([article], scratch / "squad")[article.slug]
    half = args.questions // 2
    chosen = article_sample(cases, article.slug, args.questions - half, half)
    path = scratch / f"{article.slug}.txt"
    path.write_text("\n".join(article.paragraphs) + "\n", encoding="utf-8")
    words = sum(len(p.split()) for p in article.paragraphs)
    return {"path": str(path), "title": article.title, "slug": article.slug, "words": words}, chosen


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        article, cases = prepare(args, scratch)
        trees = {"ours": ROOT}
        if not args.skip_before:
            tree = scratch / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True)
            trees = {"before": tree, "ours": ROOT}
        results: dict = {"trees": {}}
        try:
            for name, root in trees.items():
                say(f"{name}: a question asked at once after the upload")
                asked = asked_at_once(root, scratch / f"{name}-once", article, cases, again=name == "ours")
                say(f"{name}: the reading alone and with three questions")
                reading = reading_with_questions(root, scratch / f"{name}-reading", article, cases)
                results["trees"][name] = {"asked_at_once": asked, "reading": reading}
            say("ours: retrieval only, nothing read")
            results["retrieval"] = retrieval_only(scratch / "retrieval", article, cases)
        finally:
            if not args.skip_before:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    results.update(meta(args, article, cases))
    return results


def meta(args, article: dict, cases: list) -> dict:
    return {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python -m benchmarks.reading", *sys.argv[1:]]),
        "commit": short_commit("HEAD"),
        "before": None if args.skip_before else short_commit(args.before),
        "cores": os.cpu_count(),
        "article": {k: article[k] for k in ("title", "slug", "words")} | {"attribution": ATTRIBUTION},
        "cases": [{"qid": c.qid, "kind": c.kind, "question": c.question} for c in cases],
    }


def mark(results: dict, cases: list) -> None:
    """Score every answer in place: right (an answerable with a gold span, an unanswerable refused)."""
    by_id = {c.qid: c for c in cases}

    def scored(answers: list[dict]) -> None:
        for answer in answers:
            case = by_id[answer["qid"]]
            s = score(case, answer)
            answer["right"] = bool(s["right"] if case.kind == "answerable" else s["refused"])

    for tree in results["trees"].values():
        scored(tree["asked_at_once"]["during"])
        scored(tree["asked_at_once"]["after"])
        scored(tree["reading"]["questions"])
    scored(results["retrieval"]["answers"])


def figures(results: dict) -> dict:
    """The table's figures per tree, from the saved run."""
    out = {}
    for name, tree in results["trees"].items():
        once, reading = tree["asked_at_once"], tree["reading"]
        during, after = once["during"], once["after"]
        alone, together = reading["alone"]["seconds"], reading["with_questions"]["seconds"]
        out[name] = {
            "first": during[0]["seconds"],
            "p50": median([a["seconds"] for a in during]),
            "right": sum(a["right"] for a in during) / len(during),
            "read_after_upload": once["read"]["seconds"],
            "after_p50": median([a["seconds"] for a in after]) if after else None,
            "after_right": sum(a["right"] for a in after) / len(after) if after else None,
            "alone": alone,
            "with_questions": together,
            "ratio": together / alone,
            "three_p50": median([a["seconds"] for a in reading["questions"]]),
        }
    answers = results["retrieval"]["answers"]
    out["retrieval"] = {
        "p50": median([a["seconds"] for a in answers]),
        "right": sum(a["right"] for a in answers) / len(answers),
    }
    return out


def section(results: dict) -> str:
    """The BENCHMARKS.md section of a run."""
    f, n = figures(results), len(results["cases"])
    article = results["article"]
    label = {"before": f"before (`{results['before']}`)", "ours": f"this tree (`{results['commit']}`)"}
    rows = [
        "| tree | first question | whole answer p50 | right | article read, from the upload | reading alone "
        "| with 3 questions | ratio | those 3: p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in results["trees"]:
        g = f[name]
        rows.append(
            f"| {label[name]} | {g['first']:.1f} s | {g['p50']:.1f} s | {g['right']:.2f} "
            f"| {g['read_after_upload']:.0f} s | {g['alone']:.0f} s | {g['with_questions']:.0f} s "
            f"| {g['ratio']:.2f}× | {g['three_p50']:.1f} s |"
        )
    ours, retrieval = f["ours"], f["retrieval"]
    lines = [
        START,
        "## A new article: questions asked while it is read",
        "",
        f"Command: `{results['command']}` ({results['date']}, {results['cores']} cores, at `{results['commit']}`). "
        f"Article: *{article['title']}* from SQuAD 2.0 ({article['words']:,} words), {n} of its questions "
        "(answerable and unanswerable alternating), asked one after the other as soon as the upload returned. "
        f"{article['attribution']}",
        "",
        *rows,
        "",
        f"- **Targets** (issue 32): a question asked right after the upload, whole answer p50 ≤ "
        f"{TARGETS['asked_at_once_p50']:.0f} s: {ours['p50']:.1f} s; the reading with three questions ≤ "
        f"{TARGETS['reading_ratio']}× its time alone: {ours['ratio']:.2f}×.",
        f"- **As right as retrieval.** During the reading: {ours['right']:.2f} right. The same questions answered "
        f"from retrieval when nothing is read (`ASSISTANT_WHOLE_ARTICLE=false`): {retrieval['right']:.2f} right "
        f"(p50 {retrieval['p50']:.1f} s).",
    ]
    if ours["after_p50"] is not None:
        lines.append(
            f"- **After the reading** the same questions are answered from the whole article: p50 "
            f"{ours['after_p50']:.1f} s, {ours['after_right']:.2f} right."
        )
    return "\n".join([*lines, END])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="f8402ed", help="the earlier commit, run side by side")
    parser.add_argument("--skip-before", action="store_true", help="measure this tree only")
    parser.add_argument("--article", default="huguenot", help="slug of the SQuAD article to add")
    parser.add_argument("--questions", type=int, default=10, help="questions asked at once after the upload")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the SQuAD 2.0 file")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the results JSON goes")
    parser.add_argument("--render", metavar="JSON", help="only rewrite BENCHMARKS.md's section from a saved run")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text(encoding="utf-8"))
    else:
        results = run(args)
        with tempfile.TemporaryDirectory() as tmp:
            article = {a.slug: a for a in load_articles(Path(args.data))}[args.article]
            mark(results, build_corpus([article], Path(tmp))[article.slug])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = section(results)
    write_section(text, ROOT / "BENCHMARKS.md", START, END)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
