"""The page's panels (assistant/web/panels.py): each owns its components as typed attributes, with the elem_ids the
browser tests and the CSS select by, and the page is wired on those attributes."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import gradio as gr

from assistant.web.panels import ChatPanel, ConversationsPanel, Page

DOCUMENTS = [
    SimpleNamespace(title="Bridge", doc_id="bridge", examples=["When did the mayor open the bridge?"]),
    SimpleNamespace(title="Ferry", doc_id="ferry", examples=["Who runs the ferry?"]),
]


class Warm:
    def html(self) -> str:
        return '<div class="status loading">Loading…</div>'


def build() -> tuple[gr.Blocks, Page]:
    with gr.Blocks() as demo:
        page = Page.build(DOCUMENTS, [], Warm())
    return demo, page


def test_every_panel_attribute_is_a_component_of_the_page():
    demo, page = build()
    for panel in (getattr(page, f.name) for f in dataclasses.fields(page)):
        for field in dataclasses.fields(panel):
            component = getattr(panel, field.name)
            assert isinstance(component, gr.blocks.Block), f"{type(panel).__name__}.{field.name}"
            assert demo.blocks[component._id] is component


def test_the_panels_keep_the_elem_ids_the_page_is_selected_by():
    _, page = build()
    ids = {
        "status": page.status.box,
        "conversations": page.conversations.listing,
        "delete-chat": page.conversations.delete,
        "export-chat": page.conversations.export,
        "exported": page.conversations.exported,
        "scope": page.scope.scope,
        "chat": page.chat.chatbot,
        "question": page.chat.textbox,
        "send": page.chat.send,
        "new-chat": page.chat.clear,
        "examples": page.chat.examples,
        "feedback": page.chat.feedback,
        "feedback-note": page.chat.note,
        "send-feedback": page.chat.send_note,
        "sources": page.chat.sources,
        "article": page.article.article,
        "upload": page.articles.upload,
        "upload-title": page.articles.title,
        "paste": page.articles.paste,
        "add-article": page.articles.add,
        "upload-result": page.articles.result,
        "remove-choice": page.articles.remove_choice,
        "remove-article": page.articles.remove,
    }
    assert {elem_id: c.elem_id for elem_id, c in ids.items()} == {elem_id: elem_id for elem_id in ids}
    assert page.scope.scope.visible  # two articles: a conversation may keep to one
    assert [s.value for s in (page.session.turns, page.session.conversation, page.session.target)] == [[], None, None]


def test_a_panel_builds_alone_in_its_own_blocks():
    with gr.Blocks() as demo, gr.Row():
        chat = ChatPanel.build(["Who runs the ferry?"])
        side = ConversationsPanel.build()
    assert chat.examples.samples == [["Who runs the ferry?"]] and not chat.feedback.visible
    assert side.listing.label == "Conversations" and not side.exported.visible
    assert {chat.chatbot._id, side.listing._id} <= set(demo.blocks)


def test_the_app_wires_events_on_the_panels_components(tmp_path):
    from assistant.answering import Assistant
    from assistant.settings import Settings
    from assistant.web import app

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    demo = app.build_app(settings, Assistant(settings, chat_model=object()), warm_up=False, store=object())
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]  # turns, conversation, feedback target
    events = {}
    for fn in demo.fns.values():
        events.setdefault(getattr(fn.fn, "__qualname__", ""), []).append(fn)
    accepts, responds = events["ChatHandlers.accept"], events["ChatHandlers.respond"]
    assert [fn.inputs for fn in accepts] == [[by_id["question"], states[0], by_id["scope"], states[1]]] * 2
    assert [fn.outputs for fn in responds] == [[by_id["chat"], by_id["sources"], by_id["article"]]] * 2
    assert [t for fn in accepts for t in fn.targets] == [
        (by_id["question"]._id, "submit"),
        (by_id["send"]._id, "click"),
    ]
    (note,) = events["WorkspaceHandlers.note"]
    kind = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "What was wrong?")
    assert note.inputs == [states[2], kind, by_id["feedback-note"], states[0], states[1]]
    assert note.outputs == [by_id["feedback"], states[2], by_id["feedback-note"]]
    (add,) = events["ArticleHandlers.add"]
    assert add.outputs[:5] == [by_id[i] for i in ("upload-result", "scope", "article", "remove-choice", "examples")]
