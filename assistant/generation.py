"""Generation stage: prompt templates from prompts/, and the chat models (in-process llama.cpp, OpenAI-compatible, Ollama)."""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import queue
import sys
import threading
from collections.abc import Iterator
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
}
# Variables a template may use besides those: the judgement may also be shown the answer sentence itself.
OPTIONAL_VARIABLES = {"verify": {"answer"}}


class PromptError(RuntimeError):
    """A prompt template is missing or has the wrong placeholders."""


class ModelUnavailable(RuntimeError):
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


_END = object()


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

    _llm: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _prefix: Any = PrivateAttr(default=None)  # (system text, tokens, KV bytes) of the warmed prompt, kept in RAM
    _away: bool = PrivateAttr(default=False)  # the cache holds another prompt than the warmed one

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

    def _ready_for(self, messages: list[BaseMessage]):
        """The loaded model, its cache holding the warmed article prefix again when messages start with it.

        A judgement without the article, or a retry on a short context, leaves other tokens in llama.cpp's single
        cache; reading the article again would cost many seconds, so its KV cache, kept in RAM since the warm-up,
        is put back (a copy of some tens of MB).
        """
        llm = self.load()
        system = str(messages[0].content) if messages and messages[0].type == "system" else None
        if self._prefix is None:
            return llm
        if system != self._prefix[0]:
            self._away = True
        elif self._away:
            self._put_back(llm)
        return llm

    def _keep_prefix(self, llm, system: str) -> None:
        """Copy the cache of the prompt just read (the article prefix) to RAM."""
        import ctypes

        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buffer, size, 0) != size:
            return  # nothing kept: the article is read again when needed, as before
        self._prefix = (system, list(llm.input_ids[: llm.n_tokens]), buffer, size)
        self._away = False

    def _put_back(self, llm) -> None:
        import llama_cpp

        _, tokens, buffer, size = self._prefix
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, size, 0) != size:
            llm.reset()  # the prefix is read again from scratch
            self._prefix = None
            return
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        llm._requires_eval = True
        self._away = False

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
        tokens: queue.Queue = queue.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                with self._lock:
                    llm = self._ready_for(messages)
                    parts = llm.create_chat_completion(
                        self._as_dicts(messages),
                        temperature=0.0,
                        max_tokens=kwargs.get("max_tokens", self.max_tokens),
                        stop=stop,
                        stream=True,
                    )
                    for part in parts:
                        if cancelled.is_set():
                            break
                        delta = part["choices"][0]["delta"].get("content")
                        if delta:
                            tokens.put(delta)
            except Exception as exc:  # handed to the consumer, which raises it in its own thread
                tokens.put(exc)
            finally:
                tokens.put(_END)

        threading.Thread(target=produce, name="llama-generate", daemon=True).start()
        try:
            while (item := tokens.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                if run_manager:
                    run_manager.on_llm_new_token(item, chunk=chunk)
                yield chunk
        finally:
            cancelled.set()  # the reader stopped early (a refusal, a closed page): stop generating

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

        with self._lock:
            llm = self._ready_for(messages)
            reply = llm.create_chat_completion(
                self._as_dicts(messages), temperature=0.0, max_tokens=1, logits_processor=LogitsProcessorList([capture])
            )
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

    def warm(self, messages: list[BaseMessage]) -> str:
        """Make the model read messages' prompt now (or restore that state from disk); return what was done."""
        with self._lock:
            llm = self.load()
            prompt = self._as_dicts(messages)
            what = (Path(self.model_path).name, self.n_ctx, prompt, self.repack_weights)
            key = hashlib.sha256(repr(what).encode()).hexdigest()[:24]
            state_file = Path(self.state_dir) / f"state-{key}.pkl" if self.state_dir else None
            how = "computed"
            if state_file and state_file.is_file():
                try:
                    self._restore(llm, state_file)
                    how = "restored"
                except Exception as exc:  # a damaged state file is only a lost shortcut
                    log.warning("Ignoring unreadable model state %s (%s)", state_file, exc)
                    state_file.unlink(missing_ok=True)
            if how == "computed":
                llm.create_chat_completion(prompt, temperature=0.0, max_tokens=1)
                if state_file:
                    self._save(llm, state_file)
            self._keep_prefix(llm, prompt[0]["content"])
            return how

    @staticmethod
    def _save(llm, path: Path) -> None:
        state = llm.save_state()
        # The logits of every prompt token are not needed to continue from the prefix: keep only their shape.
        compact = {
            "input_ids": state.input_ids,
            "scores_shape": state.scores.shape,
            "n_tokens": state.n_tokens,
            "llama_state": state.llama_state,
            "llama_state_size": state.llama_state_size,
            "seed": state.seed,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(compact, handle, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    @staticmethod
    def _restore(llm, path: Path) -> None:
        import ctypes

        import llama_cpp

        with path.open("rb") as handle:
            data = pickle.load(handle)  # noqa: S301 - our own cache file, written by _save
        # Not Llama.load_state: it fills the whole 512 x vocabulary logits table (~300 MB, and a copy of it) that
        # sampling never reads, which cost a restored process ~460 MB more peak memory than one that read the prompt.
        size = data["llama_state_size"]
        buffer = (ctypes.c_uint8 * size).from_buffer_copy(data["llama_state"])
        if llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, size) != size:
            raise RuntimeError("the model refused the saved state")
        llm.input_ids[:] = data["input_ids"]
        llm.n_tokens = data["n_tokens"]
        llm._seed = data["seed"]
        llm._requires_eval = True  # no live logits yet: the next prompt's suffix is decoded first


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
    )


def say(message: str) -> None:
    """Tell the person at the terminal what long work is going on."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
