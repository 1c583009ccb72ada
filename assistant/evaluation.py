"""Regression suite (`assistant eval`): run a question set through the Assistant and gate its metrics."""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import string
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .cite import MARKER, highlight, marker_numbers, strip_markers
from .corpus import Document, load_documents
from .text import fold

DEFAULT_TOLERANCE = 0.02
ANSWER_F1_MIN = 0.7  # token F1 at or above which a response counts as an accepted answer even without a substring match
LATENCY_STAGES = ("rewrite", "retrieve", "first_token", "generate", "total")
Split = Literal["dev", "test"]  # dev: tune thresholds and prompts on it; test: report only
SPLITS = get_args(Split)


@dataclass(frozen=True)
class Metric:
    """One figure of the report: its key, how it is shown, and which way is better."""

    key: str
    label: str  # may hold {k}, the number of passages retrieved
    higher_is_better: bool
    description: str


METRICS = {
    m.key: m
    for m in (
        Metric("answer", "answer", True, "answerable cases answered with an accepted answer"),
        Metric("f1", "f1", True, "mean token F1 of the response against its best accepted answer"),
        Metric("refusal", "refusal", True, "must-refuse cases that were refused"),
        Metric("near-miss", "near-miss", True, "near-miss unanswerables (tagged near-miss) that were refused"),
        Metric("false-refusal", "false-refusal", False, "answerable cases that were refused"),
        Metric("evidence", "evidence@{k}", True, "answerable cases with an evidence passage among the retrieved"),
        Metric("mrr", "mrr", True, "mean reciprocal rank of the first retrieved passage holding evidence"),
        Metric("citation-validity", "citation-validity", True, "answers whose [n] markers and citations match"),
        Metric("citation-precision", "citation-precision", True, "citations that point at evidence"),
        Metric("citation-recall", "citation-recall", True, "evidence quotes that some citation points at"),
    )
}


class CaseError(ValueError):
    """The case file is malformed; the message names the case and the field to fix."""


class BaselineError(ValueError):
    """The baseline file is missing or unreadable."""


