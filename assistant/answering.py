"""Answer stage: the Assistant that turns a question (and chat history) into a grounded, cited Answer."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .corpus import Document, Passage, load_passages
from .generation import PROMPT_PLACEHOLDERS, load_prompt, render_context
from .grounding import Grounder, Support, clean_sentence, fits_question, is_decline, mark_sentence, split_answer
from .guard import (
    InvalidQuestion,
    asks_for_several,
    is_greeting,
    is_off_task,
    needs_rewrite,
    normalize_history,
    validate_question,
)
from .settings import Settings
from .text import content_stems, entity_words, find_entity
from .verify import Verdict, Verifier

log = logging.getLogger(__name__)
_MARKERS = re.compile(r"\s*\[\d+\]")
_PRONOUN_STEMS = frozenset({"former", "latter", "previou", "earlier", "other", "others", "same"})

NOT_IN_ARTICLE = "The article does not say."


def off_task_reply(titles: list[str]) -> str:
    """The polite refusal of a request that is not a question about the articles titled titles."""
    own = "its" if len(titles) == 1 else "their"
    return (
        f"I can only answer questions about {describe(titles)}, from {own} text alone. "
        "Try asking who said what, which figures it gives, or what was decided."
    )


def greeting_reply(titles: list[str]) -> str:
    """The reply to a bare greeting or thanks: what the assistant can be asked about."""
    return f"Hello! Ask me anything about {describe(titles)}."


def describe(titles: list[str]) -> str:
    """The articles a conversation draws on, named for a reply ('the article “…”', 'the 3 articles here (…)')."""
    if len(titles) == 1:
        return f"the article “{titles[0]}”"
    shown = "; ".join(f"“{t}”" for t in titles[:3])
    more = f" and {len(titles) - 3} more" if len(titles) > 3 else ""
    return f"the {len(titles)} articles here ({shown}{more})"


@dataclass(frozen=True)
class View:
    """The part of the corpus a conversation draws on, and its fixed system prompt when it fits the context."""

    doc_id: str | None
    passages: list[Passage]
    text: str
    system: str | None
    titles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Citation:
    """One cited passage: the marker number in the answer text and the span of the article that supports it."""

    index: int
    passage_id: str
    text: str  # the whole passage
    quote: str  # the supporting span, verbatim from the document
    start: int  # document offsets of the quote
    end: int
    source: str
    doc_id: str
    title: str
    number: int  # paragraph number in the document
    section: str
    passage_start: int  # document offsets of the whole passage
    passage_end: int

    @classmethod
    def of(cls, passage: Passage, index: int, start: int, end: int, doc_text: str) -> Citation:
        """Citation number index of the span start:end of passage's document (whose text is doc_text)."""
        return cls(
            index=index,
            passage_id=passage.passage_id,
            text=passage.text,
            quote=doc_text[start:end],
            start=start,
            end=end,
            source=passage.source,
            doc_id=passage.doc_id,
            title=passage.title,
            number=passage.number,
            section=passage.section,
            passage_start=passage.start,
            passage_end=passage.end,
        )

    def to_dict(self) -> dict:
        """Return the citation as plain data (for JSON)."""
        return dict(self.__dict__)


