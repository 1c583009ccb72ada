"""Web stage, the page: the wiring of events on its panels (panels.py) to the handlers, and serving it (with the
`/answer` API endpoint) on the configured address.
"""

from __future__ import annotations

import ipaddress
import logging

import gradio as gr

from ..answering import Assistant
from ..settings import Settings
from .articles import ArticleHandlers
from .handlers import ChatHandlers, WorkspaceHandlers
from .panels import Page
from .warmup import WarmUp
from .workspace import Examples

log = logging.getLogger(__name__)

STATUS_POLL_S = 1.0  # how often an open page asks for the status while something loads or is read

API_DOC = """Answer a question about the article, from the article only, with citations.

Call it with gradio_client: `Client("http://127.0.0.1:7860").predict("Who opened the new library?",
"[]", api_name="/answer")`. The second argument, history_json, is an optional JSON list of earlier messages
`[{"role": "user"|"assistant", "content": "..."}]` for follow-up questions. The result is a dict: text (with [n]
citation markers), abstained (true when the article does not say or the request is off task), reason (answered,
not_in_article, unsupported, off_task or greeting), standalone_question, citations (one per marker: index,
passage_id, number (paragraph), section, text (the whole passage), quote (the exact supporting span), start/end and
passage_start/passage_end (character offsets in the document), doc_id, title, source), closest (with a refusal: the
article's sentence nearest to what was asked, as a citation of the same shape, or null) and timings (seconds per
stage). An optional third argument, article, names one document (its id: the file name without its suffix) to answer from when
the corpus holds several. An invalid question (empty, too long) or history, or an unavailable model, raises an error with a readable
message.
"""

CSS = """
.upload-result { padding: 6px 10px; border-radius: 6px; }
.upload-result.ok { background: #e9f7ec; color: #1d6b32; }
.upload-result.failed { background: #fdecea; color: #8a1c12; }
#status .status { padding: 6px 10px; border-radius: 6px; font-size: 0.95em; }
#status .status.loading { background: #fff7e0; color: #7a5b00; }
#status .status.ready { background: #e9f7ec; color: #1d6b32; }
#status .status.failed { background: #fdecea; color: #8a1c12; }
#status .status.reading { background: #eef3fb; color: #1f3d6b; margin-top: 4px; }
#status .status.reading progress { width: 8em; vertical-align: middle; }
#status .status.busy { background: #eef3fb; color: #1f3d6b; }
#status .status.reading.queued, #status .status.note { background: #f3f4f6; color: #374151; margin-top: 4px; }
#status .status.reading.done { background: #e9f7ec; color: #1d6b32; }
#chat .refusal, #chat .waiting { font-style: italic; color: #6b7280; }
#chat .closest, #sources .closest .source-head { color: #374151; font-size: 0.95em; }
#chat .chat-error { color: #b42318; }
#chat a.cite { text-decoration: none; font-size: 0.85em; vertical-align: super; padding: 0 1px; }
#sources .source { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 10px; margin: 6px 0; }
#sources .source.focused { border-color: #f59e0b; box-shadow: 0 0 0 2px #fde68a; }
#sources .turn-sources { margin-bottom: 12px; }
#sources .source-head { font-weight: 600; }
#sources .source-meta, #sources .turn-question { color: #6b7280; font-size: 0.85em; }
#sources .passage { margin: 6px 0 0 0; padding-left: 8px; border-left: 3px solid #e5e7eb; }
#sources .refusal { font-style: italic; color: #6b7280; }
#sources mark, #article mark { background: #fde68a; padding: 0 1px; }
#article { max-width: 52rem; }
#article .article-note { color: #6b7280; font-size: 0.85em; }
#article .para-no { color: #9ca3af; font-size: 0.8em; margin-right: 4px; }
"""

# A click on a citation marker in the chat scrolls its entry in the sources panel into view and outlines it.
HEAD = """
<script>
document.addEventListener("click", function (event) {
  var link = event.target && event.target.closest ? event.target.closest('a[href^="#src-"]') : null;
  if (!link) return;
  var target = document.getElementById(link.getAttribute("href").slice(1));
  if (!target) return;
  event.preventDefault();
  event.stopPropagation();
  document.querySelectorAll(".source.focused").forEach(function (el) { el.classList.remove("focused"); });
  target.classList.add("focused");
  target.scrollIntoView({block: "nearest"});
}, true);
</script>
"""