# ----- cases --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """A verbatim quote of the corpus and where it is."""

    quote: str
    doc_id: str
    start: int
    end: int

    def to_dict(self) -> dict:
        """Return the evidence as plain data."""
        return {"quote": self.quote, "doc_id": self.doc_id, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Case:
    """One question of the suite, with what counts as a right answer."""

    id: str
    question: str
    answers: tuple[str, ...]  # empty: the assistant must refuse
    history: tuple[dict, ...] = ()
    must_contain: tuple[tuple[str, ...], ...] = ()
    must_not_contain: tuple[tuple[str, ...], ...] = ()
    evidence: tuple[Evidence, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def must_refuse(self) -> bool:
        """True when the article cannot answer the case, so the assistant must abstain."""
        return not self.answers


@dataclass
class Suite:
    """A loaded case file: its cases and gates."""

    cases: list[Case]
    thresholds: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)  # per metric; missing means DEFAULT_TOLERANCE
    corpus: Path | None = None  # the case file's own corpus folder; None: the settings' corpus
    split: str | None = None  # "dev" (for tuning) or "test" (for reporting only)


def locate_evidence(quote: str, documents: list[Document]) -> Evidence:
    """Return where quote occurs in the documents; ValueError unless it occurs exactly once."""
    if not isinstance(quote, str) or not quote.strip():
        raise ValueError("an evidence quote must be non-empty text")
    hits = []
    for doc in documents:
        start = doc.text.find(quote)
        while start != -1:
            hits.append(Evidence(quote, doc.doc_id, start, start + len(quote)))
            start = doc.text.find(quote, start + 1)
    if len(hits) == 1:
        return hits[0]
    if hits:
        places = ", ".join(f"{h.doc_id}@{h.start}" for h in hits)
        raise ValueError(f"evidence quote {quote!r} occurs {len(hits)} times ({places}); quote more words")
    folded = fold(quote)
    hint = (
        " (it does after folding quotes, dashes, accents and case: copy the corpus's own characters, such as ’ “ ” —)"
        if any(folded in fold(d.text) for d in documents)
        else ""
    )
    raise ValueError(f"evidence quote {quote!r} is not in the corpus{hint}")


def resolve_metric(name: str) -> str | None:
    """Return the metric key a threshold name refers to ('evidence@4' -> 'evidence'), or None when unknown."""
    if name in METRICS:
        return name
    if re.fullmatch(r"evidence@\d+", name):
        return "evidence"
    return None


# The case file's schema. Validators raise ValueError with what is wrong, worded to follow "field 'x' ...".
_CASE_ID = re.compile(r"[A-Za-z0-9][\w.-]*")


def _listed(value):
    """None as no items, and one string as a list of it."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


def _non_empty_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must be non-empty text")
    return value


def _non_empty(items: tuple) -> tuple:
    if not items:
        raise ValueError("must not be empty")
    return items


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r} ({exc})") from None
    return pattern


def _case_id(value: str) -> str:
    if not _CASE_ID.fullmatch(value):
        raise ValueError(f"must be a word such as 'p2-mayor-title', not {value!r}")
    return value


def _share(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"must be a number from 0 to 1, not {value!r}")
    return float(value)


def _metric(name: str) -> str:
    key = resolve_metric(name)
    if key is None:
        raise ValueError(f"is not a metric (metrics: {', '.join(METRICS)})")
    return key


def _located(quote, info: ValidationInfo) -> Evidence:
    """The evidence quote found in the documents the validation was given (its context)."""
    return locate_evidence(quote, (info.context or {}).get("documents", []))


Text = Annotated[str, AfterValidator(_non_empty_text)]
Alternatives = Annotated[  # one group of must_contain: regexes of which one must match
    tuple[Annotated[str, AfterValidator(_non_empty_text), AfterValidator(_regex)], ...],
    BeforeValidator(_listed),
    AfterValidator(_non_empty),
]
Share = Annotated[float, PlainValidator(_share)]
MetricName = Annotated[str, AfterValidator(_metric)]


class Message(BaseModel):
    """One earlier turn of a follow-up case."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Text


class CaseEntry(BaseModel):
    """One entry of a case file's `cases:` list, as written; its evidence quotes are located in the documents given
    as the validation context ({"documents": [...]})."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, AfterValidator(_case_id)]
    question: Text
    history: tuple[Message, ...] = ()
    answers: tuple[Text, ...]  # required: `answers: []` when the assistant must refuse
    must_contain: tuple[Alternatives, ...] = ()
    must_not_contain: tuple[Alternatives, ...] = ()
    evidence: tuple[Annotated[Evidence, PlainValidator(_located)], ...] = Field((), validate_default=True)
    tags: tuple[Text, ...] = ()
    note: str | None = None

    @field_validator("history", "must_contain", "must_not_contain", mode="before")
    @classmethod
    def _none_is_empty(cls, value):
        return () if value is None else value

    @field_validator("answers", "evidence", "tags", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return _listed(value)

    @field_validator("answers")
    @classmethod
    def _some_words(cls, answers: tuple[str, ...]) -> tuple[str, ...]:
        if answers and not any(normalize_answer(a) for a in answers):
            raise ValueError("holds only punctuation or articles")
        return answers

    @field_validator("evidence")
    @classmethod
    def _needed(cls, evidence: tuple[Evidence, ...], info: ValidationInfo) -> tuple[Evidence, ...]:
        if info.data.get("answers") and not evidence:
            raise ValueError("is missing; an answerable case needs at least one quote")
        return evidence

    def to_case(self) -> Case:
        """The Case this entry describes."""
        return Case(
            id=self.id,
            question=self.question,
            answers=self.answers,
            history=tuple(m.model_dump() for m in self.history),
            must_contain=self.must_contain,
            must_not_contain=self.must_not_contain,
            evidence=self.evidence,
            tags=self.tags,
        )


class CaseFile(BaseModel):
    """A case file as written: its header, then its cases (validated with the same context as CaseEntry)."""

    model_config = ConfigDict(extra="forbid")

    corpus: Text | None = None  # a folder relative to the file; load_suite reads it before the rest
    split: Split | None = None
    thresholds: dict[MetricName, Share] = {}
    tolerance: dict[MetricName, Share] = {}  # or one number for every metric
    cases: list[CaseEntry]

    @model_validator(mode="before")
    @classmethod
    def _tolerance_in_thresholds(cls, data):
        """Also accept the tolerance inside the thresholds block."""
        thresholds = data.get("thresholds") if isinstance(data, dict) else None
        if isinstance(thresholds, dict) and "tolerance" in thresholds:
            thresholds = dict(thresholds)
            data = {**data, "tolerance": thresholds.pop("tolerance"), "thresholds": thresholds}
        return data

    @field_validator("thresholds", mode="before")
    @classmethod
    def _no_thresholds(cls, value):
        return {} if value is None else value

    @field_validator("tolerance", mode="before")
    @classmethod
    def _one_for_all(cls, value):
        if value is None:
            return {}
        if isinstance(value, (int, float)):  # one for every metric (a bool is refused by _share)
            return dict.fromkeys(METRICS, _share(value))
        return value

    @field_validator("cases", mode="before")
    @classmethod
    def _some_cases(cls, value):
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list")
        return value


HEADER_FIELDS = tuple(CaseFile.model_fields)
CASE_FIELDS = tuple(CaseEntry.model_fields)
_MODELS = {
    "CaseEntry": "a mapping with id, question, answers and evidence",
    "Message": "a mapping with role and content",
}
_TYPES = {"valid string": "text", "valid tuple": "a list", "valid list": "a list", "valid dictionary": "a mapping"}


def _field_name(loc: tuple) -> str:
    """('history', 0, 'role') -> 'history[0].role'; ('thresholds', 'answer') -> 'thresholds.answer'."""
    name = ""
    for part in loc:
        if part != "[key]":  # pydantic's mark of a mapping key (rather than its value)
            name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _problem(error: dict) -> str:
    """What one pydantic error says is wrong, worded to follow a field name."""
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        hint = " (use 'answers: []' when the assistant must refuse)" if error["loc"] == ("answers",) else ""
        return f"is missing{hint}"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "model_type":
        return f"must be {_MODELS.get(error['ctx']['class_name'], 'a mapping')}, not {error['input']!r}"
    if msg.startswith("Input should be "):
        wanted = msg.removeprefix("Input should be ")
        if wanted.startswith("a valid "):
            wanted = wanted.split(",")[0]  # "a valid number, unable to parse string as a number"
        for pydantic_word, word in _TYPES.items():
            wanted = wanted.replace(f"a {pydantic_word}", word).replace(pydantic_word, word)
        return f"must be {wanted}, not {error['input']!r}"
    return msg[:1].lower() + msg[1:]


def describe_error(error: dict, fields: tuple[str, ...]) -> str:
    """One pydantic error of a case or the header (loc relative to it) as "field 'x' must be ..."."""
    loc = error["loc"]
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        return f"unknown field {loc[0]!r} (fields: {', '.join(fields)})"
    problem = _problem(error)
    if not loc:
        return problem
    separator = " " if problem.startswith(("must ", "is ", "holds ")) else ": "
    return f"field {_field_name(loc)!r}{separator}{problem}"


def case_name(raw, position: int) -> str:
    """How messages name a case: by its id (by its position when that is no id), and its line when known."""
    case_id = raw.get("id") if isinstance(raw, dict) else None
    valid = isinstance(case_id, str) and _CASE_ID.fullmatch(case_id)
    name = f"case {case_id!r}" if valid else f"case #{position}"
    line = getattr(raw, "line", None)
    return f"{name} (line {line})" if line else name


def _summary(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)


def parse_case(raw, position: int, documents: list[Document]) -> Case:
    """Return the Case described by raw (one entry of `cases:`); CaseError naming the case and every bad field."""
    try:
        entry = CaseEntry.model_validate(raw, context={"documents": documents})
    except ValidationError as exc:
        name = case_name(raw, position)
        raise CaseError(_summary([f"{name}: {describe_error(e, CASE_FIELDS)}" for e in exc.errors()])) from exc
    return entry.to_case()


def _file_problems(exc: ValidationError, raw_cases: list) -> list[tuple[int, str]]:
    """Each error of a whole file, with the position of its case (0: the header)."""
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        if loc[:1] == ("cases",) and len(loc) > 1 and isinstance(loc[1], int):
            position = loc[1] + 1
            in_case = error | {"loc": loc[2:]}
            problems.append(
                (position, f"{case_name(raw_cases[loc[1]], position)}: {describe_error(in_case, CASE_FIELDS)}")
            )
        else:
            problems.append((0, f"header: {describe_error(error, HEADER_FIELDS)}"))
    return problems


def _duplicate_ids(raw_cases: list) -> list[tuple[int, str]]:
    """A problem for each case whose id an earlier case has, with the position of the case."""
    problems, first = [], {}
    for position, raw in enumerate(raw_cases, 1):
        case_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(case_id, str):
            continue
        if case_id in first:
            problems.append(
                (position, f"{case_name(raw, position)}: field 'id' is used twice (first {first[case_id]})")
            )
        else:
            first[case_id] = f"at line {raw.line}" if getattr(raw, "line", None) else f"as case #{position}"
    return problems


def parse_suite(data, documents: list[Document]) -> Suite:
    """Return the Suite described by data (the parsed YAML); CaseError listing every problem, case by case."""
    if not isinstance(data, dict):
        raise CaseError("the file must be a mapping with 'thresholds:' and 'cases:'")
    raw_cases = data.get("cases") if isinstance(data.get("cases"), list) else []
    parsed, problems = None, []
    try:
        parsed = CaseFile.model_validate(data, context={"documents": documents})
    except ValidationError as exc:
        problems = _file_problems(exc, raw_cases)
    problems += _duplicate_ids(raw_cases)
    if problems:
        raise CaseError(_summary([message for _, message in sorted(problems, key=lambda p: p[0])]))
    cases = [entry.to_case() for entry in parsed.cases]
    return Suite(cases, parsed.thresholds, parsed.tolerance, split=parsed.split)


class _Mapping(dict):
    """A mapping of a YAML file that knows the line it starts on."""

    line: int | None = None


def read_yaml(text: str):
    """Parse YAML as yaml.safe_load does, except that every mapping is a dict that knows its line (`.line`, from 1)."""
    import yaml

    class LineLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: LineLoader, node):
        mapping = _Mapping()
        mapping.line = node.start_mark.line + 1
        yield mapping  # first, as SafeLoader does, so that a mapping may hold itself
        mapping.update(loader.construct_mapping(node))

    LineLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 (LineLoader is a SafeLoader)


def _suite_documents(path: Path, data, default: Path | list[Document]) -> tuple[Path | None, list[Document]]:
    """The corpus folder the case file names (None when it names none) and the documents to check it against."""
    corpus = data.get("corpus") if isinstance(data, dict) else None
    if corpus is None:
        return None, default if isinstance(default, list) else load_documents(default)
    if not isinstance(corpus, str) or not corpus.strip():
        raise CaseError("header: field 'corpus' must be a folder path relative to the case file")
    folder = (path.parent / corpus).resolve()
    return folder, load_documents(folder)


def load_suite(path: Path, default: Path | list[Document]) -> Suite:
    """Read and validate a YAML case file; CaseError (with the file name) when it is malformed.

    A file whose header names a `corpus:` folder (relative to the file) is checked against that corpus, which
    Suite.corpus then gives; otherwise against default, a corpus folder or its loaded documents. Every problem of
    the file is reported at once, each with its case's id and line.
    """
    import yaml

    from .corpus import CorpusError

    path = Path(path)
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CaseError(f"{path}: cannot read the case file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise CaseError(f"{path}: not valid YAML ({exc})") from exc
    try:
        folder, documents = _suite_documents(path, data, default)
        suite = parse_suite(data, documents)
    except (CaseError, CorpusError) as exc:
        raise CaseError(f"{path}: {exc}") from exc
    suite.corpus = folder
    return suite


# ----- matching -----------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: fold (lowercase, accents, quotes, dashes and hyphens), drop citation markers,
    possessives, punctuation, articles and extra space."""
    text = fold(MARKER.sub(" ", text))
    text = re.sub(r"(?<=\w)'s\b", "", text)  # possessives: "Germany's" matches "Germany"
    text = "".join(
        ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith(("P", "S"))
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def compute_token_f1(prediction: str, truth: str) -> float:
    """Return the SQuAD token F1 of prediction against truth, after normalisation."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def match_answer(text: str, answers: tuple[str, ...] | list[str]) -> tuple[bool, float]:
    """Return (accepted, best token F1): accepted when a normalised answer occurs in the normalised text, or F1 is high."""
    response = f" {normalize_answer(text)} "
    best = max((compute_token_f1(text, a) for a in answers), default=0.0)
    found = any(normalize_answer(a) and f" {normalize_answer(a)} " in response for a in answers)
    return found or best >= ANSWER_F1_MIN, best


def check_patterns(text: str, must_contain, must_not_contain) -> list[str]:
    """Return what the text breaks: each must_contain group needs one match, no must_not_contain pattern may match."""
    problems = []
    for group in must_contain:
        if not any(re.search(p, text, re.IGNORECASE) for p in group):
            problems.append(f"missing one of {list(group)}")
    for group in must_not_contain:
        hits = [p for p in group if re.search(p, text, re.IGNORECASE)]
        if hits:
            problems.append(f"contains {hits[0]!r}")
    return problems


def overlaps(start: int, end: int, other_start: int, other_end: int) -> bool:
    """True when the half-open spans [start, end) and [other_start, other_end) share a character."""
    return start < other_end and other_start < end


def cites_evidence(citation, evidence: Evidence) -> bool:
    """True when the citation's quote or its passage overlaps the evidence quote, in the same document."""
    if citation.doc_id != evidence.doc_id:
        return False
    return overlaps(citation.start, citation.end, evidence.start, evidence.end) or overlaps(
        citation.passage_start, citation.passage_end, evidence.start, evidence.end
    )


def check_citations(answer, doc_texts: dict[str, str]) -> list[str]:
    """Return what is wrong with the answer's citations: markers without a citation, unused or malformed citations."""
    problems = []
    markers = set(marker_numbers(answer.text))
    indices = [c.index for c in answer.citations]
    if len(set(indices)) != len(indices):
        problems.append(f"duplicate citation indices {sorted(indices)}")
    for n in sorted(markers - set(indices)):
        problems.append(f"marker [{n}] has no citation")
    for n in sorted(set(indices) - markers):
        problems.append(f"citation {n} is never marked in the text")
    if not answer.abstained and not answer.citations:
        problems.append("an answer without any citation")
    for c in answer.citations:
        text = doc_texts.get(c.doc_id)
        if text is None:
            problems.append(f"citation {c.index} names unknown document {c.doc_id!r}")
        elif text[c.start : c.end] != c.quote or not c.quote:
            problems.append(f"citation {c.index} quote is not the document text at {c.start}-{c.end}")
        elif not c.passage_start <= c.start < c.end <= c.passage_end:
            problems.append(f"citation {c.index} quote lies outside its passage")
    return problems


def rank_evidence(passages, evidence: tuple[Evidence, ...]) -> int | None:
    """Return the 1-based rank of the first retrieved passage that overlaps some evidence, or None."""
    for rank, p in enumerate(passages, 1):
        if any(p.doc_id == e.doc_id and overlaps(p.start, p.end, e.start, e.end) for e in evidence):
            return rank
    return None


# ----- scoring ------------------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """One case, the assistant's answer and every check made on it."""

    case: Case
    answer: object | None  # an assistant.answering.Answer; None when the question was rejected
    error: str = ""
    answer_ok: bool | None = None  # answerable cases only
    refusal_ok: bool | None = None  # must-refuse cases: refused; answerable: not refused
    f1: float | None = None
    rank: int | None = None  # of the first evidence passage, answerable cases only
    evidence_hit: bool | None = None
    citations_ok: bool | None = None  # None when there is nothing to cite
    precise_citations: int = 0
    scored_citations: int = 0
    covered_evidence: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check that applies to the case passed."""
        checks = (self.answer_ok, self.refusal_ok, self.evidence_hit, self.citations_ok)
        return not self.error and all(c is not False for c in checks)

    @property
    def milliseconds(self) -> float | None:
        """Total time the answer took, in milliseconds."""
        if self.answer is None or "total" not in self.answer.timings:
            return None
        return self.answer.timings["total"] * 1000


def score_case(case: Case, answer, doc_texts: dict[str, str], top_k: int) -> CaseResult:
    """Check one answer against its case."""
    result = CaseResult(case, answer)
    text = answer.text
    pattern_problems = []
    if case.must_refuse or not answer.abstained:  # a refused answerable case fails on that alone
        pattern_problems = check_patterns(strip_markers(text), case.must_contain, case.must_not_contain)
    result.problems.extend(pattern_problems)
    if case.must_refuse:
        result.refusal_ok = bool(answer.abstained) and not pattern_problems
        if not answer.abstained:
            result.problems.append("answered a question it must refuse")
    else:
        result.refusal_ok = not answer.abstained
        accepted, result.f1 = match_answer(text, case.answers) if not answer.abstained else (False, 0.0)
        result.answer_ok = accepted and not answer.abstained and not pattern_problems
        if answer.abstained:
            result.problems.append(f"refused ({answer.reason})")
        elif not accepted:
            result.problems.append("no accepted answer in the response")
        result.rank = rank_evidence(answer.passages[:top_k], case.evidence)
        result.evidence_hit = result.rank is not None
        if not answer.abstained:
            result.scored_citations = len(answer.citations)
            result.precise_citations = sum(any(cites_evidence(c, e) for e in case.evidence) for c in answer.citations)
        result.covered_evidence = sum(any(cites_evidence(c, e) for c in answer.citations) for e in case.evidence)
    if not answer.abstained or answer.citations or MARKER.search(text):
        citation_problems = check_citations(answer, doc_texts)
        result.citations_ok = not citation_problems
        result.problems.extend(citation_problems)
    return result


def reject_case(case: Case, error: str) -> CaseResult:
    """Return the result of a case whose question the assistant rejected as invalid."""
    result = CaseResult(case, None, error=error, problems=[f"rejected: {error}"])
    if case.must_refuse:
        result.refusal_ok = False
    else:
        result.answer_ok, result.refusal_ok, result.f1, result.evidence_hit = False, False, 0.0, False
    return result


def _compute_share(flags) -> float | None:
    flags = [f for f in flags if f is not None]
    return sum(map(bool, flags)) / len(flags) if flags else None


def compute_metrics(results: list[CaseResult]) -> dict[str, float | None]:
    """Return every gated metric (None when no case measures it)."""
    answerable = [r for r in results if not r.case.must_refuse]
    refuse = [r for r in results if r.case.must_refuse]
    scored = sum(r.scored_citations for r in answerable)
    evidence = sum(len(r.case.evidence) for r in answerable)
    return {
        "answer": _compute_share(r.answer_ok for r in answerable),
        "f1": sum(r.f1 or 0.0 for r in answerable) / len(answerable) if answerable else None,
        "refusal": _compute_share(r.refusal_ok for r in refuse),
        "near-miss": _compute_share(r.refusal_ok for r in refuse if "near-miss" in r.case.tags),
        "false-refusal": _compute_share(not r.refusal_ok for r in answerable),
        "evidence": _compute_share(r.evidence_hit for r in answerable),
        "mrr": sum(1 / r.rank if r.rank else 0.0 for r in answerable) / len(answerable) if answerable else None,
        "citation-validity": _compute_share(r.citations_ok for r in results),
        "citation-precision": sum(r.precise_citations for r in answerable) / scored if scored else None,
        "citation-recall": sum(r.covered_evidence for r in answerable) / evidence if evidence else None,
    }


def compute_percentile(values: list[float], q: float) -> float | None:
    """Return the q-th percentile (q a whole number from 0 to 100) of values, interpolated between the closest ranks
    (statistics.quantiles' inclusive method, numpy's default); None for no values."""
    if q != int(q) or not 0 <= q <= 100:
        raise ValueError(f"q must be a whole number from 0 to 100, not {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    if q == 0 or len(ordered) == 1:
        return float(ordered[0])
    if q == 100:
        return float(ordered[-1])
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def compute_latency(results: list[CaseResult]) -> dict[str, dict[str, float]]:
    """Return p50 and p95 seconds of each pipeline stage over the cases that ran it."""
    latency = {}
    for stage in LATENCY_STAGES:
        values = [r.answer.timings[stage] for r in results if r.answer is not None and stage in r.answer.timings]
        if values:
            latency[stage] = {
                "p50": round(compute_percentile(values, 50), 4),
                "p95": round(compute_percentile(values, 95), 4),
                "n": len(values),
            }
    return latency


# ----- gates --------------------------------------------------------------------------------------------------------
def format_label(key: str, top_k: int) -> str:
    """Return the display name of a metric, e.g. 'evidence@4'."""
    return METRICS[key].label.format(k=top_k)


def check_gates(
    metrics: dict[str, float | None],
    thresholds: dict[str, float],
    baseline: dict[str, float | None] | None,
    tolerance: dict[str, float],
    top_k: int,
) -> list[str]:
    """Return one message per failed gate: a threshold missed, or a drop from the baseline beyond its tolerance."""
    failures = []
    for key, metric in METRICS.items():
        value = metrics.get(key)
        if value is None:
            continue
        label = format_label(key, top_k)
        limit = thresholds.get(key)
        if limit is not None:
            if metric.higher_is_better and value < limit - 1e-9:
                failures.append(f"{label} {value:.2f} < threshold {limit:.2f}")
            elif not metric.higher_is_better and value > limit + 1e-9:
                failures.append(f"{label} {value:.2f} > maximum {limit:.2f}")
        before = (baseline or {}).get(key)
        if before is None:
            continue
        slack = tolerance.get(key, DEFAULT_TOLERANCE)
        if metric.higher_is_better and value < before - slack - 1e-9:
            failures.append(f"{label} {value:.2f} < baseline {before:.2f} - {slack:.2f}")
        elif not metric.higher_is_better and value > before + slack + 1e-9:
            failures.append(f"{label} {value:.2f} > baseline {before:.2f} + {slack:.2f}")
    return failures


def read_baseline(path: Path) -> dict:
    """Return the baseline file's data; BaselineError when it is missing or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(f"baseline {path} does not exist; create it with --update-baseline") from exc
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline {path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise BaselineError(f"baseline {path} has no 'metrics' mapping; recreate it with --update-baseline")
    return data


def build_baseline(report: dict) -> dict:
    """Return the baseline to store: the metrics, the settings they were measured with and each case's verdict."""
    return {
        "created": report["created"],
        "case_file": report["case_file"],
        "settings": report["settings"],
        "cases": len(report["cases"]),
        "metrics": {k: None if v is None else round(v, 4) for k, v in report["metrics"].items()},
        "latency": report["latency"],
        "passed": {c["id"]: c["passed"] for c in report["cases"]},
    }


# ----- output -------------------------------------------------------------------------------------------------------
def format_value(value: float | None) -> str:
    """Return a metric value with two decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value:.2f}"


def format_metric_line(metrics: dict, latency: dict, top_k: int) -> str:
    """Return the one-line summary: every metric, then p50/p95 of the whole answer."""
    parts = [f"{format_label(key, top_k)} {format_value(metrics.get(key))}" for key in METRICS]
    total = latency.get("total")
    if total:
        parts += [f"p50 {total['p50']:.1f} s", f"p95 {total['p95']:.1f} s"]
    return "  ".join(parts)


def _format_flag(value: bool | None) -> str:
    return "-" if value is None else ("ok" if value else "FAIL")


def format_header(top_k: int, width: int) -> str:
    """Return the header of the per-case table."""
    return f"{'case':<{width}}  {'answer':>6}  {'refusal':>7}  {f'evidence@{top_k}':>10}  {'cites':>5}  {'ms':>6}"


def format_row(result: CaseResult, width: int) -> str:
    """Return one line of the per-case table, with what went wrong after it."""
    ms = result.milliseconds
    row = (
        f"{result.case.id:<{width}}  {_format_flag(result.answer_ok):>6}  {_format_flag(result.refusal_ok):>7}  "
        f"{_format_flag(result.evidence_hit):>10}  {_format_flag(result.citations_ok):>5}  {'-' if ms is None else f'{ms:.0f}':>6}"
    )
    if result.problems:
        row += "  " + "; ".join(result.problems)[:160]
    return row


def serialize_result(result: CaseResult, top_k: int) -> dict:
    """Return one case's question, answer, citations and verdicts as plain data."""
    case, answer = result.case, result.answer
    return {
        "id": case.id,
        "tags": list(case.tags),
        "question": case.question,
        "history": list(case.history),
        "must_refuse": case.must_refuse,
        "expected": list(case.answers),
        "must_contain": [list(g) for g in case.must_contain],
        "must_not_contain": [list(g) for g in case.must_not_contain],
        "evidence": [e.to_dict() for e in case.evidence],
        "answer": None if answer is None else answer.text,
        "abstained": None if answer is None else answer.abstained,
        "reason": None if answer is None else answer.reason,
        "standalone_question": None if answer is None else answer.standalone_question,
        "citations": [] if answer is None else [c.to_dict() for c in answer.citations],
        "retrieved": []
        if answer is None
        else [
            {
                "passage_id": p.passage_id,
                "doc_id": p.doc_id,
                "start": p.start,
                "end": p.end,
                "score": p.score,
                "evidence": any(
                    p.doc_id == e.doc_id and overlaps(p.start, p.end, e.start, e.end) for e in case.evidence
                ),
            }
            for p in answer.passages[:top_k]
        ],
        "timings": {} if answer is None else dict(answer.timings),
        "verdicts": [v.to_dict() for v in getattr(answer, "verdicts", None) or []],
        "checks": {
            "answer": result.answer_ok,
            "refusal": result.refusal_ok,
            "evidence": result.evidence_hit,
            "citations": result.citations_ok,
        },
        "f1": None if result.f1 is None else round(result.f1, 4),
        "evidence_rank": result.rank,
        "citations_on_evidence": result.precise_citations,
        "evidence_cited": result.covered_evidence,
        "problems": list(result.problems),
        "error": result.error,
        "passed": result.passed,
    }


def render_chart(
    metrics: dict, thresholds: dict, baseline: dict | None, top_k: int, failed: frozenset[str] = frozenset()
) -> str:
    """Return an inline SVG bar chart of the metrics (failed ones red), with threshold and baseline ticks."""
    row, left, width = 22, 150, 300
    keys = list(METRICS)
    height = row * len(keys) + 10
    parts = [f'<svg width="{left + width + 60}" height="{height}" role="img" aria-label="metrics chart">']
    for i, key in enumerate(keys):
        y = 5 + i * row
        value = metrics.get(key)
        label = html.escape(format_label(key, top_k))
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{width}" height="14" fill="#eee"/>')
        if value is not None:
            colour = "#d44" if key in failed else "#4a7"
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{value * width:.1f}" height="14" fill="{colour}"/>')
        for marks, colour in ((baseline or {}, "#555"), (thresholds, "#d22")):
            mark = marks.get(key)
            if mark is not None:
                x = left + mark * width
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 20}" stroke="{colour}" stroke-width="2"/>'
                )
        parts.append(
            f'<text x="{left + width + 6}" y="{y + 14}" font-size="12">{html.escape(format_value(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _render_quote(citation: dict) -> str:
    """The citation's passage with its quote marked; just the quote, marked, when the offsets are missing or wrong."""
    passage, offset, start, end = (citation.get(k) for k in ("text", "passage_start", "start", "end"))
    if passage and None not in (offset, start, end) and offset <= start < end <= offset + len(passage):
        return highlight(passage, offset, [(start, end)])
    return f"<mark>{html.escape(citation.get('quote') or '')}</mark>"


def _render_badge(value: bool | None, name: str) -> str:
    css = {None: "na", True: "ok", False: "fail"}[value]
    return f'<span class="badge {css}">{html.escape(name)} {html.escape(_format_flag(value))}</span>'


def _render_case(n: int, case: dict, top_k: int) -> str:
    """One case of the report as an HTML section: its question, answer (markers link to citations) and checks."""
    e, anchor = html.escape, f"c{n}"
    answer = MARKER.sub(lambda m: f'<a href="#{anchor}-{m.group(1)}">[{m.group(1)}]</a>', e(case["answer"] or ""))
    history = "".join(f'<div class="turn"><b>{e(t["role"])}:</b> {e(t["content"])}</div>' for t in case["history"])
    citations = "".join(
        f'<li id="{anchor}-{int(c["index"])}">[{int(c["index"])}] {e(str(c.get("doc_id", "")))} '
        f"¶{e(str(c.get('number', '')))}: {_render_quote(c)}</li>"
        for c in case["citations"]
    )
    evidence = "".join(f"<li>{e(x['quote'])}</li>" for x in case["evidence"])
    expected = "must refuse" if case["must_refuse"] else " | ".join(case["expected"])
    checks = case["checks"]
    return (
        f'<section class="case {"pass" if case["passed"] else "failed"}" id="{e(case["id"])}">'
        f"<h3>{e(case['id'])} {'✔' if case['passed'] else '✘'} "
        f"{_render_badge(checks['answer'], 'answer')}{_render_badge(checks['refusal'], 'refusal')}"
        f"{_render_badge(checks['evidence'], f'evidence@{top_k}')}{_render_badge(checks['citations'], 'cites')}</h3>"
        f"{history}<p><b>Q:</b> {e(case['question'])}</p>"
        + (
            f'<p class="meta">rewritten as: {e(case["standalone_question"])}</p>'
            if case["history"] and case["standalone_question"]
            else ""
        )
        + f'<p><b>A:</b> {answer} <span class="meta">({e(str(case["reason"]))})</span></p>'
        f'<p class="meta"><b>Expected:</b> {e(expected)}</p>'
        + (f"<ul class='cites'>{citations}</ul>" if citations else "")
        + (f"<details><summary>evidence</summary><ul>{evidence}</ul></details>" if evidence else "")
        + (f"<p class='problems'>{e('; '.join(case['problems']))}</p>" if case["problems"] else "")
        + "</section>"
    )


def render_html(report: dict) -> str:
    """Return a self-contained HTML page of the report; every piece of text is escaped."""
    e = html.escape
    top_k = report["settings"]["top_k"]
    cases_html = [_render_case(n, case, top_k) for n, case in enumerate(report["cases"])]
    failures = "".join(f"<li>{e(f)}</li>" for f in report["failures"])
    failed = frozenset(k for k in METRICS for f in report["failures"] if f.startswith(format_label(k, top_k) + " "))
    status = "FAILED" if report["failures"] else "PASSED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>assistant eval: {e(status)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em;color:#222}}
.case{{border:1px solid #ccc;border-left:6px solid #4a7;padding:.3em .8em;margin:.8em 0}}
.case.failed{{border-left-color:#d22}} .meta{{color:#666;font-size:.9em}} mark{{background:#fe8}}
.badge{{font-size:.7em;padding:.1em .4em;margin-left:.4em;border-radius:3px;font-weight:normal}}
.ok{{background:#cfc}} .fail{{background:#fcc}} .na{{background:#eee}} .problems{{color:#a00}}
.turn{{color:#555;font-size:.9em}} code{{background:#f4f4f4}} .cites{{list-style:none;padding-left:1em}}
</style></head><body>
<h1>assistant eval: {e(status)}</h1>
<p class="meta">{e(report["created"])} · {e(report["case_file"])} · {len(report["cases"])} cases,
{report["summary"]["passed"]} passed · settings {e(json.dumps(report["settings"]))}</p>
<p><code>{e(report["metric_line"])}</code></p>
{render_chart(report["metrics"], report["thresholds"], report.get("baseline"), top_k, failed)}
<p class="meta">bars: value (red: failed a gate) · red tick: threshold (a maximum for false-refusal) ·
grey tick: baseline</p>
{f"<h2>Failures</h2><ul>{failures}</ul>" if failures else ""}
<h2>Cases</h2>
{"".join(cases_html)}
</body></html>
"""


def build_report(
    results: list[CaseResult],
    *,
    case_file: str,
    settings: dict,
    thresholds: dict,
    baseline: dict | None,
    failures: list[str],
) -> dict:
    """Return the whole run as plain data: settings, every figure and every case."""
    top_k = settings["top_k"]
    metrics = compute_metrics(results)
    latency = compute_latency(results)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "case_file": case_file,
        "settings": settings,
        "summary": {"cases": len(results), "passed": sum(r.passed for r in results)},
        "metrics": metrics,
        "labels": {key: format_label(key, top_k) for key in METRICS},
        "latency": latency,
        "metric_line": format_metric_line(metrics, latency, top_k),
        "thresholds": thresholds,
        "baseline": baseline,
        "failures": failures,
        "cases": [serialize_result(r, top_k) for r in results],
    }


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    """Write eval.json and eval.html into folder; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "eval.json", folder / "eval.html"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


# ----- running ------------------------------------------------------------------------------------------------------
def run_cases(assistant, cases: list[Case], doc_texts: dict[str, str], top_k: int, out=None):
    """Answer every case with one Assistant, printing a table row as each finishes; return the results."""
    from .guard import InvalidQuestion

    out = out or sys.stdout
    width = max(len("case"), *(len(c.id) for c in cases))
    print(format_header(top_k, width), file=out, flush=True)
    results = []
    for case in cases:
        try:
            answer = assistant.answer(case.question, list(case.history) or None)
            result = score_case(case, answer, doc_texts, top_k)
        except InvalidQuestion as exc:
            result = reject_case(case, str(exc))
        results.append(result)
        print(format_row(result, width), file=out, flush=True)
    return results


def for_suite(settings, suite: Suite):
    """The settings to answer suite's cases with: its own corpus (and index) when it names one, else settings."""
    if suite.corpus is None or suite.corpus == Path(settings.corpus_dir).resolve():
        return settings
    return for_corpus(settings, suite.corpus)


def warmed(settings, shared=None):
    """A warmed Assistant for settings, sharing the chat and embedding models of shared (an earlier one) if given."""
    from .answering import Assistant

    models = {"chat_model": shared.chat_model, "embeddings": shared.index.embeddings} if shared else {}
    assistant = Assistant(settings, **models)
    assistant.warm_up()
    return assistant


def for_corpus(settings, corpus: Path):
    """Settings that answer from corpus, with an index of its own beside the cache (the main index stays as it is)."""
    import hashlib

    key = hashlib.sha256(str(corpus).encode()).hexdigest()[:12]
    return settings.model_copy(
        update={"corpus_dir": corpus, "index_dir": Path(settings.cache_dir) / "indexes" / f"{corpus.name}-{key}"}
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `assistant eval` to parser."""
    parser.add_argument(
        "cases", type=Path, nargs="+", help="YAML case file(s), e.g. tests/questions.yaml; each may name its corpus"
    )
    parser.add_argument("--baseline", type=Path, help="baseline JSON to compare against (or to write)")
    parser.add_argument("--report", type=Path, help="folder for eval.json and eval.html")
    parser.add_argument(
        "--update-baseline", action="store_true", help="write this run's metrics to --baseline instead of comparing"
    )
    parser.add_argument("-k", "--top-k", dest="top_k", type=int, help="passages to retrieve (default: settings)")
    parser.add_argument(
        "--no-grounding", action="store_true", help="turn the grounding check off (to measure what it buys)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="turn verification by meaning off (to measure what it buys)"
    )
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these case ids")


@dataclass
class Plan:
    """One case file to run: its cases, the settings (corpus and index) to answer them with, and its baseline."""

    path: Path
    suite: Suite
    cases: list[Case]
    settings: object  # assistant.settings.Settings
    baseline: dict | None


def plan_runs(args: argparse.Namespace) -> list[Plan]:
    """Read and check every case file (and the options) before any model loads; CaseError or BaselineError."""
    from .settings import Settings

    overrides = {}
    if args.top_k is not None:
        overrides["top_k"] = args.top_k
    if args.no_grounding:
        overrides["grounding_check"] = False
    if args.no_verify:
        overrides["verify"] = False
    base = Settings(**overrides)
    if len(args.cases) > 1 and (args.baseline or args.only):
        raise CaseError("--baseline, --update-baseline and --only take one case file")
    if args.update_baseline and (args.baseline is None or args.only):
        raise CaseError("--update-baseline needs --baseline and the whole case set (no --only)")
    plans = []
    for path in args.cases:
        suite = load_suite(path, base.corpus_dir)
        settings = for_suite(base, suite)
        cases = suite.cases
        if args.only:
            unknown = [i for i in args.only if i not in {c.id for c in cases}]
            if unknown:
                raise CaseError(f"--only: no case with id {', '.join(map(repr, unknown))} in {path}")
            cases = [c for c in cases if c.id in set(args.only)]
        baseline = read_baseline(args.baseline) if args.baseline and not args.update_baseline else None
        plans.append(Plan(Path(path), suite, cases, settings, baseline))
    return plans


def run_settings(settings, only: list[str]) -> dict:
    """The settings a report records: what changes the figures."""
    return {
        "top_k": settings.top_k,
        "grounding_check": settings.grounding_check,
        "verify": settings.verify,
        "verify_threshold": settings.verify_threshold,
        "max_distance": settings.max_distance,
        "min_support": settings.min_support,
        "llm_backend": settings.llm_backend,
        "only": list(only or []),
    }


def report_plan(plan: Plan, results: list[CaseResult], args: argparse.Namespace, folder: Path | None) -> list[str]:
    """Gate, print and write one case file's results; return its failures."""
    baseline, recorded = plan.baseline, run_settings(plan.settings, args.only)
    metrics = compute_metrics(results)
    limits = baseline["metrics"] if baseline else None
    failures = check_gates(metrics, plan.suite.thresholds, limits, plan.suite.tolerance, plan.settings.top_k)
    report = build_report(
        results,
        case_file=str(plan.path),
        settings=recorded,
        thresholds=plan.suite.thresholds,
        baseline=limits,
        failures=failures,
    )
    print()
    print(report["metric_line"])
    print(f"{report['summary']['passed']}/{len(results)} cases passed")
    if baseline:
        before = baseline.get("passed") or {}
        newly = [r.case.id for r in results if before.get(r.case.id) and not r.passed]
        if newly:
            print(f"Newly failing since the baseline (not gated): {', '.join(newly)}")
        old = baseline.get("settings") or {}
        changed = [f"{k} {old[k]}->{v}" for k, v in recorded.items() if k in old and old[k] != v and k != "only"]
        if changed:
            print(f"Note: settings differ from the baseline's: {', '.join(changed)}")
        if args.only:
            print(f"Note: {len(results)} of {len(plan.suite.cases)} cases compared against the whole-set baseline")
    if folder:
        json_path, html_path = write_report(report, folder)
        print(f"Report: {json_path} {html_path}")
    if args.update_baseline:
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        args.baseline.write_text(json.dumps(build_baseline(report), indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"Baseline written to {args.baseline}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return failures


def report_folder(args: argparse.Namespace, path: Path) -> Path | None:
    """Where one case file's report goes: --report itself, or a folder per file when there are several."""
    if not args.report:
        return None
    if len(args.cases) == 1:
        return args.report
    return args.report / f"{Path(path).resolve().parent.name}-{Path(path).stem}"


def main(args: argparse.Namespace) -> int:
    """Run the suites: 0 when every gate passes, 1 when a threshold or the baseline fails, 2 on bad input.

    Several case files (each may name its own corpus) share one chat model and one embedding model.
    """
    try:
        plans = plan_runs(args)
    except ValueError as exc:  # CaseError, BaselineError, or a setting out of range (-k 0)
        print(f"Error: {exc}", file=sys.stderr)
        return 2

    failed, assistant = [], None
    for plan in plans:
        print(f"{plan.path}: loading the index and the model for {len(plan.cases)} cases…", file=sys.stderr, flush=True)
        assistant = warmed(plan.settings, assistant)
        doc_texts = {d.doc_id: d.text for d in assistant.documents}
        results = run_cases(assistant, plan.cases, doc_texts, plan.settings.top_k)
        if report_plan(plan, results, args, report_folder(args, plan.path)):
            failed.append(str(plan.path))
    if len(plans) > 1:
        print(
            f"\n{len(plans) - len(failed)}/{len(plans)} case files passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0
