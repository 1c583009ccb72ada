"""Generation stage: prompt templates from prompts/, and the chat models (in-process llama.cpp, OpenAI-compatible, Ollama)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import (
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    PromptTemplate,
    SystemMessagePromptTemplate,
)

from ..errors import AssistantError, ModelUnavailable
from ..index.corpus import Passage
from ..settings import Settings

log = logging.getLogger(__name__)

# The variables each template must use: checked when it is loaded.
PROMPT_VARIABLES = {
    "system": {"title", "context"},
    "question": {"question"},
    "condense": {"history", "question"},
    "more": set(),  # asked after a first answer that covered one of two asked-for things
    "verify": {"evidence", "question"},  # the verification stage's yes/no judgement
    "examples": {"count"},  # asked once per new article: questions to show as examples
    "correct": {"evidence", "question"},  # a refusal that says what the nearest sentence says instead
    "entails": {"evidence", "answer"},  # the judgement of that correction: does the sentence state it?
}
# Variables a template may use besides those: the judgement may also be shown the answer sentence itself.
OPTIONAL_VARIABLES = {"verify": {"answer"}}


class PromptError(AssistantError):
    """A prompt template is missing or has the wrong placeholders."""


T = TypeVar("T")


def load_prompt(prompts_dir: Path, name: str) -> PromptTemplate:
    """Read prompts/<name>.txt as a PromptTemplate and check it uses exactly the variables the code fills in."""
    path = Path(prompts_dir) / f"{name}.txt"
    try:
        template = PromptTemplate.from_template(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise PromptError(f"Prompt template {path} is missing; restore it from the repository.") from exc
    except ValueError as exc:  # unbalanced braces
        raise PromptError(f"Prompt template {path} cannot be read as a template ({exc}).") from exc
    expected = PROMPT_VARIABLES.get(name)
    used = set(template.input_variables) - OPTIONAL_VARIABLES.get(name, set())
    if expected is not None and used != expected:
        raise PromptError(f"Prompt template {path} must use the placeholders {sorted(expected)}, not {sorted(used)}.")
    return template


@dataclass(frozen=True)
class Prompts:
    """The chat prompts, built from the templates in prompts/: every message the models are sent comes from here."""

    system: PromptTemplate  # the rules and the article: the fixed prefix llama.cpp caches
    question: PromptTemplate
    answer: ChatPromptTemplate  # system, earlier turns (history), question
    condense: ChatPromptTemplate  # system, the rewrite request
    more: ChatPromptTemplate  # system, the question and the first answer (history), "and the other one?"
    verify: PromptTemplate  # the judgement (the verifier makes it a chat prompt)
    examples: ChatPromptTemplate  # system, "write N questions this article answers"
    correct: ChatPromptTemplate  # the nearest sentence and the question (after the article, for a remote server)
    entails: PromptTemplate  # the correction's judgement (the verifier makes it a chat prompt)

    def history(self, turns: list[dict]) -> list[BaseMessage]:
        """Earlier turns as chat messages: questions as the model was asked them, answers without their markers."""
        from .cite import strip_markers

        return [
            HumanMessage(self.question.format(question=t["content"]))
            if t["role"] == "user"
            else AIMessage(strip_markers(t["content"]))
            for t in turns
        ]


def load_prompts(prompts_dir: Path) -> Prompts:
    """Load and check every template in prompts_dir, and compose the chat prompts from them."""
    t = {name: load_prompt(prompts_dir, name) for name in PROMPT_VARIABLES}
    system = SystemMessagePromptTemplate(prompt=t["system"])
    history = MessagesPlaceholder("history", optional=True)
    return Prompts(
        system=t["system"],
        question=t["question"],
        answer=ChatPromptTemplate([system, history, HumanMessagePromptTemplate(prompt=t["question"])]),
        condense=ChatPromptTemplate([system, HumanMessagePromptTemplate(prompt=t["condense"])]),
        more=ChatPromptTemplate([system, history, HumanMessagePromptTemplate(prompt=t["more"])]),
        verify=t["verify"],
        examples=ChatPromptTemplate([system, HumanMessagePromptTemplate(prompt=t["examples"])]),
        correct=ChatPromptTemplate(
            [MessagesPlaceholder("article", optional=True), HumanMessagePromptTemplate(prompt=t["correct"])]
        ),
        entails=t["entails"],
    )


def system_prompt(prompts: Prompts, title: str, context: str) -> str:
    """The fixed system prompt for a text: the rules, then the text. One place makes it, so that a view's prompt
    and a question's are the same string, and llama.cpp's saved state of it is found again."""
    return prompts.system.format(title=title, context=context)


def render_context(passages: list[Passage]) -> str:
    """Lay out passages as the article text the model reads, headings included, in document order."""
    lines, section, doc = [], None, None
    for p in sorted(passages, key=lambda p: (p.doc_id, p.number)):
        if p.doc_id != doc and doc is not None:
            lines.append(f"\n[{p.title}]")
        doc = p.doc_id
        if p.section and p.section != section:
            lines.append(f"\n## {p.section}")
        section = p.section
        lines.append(p.text)
    return "\n".join(lines).strip()


def bounded_context(passages: list[Passage], question: str, settings: Settings) -> str:
    """The retrieved passages cut to the sentences that matter, within settings.context_token_budget.

    Every prompt token costs about 20 ms on two cores, so a long corpus cannot send whole paragraphs: each passage,
    best first, gives its sentence sharing most words with the question, then those sentences' neighbours, then
    the rest of its sentences while the budget lasts. The best passage's best sentence is always sent.
    """
    from dataclasses import replace

    from ..text import content_stems
    from .grounding import best_sentence, sentence_spans

    budget = settings.reading.context_token_budget * settings.generation.chars_per_token
    wanted = content_stems(question)
    spans = [[(s - p.start, e - p.start) for s, e in sentence_spans(p)] for p in passages]
    best = [best_sentence(p, wanted)[0] for p in passages]
    wishes = [(i, j) for i, j in enumerate(best)]
    wishes += [(i, near) for i, j in enumerate(best) for near in (j - 1, j + 1) if 0 <= near < len(spans[i])]
    wishes += [(i, j) for i, sp in enumerate(spans) for j in range(len(sp))]
    chosen: list[set[int]] = [set() for _ in passages]
    used = 0
    for i, j in wishes:
        length = spans[i][j][1] - spans[i][j][0] + 1
        if j not in chosen[i] and (not used or used + length <= budget):
            chosen[i].add(j)
            used += length
    cut = [replace(p, text=_joined(p, spans[i], chosen[i])) for i, p in enumerate(passages) if chosen[i]]
    return render_context(cut)


def _cut(passage: Passage, span: tuple[int, int]) -> str:
    return passage.text[span[0] : span[1]]


def _joined(passage: Passage, spans: list[tuple[int, int]], chosen: set[int]) -> str:
    """The chosen sentences in their order, with "…" where sentences were left out."""
    parts, last = [], -1
    for j in sorted(chosen):
        if last >= 0 and j != last + 1:
            parts.append("…")
        parts.append(_cut(passage, spans[j]).strip())
        last = j
    return " ".join(parts)


@functools.cache
def _openai_chat_class() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    class OpenAICompatibleChat(ChatOpenAI):
        """ChatOpenAI that sends the answer-length cap as max_tokens, the field every OpenAI-compatible server reads.

        langchain-openai renames it to max_completion_tokens, which llama.cpp's server (python -m llama_cpp.server)
        ignores: answers then ran on to the end of the context instead of stopping at max_answer_tokens.
        """

        def _get_request_payload(self, input_, *, stop=None, **kwargs) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

    return OpenAICompatibleChat


def build_chat_model(settings: Settings) -> BaseChatModel:
    """Return the configured chat model, checking its file or endpoint settings first."""
    if settings.generation.llm_backend == "openai":
        if not settings.generation.llm_base_url:
            raise ModelUnavailable(
                "ASSISTANT_LLM_BASE_URL must be set (e.g. http://127.0.0.1:8080/v1) for the openai backend."
            )
        return _openai_chat_class()(
            base_url=settings.generation.llm_base_url,
            api_key=settings.generation.llm_api_key.get_secret_value() or "not-needed",
            model=settings.generation.llm_model_name,
            temperature=0,
            max_tokens=settings.generation.max_answer_tokens,
            timeout=settings.generation.llm_timeout,
            max_retries=1,
            extra_body=settings.generation.llm_extra_body or None,
        )
    if settings.generation.llm_backend == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(
            base_url=settings.generation.llm_base_url or "http://127.0.0.1:11434",
            model=settings.generation.llm_model_name,
            temperature=0,
            num_predict=settings.generation.max_answer_tokens,
            client_kwargs={"timeout": settings.generation.llm_timeout},
        )
    from ..index.models import ModelError, chat_model_file

    try:
        path = chat_model_file(settings)
    except ModelError as exc:
        raise ModelUnavailable(str(exc)) from exc
    from ..llamacpp.chat import LlamaCppChat
    from .decision import tapped_layers

    return LlamaCppChat(
        model_path=str(path),
        probe_layers=tapped_layers(settings, path),
        n_ctx=settings.generation.llm_context,
        n_threads=settings.generation.llm_threads,
        max_tokens=settings.generation.max_answer_tokens,
        state_dir=str(Path(settings.paths.cache_dir) / "states") if settings.generation.persist_model_state else None,
        repack_weights=settings.generation.llm_repack_weights,
        kept_prefixes=settings.reading.kept_article_states,
        kept_heads=settings.reading.kept_prompt_heads,
        saved_states_mb=settings.reading.saved_states_mb,
        read_chunk_tokens=settings.reading.read_chunk_tokens,
    )


def load_while(model, work: Callable[[], T]) -> T:
    """Run work while the model file loads in a second thread, and return what work returns.

    llama.cpp loads outside the GIL, so on two cores a fresh process pays for the longer of the two instead of
    their sum. A model with nothing to load (a remote one, a fake) just runs work. A load's failure is raised here,
    in the caller's thread, after work is done.
    """
    failed: list[BaseException] = []

    def load_model() -> None:
        try:
            model.load()
        except BaseException as exc:  # re-raised below, in the caller's thread
            failed.append(exc)

    loading = threading.Thread(target=load_model, name="model-load") if hasattr(model, "load") else None
    if loading:
        if hasattr(model, "import_engine"):
            model.import_engine()  # imports stay in this thread: only llama.cpp's own work runs beside it
        loading.start()
    try:
        result = work()
    finally:
        if loading:
            loading.join()
    if failed:
        raise failed[0]
    return result
