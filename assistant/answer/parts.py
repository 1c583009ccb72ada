"""Answer stage, components: the parts every stage of pipeline.run receives, built once per load of the corpus.

Each collaborator is typed by the interface the stages use (a Protocol), never by the class that implements it, so
that a fake is type-checked like the real part, and nothing here is a method of the Assistant that builds it (the
stages never call back up into it). `build` makes the judges from settings unless they are given, the way
llama_index's CitationQueryEngine takes its retriever and synthesizer or makes its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import ModelUnavailable
from ..index.corpus import Passage
from ..settings import Settings
from .generation import Prompts
from .judge import Verdict, Verifier
from .state import Retrieval, View

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableConfig

    from .grounding import Support
    from .question_words import Unmatched

log = logging.getLogger(__name__)


class Search(Protocol):
    """The passages nearest a question within a view, and how near they are (the index behind it may reopen)."""

    def __call__(
        self, question: str, view: View, k: int | None = None, config: RunnableConfig | None = None
    ) -> Retrieval: ...


class Views(Protocol):
    """The view of one document (its doc_id), or of all of them (None)."""

    def view(self, scope: str | None = None) -> View: ...


class Reader(Protocol):
    """The model's reading of whole texts (reading/reader.py)."""

    def ready(self, view: View) -> bool: ...

    def read(self, view: View, wait: bool = True, progress=None) -> str: ...

    def whole_view(self, view: View, found: list[Passage], views: Callable[[str], View]) -> View | None: ...


class WordCheck(Protocol):
    """Whether the passages' words support an answer sentence (grounding.py)."""

    def support(
        self, sentence: str, candidates: list[Passage] | None = None, question: str = "", about: tuple[str, ...] = ()
    ) -> Support | None: ...

    def nearest(
        self, sentence: str, candidates: list[Passage] | None = None, question: str = "", about: tuple[str, ...] = ()
    ) -> Support | None: ...

    def claim_terms(self, sentence: str) -> tuple[set[str], list[str], set[str]]: ...

    def named_in(self, name: str, passages: tuple[Passage, ...], text: str) -> bool: ...


class Judge(Protocol):
    """Whether cited text states an answer to a question, by meaning (judge.py)."""

    def judge(self, question: str, sentence: str, evidence: list[str], context: str | None = None) -> Verdict: ...


class QuestionWordCheck(Protocol):
    """What of the question's own words the cited evidence does not match (question_words.py)."""

    def unmatched(self, question: str, sentence: str, passage: str, quote: str = "", named=None) -> Unmatched: ...


class DecisionRule(Protocol):
    """The fitted decision over a judged sentence's signals (decision.py)."""

    @property
    def needs_claim(self) -> bool: ...

    def probability(self, values: dict[str, float], states: dict | None = None) -> tuple[float, float]: ...

    def answerable(self, question_state: dict | None) -> float | None: ...

    def refuse_early(self, question_state: dict | None) -> bool: ...


@dataclass(frozen=True)
class Parts:
    """What the answer stages use: settings, prompts, the chat model, the word check, the judges, search, the
    article reader and the documents' texts."""

    settings: Settings
    prompts: Prompts
    chat_model: BaseChatModel
    grounder: WordCheck
    search: Search
    views: Views
    reader: Reader
    texts: Mapping[str, str]  # each document's whole text, by doc_id
    verifier: Judge | None = None  # judges an answer sentence; None when verification is off
    fact_checker: Judge | None = None  # judges a refusal's correction; None when verification is off
    question_words: QuestionWordCheck | None = None  # holds an answer to the question's words; None: not checked
    decision: DecisionRule | None = None  # the fitted decision; None: the judgement's threshold decides

    @classmethod
    def build(cls, settings: Settings, prompts: Prompts, chat_model, **parts) -> Parts:
        """The parts, with judges made from settings unless given."""
        if settings.verification.verify and settings.retrieval.grounding_check:
            threshold, top = settings.verification.verify_threshold, settings.verification.verify_top_logprobs
            if "verifier" not in parts:
                parts["verifier"] = Verifier(chat_model, prompts.verify, threshold, top)
            if "fact_checker" not in parts:
                parts["fact_checker"] = Verifier(chat_model, prompts.entails, threshold, top)
        return cls(settings=settings, prompts=prompts, chat_model=chat_model, **parts)

    def doc_text(self, doc_id: str) -> str:
        """The whole text of document doc_id."""
        return self.texts[doc_id]

    @property
    def verify_with_article(self) -> bool:
        """Whether judgements read the article first (remote backends, unless settings say otherwise)."""
        with_article = self.settings.verification.verify_with_article
        return self.settings.generation.llm_backend != "llamacpp" if with_article is None else with_article

    @property
    def reads_states(self) -> bool:
        """Whether the chat model hands back hidden states (the in-process model with tapped layers)."""
        return bool(getattr(self.chat_model, "reads_hidden_states", False))

    def tokens(
        self, messages, config: RunnableConfig | None = None, hidden_states: list | None = None, **kwargs
    ) -> Iterator[str]:
        """Stream the model's text; any failure becomes ModelUnavailable with a message that says what to do.
        hidden_states, a list, receives the model's states as it streams, when it can give them (see reads_states)."""
        if hidden_states is not None and self.reads_states:
            kwargs["hidden_states"] = hidden_states
        try:
            for chunk in self.chat_model.stream(messages, config=config, **kwargs):
                yield chunk.content if isinstance(chunk.content, str) else str(chunk.content)
        except Exception as exc:
            raise model_failure(exc, self.settings) from exc


def model_failure(exc: Exception, settings: Settings) -> ModelUnavailable:
    """The ModelUnavailable to raise for a failed model call: what to do, never the API key."""
    if isinstance(exc, ModelUnavailable):
        return exc  # it already says what to do (a missing or damaged model file)
    g = settings.generation
    if g.llm_backend == "llamacpp":
        hint = "The local model failed; restart the assistant, or check the model file."
    else:
        hint = (
            f"The {g.llm_backend} endpoint {g.llm_base_url} failed or did not answer within {g.llm_timeout:g} s. "
            "Check that the server is running, or unset ASSISTANT_LLM_BACKEND to use the local model."
        )
    secret = g.llm_api_key.get_secret_value()
    detail = str(exc).replace(secret, "***") if secret else str(exc)
    log.error("Model call failed: %s: %s", type(exc).__name__, detail)
    return ModelUnavailable(f"{hint} ({type(exc).__name__})")