def build_app(
    settings: Settings | None = None, assistant: Assistant | None = None, warm_up: bool = True, store=None
) -> gr.Blocks:
    """Build the web chat for assistant (default: one built from settings); warm_up starts loading the model now.

    store is the conversation store (default: the SQLite database in settings.data_dir). The returned Blocks
    carries .assistant, .store, .warmup (a WarmUp) and .examples for serve() and the tests.
    """
    from ..store.conversations import open_store

    settings = settings or (assistant.settings if assistant else Settings())
    assistant = assistant or Assistant(settings)
    documents, passages = assistant.articles_on_disk()
    store = store if store is not None else open_store(assistant.settings)
    handlers = ChatHandlers(assistant, passages, store)
    side = WorkspaceHandlers(handlers)
    examples = Examples(assistant)
    articles = ArticleHandlers(assistant, examples)
    warmup = WarmUp(assistant)
    if warm_up:
        warmup.start()
    with gr.Blocks(title="Article assistant", analytics_enabled=False) as demo:
        page = Page.build(documents, passages, warmup)
        answered = wire_chat(page, handlers, side)
        wire_side(page, side)
        added, scoped = wire_articles(demo, page, articles)
        wire_status(demo, page, warmup, side, [added, scoped, *answered])
        gr.api(handlers.answer, api_name="answer", api_description=API_DOC, concurrency_id="answer")
    demo.assistant, demo.store, demo.warmup, demo.examples = assistant, store, warmup, examples
    return demo


def wire_chat(page: Page, handlers: ChatHandlers, side: WorkspaceHandlers) -> list:
    """Asking, streaming, New chat and the 👍/👎 on answers; returns the events of answers ending."""
    chat, session, listing = page.chat, page.session, page.conversations.listing
    outputs = [chat.chatbot, session.turns, chat.sources, page.article.article, chat.textbox, session.conversation]
    answered = []
    # Shown and saved at once, however many are sent while an answer streams ("multiple"): the question and a
    # waiting note. Queued only so that a refusal's gr.Warning reaches the page, in a group that never waits. Its answer then waits its turn in the queue, whose place and expected wait
    # Gradio shows over the chat until the model takes it.
    for trigger in (chat.textbox.submit, chat.send.click):
        answered.append(
            trigger(
                handlers.accept,
                inputs=[chat.textbox, session.turns, page.scope.scope, session.conversation],
                outputs=[chat.chatbot, session.turns, chat.textbox, session.conversation, listing],
                trigger_mode="multiple",
                api_visibility="private",
                concurrency_id="accept",  # a group of its own with no limit: it never waits behind an answer
                concurrency_limit=None,
                show_progress="hidden",
            ).then(
                handlers.respond,
                outputs=[chat.chatbot, chat.sources, page.article.article],
                api_visibility="private",
                concurrency_id="answer",
                concurrency_limit=answer_concurrency(handlers.assistant.settings),
                trigger_mode="multiple",
                show_progress="full",
                show_progress_on=[chat.chatbot],
            )
        )
    for trigger in (chat.clear.click, chat.chatbot.clear):  # the Chatbot's trash button empties only the display
        trigger(handlers.new_chat, outputs=[*outputs, listing], queue=False, api_visibility="private")
    chat.chatbot.select(
        handlers.pick, inputs=[session.turns], outputs=[chat.textbox], queue=False, api_visibility="private"
    )
    chat.chatbot.like(
        side.rate,
        inputs=[session.turns, session.conversation],
        outputs=[chat.feedback, session.target],
        api_visibility="private",
    )
    chat.send_note.click(
        side.note,
        inputs=[session.target, chat.kind, chat.note, session.turns, session.conversation],
        outputs=[chat.feedback, session.target, chat.note],
        api_visibility="private",
    )
    return answered


def answer_concurrency(settings: Settings) -> int:
    """How many answers run at once: one for the in-process model (it answers one at a time on the machine's cores,
    so the rest wait in Gradio's queue, which can tell them their place), more for a server with slots."""
    return 1 if settings.generation.llm_backend == "llamacpp" else settings.web.concurrency


