"""Verification stage: does the cited text state this answer to this question? The model judges it, by meaning.

Word overlap cannot tell "the mayor opened the bridge" from "the governor opened the bridge": every word of a wrong
answer to a near-miss question may stand in the cited passage. So each answer sentence, read together with the
question as one claim, is put to the chat model against only the sentences that support it, and the model's
probability of "yes" against "no" for its first token decides. Models whose replies carry no log-probabilities
(some remote servers) answer the same prompt in words: "yes" counts as 1, anything else as 0.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_YES = frozenset({"yes", "y", "true"})
_NO = frozenset({"no", "n", "false"})


@dataclass(frozen=True)
class Verdict:
    """The judgement of one answer sentence: the probability that its evidence states it, and whether that passes."""

    sentence: str
    evidence: tuple[str, ...]
    p_yes: float | None  # None: not judged (verification off)
    passed: bool
    source: str = "logprobs"  # "logprobs", "text" (no log-probabilities from the model) or "off"
    score: float | None = None  # the decision's probability, when a fitted decision made it
    signals: dict[str, float] = field(default_factory=dict, compare=False)  # what the decision weighed
    passages: tuple[str, ...] = ()  # the passage ids the evidence was quoted from
    # The model's hidden states at the judgement's end (layer -> vector), when it gives them; never serialised.
    states: dict | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """Return the verdict as plain data (for JSON)."""
        return {
            "sentence": self.sentence,
            "evidence": list(self.evidence),
            "p_yes": None if self.p_yes is None else round(self.p_yes, 4),
            "passed": self.passed,
            "source": self.source,
            "score": None if self.score is None else round(self.score, 4),
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "passages": list(self.passages),
        }


def _word(token: str) -> str:
    return re.sub(r"[^a-z]", "", token.lower())


def yes_probability(logprobs: dict | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first token's top candidates (OpenAI's logprobs format), or None.

    Spellings of one word ("Yes", " yes", "YES") add up. None when the reply has no log-probabilities, or when
    neither word is among the candidates (the model wanted to say something else entirely).
    """
    content = (logprobs or {}).get("content") or []
    if not content:
        return None
    yes = no = 0.0
    for candidate in content[0].get("top_logprobs") or [content[0]]:
        word = _word(str(candidate.get("token", "")))
        p = math.exp(float(candidate.get("logprob", -math.inf)))
        if word in _YES:
            yes += p
        elif word in _NO:
            no += p
    if yes + no == 0.0:
        return None
    return yes / (yes + no)


def text_verdict(text: str) -> float:
    """1.0 when a worded reply says yes, else 0.0 (the fallback for models without log-probabilities)."""
    first = re.findall(r"[A-Za-z]+", text or "")
    return 1.0 if first and first[0].lower() in _YES else 0.0


class Verifier:
    """Puts (question, answer sentence, evidence sentences) to the chat model and reads its yes/no probability.

    The judgement reads the evidence alone, without the article: measured on the dev split, the small model
    separates right answers from near misses better that way (see README, "How an answer is checked"). The
    in-process model then puts the article's cached prefix back for the next question; for a remote server, which
    cannot, pass the answer's system prompt as context and its cached prefix is reused instead.
    """

    def __init__(self, model, template, threshold: float, top_logprobs: int = 20):
        from langchain_core.prompts import ChatPromptTemplate, HumanMessagePromptTemplate, MessagesPlaceholder

        self.model = model
        # template: a PromptTemplate (or its text) using {evidence} and {question}, optionally {answer}
        human = (
            HumanMessagePromptTemplate.from_template(template)
            if isinstance(template, str)
            else HumanMessagePromptTemplate(prompt=template)
        )
        self.prompt = ChatPromptTemplate([MessagesPlaceholder("article", optional=True), human])
        self.threshold = threshold
        self.top_logprobs = top_logprobs

    def messages(self, question: str, sentence: str, evidence: list[str], context: str | None = None):
        """The judgement prompt: the claim against its evidence, after context (a system prompt) when given."""
        from langchain_core.messages import SystemMessage

        quoted = "\n".join(f"- {e}" for e in evidence)
        article = [SystemMessage(context)] if context else []
        return self.prompt.format_messages(article=article, evidence=quoted, question=question, answer=sentence)

    def probability(self, messages, hidden_states: list | None = None) -> tuple[float, str]:
        """P(yes) for a judgement prompt, and how it was read ("logprobs" or "text"). hidden_states, a list,
        receives the model's state at the prompt's end when the model can give it."""
        extra = {"hidden_states": hidden_states} if getattr(self.model, "reads_hidden_states", False) else {}
        try:
            reply = self.model.invoke(messages, logprobs=True, top_logprobs=self.top_logprobs, max_tokens=1, **extra)
        except Exception as exc:  # a backend or server that takes no such options: ask for words instead
            log.info("The model refused logprobs options (%s: %s); judging from its words.", type(exc).__name__, exc)
            reply = self.model.invoke(messages)
        p = yes_probability((reply.response_metadata or {}).get("logprobs"))
        if p is not None:
            return p, "logprobs"
        return text_verdict(str(reply.content)), "text"

    def judge(self, question: str, sentence: str, evidence: list[str], context: str | None = None) -> Verdict:
        """Judge one answer sentence against the sentences cited for it."""
        hidden: list = []
        p, source = self.probability(self.messages(question, sentence, evidence, context), hidden)
        passed = p >= self.threshold
        if not passed:
            log.info("Verification failed (%.3f < %.2f): %r for %r", p, self.threshold, sentence, question)
        return Verdict(sentence, tuple(evidence), p, passed, source, states=hidden[-1] if hidden else None)