@dataclass
class Answer:
    """The result of one question: text with [n] markers, the citations they point at, and how it was made."""

    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    passages: list[Passage] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    standalone_question: str = ""
    reason: str = "answered"  # answered | not_in_article | unsupported | unverified | off_task | greeting
    draft: str = ""  # what the model wrote, before the grounding check
    verdicts: list[Verdict] = field(default_factory=list)  # the verification of each checked sentence

    def to_dict(self) -> dict:
        """Return the answer as plain data (for JSON and the web API)."""
        return {
            "question": self.question,
            "text": self.text,
            "abstained": self.abstained,
            "reason": self.reason,
            "standalone_question": self.standalone_question,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "timings": self.timings,
            "draft": self.draft,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass
class _Run:
    """What one answer has produced so far: the sentences kept, their citations and verdicts, and the model's draft."""

    question: str
    system: str
    candidates: list[Passage]
    kept: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # sentences without content words ("Yes."), shown with the next
    numbering: dict[str, int] = field(default_factory=dict)
    citations: list[Citation] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    draft: str = ""
    declined: bool = False

    @property
    def failed(self) -> bool:
        """True when some sentence failed verification."""
        return any(not v.passed for v in self.verdicts)

    def reset(self, system: str, candidates: list[Passage]) -> None:
        """Start over with another prompt (the retry): nothing of the first attempt was shown."""
        self.system, self.candidates, self.declined = system, candidates, False
        self.pending.clear()
        self.draft += "\n"


class Assistant:
    """Answers questions about the corpus; heavy parts (index, models) load on first use or on load()."""

    def __init__(self, settings: Settings | None = None, chat_model=None, embeddings=None):
        self.settings = settings or Settings()
        self._chat_model = chat_model
        self._embeddings = embeddings
        self._lock = threading.RLock()
        self._ready = False
        self._warm = False
        self._loaded: tuple = ()
        self.documents: list[Document] = []
        self.passages: list[Passage] = []
        self.index_report = None

    # ----- loading -------------------------------------------------------------------------------------------
    def _fingerprint(self) -> tuple:
        """Sizes and times of the corpus files and the index manifest: cheap to take before every question.

        The store's own database file changes whenever anyone merely queries it, so only its existence counts;
        a store damaged in place surfaces as a retrieval error, which reopens it (see _retrieve).
        """

        def stamp(path: Path):
            try:
                stat = path.stat()
                return stat.st_mtime_ns, stat.st_size
            except OSError:
                return None

        corpus = Path(self.settings.corpus_dir)
        try:
            entries = [(p.name, stamp(p)) for p in sorted(corpus.iterdir()) if p.is_file()]
        except OSError:
            entries = [("corpus", None)]
        if not self.settings.chroma_host:
            index_dir = Path(self.settings.index_dir)
            entries += [
                ("manifest", stamp(index_dir / "manifest.json")),
                ("store", (index_dir / "chroma.sqlite3").exists()),
            ]
        return tuple(entries)

    def load(self) -> Assistant:
        """Read the corpus, open (or build) the index and prepare the prompts; reloads when the corpus or index changed."""
        with self._lock:
            if self._ready and self._fingerprint() == self._loaded:
                return self
            from .indexing import PassageIndex, forget_open_stores
            from .retrieval import HybridRetriever

            if self._ready:
                # Someone edited the corpus or touched the index under a running assistant: never answer from the
                # old state; reopen the store from disk (it updates or rebuilds itself as needed).
                log.warning("The corpus or the index changed on disk; reloading.")
                forget_open_stores(self.settings)
                self._ready = self._warm = False
            self.documents, self.passages = load_passages(self.settings.corpus_dir)
            self.index = PassageIndex(self.settings, self._embeddings)
            self.index_report = self.index.open(self.documents, self.passages)
            self.retriever = HybridRetriever(self.passages, self.index.search)
            self.grounder = Grounder(
                self.passages, {d.doc_id: d.text for d in self.documents}, self.settings.min_support
            )
            self.templates = {name: load_prompt(self.settings.prompts_dir, name) for name in PROMPT_PLACEHOLDERS}
            self._views: dict[str | None, View] = {}
            self._loaded = self._fingerprint()
            self._ready = True
            return self

    def view(self, scope: str | None = None) -> View:
        """What a conversation may draw on: every document, or only the one named by scope (a doc_id)."""
        with self._lock:
            self.load()
            if scope not in self._views:
                if scope is not None and scope not in {d.doc_id for d in self.documents}:
                    names = ", ".join(d.doc_id for d in self.documents)
                    raise InvalidQuestion(f"There is no article {scope!r}; choose one of: {names}.")
                documents = [d for d in self.documents if scope in (None, d.doc_id)]
                passages = [p for p in self.passages if scope in (None, p.doc_id)]
                text = "\n".join(d.text for d in documents)
                # The whole text goes into a fixed prompt prefix when it fits: llama.cpp then re-reads only the
                # question. Past that, each prompt carries the retrieved passages instead.
                budget_chars = (self.settings.llm_context - self.settings.max_answer_tokens - 400) * 3
                system = None
                if len(text) <= budget_chars:
                    title = documents[0].title if len(documents) == 1 else "Articles"
                    system = self.templates["system"].format(title=title, context=render_context(passages))
                self._views[scope] = View(scope, passages, text, system, [d.title for d in documents])
            return self._views[scope]

    @property
    def whole_corpus(self) -> bool:
        """True when the whole corpus sits in the fixed prompt prefix."""
        return self.view().system is not None

    @property
    def chat_model(self):
        """The chat model, built from settings on first use."""
        with self._lock:
            if self._chat_model is None:
                from .generation import build_chat_model

                self._chat_model = build_chat_model(self.settings)
            return self._chat_model

    @property
    def verifier(self) -> Verifier | None:
        """The verification stage, judging with the chat model; None when verification is off."""
        if not (self.settings.verify and self.settings.grounding_check):
            return None
        return Verifier(
            self.chat_model, self.templates["verify"], self.settings.verify_threshold, self.settings.verify_top_logprobs
        )

    @property
    def _verify_with_article(self) -> bool:
        with_article = self.settings.verify_with_article
        return self.settings.llm_backend != "llamacpp" if with_article is None else with_article

    def _doc_text(self, doc_id: str) -> str:
        return next(d.text for d in self.documents if d.doc_id == doc_id)

    def warm_up(self) -> str:
        """Load everything and have the model read the article prefix now, so the first question is fast."""
        self.load()
        model = self.chat_model
        if self._warm or not hasattr(model, "warm") or not self.whole_corpus:
            self._warm = True
            return "skipped"
        result = model.warm(self._messages(self.view().system, "Hello"))
        self._warm = True
        return result

    # ----- the pipeline --------------------------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, scope: str | None = None) -> list[Passage]:
        """Return the k passages that best match question (within one document when scope names it), ranked."""
        self.load()
        text = validate_question(question, self.settings.max_question_chars)
        return self.retriever.retrieve(text, k or self.settings.top_k, self.view(scope).doc_id).passages

    def answer(self, question: str, history: list[dict] | None = None, scope: str | None = None) -> Answer:
        """Answer question (with optional chat history) from the article(s) only; see Answer."""
        for item in self.stream(question, history, scope):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("The answer stream ended without an Answer.")  # a bug, never a user error

    def stream(
        self, question: str, history: list[dict] | None = None, scope: str | None = None
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as checked sentences become ready, then the final Answer.

        scope restricts the conversation to one document (its doc_id); None searches them all. Raises InvalidQuestion
        (a ValueError) for an empty, over-long or non-text question, a malformed history or an unknown scope.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        text = validate_question(question, self.settings.max_question_chars)
        turns = normalize_history(history, self.settings.max_history_messages)
        self.load()
        view = self.view(scope)
        if not self._warm:
            self.warm_up()  # restores the saved article state when there is one: the first answer is fast too

        def done(answer: Answer) -> Answer:
            timings["total"] = time.perf_counter() - t0
            answer.timings = {k: round(v, 4) for k, v in timings.items()}
            return answer

        if is_greeting(text):
            hello = greeting_reply(view.titles)
            yield hello
            yield done(Answer(text, hello, abstained=True, standalone_question=text, reason="greeting"))
            return
        off_task = off_task_reply(view.titles)
        if is_off_task(text):
            yield off_task
            yield done(Answer(text, off_task, abstained=True, standalone_question=text, reason="off_task"))
            return

        standalone = text
        if turns and needs_rewrite(text, turns):
            t = time.perf_counter()
            standalone = self._rewrite(text, turns, view)
            timings["rewrite"] = time.perf_counter() - t
            if is_off_task(standalone):
                yield off_task
                yield done(Answer(text, off_task, abstained=True, standalone_question=standalone, reason="off_task"))
                return

        t = time.perf_counter()
        found = self._retrieve(standalone, view.doc_id)
        timings["retrieve"] = time.perf_counter() - t
        refusal = Answer(text, NOT_IN_ARTICLE, abstained=True, passages=found.passages, standalone_question=standalone)

        # Only a question far from every passage is refused without the model: a word the article lacks is no
        # reason to refuse (the user may name a region, a capital or a country in other words); verification by
        # meaning decides what the answer may say.
        if self.settings.grounding_check:
            unrelated = found.best_distance > self.settings.max_distance and found.lexical_overlap < 0.5
            if unrelated:
                refusal.reason = "not_in_article"
                log.info("Refused %r: best distance %.2f", standalone, found.best_distance)
                yield NOT_IN_ARTICLE
                yield done(refusal)
                return

        system = view.system or self.templates["system"].format(
            title="Articles", context=render_context(found.passages)
        )
        if standalone.startswith(f"{text} ("):
            # The rewrite failed: let the model read the last exchange itself, after the cached article prefix.
            messages = self._messages(system, text, turns[-2:])
        else:
            messages = self._messages(system, standalone)
        run = _Run(standalone, system, view.passages if view.system else found.passages)
        t = time.perf_counter()
        yield from self._generate(run, messages, timings, t)
        timings["generate"] = time.perf_counter() - t

        # A small model often reads a short context better: when it declines a question that retrieval matched
        # closely, ask once more with only the best passages (and verify that answer like any other).
        if run.declined and not run.kept and found.best_distance <= self.settings.retry_distance:
            t = time.perf_counter()
            best = found.passages[: self.settings.retry_passages]
            retry_system = self.templates["system"].format(title="Articles", context=render_context(best))
            run.reset(retry_system, best)
            yield from self._generate(run, self._messages(retry_system, standalone), timings, t)
            timings["retry"] = time.perf_counter() - t

        # A small model tends to stop after the first of two asked-for things: ask it once for the rest, and keep
        # only a checked sentence that cites new text and is about what the question names.
        if self.settings.grounding_check and len(run.kept) == 1 and not run.declined and asks_for_several(standalone):
            t = time.perf_counter()
            for sentence in self._the_rest(run.system, standalone, run.kept[0], run.candidates, run.citations):
                yield from self._emit(run, sentence, timings, t)
            timings["complete"] = time.perf_counter() - t

        kept = run.kept
        if self.settings.grounding_check and kept and not fits_question(standalone, " ".join(kept)):
            log.info("Answer %r does not fit the question %r", kept, standalone)
            kept = []
        if run.declined or not kept:
            refusal.reason = "not_in_article" if run.declined else ("unverified" if run.failed else "unsupported")
            refusal.draft = run.draft
            refusal.verdicts = run.verdicts
            yield NOT_IN_ARTICLE
            yield done(refusal)
            return
        if not self.settings.grounding_check:
            kept = [clean_sentence(s) for s in kept]
        yield done(
            Answer(
                text,
                " ".join(kept),
                citations=run.citations,
                passages=found.passages,
                standalone_question=standalone,
                draft=run.draft,
                verdicts=run.verdicts,
            )
        )

    def _generate(self, run: _Run, messages, timings: dict, t: float) -> Iterator[str]:
        """Stream the model's answer to messages, yielding each sentence once it is checked, verified and cited."""
        buffer = ""
        first_token = None
        try:
            for token in self._model_tokens(messages):
                if first_token is None and token:
                    first_token = time.perf_counter() - t
                run.draft += token
                buffer += token
                sentences = split_answer(buffer)
                # All but the last sentence are complete; the last may still grow.
                if len(sentences) > 1 or buffer.endswith("\n"):
                    complete = sentences if buffer.endswith("\n") else sentences[:-1]
                    for sentence in complete:
                        yield from self._emit(run, sentence, timings, t)
                    buffer = "" if buffer.endswith("\n") else sentences[-1]
                if run.declined:
                    break
        finally:
            timings.setdefault("first_token", first_token if first_token is not None else time.perf_counter() - t)
        if not run.declined:
            for sentence in split_answer(buffer):
                yield from self._emit(run, sentence, timings, t)

    def _emit(self, run: _Run, sentence: str, timings: dict, t: float) -> Iterator[str]:
        marked = self._check(run, sentence, timings)
        if marked and not run.declined:
            piece = " ".join(run.pending + [marked])
            run.pending.clear()
            run.kept.append(piece)
            # The first checked text a reader sees (the model's first token comes earlier, unchecked).
            timings.setdefault("first_text", time.perf_counter() - t)
            yield (" " if len(run.kept) > 1 else "") + piece

    def _check(self, run: _Run, sentence: str, timings: dict) -> str | None:
        """The sentence with its citation markers when the passages support it and verification passes, else None."""
        sentence = clean_sentence(sentence)
        if not sentence:
            return None
        if is_decline(sentence):
            run.declined = True
            return None
        if not self.settings.grounding_check:
            return sentence
        support = self.grounder.support(sentence, run.candidates, run.question)
        if support is None:
            if not self.grounder.claim_terms(sentence)[0]:
                run.pending.append(sentence)
            else:
                log.info("Dropped unsupported sentence: %r", sentence)
            return None
        verifier = self.verifier
        if verifier is not None:
            started = time.perf_counter()
            claim = " ".join(run.pending + [sentence])
            evidence = [
                self._doc_text(p.doc_id)[s:e] for p, (s, e) in zip(support.passages, support.quotes, strict=True)
            ]
            context = run.system if self._verify_with_article else None
            try:
                verdict = verifier.judge(run.question, claim, evidence, context)
            except Exception as exc:
                raise self._model_failure(exc) from exc
            timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - started
            run.verdicts.append(verdict)
            if not verdict.passed:
                return None
        return self._cite(support, run.numbering, run.citations)

    # ----- helpers -------------------------------------------------------------------------------------------
    def _the_rest(
        self, system: str, question: str, first: str, candidates: list[Passage], citations: list[Citation]
    ) -> list[str]:
        """Ask for what the first answer left out; return the sentences worth checking (at most one)."""
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": first}]
        reply = "".join(self._model_tokens(self._messages(system, self.templates["more"], turns)))
        names = entity_words(question, skip_first=True)
        cited = [(c.doc_id, c.start, c.end) for c in citations]
        for sentence in split_answer(reply)[:2]:
            sentence = clean_sentence(sentence)
            if not sentence or is_decline(sentence) or (names and not any(find_entity(n, sentence) for n in names)):
                continue
            support = self.grounder.support(sentence, candidates, question)
            if support is None or any(
                p.doc_id == doc and s < end and start < e
                for p, (s, e) in zip(support.passages, support.quotes, strict=True)
                for doc, start, end in cited
            ):
                continue  # unsupported, or the first answer's fact again in other words
            return [sentence]
        return []

    def _model_tokens(self, messages, **kwargs) -> Iterator[str]:
        """Stream the model's text; any failure becomes ModelUnavailable with a message that says what to do."""

        model = self.chat_model
        try:
            for chunk in model.stream(messages, **kwargs):
                yield chunk.content if isinstance(chunk.content, str) else str(chunk.content)
        except Exception as exc:
            raise self._model_failure(exc) from exc

    def _model_failure(self, exc: Exception):
        """The ModelUnavailable to raise for a failed model call: what to do, never the API key."""
        from .generation import ModelUnavailable

        if isinstance(exc, ModelUnavailable):
            return exc  # it already says what to do (a missing or damaged model file)
        s = self.settings
        if s.llm_backend == "llamacpp":
            hint = "The local model failed; restart the assistant, or check the model file."
        else:
            hint = (
                f"The {s.llm_backend} endpoint {s.llm_base_url} failed or did not answer within {s.llm_timeout:g} s. "
                "Check that the server is running, or unset ASSISTANT_LLM_BACKEND to use the local model."
            )
        secret = s.llm_api_key.get_secret_value()
        detail = str(exc).replace(secret, "***") if secret else str(exc)
        log.error("Model call failed: %s: %s", type(exc).__name__, detail)
        return ModelUnavailable(f"{hint} ({type(exc).__name__})")

    def _retrieve(self, question: str, doc_id: str | None):
        try:
            return self.retriever.retrieve(question, self.settings.top_k, doc_id)
        except Exception as exc:  # the store broke under us (files deleted or damaged while running)
            from .indexing import IndexStoreError, forget_open_stores

            log.warning("Retrieval failed (%s); reopening the index.", exc)
            with self._lock:
                forget_open_stores(self.settings)
                self._ready = False
                self.load()
            try:
                return self.retriever.retrieve(question, self.settings.top_k, doc_id)
            except Exception as again:
                raise IndexStoreError(
                    f"The index cannot be searched ({again}). Run `assistant index --rebuild`."
                ) from again

    def _messages(self, system: str, question: str, turns: list[dict] = ()):
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        earlier = [
            HumanMessage(self.templates["question"].format(question=t["content"]))
            if t["role"] == "user"
            else AIMessage(_MARKERS.sub("", t["content"]))
            for t in turns
        ]
        return [SystemMessage(system), *earlier, HumanMessage(self.templates["question"].format(question=question))]

    def _rewrite(self, question: str, turns: list[dict], view: View) -> str:
        """Turn a follow-up into a standalone question, sharing the article prefix so llama.cpp reuses its cache."""
        from langchain_core.messages import HumanMessage, SystemMessage

        # The last two turns: a small model resolves "he" to the wrong person when shown more.
        recent = turns[-4:]
        history = "\n".join(f"{t['role'].capitalize()}: {t['content'][:500]}" for t in recent)
        system = view.system or self.templates["system"].format(title="Articles", context="")
        prompt = self.templates["condense"].format(history=history, question=question)
        reply = "".join(self._model_tokens([SystemMessage(system), HumanMessage(prompt)], max_tokens=60)).strip()
        line = reply.splitlines()[0].strip().strip('"“”').strip() if reply else ""
        line = line.removeprefix("Rewritten question:").removeprefix("Question:").strip()
        # A rewrite may only add context: it must keep every content word the user wrote.
        kept = content_stems(question) - _PRONOUN_STEMS <= content_stems(line)
        changed = line.casefold().rstrip("?. ") != question.casefold().rstrip("?. ")
        if line and len(line) <= 300 and not is_decline(line) and kept and changed:
            return line
        log.info("Rejected rewrite %r of %r", line, question)
        if entity_words(question, skip_first=True):
            return question  # it names what it is about: complete enough as it stands
        # Otherwise the last user question gives retrieval (and the model) the missing context.
        last = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
        return f"{question} ({last[:200]})"

    def _cite(self, support: Support, numbering: dict[str, int], citations: list[Citation]) -> str:
        markers = []
        for passage, (start, end) in zip(support.passages, support.quotes, strict=True):
            doc_text = self._doc_text(passage.doc_id)
            if passage.passage_id in numbering:
                # Another sentence cites the same passage: widen its quote to cover both spans.
                i = numbering[passage.passage_id] - 1
                old = citations[i]
                lo, hi = min(old.start, start), max(old.end, end)
                citations[i] = replace(old, start=lo, end=hi, quote=doc_text[lo:hi])
            else:
                numbering[passage.passage_id] = len(numbering) + 1
                citations.append(Citation.of(passage, numbering[passage.passage_id], start, end, doc_text))
            markers.append(numbering[passage.passage_id])
        return mark_sentence(support.sentence, markers)


_default: Assistant | None = None
_default_lock = threading.Lock()


def default_assistant() -> Assistant:
    """The process-wide Assistant built from environment settings on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Assistant(Settings())
        return _default


__all__ = ["Answer", "Assistant", "Citation", "InvalidQuestion", "default_assistant"]