def wire_side(page: Page, side: WorkspaceHandlers) -> None:
    """The conversation list: reopen, delete, export."""
    chat, session, side_panel = page.chat, page.session, page.conversations
    shown = [chat.chatbot, session.turns, chat.sources, page.article.article, session.conversation]
    side_panel.listing.input(
        side.open, inputs=[side_panel.listing], outputs=[*shown, page.scope.scope], api_visibility="private"
    )
    side_panel.delete.click(
        side.delete,
        inputs=[session.conversation],
        outputs=[*shown[:4], chat.textbox, session.conversation, side_panel.listing],
        api_visibility="private",
    )
    side_panel.export.click(
        side.export, inputs=[session.conversation], outputs=[side_panel.exported], api_visibility="private"
    )


def wire_articles(demo, page: Page, articles: ArticleHandlers) -> tuple:
    """Adding and removing articles, and the examples of the chosen one; returns the events of an article added and
    of a scope chosen."""
    panel, scope = page.articles, page.scope.scope
    changed = [panel.result, scope, page.article.article, panel.remove_choice, page.chat.examples]
    added = panel.add.click(
        articles.add,
        inputs=[panel.upload, panel.title, panel.paste, panel.title],
        outputs=[*changed, panel.upload, panel.paste],
        api_visibility="private",
        concurrency_id="answer",  # indexing shares the two cores with answering
    )
    panel.remove.click(articles.remove, inputs=[panel.remove_choice, scope], outputs=changed, api_visibility="private")
    scoped = scope.change(
        articles.scope_changed, inputs=[scope], outputs=[page.chat.examples], api_visibility="private"
    )
    demo.load(articles.refresh, outputs=[scope, panel.remove_choice], api_visibility="private")
    return added, scoped


def wire_status(demo, page: Page, warmup: WarmUp, side: WorkspaceHandlers, events) -> None:
    """The model's loading status and the articles being read, polled until done (again after each of events: an
    upload, a scope chosen or an answer may start a reading), and the user's conversations when the page loads."""
    status_box = page.status.box

    def status():
        return warmup.html(), gr.Timer(active=warmup.busy)

    # Polled while the model loads or an article is read or waits to be: the bar moves while the page is watched.
    timer = gr.Timer(STATUS_POLL_S, active=warmup.busy)
    timer.tick(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    for event in events:
        event.then(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(side.listing, outputs=[page.conversations.listing], queue=False, api_visibility="private")


def is_loopback(host: str) -> bool:
    """True when host only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(settings: Settings) -> bool:
    """Log a warning, and return True, when the chat would listen beyond this machine without a login."""
    if settings.web.auth_pairs() or is_loopback(settings.web.host):
        return False
    log.warning(
        "Serving on %s without authentication: anyone who can reach this address can use the chat. "
        "Set ASSISTANT_AUTH=user:password to require a login.",
        settings.web.host,
    )
    return True


def launch(demo: gr.Blocks, settings: Settings, block: bool = True) -> str:
    """Queue and launch demo on settings.host:settings.port; print and return the local address.

    With block=False the server runs in a background thread and this returns at once (for tests).
    """
    auth = settings.web.auth_pairs() or None
    warn_if_exposed(settings)
    demo.queue(default_concurrency_limit=settings.web.concurrency)
    _, local_url, share_url = demo.launch(
        server_name=settings.web.host,
        server_port=settings.web.port,
        auth=auth,
        share=settings.web.share,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        show_error=False,
        css=CSS,
        head=HEAD,
        footer_links=["api", "settings"],
        # Gradio refuses far larger uploads before they are read; the page explains the limit for the rest.
        max_file_size=4 * settings.uploads.max_upload_bytes,
    )
    print(f"Web chat running on {local_url}", flush=True)
    if share_url:
        print(f"Public share link: {share_url}", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return local_url


def serve(settings: Settings) -> None:
    """Build the web chat with the default assistant and serve it until interrupted (`assistant chat`)."""
    demo = build_app(settings)
    try:
        launch(demo, settings)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        log.error("Cannot serve on %s:%s: %s", settings.web.host, settings.web.port, exc)
        raise SystemExit(f"Cannot serve the web chat on {settings.web.host}:{settings.web.port}: {exc}") from exc
