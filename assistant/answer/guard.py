"""Guard stage: clean and validate questions and histories, and answer what is not a question about the article
(a greeting, an off-task request) without the model."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from ..errors import AssistantError
from .state import AnswerState, Update, ending

if TYPE_CHECKING:
    from .parts import Parts


def guard(state: AnswerState, parts: Parts) -> Update:
    """Answer a greeting, and turn down a request that is not a question about the text, without the model."""
    if is_greeting(state.question):
        return ending("greeting", greeting_reply(state.view.titles))
    if is_off_task(state.question):
        return ending("off_task", off_task_reply(state.view.titles))
    return {}


class InvalidQuestion(AssistantError, ValueError):
    """The question cannot be answered as given (empty, too long, not text); the message says what to change."""

    exit_code = 2  # the CLI's status for a usage error, as argparse's


_MARKUP = re.compile(r"<[^<>]*>")  # an HTML or XML tag, which says nothing a question could ask
_WORD_CHAR = re.compile(r"[^\W_]")  # a letter or a digit, in any script
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def clean_text(value: object, what: str = "question") -> str:
    """Return value as tidy text: decoded, NFC, control characters removed, white space collapsed."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise InvalidQuestion(f"The {what} must be text, not {type(value).__name__}.")
    # Lone surrogates cannot be encoded; replace them rather than fail later in a tokenizer.
    value = value.encode("utf-8", errors="replace").decode("utf-8")
    value = unicodedata.normalize("NFC", value)
    value = _ANSI_ESCAPE.sub(" ", value)  # terminal colour codes pasted along with text
    value = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn") else " " for ch in value
    )
    return re.sub(r"\s+", " ", value).strip()


def validate_question(question: object, max_chars: int) -> str:
    """Return the cleaned question, or raise InvalidQuestion saying what is wrong with it."""
    if question is None:
        raise InvalidQuestion("No question was given; type a question about the article.")
    raw_length = len(question) if isinstance(question, (str, bytes, bytearray)) else 0
    if raw_length > max_chars * 4:
        # Checked before cleaning so a huge input costs nothing.
        raise InvalidQuestion(
            f"The question is {raw_length:,} characters long; the limit is {max_chars:,}. Ask a shorter question."
        )
    text = clean_text(question)
    if not text:
        raise InvalidQuestion("The question is empty; type a question about the article.")
    if not _WORD_CHAR.search(_MARKUP.sub(" ", text)):
        # Only markup, symbols or emoji: nothing to answer, and nothing to read as a follow-up of the last question.
        raise InvalidQuestion("There are no words to answer in that; type a question about the article, in words.")
    if len(text) > max_chars:
        raise InvalidQuestion(
            f"The question is {len(text):,} characters long; the limit is {max_chars:,}. Ask a shorter question."
        )
    return text


