"""Command line: `assistant ask | index | chat | eval | bench`, each a thin shell over the same Assistant."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _settings(args):
    from .settings import Settings

    overrides = {}
    for name in ("host", "port", "top_k"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def render_answer(answer, show_timings: bool = False) -> str:
    """Format an Answer for the terminal: the text, then one line per citation."""
    from .answer.cite import NEAREST

    lines = [answer.text]
    for c in answer.citations:
        lines.append(f'[{c.index}] {c.doc_id} ¶{c.number}: "{c.quote}"')
    if answer.closest is not None:
        c = answer.closest
        lines.append(f'{NEAREST}: {c.doc_id} ¶{c.number}: "{c.quote}"')
    if show_timings:
        lines.append("(" + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items()) + ")")
    return "\n".join(lines)


class ReadingBar:
    """A terminal progress bar for the model reading an article once (minutes for a long one on two cores)."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="token", file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def read_articles(assistant, doc_ids) -> None:
    """Have the model read each article that fits its context once, with a bar; say what was done."""
    for doc_id in doc_ids:
        view = assistant.view(doc_id)
        bar = ReadingBar(f"Reading {doc_id}")
        try:
            how = assistant.read_article(view, progress=bar)
        finally:
            bar.close()
        if how == "skipped":
            print(f"{doc_id}: too long for the model's context: answered from retrieved sentences", file=sys.stderr)
        else:
            print(f"{doc_id}: whole text {how}", file=sys.stderr)


def cmd_ask(args) -> int:
    from .answer.guard import validate_question
    from .reading.priority import questions_for

    settings = _settings(args)
    # A one-shot process would end before a long read: answer from retrieval.
    settings.reading.read_in_background = False
    validate_question(args.question, settings.limits.max_question_chars)  # fail fast, before loading models
    with questions_for(settings).asking():  # a reading in another process (`assistant add`, the web) gives way
        return ask(args, settings)


def ask(args, settings) -> int:
    """Answer args.question, printing the answer as it streams when stdout is a terminal."""
    from .llamacpp import preload_for

    preload_for(settings)  # the model loads on the other core while the rest of the assistant is imported
    from .answering import Assistant

    assistant = Assistant(settings)
    history = json.loads(Path(args.history).read_text(encoding="utf-8")) if args.history else None
    sys.stderr.write("Loading the index and the model…\n")
    assistant.warm_up(args.scope, wait=False)  # an unknown --scope fails here, before any answering
    view = assistant.view(args.scope)
    if view.system is not None and not assistant.article_ready(view):
        sys.stderr.write(
            "The model has not read this article yet: answering from the retrieved passages. "
            "`assistant warm` reads it once (minutes for a long one); later answers are faster.\n"
        )
    if args.json:
        answer = assistant.answer(args.question, history, scope=args.scope)
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return 0
    answer = None
    for item in assistant.runnable().stream({"question": args.question, "history": history, "scope": args.scope}):
        if isinstance(item, str):
            if sys.stdout.isatty():
                print(item, end="", flush=True)
        else:
            answer = item
    if sys.stdout.isatty():
        print("\r\033[K", end="")
    print(render_answer(answer, args.timings))
    return 0


def cmd_index(args) -> int:
    from .index.corpus import load_passages
    from .index.indexing import PassageIndex

    settings = _settings(args)
    documents, passages = load_passages(settings.paths.corpus_dir)
    report = PassageIndex(settings).open(documents, passages, rebuild=args.rebuild)
    where = (
        f"Chroma server {settings.index.chroma_host}:{settings.index.chroma_port}, collection {settings.index.collection_name}"
        if settings.index.chroma_host
        else settings.paths.index_dir
    )
    print(
        f"Index {report.action}: {len(documents)} document(s), {len(passages)} passages "
        f"({report.added} embedded, {report.removed} removed) in {report.seconds:.1f} s -> {where}"
    )
    return 0


