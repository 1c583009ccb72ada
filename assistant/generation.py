"""Generation stage: prompt templates from prompts/, and the chat models (in-process llama.cpp, OpenAI-compatible, Ollama)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import (
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    PromptTemplate,
    SystemMessagePromptTemplate,
)
from pydantic import PrivateAttr

from .corpus import Passage
from .errors import AssistantError
from .relay import relay
from .settings import Settings

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


class ModelUnavailable(AssistantError):
    """The chat model could not be loaded or reached; the message says what to do."""


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

    from .grounding import best_sentence, sentence_spans
    from .text import content_stems

    budget = settings.context_token_budget * settings.chars_per_token
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


class LlamaCppChat(BaseChatModel):
    """A llama.cpp model in this process, as a LangChain chat model.

    Calls are serialised by a lock (one llama.cpp context is not thread-safe), and the state after reading a
    prompt prefix can be saved to disk so that a fresh process skips re-reading the article.
    """

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    max_tokens: int = 160
    state_dir: str | None = None
    repack_weights: bool = True

    kept_prefixes: int = 4
    kept_heads: int = 4
    saved_states_mb: int = 4000
    read_chunk_tokens: int = 512

    _llm: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _prefixes: Any = PrivateAttr(default=None)  # the llamacpp.PrefixStore of what was read (see _store)
    _current: str | None = PrivateAttr(default=None)  # the system text whose kept prefix the cache starts with
    _heads: list = PrivateAttr(default_factory=list)  # llamacpp.Prefix of recent prompts with no kept prefix
    _waiting: int = PrivateAttr(default=0)  # answers waiting for the lock: a reading article lets them go first
    _counting: Any = PrivateAttr(default_factory=threading.Lock)
    _stopping: Any = PrivateAttr(default_factory=threading.Event)  # set at exit: background readings end

    @property
    def _llm_type(self) -> str:
        return "llamacpp-in-process"

    def import_engine(self) -> None:
        """Import llama-cpp-python now, in this thread (see llamacpp.import_engine), before load() runs elsewhere."""
        from .llamacpp import ModelLoadError, import_engine

        try:
            import_engine()
        except ModelLoadError as exc:
            raise ModelUnavailable(str(exc)) from exc

    def load(self):
        """Load the model (once) and return the llama_cpp.Llama object."""
        with self._lock:
            if self._llm is None:
                from .llamacpp import ModelLoadError, open_model

                try:
                    self._llm = open_model(self.model_path, self.n_ctx, self.n_threads, self.repack_weights)
                except ModelLoadError as exc:
                    raise ModelUnavailable(str(exc)) from exc
            return self._llm

    @contextmanager
    def _turn(self):
        """Hold the model for one call; an article being read in the background pauses until the call is done."""
        with self._counting:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._counting:
                self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def _ready_for(self, messages: list[BaseMessage]):
        """The loaded model, its cache starting with the kept prefix of messages' system prompt when there is one.

        A judgement, a retrieved context or another article leaves other tokens in llama.cpp's single cache;
        reading an article again would cost minutes, so its KV cache, kept in RAM (or saved on disk by read()), is
        put back: a copy of some tens to hundreds of MB. A prompt with no kept prefix starts from the recent prompt
        it shares most tokens with instead (see _reuse_head).
        """
        llm = self.load()
        system = str(messages[0].content) if messages and messages[0].type == "system" else None
        if system is not None and system == self._current:
            return llm
        prefix = self._store.get(system) if system is not None else None
        self._current = system if prefix is not None and self._put(llm, prefix) else None
        if self._current is None:
            self._reuse_head(llm, messages)
        return llm

    def _reuse_head(self, llm, messages: list[BaseMessage]) -> None:
        """Put back the kept head sharing the most tokens with this prompt, when it shares more than the cache.

        On two cores a prompt token costs about 30 ms and putting a state back well under 1 ms per hundred tokens:
        a judgement's template, the same for every sentence, is then read once instead of once per sentence.
        """
        from .llamacpp import prompt_tokens, shared_prefix

        if not self._heads:
            return
        tokens = prompt_tokens(llm, self._as_dicts(messages))
        have = len(shared_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens))
        shares = [len(shared_prefix(head.tokens, tokens)) for head in self._heads]
        best = max(range(len(shares)), key=shares.__getitem__)  # the oldest of equals
        if shares[best] > have:
            self._put(llm, self._heads[best])

    def _keep_head(self, llm) -> None:
        """Keep the state of a prompt just read with no kept prefix (the most recent last, at most kept_heads)."""
        from .llamacpp import snapshot

        if self._current is not None or self.kept_heads == 0:
            return
        head = snapshot(llm)
        if head is not None:
            others = [h for h in self._heads if h.tokens != head.tokens]
            self._heads = [*others[max(0, len(others) - self.kept_heads + 1) :], head]

    @property
    def _store(self):
        if self._prefixes is None:
            from .llamacpp import PrefixStore

            self._prefixes = PrefixStore(
                self.state_dir, self.model_path, self.repack_weights, self.kept_prefixes, self.saved_states_mb
            )
        return self._prefixes

    def _put(self, llm, prefix) -> bool:
        from .llamacpp import put_back

        return put_back(llm, prefix)

    def stop_reading(self) -> None:
        """Make background readings return "stopped" before their next chunk (a foreground one goes on)."""
        self._stopping.set()

    def get_num_tokens(self, text: str) -> int:
        """The model's own token count of text (LangChain's default would fetch a GPT-2 tokenizer)."""
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def forget(self, system: str) -> None:
        """Drop what was read of this system prompt, in RAM and on disk (its next use reads it again)."""
        with self._turn():
            self._store.forget(system)
            if self._current == system:
                self._current = None

    def has_read(self, system: str) -> bool:
        """True when the prefix of this system prompt is kept in RAM or saved on disk: answers need not read it."""
        return self._store.has(system)

    def read(self, prompts: list[list[BaseMessage]], progress=None, background: bool = False) -> str:
        """Read what prompts (one article's, with different questions) share, once, and keep its state under their
        system prompt; return "kept", "restored", "computed" or (a background read at exit) "stopped".

        The shared part runs up to the first token of the question itself, so the question's template is read too.
        The first prompt is read whole, in chunks of read_chunk_tokens (llama.cpp's batch), and its question is then
        dropped from the cache: every batch holds the very tokens it holds when a prompt is decoded in one go, as
        llama.cpp's server does, so greedy answers do not change with how the article got into the cache (a 1.5B
        model's answer flips on the rounding of another batch split).

        The prompt is read in chunks, and answers asked meanwhile take the model between two
        chunks: the partial state is copied to RAM after each chunk and put back before the next. A background read
        also waits while any call waits for the model. progress, when given, is called with (tokens read, tokens
        in all).
        """
        from .llamacpp import prompt_tokens, shared_prefix, snapshot

        system = str(prompts[0][0].content)
        with self._turn():
            if self._store.in_ram(system):
                return "kept"
            if self._store.get(system) is not None:
                return "restored"
            llm = self.load()
            each = [prompt_tokens(llm, self._as_dicts(p)) for p in prompts]
            tokens, kept = each[0], len(functools.reduce(shared_prefix, each))
        partial, done = None, 0
        while done < len(tokens):
            while background and self._waiting and not self._stopping.is_set():
                time.sleep(0.02)
            if background and self._stopping.is_set():
                return "stopped"
            with self._lock if background else self._turn():
                if partial is None:
                    llm.reset()
                elif llm.input_ids[: llm.n_tokens].tolist() != partial.tokens and not self._put(llm, partial):
                    partial, done = None, 0  # refused: read from the start again
                    continue
                self._current = None
                llm.eval(tokens[done : done + self.read_chunk_tokens])
                done = llm.n_tokens
                if done == len(tokens):  # the question read with the rest goes: the prefix is what is kept
                    llm._ctx.kv_cache_seq_rm(-1, kept, -1)
                    llm.n_tokens = kept
                partial = snapshot(llm)
                if partial is None:
                    raise ModelUnavailable("llama.cpp could not copy the model state; restart the assistant.")
            if progress:
                progress(min(done, kept), kept)
        with self._lock:
            self._store.put(system, partial)
            self._current = system if llm.input_ids[: llm.n_tokens].tolist() == partial.tokens else None
        return "computed"

    @staticmethod
    def _as_dicts(messages: list[BaseMessage]) -> list[dict]:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        return [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("logprobs"):  # a judgement inside a streamed chain: one token, as in _generate
            message = self._first_token_logprobs(messages, int(kwargs.get("top_logprobs") or 20)).generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=message.content, response_metadata=message.response_metadata)
            )
            return

        # One worker thread holds the lock for the whole generation: a generator may be resumed on another thread
        # (Gradio does), and a lock must be released by the thread that took it.
        def produce() -> Iterator[str]:
            with self._turn():
                llm = self._ready_for(messages)
                parts = llm.create_chat_completion(
                    self._as_dicts(messages),
                    temperature=0.0,
                    max_tokens=kwargs.get("max_tokens", self.max_tokens),
                    stop=stop,
                    stream=True,
                )
                try:
                    for part in parts:
                        delta = part["choices"][0]["delta"].get("content")
                        if delta:
                            yield delta
                except GeneratorExit:  # the reader stopped early (a refusal, a closed page): stop, keep the head
                    pass
                self._keep_head(llm)

        with closing(relay(produce, name="llama-generate")) as tokens:  # closed at once when the reader stops
            for item in tokens:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                if run_manager:
                    run_manager.on_llm_new_token(item, chunk=chunk)
                yield chunk

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if kwargs.get("logprobs"):
            return self._first_token_logprobs(messages, int(kwargs.get("top_logprobs") or 20))
        text = "".join(c.message.content for c in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _first_token_logprobs(self, messages, top: int) -> ChatResult:
        """One token, with the log-probabilities of the top candidates in OpenAI's response format.

        llama-cpp-python's own logprobs need logits_all=True (a logits row per prompt token: gigabytes); the last
        position's logits, which a logits processor sees before sampling, are all the first token needs. The prompt
        still goes through create_chat_completion, so the cached article prefix is reused.
        """
        import numpy as np
        from llama_cpp import LogitsProcessorList

        seen: list = []

        def capture(_input_ids, scores):
            seen.append(np.array(scores, dtype=np.float64))
            return scores

        with self._turn():
            llm = self._ready_for(messages)
            reply = llm.create_chat_completion(
                self._as_dicts(messages), temperature=0.0, max_tokens=1, logits_processor=LogitsProcessorList([capture])
            )
            self._keep_head(llm)
            logits = seen[0]
            logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
            best = np.argsort(-logprobs)[:top]
            candidates = [
                {"token": llm.detokenize([int(i)]).decode("utf-8", errors="replace"), "logprob": float(logprobs[i])}
                for i in best
            ]
        text = reply["choices"][0]["message"]["content"] or ""
        first = {"token": candidates[0]["token"], "logprob": candidates[0]["logprob"], "top_logprobs": candidates}
        message = AIMessage(content=text, response_metadata={"logprobs": {"content": [first]}})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def warm(self, prompts: list[list[BaseMessage]], progress=None) -> str:
        """Make the model read what prompts share now (or restore it from disk); return what was done."""
        return self.read(prompts, progress)


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
    if settings.llm_backend == "openai":
        if not settings.llm_base_url:
            raise ModelUnavailable(
                "ASSISTANT_LLM_BASE_URL must be set (e.g. http://127.0.0.1:8080/v1) for the openai backend."
            )
        return _openai_chat_class()(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value() or "not-needed",
            model=settings.llm_model_name,
            temperature=0,
            max_tokens=settings.max_answer_tokens,
            timeout=settings.llm_timeout,
            max_retries=1,
            extra_body=settings.llm_extra_body or None,
        )
    if settings.llm_backend == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(
            base_url=settings.llm_base_url or "http://127.0.0.1:11434",
            model=settings.llm_model_name,
            temperature=0,
            num_predict=settings.max_answer_tokens,
            client_kwargs={"timeout": settings.llm_timeout},
        )
    from .models import ModelError, chat_model_file

    try:
        path = chat_model_file(settings)
    except ModelError as exc:
        raise ModelUnavailable(str(exc)) from exc
    return LlamaCppChat(
        model_path=str(path),
        n_ctx=settings.llm_context,
        n_threads=settings.llm_threads,
        max_tokens=settings.max_answer_tokens,
        state_dir=str(Path(settings.cache_dir) / "states") if settings.persist_model_state else None,
        repack_weights=settings.llm_repack_weights,
        kept_prefixes=settings.kept_article_states,
        kept_heads=settings.kept_prompt_heads,
        saved_states_mb=settings.saved_states_mb,
        read_chunk_tokens=settings.read_chunk_tokens,
    )
