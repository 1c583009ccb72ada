"""Fake chat models for the unit tests of wiring (scripted replies, verification judgements with fake logprobs), and
an Assistant over them."""

from __future__ import annotations

import math

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from assistant.settings import PROJECT_ROOT


def judgement(p_yes: float) -> ChatResult:
    """A one-token reply with OpenAI-style log-probabilities of "Yes" and "No", as the verifier reads them."""
    top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}]
    top.sort(key=lambda c: -c["logprob"])
    message = AIMessage(top[0]["token"], response_metadata={"logprobs": {"content": [{**top[0], "top_logprobs": top}]}})
    return ChatResult(generations=[ChatGeneration(message=message)])


class RecordingModel(GenericFakeChatModel):
    """A fake chat model that replies from a list and remembers every prompt it was sent.

    Verification judgements (calls asking for logprobs) are answered with P(yes) = p_yes, or the next of p_yes_seq,
    and recorded apart, in judgements, so the answer replies stay in order.
    """

    prompts: list = []
    judgements: list = []
    p_yes: float = 0.95
    p_yes_seq: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if kwargs.get("logprobs"):
            self.judgements.append([m.content for m in messages])
            return judgement(self.p_yes_seq.pop(0) if self.p_yes_seq else self.p_yes)
        # GenericFakeChatModel streams through _generate too, so every call passes here once.
        self.prompts.append([m.content for m in messages])
        return super()._generate(messages, stop, run_manager, **kwargs)


def fake(*replies: str, p_yes: float = 0.95) -> RecordingModel:
    return RecordingModel(messages=iter([AIMessage(r) for r in replies]), prompts=[], judgements=[], p_yes=p_yes)


CORPUS = PROJECT_ROOT / "corpus"


def make(settings, embeddings, *replies, p_yes: float = 0.95):
    """An Assistant over settings' corpus with the real embeddings and a chat model that replies with replies."""
    from assistant.answering import Assistant

    return Assistant(settings, chat_model=fake(*replies, p_yes=p_yes), embeddings=embeddings)