def cmd_add(args) -> int:
    from .index.ingest import UploadError, add_document, reindex

    settings = _settings(args)
    try:
        # Read one byte past the limit, so a huge file is refused by its size without being read whole.
        with open(args.file, "rb") as handle:
            data = handle.read(settings.uploads.max_upload_bytes + 1)
        added = add_document(settings, data, Path(args.file).name, title=args.title)
    except (UploadError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if args.no_examples:
        reindex(settings)
        print(f'Added {added.doc_id} "{added.title}" ({added.chars} characters); indexed.')
        return 0
    from .answering import Assistant
    from .examples import fill_examples

    # The assistant that checks the examples indexes the new article as it loads: one embedding model, loaded once.
    assistant = Assistant(settings).load()
    print(f'Added {added.doc_id} "{added.title}" ({added.chars} characters); indexed.')
    sys.stderr.write("The model reads the article once (about a minute per 3,000 words on two cores)…\n")
    read_articles(assistant, [added.doc_id])
    sys.stderr.write("Writing example questions (the model answers each to check it)…\n")
    examples = fill_examples(assistant, added.doc_id)
    print("Example questions: " + ("; ".join(examples) if examples else "none passed the check."))
    return 0


def cmd_remove(args) -> int:
    from .index.ingest import UploadError, reindex, remove_document

    settings = _settings(args)
    try:
        remove_document(settings, args.doc_id)
    except UploadError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    reindex(settings)
    print(f"Removed {args.doc_id}; indexed.")
    return 0


def cmd_chat(args) -> int:
    from .web import serve

    serve(_settings(args))
    return 0


def cmd_warm(args) -> int:
    from .answering import Assistant
    from .index.corpus import load_passages
    from .index.embedding import export_onnx
    from .index.indexing import embedded_text

    started = time.perf_counter()
    settings = _settings(args)
    # Exported first, so that the index, when it is built now, is already embedded the way answers will be.
    _, passages = load_passages(settings.paths.corpus_dir)
    how = export_onnx(settings, [embedded_text(p) for p in passages])
    print(f"Embedding model for onnxruntime: {how}", file=sys.stderr)
    assistant = Assistant(settings)
    assistant.load()
    report = assistant.index_report
    print(f"Index {report.action} ({len(assistant.passages)} passages) in {report.seconds:.1f} s", file=sys.stderr)
    how = assistant.warm_up()
    print(f"Model ready (whole corpus {how}) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if len(assistant.documents) > 1:
        read_articles(assistant, [d.doc_id for d in assistant.documents])
    return 0


def cmd_eval(args) -> int:
    from .eval import main as run_eval

    return run_eval(args)


def cmd_feedback(args) -> int:
    from .eval import cli_feedback

    return cli_feedback(
        _settings(args), args.feedback_command, getattr(args, "file", None), getattr(args, "all", False)
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `assistant` command."""
    parser = argparse.ArgumentParser(
        prog="assistant", description="Ask questions about the article, offline, with citations."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--history", help="JSON file with earlier messages [{'role':..., 'content':...}]")
    ask.add_argument("--json", action="store_true", help="print the whole Answer as JSON")
    ask.add_argument("--timings", action="store_true", help="print how long each stage took")
    ask.add_argument("-k", "--top-k", dest="top_k", type=int, help="passages to retrieve")
    ask.add_argument("--scope", metavar="DOC_ID", help="answer from this one document only (its file name stem)")
    ask.set_defaults(func=cmd_ask)

    index = sub.add_parser("index", help="build or update the vector index")
    index.add_argument("--rebuild", action="store_true", help="rebuild from scratch")
    index.set_defaults(func=cmd_index)

    add = sub.add_parser("add", help="add an article (.txt, .md, .html or .pdf) to the corpus and index it")
    add.add_argument("file", help="the article's file")
    add.add_argument("--title", help="its title in citations (default: from the file)")
    add.add_argument(
        "--no-examples",
        action="store_true",
        help="only add and index it: no example questions, and the model reads the article when first asked",
    )
    add.set_defaults(func=cmd_add)

    remove = sub.add_parser("remove", help="remove an article from the corpus and the index")
    remove.add_argument("doc_id", metavar="DOC_ID", help="the article's id (its file name stem)")
    remove.set_defaults(func=cmd_remove)

    chat = sub.add_parser("chat", help="serve the web chat")
    chat.add_argument("--host", help="address to bind (default 127.0.0.1)")
    chat.add_argument("--port", type=int, help="port (default 7860)")
    chat.set_defaults(func=cmd_chat)

    warm = sub.add_parser("warm", help="prepare the index and the model now (the set-up runs this)")
    warm.set_defaults(func=cmd_warm)

    from .eval import add_arguments

    evaluate = sub.add_parser("eval", help="run the regression suite of questions and gate its metrics")
    add_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    feedback = sub.add_parser("feedback", help="list the users' ratings of answers, or export them as eval cases")
    feedback_sub = feedback.add_subparsers(dest="feedback_command", required=True)
    feedback_sub.add_parser("list", help="show every rating as a table").set_defaults(func=cmd_feedback)
    export = feedback_sub.add_parser("export", help="write the ratings as a case file for `assistant eval`")
    export.add_argument("file", type=Path, help="the YAML case file to write, e.g. feedback.yaml")
    export.add_argument("--all", action="store_true", help="also export +1 ratings (their answers as right answers)")
    export.set_defaults(func=cmd_feedback)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `assistant` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "chromadb", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .answer.guard import InvalidQuestion
    from .errors import AssistantError

    started = time.perf_counter()
    try:
        return args.func(args)
    except AssistantError as exc:  # expected: its message says what to do; anything else is a bug, shown in full
        label = "Invalid question" if isinstance(exc, InvalidQuestion) else "Error"
        print(f"{label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        logging.getLogger(__name__).info("done in %.1f s", time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
