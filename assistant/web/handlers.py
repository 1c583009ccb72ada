"""Web stage, event handlers: asking and streaming answers in the chat, the conversation list and the feedback on
answers. Each session's turns live in a gr.State; the HTML comes from render.py, and the order in which a session's
questions are answered from scheduler.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace

import gradio as gr

from ..answer.guard import InvalidQuestion, validate_question
from ..answering import Answer, Assistant
from ..errors import AssistantError
from ..index.corpus import Passage
from ..relay import relay
from ..store.turn import Turn
from .render import (
    GENERIC_ERROR,
    api_result,
    article_html,
    chat_messages,
    engine_history,
    error_message,
    escape,
    has_reply,
    sources_html,
)
from .scheduler import Asked, Scheduler, earlier_turns
from .workspace import STORE_ERRORS, Conversations, Recorder, session_of, user_of

log = logging.getLogger(__name__)


def stream_in_thread(
    assistant: Assistant, question: str, history: list[dict], scope: str | None = None
) -> Iterator[str | Answer]:
    """Relay the assistant's Runnable stream for question and history, run from start to end in one thread of its own.

    The engine takes the model's lock inside its generator and holds it across yields. Gradio resumes a sync
    generator on whichever worker thread is free, so iterating the engine directly could release that lock from
    another thread (a RuntimeError), or let another session re-enter it on the owning thread. Here the engine is
    iterated, and closed, by one thread (relay.py); the caller only reads a queue. Closing this generator early (a
    cancelled event, "New chat") stops the engine after its current sentence.
    """
    return relay(
        lambda: assistant.runnable().stream({"question": question, "history": history, "scope": scope}),
        name="answer-stream",
    )


class ChatHandlers:
    """The page's chat event handlers. Each session's turns live in a gr.State (the same list object for every call
    of that session); a question is written to the conversation store when it is shown, and its answer as it
    streams.

    Asking is two steps. accept() never waits in the queue: it shows the question at once with a waiting note, saves
    it and queues it for its session. respond() runs in the queue, one call per accepted question: it answers the
    session's oldest waiting question. So a question sent while another is answered, an article is read or
    another conversation is open is never dropped, and a session's questions are answered in the order asked.
    """

    def __init__(self, assistant: Assistant, passages: list[Passage], store=None):
        self.assistant = assistant
        self.passages = passages
        self.store = store
        self.conversations = Conversations(store)
        self.scheduler = Scheduler()  # who waits for what: the sessions' questions in the order asked

    def accept(
        self,
        question: str,
        turns: list[Turn] | None,
        scope: str | None = None,
        conversation: str | None = None,
        request: gr.Request = None,
    ) -> tuple:
        """Show and save question at once: (chat, turns, textbox, conversation, conversation list). A question
        that cannot be asked stays in the box, with a warning that says why."""
        try:
            text = validate_question(question, self.assistant.settings.limits.max_question_chars)
        except InvalidQuestion as exc:
            gr.Warning(escape(str(exc)), duration=15, title="Please change the question")  # rendered as HTML
            return (gr.skip(),) * 5
        turns = turns if turns is not None else []
        recorder = Recorder(self.store, user_of(request), conversation or None)
        conversation = recorder.start(text, scope or None)
        turn = Turn(text, position=recorder.position, state="waiting")
        turns.append(turn)
        ticket = self.assistant.question_waiting(self.assistant.settings.reading.question_wait_s)
        self.scheduler.add(Asked(turn, turns, recorder, scope or None, session_of(request), ticket))
        return chat_messages(turns), turns, "", conversation, self.listing(recorder.user, conversation)

    def respond(self, request: gr.Request = None) -> Iterator[tuple]:
        """Answer the session's oldest waiting question, streaming: yields (chat, sources, article), each left as it
        is while another conversation is on the session's screen."""
        session = session_of(request)
        asked = self.scheduler.take(session)
        if asked is None:  # never expected: one respond follows each accept
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turn = asked.turn
        try:
            self.scheduler.wait_for_earlier(asked)
            turn.state = "streaming"
            yield self._screen(session, turn)
            answer = yield from self._stream(session, asked)
        finally:
            self.scheduler.forget(asked)
        if answer is None:
            yield self._screen(session, turn, ended=True)
            return
        turn.finish(answer)
        asked.recorder.write(turn)
        yield self._screen(session, turn, ended=True)

    def _stream(self, session: str, asked: Asked) -> Iterator[tuple]:
        """Stream asked's answer into its turn and the store; return the Answer (None after an error, shown)."""
        turn, answer = asked.turn, None
        history = engine_history(earlier_turns(asked))
        try:
            for item in stream_in_thread(self.assistant, turn.question, history, asked.scope):
                if isinstance(item, Answer):
                    answer = item
                elif item:
                    turn.answer += item
                    asked.recorder.write(turn)
                    yield self._screen(session, turn)
            if answer is None:
                raise RuntimeError("the engine finished without an Answer")
        except Exception as exc:
            if isinstance(exc, AssistantError):
                log.error("Could not answer %r: %s", turn.question, exc)
            else:
                log.exception("Unexpected error answering %r", turn.question)
            turn.fail(error_message(exc))
            asked.recorder.write(turn)
            return None
        return answer

    def _screen(self, session: str, turn: Turn, ended: bool = False) -> tuple:
        """The (chat, sources, article) update for session: its screen's turns when turn is among them, else none."""
        shown = self.scheduler.shown(session)
        if shown is None or not any(t is turn for t in shown):
            return gr.skip(), gr.skip(), gr.skip()
        if not ended:
            return chat_messages(shown), gr.skip(), gr.skip()
        article = article_html(self.assistant.passages or self.passages, turn.citations)
        return chat_messages(shown), sources_html(shown), article if turn.citations else gr.skip()

    def showing(self, turns: list[Turn], request: gr.Request = None) -> list[Turn]:
        """Record that turns are now on the session's screen (a conversation opened, a new chat); return them."""
        self.scheduler.show(session_of(request), turns)
        return turns

    def live_turn(self, user: str, conversation: str, turn: Turn, request: gr.Request = None) -> Turn:
        """turn (from the store) as this session shows it. A question this session is still answering is its live
        turn, so the answer goes on streaming into the reopened conversation; one asked before a reload, or in
        another tab, says it is still being answered."""
        asked = self.scheduler.live(user, conversation, turn.position)
        if asked is None:
            return turn
        if asked.session == session_of(request):
            return asked.turn
        return replace(turn, answer="", state="elsewhere")

    def listing(self, user: str, current: str | None):
        """The conversation list for user, with current selected."""
        return gr.Radio(choices=self.conversations.choices(user), value=current)

    def new_chat(self, request: gr.Request = None) -> tuple:
        """Clear the chat: no messages, no turns, no sources, the article without marks, an empty textbox. Answers
        still coming for the conversation left go on, and are saved in it."""
        turns = self.showing([], request)
        return [], turns, sources_html([]), article_html(self.passages), "", None, gr.Radio(value=None)

    def pick(self, turns: list[Turn] | None, chosen: gr.SelectData) -> str | dict:
        """A question clicked in the chat goes back into the box, to be asked again (or changed first)."""
        number, role = message_of(turns or [], chosen.index)
        return turns[number].question if role == "user" else gr.skip()

    def answer(self, question: str, history_json: str = "[]", article: str = "") -> dict:
        """Answer a question about the article, from the article only, with citations (see API_DOC).

        article, when given, is a document id (a corpus file name without its suffix) that restricts the answer to
        that document.
        """
        try:
            history = json.loads(history_json or "[]")
        except ValueError as exc:
            raise gr.Error(
                'history_json must be a JSON list of {"role": ..., "content": ...} messages.', print_exception=False
            ) from exc
        try:
            return api_result(self.assistant.answer(question, history, article or None))
        except AssistantError as exc:
            log.error("API could not answer %r: %s", question, exc)
            raise gr.Error(error_message(exc), print_exception=False) from exc
        except Exception as exc:
            log.exception("Unexpected error answering %r in the API", question)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from exc