def normalize_history(history: object, max_messages: int) -> list[dict]:
    """Return the usable user/assistant turns of a chat history; malformed entries are skipped, not trusted."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise InvalidQuestion("The history must be a list of {'role': ..., 'content': ...} messages.")
    if len(history) > max_messages:
        raise InvalidQuestion(
            f"The history has {len(history):,} messages; the limit is {max_messages:,}. Start a new chat."
        )
    turns = []
    for message in history:
        if isinstance(message, (list, tuple)) and len(message) == 2:  # Gradio's old (user, assistant) pairs
            pairs = [("user", message[0]), ("assistant", message[1])]
        elif isinstance(message, dict):
            pairs = [(message.get("role"), message.get("content"))]
        else:
            continue
        for role, content in pairs:
            # A "system" message in a client-supplied history is an injection vector, never an instruction.
            if role not in ("user", "assistant"):
                continue
            if isinstance(content, list):  # multimodal content parts
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            elif isinstance(content, dict):
                content = content.get("text", "")
            try:
                text = clean_text(content, "history message")
            except InvalidQuestion:
                continue
            if text:
                turns.append({"role": role, "content": text[:4000]})
    return turns


# Requests that try to steer the assistant away from answering about the article.
_OFF_TASK = [
    r"\b(ignore|disregard|forget|override|bypass|skip)\b.{0,40}\b(instruction|rule|prompt|guideline|direction|previous|above|prior|constraint)",
    r"\b(system|initial|hidden|original|secret|developer|your)\s+(prompt|instructions?|rules|message|guidelines)\b",
    r"\b(reveal|show|print|repeat|recite|output|display|leak|dump|spell out)\b.{0,40}\b(prompt|instructions?|rules|guidelines|above|context window)\b",
    r"\b(what|which)\s+(are|were)\s+you\s+(told|instructed|programmed)",
    r"\b(pretend|role[- ]?play|act as|you are now|from now on|imagine you are|jailbreak|developer mode|do anything now)\b",
    r"\b(write|compose|generate|create|draft|make|sing)\b.{0,40}\b(poem|song|story|essay|joke|code|script|program|haiku|limerick|tweet|rap|novel|sonnet|lyrics|function)\b",
    r"\btranslate\b",
    r"\b(your|personal) (own )?(opinion|view|views|thoughts|feelings|take)\b|\bwhat do you (think|feel|believe)\b|\bdo you (agree|think|believe|like)\b",
    r"^\s*(system|assistant|developer)\s*[:>]",
    r"<\|im_(start|end)\|>|\[/?INST\]|<<\s*SYS\s*>>|###\s*(system|instruction)",
    # The same in other languages: an "ignore/forget" verb near a word for instructions.
    r"\b(ignor\w*|olvid\w*|oubli\w*|vergiss\w*|esque[cç]\w*|dimentic\w*|negeer\w*|zapomnij\w*)\b.{0,40}"
    r"\b(instruc\w*|istruzion\w*|consignes?|anweisung\w*|instru[cç][oõ]\w*|instructies|instrukcj\w*|regeln|reglas|règles|regole)\b",
]
_OFF_TASK_RE = re.compile("|".join(f"(?:{p})" for p in _OFF_TASK), re.IGNORECASE)
_ARITHMETIC_RE = re.compile(
    r"\d+(?:\.\d+)?\s*(?:[-+*/×÷^]|\b(?:plus|minus|times|divided by|multiplied by)\b)\s*\d+", re.I
)
_GREETING_RE = re.compile(
    r"^(hi|hello|hey|hiya|good (morning|afternoon|evening)|thanks|thank you|cheers|ok|okay|bye|goodbye)\b[\s!.,:)\w]{0,20}$",
    re.I,
)


def is_off_task(question: str) -> bool:
    """True when the question asks for something other than facts from the article (prompt tricks, poems, sums)."""
    if _OFF_TASK_RE.search(question):
        return True
    # Arithmetic on numbers the user typed is not a question about the article ("3.5% of GDP" alone is fine).
    return bool(_ARITHMETIC_RE.search(question))


def is_greeting(question: str) -> bool:
    """True for a bare greeting or thanks, which deserves a friendly pointer rather than a refusal."""
    return bool(_GREETING_RE.match(question.strip()))


_FOLLOW_UP_RE = re.compile(
    r"\b(he|she|him|her|his|hers|they|them|their|theirs|it|its|this|that|these|those|the same|"
    r"the other|others|else|former|latter|previous|earlier)\b|^(and|but|so|or|why|how come|what about|how about|and what|who else)\b",
    re.I,
)


def needs_rewrite(question: str, history: list[dict]) -> bool:
    """True when a question leans on the conversation (pronouns, 'what about…') and there is one to lean on."""
    if not any(turn["role"] == "user" for turn in history) or is_greeting(question):
        return False
    return bool(_FOLLOW_UP_RE.search(question)) or len(question.split()) <= 3


_MANY_PARTS_RE = re.compile(
    r"\b(two|three|both)\b|,?\s+and\s+(what|which|who|whom|whose|why|how|where|when)\b|\bas well as\b", re.I
)
_YES_NO_RE = re.compile(r"^\W*(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|may|might)\b", re.I)


def asks_for_several(question: str) -> bool:
    """True when the question wants more than one thing ("What two issues…", "…, and which post…")."""
    return bool(_MANY_PARTS_RE.search(question)) and not _YES_NO_RE.match(question)


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
