"""Eval stage, feedback: the ratings users give in the web chat turned into regression cases for `assistant eval`,
and the command line `assistant feedback list | export`.

Reads the conversation store; the store knows nothing of the regression suite.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..answer.cite import strip_markers
from ..errors import AssistantError
from ..index.corpus import Document
from ..store.conversations import DATABASE_NAME, ConversationError, Feedback, open_store
from ..store.transcript import one_line
from ..text import fold
from .cases import load_suite, locate_evidence

if TYPE_CHECKING:
    from ..settings import Settings

FEEDBACK_TAG = "feedback"


@dataclass(frozen=True)
class Skipped:
    """Feedback that made no case: why, and the case as far as it could be written (for a person to finish)."""

    feedback_id: int
    reason: str
    draft: dict | None = None


@dataclass
class CaseExport:
    """The cases made from feedback, what was left out and why, and what a reader of the file should know."""

    cases: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def file(self) -> dict:
        """The case file as a mapping (the header `assistant eval` reads, then the cases)."""
        # No `corpus:` header: the cases are checked against the corpus the assistant is set to, the one the
        # feedback was given on. `split: dev`: cases that came from use are for fixing what failed, not for reports.
        return {"split": "dev", "thresholds": {}, "cases": self.cases}


class _NoCase(Exception):
    def __init__(self, reason: str, draft: dict | None = None):
        super().__init__(reason)
        self.reason, self.draft = reason, draft


def case_history(history: Iterable) -> list[dict]:
    """Earlier messages as a case's history: user and assistant turns with text, without citation markers."""
    messages = []
    for message in history or []:
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            continue
        content = strip_markers(str(message.get("content") or "")).strip()
        if content:
            messages.append({"role": message["role"], "content": content})
    return messages


def note_evidence(note: str, documents: list[Document]) -> str | None:
    """A sentence of the corpus holding the note's words (folded), quoted verbatim and occurring once; None if none."""
    from ..index.corpus import split_passages

    wanted = " ".join(fold(note).strip(" .,;:!?\"'").split())
    if not wanted:
        return None
    for doc in documents:
        for passage in split_passages(doc):
            for start, end in passage.sentences:
                sentence = doc.text[start:end]
                if wanted in " ".join(fold(sentence).split()):
                    try:
                        return locate_evidence(sentence, documents).quote
                    except ValueError:
                        continue
    return None


def citation_evidence(citations: Iterable[dict], documents: list[Document] | None) -> list[str]:
    """The cited quotes as evidence; a quote that is not unique in the corpus is replaced by its whole passage."""
    quotes: list[str] = []
    for c in citations:
        candidates = [str(c.get(k) or "") for k in ("quote", "text") if str(c.get(k) or "").strip()]
        if documents is not None:
            candidates = [q for q in candidates if _unique(q, documents)]
        if candidates and candidates[0] not in quotes:
            quotes.append(candidates[0])
    return quotes


def _unique(quote: str, documents: list[Document]) -> bool:
    try:
        locate_evidence(quote, documents)
    except ValueError:
        return False
    return True


def _provenance(item: Feedback, current_hash: str | None) -> tuple[str, bool]:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.created))
    rating = "+1" if item.rating > 0 else "-1"
    kind = f" {item.kind}" if item.kind else ""
    text = (
        f"From feedback {item.id} (rating {rating}{kind}, {when}) on turn {item.position + 1} of conversation "
        f"{item.conversation_id}; corpus {item.corpus_hash[:12]}."
    )
    other = bool(current_hash) and item.corpus_hash != current_hash
    if other:
        text += f" Given on another corpus than the current one ({current_hash[:12]})."
    return text, other


def feedback_case(
    item: Feedback, include_positive: bool = False, documents: list[Document] | None = None
) -> dict | None:
    """The case one feedback item makes (without its note and tags); None for a +1 left out; _NoCase when none."""
    case: dict[str, Any] = {"id": f"feedback-{item.id}", "question": item.question}
    history = case_history(item.history)
    if history:
        case["history"] = history
    if item.rating < 0 and item.kind == "not_in_article":
        return case | {"answers": []}
    if item.rating < 0:
        if not item.note.strip():
            raise _NoCase("a -1 without a note or 'not in the article' says what is wrong, not what is right")
        case["answers"] = [item.note.strip()]
        quote = note_evidence(item.note, documents) if documents is not None else None
        if quote is None:
            raise _NoCase(
                "its note (the right answer) is not found in the corpus: add an evidence quote by hand",
                case | {"evidence": ["<a verbatim quote of the article that gives the answer>"]},
            )
        return case | {"evidence": [quote]}
    if not include_positive:
        return None
    if item.answer.get("abstained") or item.answer.get("reason", "answered") != "answered":
        return case | {"answers": []}  # a refusal rated +1: the article does not say
    evidence = citation_evidence(item.citations, documents)
    if not evidence:
        raise _NoCase("its answer has no citation whose quote is (still, and only once) in the corpus")
    return case | {"answers": [strip_markers(str(item.answer.get("text", ""))).strip()], "evidence": evidence}


