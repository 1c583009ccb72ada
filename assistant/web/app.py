"""Web stage, the page: its layout, the wiring of events to the handlers, and serving it (with the `/answer` API
endpoint) on the configured address.
"""

from __future__ import annotations

import ipaddress
import logging

import gradio as gr

from ..answering import Assistant
from ..index.corpus import load_passages
from ..settings import Settings
from .articles import MAX_EXAMPLES, ArticleHandlers
from .handlers import NOT_IN_ARTICLE_CHOICE, RIGHT_ANSWER_CHOICE, ChatHandlers, WorkspaceHandlers
from .render import article_html, sources_html
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
    documents, passages = load_passages(assistant.settings.paths.corpus_dir)
    store = store if store is not None else open_store(assistant.settings)
    handlers = ChatHandlers(assistant, passages, store)
    side = WorkspaceHandlers(handlers)
    examples = Examples(assistant)
    articles = ArticleHandlers(assistant, examples)
    warmup = WarmUp(assistant)
    if warm_up:
        warmup.start()
    with gr.Blocks(title="Article assistant", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Ask the articles\nAnswers come from the articles only, with citations. Click a marker like [1] "
            "to see the quoted passage; add your own article in the *Add article* tab."
        )
        status_box = gr.HTML(warmup.html(), elem_id="status")
        turns, conversation, target = gr.State([]), gr.State(None), gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=200, elem_id="sidebar"):
                listing = gr.Radio(choices=[], label="Conversations", elem_id="conversations", interactive=True)
                with gr.Row():
                    delete = gr.Button("Delete", elem_id="delete-chat", size="sm")
                    export = gr.Button("Export", elem_id="export-chat", size="sm")
                exported = gr.File(label="Markdown", visible=False, elem_id="exported", interactive=False)
            with gr.Column(scale=5):
                page = layout(documents, passages, examples)
        answered = wire_chat(demo, handlers, side, page, turns, conversation, target, listing)
        wire_side(side, page, turns, conversation, listing, delete, export, exported)
        wire_articles(demo, articles, page)
        wire_status(demo, warmup, status_box, side, listing, [page["added"], page["scoped"], *answered])
        gr.api(handlers.answer, api_name="answer", api_description=API_DOC, concurrency_id="answer")
    demo.assistant, demo.store, demo.warmup, demo.examples = assistant, store, warmup, examples
    return demo


def layout(documents, passages, examples: Examples) -> dict:
    """The page's main column: article choice, chat with sources and feedback, the article, adding articles."""
    c: dict = {}
    # With several articles, a conversation may search them all or keep to one.
    c["scope"] = gr.Dropdown(
        choices=[("All articles", "")] + [(d.title, d.doc_id) for d in documents],
        value="",
        label="Answer from",
        elem_id="scope",
        visible=len(documents) > 1,
        interactive=True,
    )
    with gr.Tabs():
        with gr.Tab("Chat", id="chat-tab"), gr.Row():
            with gr.Column(scale=3):
                c["chatbot"], c["textbox"], c["send"], c["clear"], c["examples"] = chat_panel(
                    [q for d in documents for q in d.examples][:MAX_EXAMPLES]
                )
                with gr.Group(visible=False, elem_id="feedback") as c["feedback"]:
                    c["kind"] = gr.Radio(
                        [RIGHT_ANSWER_CHOICE, NOT_IN_ARTICLE_CHOICE], value=RIGHT_ANSWER_CHOICE, label="What was wrong?"
                    )
                    c["note"] = gr.Textbox(label="The right answer (optional)", elem_id="feedback-note", max_lines=3)
                    c["send_note"] = gr.Button("Send feedback", elem_id="send-feedback", size="sm")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                c["sources"] = gr.HTML(sources_html([]), elem_id="sources")
        with gr.Tab("Article", id="article-tab"):
            c["article"] = gr.HTML(article_html(passages), elem_id="article")
        with gr.Tab("Add article", id="add-tab"):
            gr.Markdown(
                "Upload a .txt, .md, .html or .pdf file, or paste the text. Only the new article is indexed; "
                "it is then chosen for the conversation."
            )
            c["upload"] = gr.File(
                label="Article file", file_types=[".txt", ".md", ".html", ".htm", ".pdf"], elem_id="upload"
            )
            c["title"] = gr.Textbox(label="Title (optional for files)", elem_id="upload-title", max_lines=1)
            c["paste"] = gr.Textbox(label="…or paste the article's text", lines=6, elem_id="paste")
            c["add"] = gr.Button("Add article", variant="primary", elem_id="add-article")
            c["result"] = gr.HTML("", elem_id="upload-result")
            with gr.Row():
                c["remove_choice"] = gr.Dropdown(
                    choices=[(d.title, d.doc_id) for d in documents], label="Remove an article", elem_id="remove-choice"
                )
                c["remove"] = gr.Button("Remove", elem_id="remove-article", size="sm")
    return c


