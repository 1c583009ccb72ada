"""The in-process llama.cpp model as a LangChain chat model: calls serialised by a lock, each prompt started from the
kept state of its article (or of the recent prompt it shares most tokens with), and articles read in chunks that
yield to questions."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from ..errors import ModelUnavailable
from ..relay import relay
from .abort import decode_unless
from .engine import ModelLoadError, import_engine, open_model, prompt_tokens, shared_prefix
from .states import PrefixStore, put_back, snapshot

log = logging.getLogger(__name__)

GIVE_WAY_POLL_S = 0.02  # how often a reading that gives way looks again: a small part of a chunk's 7-14 s


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
    probe_layers: tuple[int, ...] = ()  # layers whose hidden states calls can hand back (see taps.py)

    _llm: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _prefixes: Any = PrivateAttr(default=None)  # the PrefixStore of what was read (see _store)
    _current: str | None = PrivateAttr(default=None)  # the system text whose kept prefix the cache starts with
    _heads: list = PrivateAttr(default_factory=list)  # Prefix of recent prompts with no kept prefix
    _waiting: int = PrivateAttr(default=0)  # answers waiting for the lock: a reading article lets them go first
    _counting: Any = PrivateAttr(default_factory=threading.Lock)
    _stopping: Any = PrivateAttr(default_factory=threading.Event)  # set at exit: background readings end
    _partials: dict = PrivateAttr(default_factory=dict)  # system -> Prefix of readings paused for another

    @property
    def _llm_type(self) -> str:
        return "llamacpp-in-process"

    @property
    def reads_hidden_states(self) -> bool:
        """True when calls can hand back hidden states: pass a list as hidden_states= to stream or invoke."""
        return bool(self.probe_layers)

    @contextmanager
    def _tapping(self, llm, sink: list | None):
        """Arm the model's taps for one call when the caller asked for states (sink) and some layer is tapped."""
        taps = getattr(llm, "taps", None)
        if sink is None or taps is None:
            yield None
            return
        with taps.armed():
            yield taps

    def import_engine(self) -> None:
        """Import llama-cpp-python now, in this thread (see engine.import_engine), before load() runs elsewhere."""
        try:
            import_engine()
        except ModelLoadError as exc:
            raise ModelUnavailable(str(exc)) from exc

    def load(self):
        """Load the model (once) and return the llama_cpp.Llama object."""
        with self._lock:
            if self._llm is None:
                try:
                    self._llm = open_model(
                        self.model_path, self.n_ctx, self.n_threads, self.repack_weights, self.probe_layers
                    )
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
        if self._current is not None or self.kept_heads == 0:
            return
        head = snapshot(llm)
        if head is not None:
            others = [h for h in self._heads if h.tokens != head.tokens]
            self._heads = [*others[max(0, len(others) - self.kept_heads + 1) :], head]

    @property
    def _store(self):
        if self._prefixes is None:
            self._prefixes = PrefixStore(
                self.state_dir, self.model_path, self.repack_weights, self.kept_prefixes, self.saved_states_mb
            )
        return self._prefixes

    def _put(self, llm, prefix) -> bool:
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
            self._partials.pop(system, None)
            if self._current == system:
                self._current = None

    def has_read(self, system: str) -> bool:
        """True when the prefix of this system prompt is kept in RAM or saved on disk: answers need not read it."""
        return self._store.has(system)

    def read(
        self,
        prompts: list[list[BaseMessage]],
        progress=None,
        background: bool = False,
        pause: Callable[[], bool] | None = None,
        switch: Callable[[], bool] | None = None,
    ) -> str:
        """Read what prompts (one article's, with different questions) share, once, and keep its state under their
        system prompt; return "kept", "restored", "computed", "paused" (see switch) or (a background read at exit)
        "stopped".

        The shared part runs up to the first token of the question itself, so the question's template is read too.
        The first prompt is read whole, in chunks of read_chunk_tokens (llama.cpp's batch), and its question is then
        dropped from the cache: every batch holds the very tokens it holds when a prompt is decoded in one go, as
        llama.cpp's server does, so greedy answers do not change with how the article got into the cache (a 1.5B
        model's answer flips on the rounding of another batch split).

        The partial state is copied to RAM after each chunk and put back before the next, so other calls may use
        the model between two chunks. A background read waits while any call waits for the model. pause, when
        given, is true while a question is in flight: the reading waits for it between chunks, and a chunk in
        progress is dropped at once (see abort.py) and read again after it. switch, when given, is asked between
        chunks: when true, the reading returns "paused" and keeps its partial state, and the next read of these
        prompts goes on from it. progress, when given, is called with (tokens read, tokens in all).
        """
        system = str(prompts[0][0].content)
        with self._turn():
            if self._store.in_ram(system):
                return "kept"
            if self._store.get(system) is not None:
                return "restored"
            llm = self.load()
            each = [prompt_tokens(llm, self._as_dicts(p)) for p in prompts]
            tokens, kept = each[0], len(functools.reduce(shared_prefix, each))
        partial = self._partials.pop(system, None)  # a reading paused for another goes on where it was
        done = len(partial.tokens) if partial is not None else 0
        if partial is not None and progress:
            progress(min(done, kept), kept)
        while done < len(tokens):
            self._give_way(background, pause)
            if background and self._stopping.is_set():
                return "stopped"
            if switch is not None and switch():
                if partial is not None:
                    self._keep_partial(system, partial)
                return "paused"
            with self._lock if background else self._turn():
                done, partial, read = self._read_chunk(llm, tokens, done, kept, partial, pause)
            if read and progress:
                progress(min(done, kept), kept)
        with self._lock:
            self._store.put(system, partial)
            self._current = system if llm.input_ids[: llm.n_tokens].tolist() == partial.tokens else None
        return "computed"

    def _read_chunk(self, llm, tokens: list[int], done: int, kept: int, partial, pause) -> tuple[int, Any, bool]:
        """Read the chunk after done, with the model held: (tokens done, partial state, whether a chunk was read).

        The cache is first made to hold partial again (another call may have used the model since); a chunk that
        gives way to a question leaves it so, to be read again after the question.
        """
        if partial is None:
            llm.reset()
        elif llm.input_ids[: llm.n_tokens].tolist() != partial.tokens and not self._put(llm, partial):
            return 0, None, False  # refused: read from the start again
        self._current = None
        if not decode_unless(llm, tokens[done : done + self.read_chunk_tokens], self._stop_chunk(pause)):
            return done, partial, False  # a question came: this chunk is read again after it
        done = llm.n_tokens
        if done == len(tokens):  # the question read with the rest goes: the prefix is what is kept
            llm._ctx.kv_cache_seq_rm(-1, kept, -1)
            llm.n_tokens = kept
        partial = snapshot(llm)
        if partial is None:
            raise ModelUnavailable("llama.cpp could not copy the model state; restart the assistant.")
        return done, partial, True

    def _give_way(self, background: bool, pause: Callable[[], bool] | None) -> None:
        """Wait while a question is in flight (pause) or, for a background read, while any call waits for the model."""
        while not (background and self._stopping.is_set()):
            if not ((background and self._waiting) or (pause is not None and pause())):
                return
            time.sleep(GIVE_WAY_POLL_S)

    def _stop_chunk(self, pause: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """When a chunk being read must stop: a question in flight, or the process exiting."""
        if pause is None:
            return None
        return lambda: pause() or self._stopping.is_set()

    def _keep_partial(self, system: str, partial) -> None:
        """Keep a paused reading's state in RAM (the oldest go past kept_prefixes: those are read from the start)."""
        self._partials[system] = partial
        while len(self._partials) > self.kept_prefixes:
            self._partials.pop(next(iter(self._partials)))

    @staticmethod
    def _as_dicts(messages: list[BaseMessage]) -> list[dict]:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        return [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _stream(
        self, messages, stop=None, run_manager=None, hidden_states: list | None = None, **kwargs
    ) -> Iterator[ChatGenerationChunk]:
        """Stream the reply token by token. hidden_states, when a list, receives the tapped layers' states: before
        each streamed piece, the state its token was chosen from (the first: the prompt's end), and after the last
        piece the state after it."""
        if kwargs.get("logprobs"):  # a judgement inside a streamed chain: one token, as in _generate
            top = int(kwargs.get("top_logprobs") or 20)
            message = self._first_token_logprobs(messages, top, hidden_states).generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=message.content, response_metadata=message.response_metadata)
            )
            return

        # One worker thread holds the lock for the whole generation: a generator may be resumed on another thread
        # (Gradio does), and a lock must be released by the thread that took it.
        def produce() -> Iterator[str]:
            with self._turn():
                llm = self._ready_for(messages)
                with self._tapping(llm, hidden_states) as taps:
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
                                if taps is not None:
                                    hidden_states.append(taps.latest)
                                yield delta
                    except GeneratorExit:  # the reader stopped early (a refusal, a closed page): stop, keep the head
                        pass
                    if taps is not None:
                        hidden_states.append(taps.latest)
                self._keep_head(llm)

        with closing(relay(produce, name="llama-generate")) as tokens:  # closed at once when the reader stops
            for item in tokens:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                if run_manager:
                    run_manager.on_llm_new_token(item, chunk=chunk)
                yield chunk

    def _generate(self, messages, stop=None, run_manager=None, hidden_states: list | None = None, **kwargs):
        if kwargs.get("logprobs"):
            return self._first_token_logprobs(messages, int(kwargs.get("top_logprobs") or 20), hidden_states)
        pieces = self._stream(messages, stop, run_manager, hidden_states, **kwargs)
        text = "".join(c.message.content for c in pieces)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _first_token_logprobs(self, messages, top: int, hidden_states: list | None = None) -> ChatResult:
        """One token, with the log-probabilities of the top candidates in OpenAI's response format; hidden_states,
        when a list, receives the tapped layers' states at the prompt's end.

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
            with self._tapping(llm, hidden_states) as taps:
                reply = llm.create_chat_completion(
                    self._as_dicts(messages),
                    temperature=0.0,
                    max_tokens=1,
                    logits_processor=LogitsProcessorList([capture]),
                )
                if taps is not None:
                    hidden_states.append(taps.latest)
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