class WorkspaceHandlers:
    """The page's side list of conversations and the feedback on answers, each user's own."""

    def __init__(self, chat: ChatHandlers):
        self.chat = chat
        self.store = chat.store
        self.conversations = chat.conversations

    def listing(self, request: gr.Request = None):
        """The conversation list when the page (re)loads."""
        return self.chat.listing(user_of(request), None)

    def open(self, conversation: str | None, request: gr.Request = None) -> tuple:
        """Reopen a past conversation: (chat, turns, sources, article, conversation, scope)."""
        if not conversation or self.store is None:
            return (gr.skip(),) * 6
        user = user_of(request)
        try:
            turns, scope = self.conversations.turns(user, conversation)
        except LookupError:
            gr.Warning("That conversation is gone; it may have been deleted in another tab.")
            return (gr.skip(),) * 6
        turns = self.chat.showing([self.chat.live_turn(user, conversation, t, request) for t in turns], request)
        last = next((t.citations for t in reversed(turns) if t.citations), None)
        article = article_html(self.chat.assistant.passages or self.chat.passages, last)
        return chat_messages(turns), turns, sources_html(turns), article, conversation, scope or ""

    def delete(self, conversation: str | None, request: gr.Request = None) -> tuple:
        """Delete the open conversation and start a new chat."""
        user = user_of(request)
        if conversation:
            self.conversations.delete(user, conversation)
        return (*self.chat.new_chat(request)[:6], self.chat.listing(user, None))

    def export(self, conversation: str | None, request: gr.Request = None):
        """The open conversation as a Markdown file, citations as footnotes."""
        if not conversation or self.store is None:
            gr.Warning("Ask a question first: there is no conversation to export yet.")
            return gr.File(visible=False)
        try:
            path = self.conversations.markdown_file(user_of(request), conversation)
        except LookupError:
            gr.Warning("That conversation is gone; it may have been deleted in another tab.")
            return gr.File(visible=False)
        return gr.File(value=str(path), visible=True)

    def rate(self, turns: list[Turn], conversation: str | None, like: gr.LikeData, request: gr.Request = None):
        """Record a 👍 at once; a 👎 too, and open the note asking what the right answer is."""
        number = turn_of_message(turns or [], like.index)
        if number is None or not conversation:
            return gr.Group(visible=False), None
        if like.liked in ("", None):  # the same thumb clicked again: the rating is taken back
            self._withdraw(turns, conversation, number, user_of(request))
            return gr.Group(visible=False), None
        liked = like.liked is True or like.liked == "Like"
        self._save(turns, conversation, number, 1 if liked else -1, "", None, user_of(request))
        if liked:
            gr.Info("Thanks: noted as a good answer.")
            return gr.Group(visible=False), None
        return gr.Group(visible=True), number

    def note(self, target: int | None, kind: str, note: str, turns, conversation, request: gr.Request = None):
        """Save the 👎's note (the right answer, or that the article does not say) and close the note."""
        if target is None or not conversation:
            return gr.Group(visible=False), None, ""
        does_not_say = kind == NOT_IN_ARTICLE_CHOICE
        text = "" if does_not_say else (note or "").strip()
        self._save(
            turns,
            conversation,
            target,
            -1,
            text,
            "not_in_article" if does_not_say else "correct_answer" if text else None,
            user_of(request),
        )
        gr.Info("Thanks: the note is saved; `assistant feedback export` turns it into a regression case.")
        return gr.Group(visible=False), None, ""

    def _withdraw(self, turns, conversation, number, user) -> None:
        if self.store is not None:
            try:
                self.store.withdraw_feedback(user, conversation, turns[number].position)
            except (*STORE_ERRORS, IndexError, KeyError) as exc:
                log.error("Could not take back feedback: %s", exc)

    def _save(self, turns, conversation, number, rating, note, kind, user) -> None:
        from ..index.corpus import corpus_hash

        if self.store is None:
            return
        turn = turns[number]
        try:
            self.store.add_feedback(
                user,
                conversation,
                turn.position,
                rating,
                note,
                kind,
                question=turn.question,
                history=engine_history(turns[:number]),
                answer=turn.answer_json or {"text": turn.answer},  # the turn holds its Answer: no re-read
                corpus_hash=corpus_hash(self.chat.assistant.documents),
                settings=self.chat.assistant.settings,
            )
        except (*STORE_ERRORS, IndexError, KeyError, TypeError) as exc:
            log.error("Could not save feedback: %s", exc)
            gr.Warning("The feedback could not be saved for this answer.")


NOT_IN_ARTICLE_CHOICE = "The article does not say"
RIGHT_ANSWER_CHOICE = "The right answer is…"


def turn_of_message(turns: list[Turn], index) -> int | None:
    """The turn whose finished answer is chat message index, None for any other message."""
    number, role = message_of(turns, index)
    if role != "assistant" or not turns[number].answered:
        return None
    return number


def message_of(turns: list[Turn], index) -> tuple[int | None, str | None]:
    """(turn number, "user" or "assistant") of chat message index, as chat_messages lays them out."""
    index = index[0] if isinstance(index, (list, tuple)) else index
    position = -1
    for number, turn in enumerate(turns):
        position += 1
        if position == index:
            return number, "user"
        if has_reply(turn):
            position += 1
            if position == index:
                return number, "assistant"
    return None, None
