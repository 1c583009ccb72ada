"""Eval stage, cases: what a case is, and the case file read and checked against the corpus before any model loads.

A case is a question with its accepted answers (none: the assistant must refuse) and verbatim evidence quotes, each
found exactly once in the corpus; a Suite is one file's cases with its gates and, when it names one, its own corpus.
"""

from __future__ import annotations

import re
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

from ..errors import AssistantError
from ..index.corpus import Document, load_documents
from ..text import fold
from .normalise import normalize_folded
from .wording import describe_error

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


class CaseError(AssistantError, ValueError):
    """The case file is malformed; the message names the case and the field to fix."""


class BaselineError(AssistantError, ValueError):
    """The baseline file is missing or unreadable."""


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
        if answers and not any(normalize_folded(a) for a in answers):
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

    from ..index.corpus import CorpusError

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