def chat_panel(examples: list[str]) -> tuple[gr.Chatbot, gr.Textbox, gr.Button, gr.Button, gr.Dataset]:
    """The conversation (inside the page's layout): chat window, question box, Send, New chat, example questions."""
    chatbot = gr.Chatbot(
        label="Chat",
        elem_id="chat",
        height=480,
        sanitize_html=True,
        render_markdown=True,
        allow_tags=False,
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        buttons=["copy"],
        placeholder="Ask a question about the article.",
    )
    with gr.Row():
        textbox = gr.Textbox(
            placeholder="Ask about the article… (Enter to send)",
            show_label=False,
            elem_id="question",
            scale=5,
            max_lines=4,
            autofocus=True,
        )
        send = gr.Button("Send", variant="primary", elem_id="send", scale=1, min_width=80)
        clear = gr.Button("New chat", elem_id="new-chat", scale=1, min_width=80)
    shown = gr.Dataset(
        components=[gr.Textbox(visible=False)],
        samples=[[q] for q in examples],
        label="Example questions",
        elem_id="examples",
        visible=bool(examples),
    )
    shown.click(lambda sample: sample[0], inputs=[shown], outputs=[textbox], queue=False, api_visibility="private")
    return chatbot, textbox, send, clear, shown


def wire_chat(demo, handlers: ChatHandlers, side: WorkspaceHandlers, c: dict, turns, conversation, target, listing):
    """Asking, streaming, New chat and the 👍/👎 on answers; returns the events of answers ending."""
    outputs = [c["chatbot"], turns, c["sources"], c["article"], c["textbox"], conversation, listing]
    answered = []
    # Shown and saved at once, however many are sent while an answer streams ("multiple"): the question and a
    # waiting note. Queued only so that a refusal's gr.Warning reaches the page, in a group that never waits. Its answer then waits its turn in the queue, whose place and expected wait
    # Gradio shows over the chat until the model takes it.
    for trigger in (c["textbox"].submit, c["send"].click):
        answered.append(
            trigger(
                handlers.accept,
                inputs=[c["textbox"], turns, c["scope"], conversation],
                outputs=[c["chatbot"], turns, c["textbox"], conversation, listing],
                trigger_mode="multiple",
                api_visibility="private",
                concurrency_id="accept",  # a group of its own with no limit: it never waits behind an answer
                concurrency_limit=None,
                show_progress="hidden",
            ).then(
                handlers.respond,
                outputs=[c["chatbot"], c["sources"], c["article"]],
                api_visibility="private",
                concurrency_id="answer",
                concurrency_limit=answer_concurrency(handlers.assistant.settings),
                trigger_mode="multiple",
                show_progress="full",
                show_progress_on=[c["chatbot"]],
            )
        )
    for trigger in (c["clear"].click, c["chatbot"].clear):  # the Chatbot's trash button empties only the display
        trigger(handlers.new_chat, outputs=outputs, queue=False, api_visibility="private")
    c["chatbot"].select(handlers.pick, inputs=[turns], outputs=[c["textbox"]], queue=False, api_visibility="private")
    c["chatbot"].like(
        side.rate, inputs=[turns, conversation], outputs=[c["feedback"], target], api_visibility="private"
    )
    c["send_note"].click(
        side.note,
        inputs=[target, c["kind"], c["note"], turns, conversation],
        outputs=[c["feedback"], target, c["note"]],
        api_visibility="private",
    )
    return answered


def answer_concurrency(settings: Settings) -> int:
    """How many answers run at once: one for the in-process model (it answers one at a time on the machine's cores,
    so the rest wait in Gradio's queue, which can tell them their place), more for a server with slots."""
    return 1 if settings.generation.llm_backend == "llamacpp" else settings.web.concurrency


def wire_side(side: WorkspaceHandlers, c: dict, turns, conversation, listing, delete, export, exported):
    """The conversation list: reopen, delete, export."""
    chat = [c["chatbot"], turns, c["sources"], c["article"], conversation]
    listing.input(side.open, inputs=[listing], outputs=[*chat, c["scope"]], api_visibility="private")
    delete.click(
        side.delete,
        inputs=[conversation],
        outputs=[*chat[:4], c["textbox"], conversation, listing],
        api_visibility="private",
    )
    export.click(side.export, inputs=[conversation], outputs=[exported], api_visibility="private")


def wire_articles(demo, articles: ArticleHandlers, c: dict):
    """Adding and removing articles, and the examples of the chosen one."""
    changed = [c["result"], c["scope"], c["article"], c["remove_choice"], c["examples"]]
    c["added"] = c["add"].click(
        articles.add,
        inputs=[c["upload"], c["title"], c["paste"], c["title"]],
        outputs=[*changed, c["upload"], c["paste"]],
        api_visibility="private",
        concurrency_id="answer",  # indexing shares the two cores with answering
    )
    c["remove"].click(
        articles.remove, inputs=[c["remove_choice"], c["scope"]], outputs=changed, api_visibility="private"
    )
    c["scoped"] = c["scope"].change(
        articles.scope_changed, inputs=[c["scope"]], outputs=[c["examples"]], api_visibility="private"
    )
    demo.load(articles.refresh, outputs=[c["scope"], c["remove_choice"]], api_visibility="private")


def wire_status(demo, warmup: WarmUp, status_box, side: WorkspaceHandlers, listing, events):
    """The model's loading status and the articles being read, polled until done (again after each of events: an
    upload, a scope chosen or an answer may start a reading), and the user's conversations when the page loads."""

    def status():
        return warmup.html(), gr.Timer(active=warmup.busy)

    # Polled while the model loads or an article is read or waits to be: the bar moves while the page is watched.
    timer = gr.Timer(STATUS_POLL_S, active=warmup.busy)
    timer.tick(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    for event in events:
        event.then(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(status, outputs=[status_box, timer], queue=False, api_visibility="private")
    demo.load(side.listing, outputs=[listing], queue=False, api_visibility="private")


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
