"""Web stage, panels: the page's parts, each a dataclass that owns its components as attributes and builds them where
it is called inside the page's layout. app.py wires the events on these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .articles import MAX_EXAMPLES
from .handlers import NOT_IN_ARTICLE_CHOICE, RIGHT_ANSWER_CHOICE
from .render import article_html, sources_html
from .warmup import WarmUp


@dataclass
class StatusPanel:
    """The status line at the top: the model loading, the articles being read."""

    box: gr.HTML

    @classmethod
    def build(cls, warmup: WarmUp) -> StatusPanel:
        return cls(gr.HTML(warmup.html(), elem_id="status"))


@dataclass
class Session:
    """What one page session (a browser tab) keeps between events."""

    turns: gr.State  # the turns on screen, a list of Turn
    conversation: gr.State  # the open conversation's id, None before its first question
    target: gr.State  # the turn number a 👎's note is about

    @classmethod
    def build(cls) -> Session:
        return cls(gr.State([]), gr.State(None), gr.State(None))


@dataclass
class ConversationsPanel:
    """The side list of the user's conversations, with Delete and Export."""

    listing: gr.Radio
    delete: gr.Button
    export: gr.Button
    exported: gr.File

    @classmethod
    def build(cls) -> ConversationsPanel:
        listing = gr.Radio(choices=[], label="Conversations", elem_id="conversations", interactive=True)
        with gr.Row():
            delete = gr.Button("Delete", elem_id="delete-chat", size="sm")
            export = gr.Button("Export", elem_id="export-chat", size="sm")
        exported = gr.File(label="Markdown", visible=False, elem_id="exported", interactive=False)
        return cls(listing, delete, export, exported)


@dataclass
class ScopePanel:
    """With several articles, a conversation may search them all or keep to one."""

    scope: gr.Dropdown

    @classmethod
    def build(cls, documents) -> ScopePanel:
        return cls(
            gr.Dropdown(
                choices=[("All articles", "")] + [(d.title, d.doc_id) for d in documents],
                value="",
                label="Answer from",
                elem_id="scope",
                visible=len(documents) > 1,
                interactive=True,
            )
        )


@dataclass
class ChatPanel:
    """The conversation: chat window, question box, Send, New chat, example questions, the 👎's note, and the
    sources of the answers beside it."""

    chatbot: gr.Chatbot
    textbox: gr.Textbox
    send: gr.Button
    clear: gr.Button
    examples: gr.Dataset
    feedback: gr.Group
    kind: gr.Radio
    note: gr.Textbox
    send_note: gr.Button
    sources: gr.HTML

    @classmethod
    def build(cls, examples: list[str]) -> ChatPanel:
        """Build it in a row of the Chat tab."""
        with gr.Column(scale=3):
            chatbot, textbox, send, clear, shown = chat_box(examples)
            with gr.Group(visible=False, elem_id="feedback") as feedback:
                kind = gr.Radio(
                    [RIGHT_ANSWER_CHOICE, NOT_IN_ARTICLE_CHOICE], value=RIGHT_ANSWER_CHOICE, label="What was wrong?"
                )
                note = gr.Textbox(label="The right answer (optional)", elem_id="feedback-note", max_lines=3)
                send_note = gr.Button("Send feedback", elem_id="send-feedback", size="sm")
        with gr.Column(scale=2):
            gr.Markdown("### Sources")
            sources = gr.HTML(sources_html([]), elem_id="sources")
        return cls(chatbot, textbox, send, clear, shown, feedback, kind, note, send_note, sources)


def chat_box(examples: list[str]) -> tuple[gr.Chatbot, gr.Textbox, gr.Button, gr.Button, gr.Dataset]:
    """Chat window, question box, Send, New chat and the example questions (a click puts one in the box)."""
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


@dataclass
class ArticlePanel:
    """The article's text, with the cited passages marked."""

    article: gr.HTML

    @classmethod
    def build(cls, passages) -> ArticlePanel:
        return cls(gr.HTML(article_html(passages), elem_id="article"))


@dataclass
class ArticlesPanel:
    """Adding an article (a file or pasted text) and removing one."""

    upload: gr.File
    title: gr.Textbox
    paste: gr.Textbox
    add: gr.Button
    result: gr.HTML
    remove_choice: gr.Dropdown
    remove: gr.Button

    @classmethod
    def build(cls, documents) -> ArticlesPanel:
        gr.Markdown(
            "Upload a .txt, .md, .html or .pdf file, or paste the text. Only the new article is indexed; "
            "it is then chosen for the conversation."
        )
        upload = gr.File(label="Article file", file_types=[".txt", ".md", ".html", ".htm", ".pdf"], elem_id="upload")
        title = gr.Textbox(label="Title (optional for files)", elem_id="upload-title", max_lines=1)
        paste = gr.Textbox(label="…or paste the article's text", lines=6, elem_id="paste")
        add = gr.Button("Add article", variant="primary", elem_id="add-article")
        result = gr.HTML("", elem_id="upload-result")
        with gr.Row():
            remove_choice = gr.Dropdown(
                choices=[(d.title, d.doc_id) for d in documents], label="Remove an article", elem_id="remove-choice"
            )
            remove = gr.Button("Remove", elem_id="remove-article", size="sm")
        return cls(upload, title, paste, add, result, remove_choice, remove)


@dataclass
class Page:
    """The whole page, panel by panel."""

    status: StatusPanel
    session: Session
    conversations: ConversationsPanel
    scope: ScopePanel
    chat: ChatPanel
    article: ArticlePanel
    articles: ArticlesPanel

    @classmethod
    def build(cls, documents, passages, warmup: WarmUp) -> Page:
        """Lay the page out, inside a gr.Blocks: the status line, the conversations beside the main column (article
        choice, then tabs for the chat with its sources, the article, and adding articles)."""
        gr.Markdown(
            "## Ask the articles\nAnswers come from the articles only, with citations. Click a marker like [1] "
            "to see the quoted passage; add your own article in the *Add article* tab."
        )
        status, session = StatusPanel.build(warmup), Session.build()
        with gr.Row():
            with gr.Column(scale=1, min_width=200, elem_id="sidebar"):
                conversations = ConversationsPanel.build()
            with gr.Column(scale=5):
                scope = ScopePanel.build(documents)
                with gr.Tabs():
                    with gr.Tab("Chat", id="chat-tab"), gr.Row():
                        chat = ChatPanel.build([q for d in documents for q in d.examples][:MAX_EXAMPLES])
                    with gr.Tab("Article", id="article-tab"):
                        article = ArticlePanel.build(passages)
                    with gr.Tab("Add article", id="add-tab"):
                        articles = ArticlesPanel.build(documents)
        return cls(status, session, conversations, scope, chat, article, articles)