def plan_cases(
    items: Iterable[Feedback],
    include_positive: bool = False,
    *,
    documents: list[Document] | None = None,
    corpus_hash: str | None = None,
) -> CaseExport:
    """Turn feedback into eval cases: a -1 'not_in_article' must be refused; a -1 with a note must be answered with
    the note (its evidence: the corpus sentence holding it, found in documents); with include_positive, a +1 keeps
    its answer (evidence: its citations' quotes) or, for a refusal, must be refused. Each case is `feedback-<id>`,
    tagged 'feedback', its `note` naming where it came from. corpus_hash: the current corpus's, to mark feedback
    given on another one.
    """
    export, other = CaseExport(), 0
    for item in items:
        provenance, differs = _provenance(item, corpus_hash)
        try:
            case = feedback_case(item, include_positive, documents)
        except _NoCase as exc:
            draft = exc.draft | {"tags": [FEEDBACK_TAG], "note": provenance} if exc.draft else None
            export.skipped.append(Skipped(item.id, exc.reason, draft))
            continue
        if case is None:
            continue
        if item.note.strip() and case["answers"] != [item.note.strip()]:
            provenance += f" User's note: {one_line(item.note)}"
        if "evidence" in case and item.rating < 0:
            provenance += " Evidence: the corpus sentence holding the note, found automatically; check it."
        tags = [FEEDBACK_TAG, "other-corpus"] if differs else [FEEDBACK_TAG]
        export.cases.append(case | {"tags": tags, "note": provenance})
        other += differs
    if other:
        export.notes.append(f"{other} case(s) come from feedback given on another corpus (tagged other-corpus)")
    return export


def export_cases(
    items: Iterable[Feedback],
    include_positive: bool = False,
    *,
    documents: list[Document] | None = None,
    corpus_hash: str | None = None,
) -> dict:
    """The eval case file (a mapping that load_suite accepts when it has cases) made from feedback; see plan_cases."""
    return plan_cases(items, include_positive, documents=documents, corpus_hash=corpus_hash).file()


def case_file_text(export: CaseExport, corpus_hash: str | None = None) -> str:
    """The YAML case file: a comment saying where it came from, the cases, and the left-out drafts commented out."""
    import yaml

    head = [
        f"# Regression cases made from user feedback by `assistant feedback export`, {time.strftime('%Y-%m-%d')}.",
        "# Each case's id is feedback-<feedback id> and its note says which conversation and turn it came from.",
        "# No corpus header: the evidence is checked against the assistant's corpus"
        + (f" (hash {corpus_hash[:12]})." if corpus_hash else "."),
        *(f"# Note: {note}." for note in export.notes),
    ]
    body = yaml.safe_dump(export.file(), sort_keys=False, allow_unicode=True, width=120)
    tail = []
    for skipped in export.skipped:
        tail.append(f"# Feedback {skipped.feedback_id} made no case: {skipped.reason}.")
        if skipped.draft:
            draft = yaml.safe_dump([skipped.draft], sort_keys=False, allow_unicode=True, width=116)
            tail += [f"#   {line}" for line in draft.splitlines()]
    return "\n".join([*head, "", body.rstrip(), *([""] + tail if tail else [])]) + "\n"


def write_case_file(path: Path, text: str, documents: list[Document]) -> None:
    """Write the case file atomically (a temporary file, then os.replace), after checking that it loads."""
    path = Path(path)
    if not path.parent.is_dir():  # named here: mkstemp's error would name the temporary file instead
        raise ConversationError(f"cannot write {path}: the folder {path.parent} does not exist")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        load_suite(Path(temp), documents)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _cut(text: str, width: int) -> str:
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def feedback_table(items: list[Feedback]) -> str:
    """The feedback as a text table: id, rating, created, kind, question, note."""
    rows = [("id", "rating", "created", "kind", "question", "note")]
    for item in items:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.created))
        rating = "+1" if item.rating > 0 else "-1"
        rows.append((str(item.id), rating, created, item.kind or "", _cut(item.question, 50), _cut(item.note, 40)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cli_list(settings: Settings) -> int:
    """`assistant feedback list`: every user's feedback as a table."""
    with open_store(settings) as store:
        items = store.list_feedback()
    if not items:
        print(f"No feedback yet in {Path(settings.paths.data_dir) / DATABASE_NAME}.")
        return 0
    print(feedback_table(items))
    return 0


def cli_export(settings: Settings, path: Path, include_positive: bool = False) -> int:
    """`assistant feedback export FILE.yaml [--all]`: write the feedback as an eval case file."""
    from ..index.corpus import corpus_hash, load_documents

    documents = load_documents(settings.paths.corpus_dir)
    current = corpus_hash(documents)
    with open_store(settings) as store:
        items = store.list_feedback()
    export = plan_cases(items, include_positive, documents=documents, corpus_hash=current)
    for skipped in export.skipped:
        print(f"Skipped feedback {skipped.feedback_id}: {skipped.reason}", file=sys.stderr)
    if not export.cases:
        positives = sum(1 for item in items if item.rating > 0)
        hint = f" ({positives} +1 rating(s): add --all to export them)" if positives and not include_positive else ""
        raise ConversationError(f"no feedback makes a case{hint}; nothing written to {path}")
    write_case_file(path, case_file_text(export, current), documents)
    for note in export.notes:
        print(f"Note: {note}")
    print(f"Wrote {len(export.cases)} case(s) to {path}")
    print(f"Run them: assistant eval {path}")
    return 0


def cli_feedback(settings: Settings, command: str, path: Path | None = None, include_positive: bool = False) -> int:
    """Run `assistant feedback list | export`; a problem is printed as `Error: ...` on stderr, exit status 2."""
    try:
        if command == "list":
            return cli_list(settings)
        return cli_export(settings, Path(path), include_positive)
    except (AssistantError, sqlite3.Error, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
