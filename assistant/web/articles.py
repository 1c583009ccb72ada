"""Web stage, articles: adding an article from the page (an upload or pasted text, indexed with a progress bar, then
read by the model once) and removing one, and the example questions of the chosen article.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from ..answering import Assistant
from ..errors import AssistantError
from .render import article_html, escape
from .workspace import Examples

log = logging.getLogger(__name__)

MAX_EXAMPLES = 6  # example questions shown under the chat, from the documents' NAME.meta.json


def examples_update(examples: list[str]) -> gr.Dataset:
    """The example questions shown, for the chosen article."""
    return gr.Dataset(samples=[[q] for q in examples], visible=bool(examples))


class ArticleHandlers:
    """Adding an article from the page (upload or paste) and removing one again."""

    def __init__(self, assistant: Assistant, examples: Examples):
        self.assistant = assistant
        self.examples = examples

    def choices(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(scope choices with "All articles" first, removable articles) from the corpus as it is now."""
        documents = self.assistant.documents
        articles = [(d.title, d.doc_id) for d in documents]
        return [("All articles", ""), *articles], articles

    def add(self, path: str | None, title: str, pasted: str, pasted_title: str, progress=gr.Progress()) -> tuple:
        """Add the uploaded file (or the pasted text): (message, scope, article, removable, examples, file, paste)."""
        from ..index.ingest import UploadError, add_document, add_text

        settings = self.assistant.settings
        try:
            progress(0.05, desc="Reading the article…")
            if path:
                size = Path(path).stat().st_size
                if size > settings.uploads.max_upload_bytes:  # before reading a large file into memory
                    raise UploadError(upload_too_large(Path(path).name, size, settings.uploads.max_upload_bytes))
                added = add_document(settings, Path(path).read_bytes(), Path(path).name, title or None)
            elif (pasted or "").strip():
                added = add_text(settings, pasted, pasted_title or title)
            else:
                raise UploadError("Choose a file (.txt, .md, .html or .pdf), or paste the article's text.")
        except (UploadError, OSError) as exc:
            # The refused file is let go (so another can be chosen); pasted text stays, to be fixed.
            return (upload_html(str(exc), ok=False), *(gr.skip(),) * 4, None, gr.skip())
        self.index(progress)
        reading = self.assistant.start_reading(self.assistant.view(added.doc_id))  # chosen: a conversation is in it
        self.assistant.read_when_idle()  # the rest (all articles together) only when nothing else waits
        self.examples.fill_later(added.doc_id)  # from the article's reading, once read, when no question waits
        scopes, removable = self.choices()
        message = (
            f"Added “{added.title}” ({added.chars:,} characters) as {added.doc_id}. It is chosen for this conversation."
        )
        if reading is not None and not reading.finished:
            message += (
                " The model now reads it once in the background (the bar at the top; about a minute per 3,000 words "
                "on two cores), and gives way to every question: questions asked meanwhile are answered from the "
                "passages retrieval finds. Example questions for it are written once it is read."
            )
        else:
            message += " Example questions for it are being written and checked."
        return (
            upload_html(message, ok=True),
            gr.Dropdown(choices=scopes, value=added.doc_id, visible=True),
            article_html(self.assistant.passages),
            gr.Dropdown(choices=removable, value=None),
            examples_update(self.examples.of(added.doc_id, MAX_EXAMPLES)),
            None,
            "",
        )

    def index(self, progress) -> None:
        """Embed the new article's passages (the bar moves batch by batch), then reload the assistant."""

        def moved(done: int, total: int) -> None:
            progress(0.2 + 0.7 * done / max(total, 1), desc=f"Indexing the new article: {done}/{total} passages")

        progress(0.2, desc="Indexing the new article (only its passages are embedded)…")
        self.assistant.index_new_articles(moved)  # with the page's bar

    def remove(self, doc_id: str | None, scope: str | None) -> tuple:
        """Remove an article: (message, scope, article, removable, examples)."""
        from ..index.ingest import UploadError, remove_document

        if not doc_id:
            return upload_html("Choose the article to remove.", ok=False), *(gr.skip(),) * 4
        try:
            remove_document(self.assistant.settings, doc_id)
        except (UploadError, OSError) as exc:
            return upload_html(str(exc), ok=False), *(gr.skip(),) * 4
        self.assistant.forget_queued()  # what was queued may name the removed article: queue what is there now
        scopes, removable = self.choices()
        scope = "" if scope == doc_id else scope
        return (
            upload_html(f"Removed {doc_id}.", ok=True),
            gr.Dropdown(choices=scopes, value=scope, visible=len(removable) > 1),
            article_html(self.assistant.passages),
            gr.Dropdown(choices=removable, value=None),
            examples_update(self.examples.of(scope or None, MAX_EXAMPLES)),
        )

    def refresh(self) -> tuple:
        """The article choices as the corpus is now (a page loaded after an upload must list it): (scope, removable)."""
        try:
            self.assistant.load()
        except Exception:  # the status line reports a broken corpus or index; keep the choices the page has
            return gr.skip(), gr.skip()
        scopes, removable = self.choices()
        return gr.Dropdown(choices=scopes, visible=len(removable) > 1), gr.Dropdown(choices=removable, value=None)

    def scope_changed(self, scope: str | None) -> gr.Dataset:
        """Show the chosen article's example questions; a conversation is now in that scope, so it is read first."""
        try:
            self.assistant.start_reading(self.assistant.view(scope or None))
        except AssistantError as exc:  # a scope removed meanwhile: the next question says so
            log.info("Not reading scope %r: %s", scope, exc)
        return examples_update(self.examples.of(scope or None, MAX_EXAMPLES))


def upload_too_large(name: str, size: int, limit: int) -> str:
    return (
        f"{name} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:g} MB (ASSISTANT_MAX_UPLOAD_BYTES). "
        "Upload a smaller file, or paste the article's text."
    )


def upload_html(message: str, ok: bool) -> str:
    """The result line of an upload or removal."""
    return f'<div class="upload-result {"ok" if ok else "failed"}">{escape(message)}</div>'
