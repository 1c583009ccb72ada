"""The SQuAD benchmark's scores of one reply: a gold answer in it (after SQuAD's normalisation), a refusal, the trap,
the gold paragraph cited; and the question's kind by benchmarks/squad_kinds.py."""

from __future__ import annotations

import re

from assistant.eval.normalise import normalize_answer
from benchmarks.squad_data import Case
from benchmarks.squad_kinds import question_kind

_MARKER = re.compile(r"\[\d+\]")  # a citation marker in a reply


def contains_answer(reply: str, spans: tuple[str, ...] | list[str]) -> bool:
    """Whether some span, normalised, occurs in the normalised reply as whole words (citation markers removed, so
    a gold "1" is not found in "[1]")."""
    said = " " + normalize_answer(_MARKER.sub(" ", reply)) + " "
    return any(gold and f" {gold} " in said for gold in (normalize_answer(s) for s in spans))


def cited_places(citations: list[dict]) -> set[tuple[str, int]]:
    """(doc_id, paragraph number) of each citation; from its passage_id ('doc:pN') when those are missing."""
    places = set()
    for c in citations:
        doc_id, number = c.get("doc_id"), c.get("number")
        if doc_id is None or number is None:
            match = re.fullmatch(r"(.+):p(\d+)", str(c.get("passage_id", "")))
            if not match:
                continue
            doc_id, number = match.group(1), int(match.group(2))
        places.add((doc_id, int(number)))
    return places


def score(case: Case, outcome: dict, cites: bool = True) -> dict:
    """The scores of one reply; None where a score does not apply to the case (or the engine never cites)."""
    abstained = bool(outcome.get("abstained")) and not outcome.get("error")
    reply = outcome.get("text") or ""
    answerable = case.kind == "answerable"
    answered = not abstained and not outcome.get("error")
    gold_cited = (case.article, case.number) in cited_places(outcome.get("citations") or [])
    return {
        "right": (answered and contains_answer(reply, case.answers)) if answerable else None,
        "refused": None if answerable else abstained,
        "false_refusal": abstained if answerable else None,
        "citation_gold": gold_cited if cites and answered else None,
        "trap": None if answerable else (answered and contains_answer(reply, case.traps)),
    }


def category(case: Case) -> str:
    """The case's kind by benchmarks/squad_kinds.py: what an answerable asks for, how an unanswerable was made."""
    return question_kind(case.question, case.paragraph, case.traps, answerable=case.kind == "answerable")
