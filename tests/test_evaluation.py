"""Tests of `assistant eval`: matching, case validation, metrics, gates and reports; and the real suite end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from assistant.answering import Answer, Citation
from assistant.cli import build_parser
from assistant.eval import (
    ANSWER_F1_MIN,
    METRICS,
    Case,
    CaseError,
    build_report,
    check_citations,
    check_gates,
    compute_latency,
    compute_metrics,
    compute_percentile,
    compute_token_f1,
    format_metric_line,
    load_suite,
    locate_evidence,
    match_answer,
    normalize_folded,
    parse_case,
    parse_suite,
    render_html,
    score_case,
)
from assistant.eval import main as run_suite
from assistant.index.corpus import load_passages
from assistant.settings import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "corpus"
QUESTIONS = PROJECT_ROOT / "tests" / "questions.yaml"
BASELINE = PROJECT_ROOT / "eval-baseline.json"
DOCUMENTS, PASSAGES = load_passages(CORPUS)
DOC_TEXTS = {d.doc_id: d.text for d in DOCUMENTS}
TEXT = DOCUMENTS[0].text


def passage(number: int):
    return PASSAGES[number - 1]


def cite(index: int, quote: str, number: int | None = None) -> Citation:
    """A Citation of quote as the engine would make it (quote located in the article)."""
    start = TEXT.index(quote)
    p = passage(number) if number else next(p for p in PASSAGES if p.start <= start < p.end)
    return Citation.of(p, index, start, start + len(quote), TEXT)


def answer(text: str, citations=(), abstained=False, retrieved=(1, 2, 3, 4), total=1.0) -> Answer:
    return Answer(
        question="q",
        text=text,
        citations=list(citations),
        abstained=abstained,
        passages=[passage(n) for n in retrieved],
        timings={"retrieve": 0.1, "generate": total - 0.1, "total": total},
        reason="not_in_article" if abstained else "answered",
    )


def case(**fields) -> Case:
    raw = {"id": "c1", "question": "Who?", "answers": ["Colby"], "evidence": ["Eldridge Colby"]} | fields
    return parse_case(raw, 1, DOCUMENTS)


# ----- normalisation and matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Indo-Pacific!", "indo pacific"),
        ("Romania’s Radu-Dinel Miruță", "romania radu dinel miruta"),
        ("the dawn of “NATO 3.0,” [1]", "dawn of nato 30"),
        ("An  answer, a   question.", "answer question"),
        ("3.5% of GDP", "35 of gdp"),
        ("Europe's ‘pillar’, its", "europe pillar its"),
    ],
)
def test_normalize_answer_folds_case_punctuation_articles_accents_and_quotes(text, expected):
    assert normalize_folded(text) == expected


def test_token_f1():
    assert compute_token_f1("Eldridge Colby", "eldridge colby.") == 1.0
    assert compute_token_f1("Colby", "Eldridge Colby") == pytest.approx(2 / 3)
    assert compute_token_f1("Rutte", "Colby") == 0.0
    assert compute_token_f1("", "") == 1.0
    assert compute_token_f1("the", "Colby") == 0.0


def test_match_answer_substring_on_word_boundaries_or_high_f1():
    assert match_answer("US Under Secretary of War Eldridge Colby said so. [1]", ["Colby"]) == (
        True,
        pytest.approx(0.2),
    )
    assert match_answer("The target is 3.5% of GDP.", ["3.5 %"])[0]
    assert not match_answer("They spend 350 billion.", ["3.5%"])[0]  # "35" must be a whole token
    assert not match_answer("Colbyism", ["Colby"])[0]
    assert match_answer("Miruta", ["Miruță"])[0]
    assert match_answer("Germany’s Boris Pistorius said so.", ["Germany"])[0]
    # No substring match, but the response is nearly the answer: accepted by token F1.
    accepted, f1 = match_answer(
        "Europe should take primary responsibility", ["Europe must take primary responsibility"]
    )
    assert accepted and f1 >= ANSWER_F1_MIN
    assert match_answer("anything", []) == (False, 0.0)


# ----- evidence and case validation ----------------------------------------------------------------------------------
def test_locate_evidence_finds_doc_and_offsets():
    found = locate_evidence("Eldridge Colby", DOCUMENTS)
    assert found.doc_id == "nato-3-0"
    assert TEXT[found.start : found.end] == "Eldridge Colby"


def test_locate_evidence_rejects_missing_and_ambiguous_quotes():
    with pytest.raises(ValueError, match="not in the corpus"):
        locate_evidence("Giorgia Meloni", DOCUMENTS)
    with pytest.raises(ValueError, match=r"occurs \d+ times"):
        locate_evidence("Rutte", DOCUMENTS)
    # Straight quotes where the article has curly ones: refused, with a hint.
    with pytest.raises(ValueError, match="after folding quotes"):
        locate_evidence("NATO's latest gathering", DOCUMENTS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"question": ""}, r"case 'c1': field 'question'"),
        ({"answers": "Colby"}, None),  # a single string is accepted as one answer
        ({"answers": [1, 2]}, r"case 'c1': field 'answers\[0\]' must be text, not 1\n.*'answers\[1\]'"),
        ({"evidence": ["Giorgia Meloni"]}, r"case 'c1': field 'evidence\[0\]'.*not in the corpus"),
        ({"evidence": ["Eldridge Colby", "Rutte"]}, r"case 'c1': field 'evidence\[1\]'.*occurs"),
        ({"evidence": []}, r"case 'c1': field 'evidence' is missing"),
        ({"must_contain": [["(unclosed"]]}, r"case 'c1': field 'must_contain\[0\]\[0\]': invalid regex"),
        ({"must_not_contain": "x"}, r"case 'c1': field 'must_not_contain' must be a list"),
        ({"history": [{"role": "system", "content": "hi"}]}, r"case 'c1': field 'history\[0\]\.role' must be 'user'"),
        ({"history": [{"role": "user"}]}, r"case 'c1': field 'history\[0\]\.content' is missing"),
        ({"history": [{"role": "user", "content": "hi", "name": "x"}]}, r"field 'history\[0\]\.name' is not a known"),
        ({"answers": ["the ."]}, r"case 'c1': field 'answers' holds only punctuation or articles"),
        ({"answer": ["Colby"]}, r"case 'c1': unknown field 'answer'"),
        ({"id": "has space"}, r"case #1: field 'id'"),
    ],
)
def test_case_validation_names_the_case_and_field(fields, message):
    if message is None:
        assert case(**fields).answers == ("Colby",)
        return
    with pytest.raises(CaseError, match=message):
        case(**fields)


def test_missing_answers_field_and_must_refuse_cases():
    with pytest.raises(CaseError, match=r"case 'c1': field 'answers' is missing"):
        parse_case({"id": "c1", "question": "Who?"}, 1, DOCUMENTS)
    refuse = parse_case({"id": "r1", "question": "How old is Colby?", "answers": []}, 1, DOCUMENTS)
    assert refuse.must_refuse and refuse.evidence == ()


def test_suite_validation_header_and_duplicates():
    good = {"id": "c1", "question": "Who?", "answers": ["Colby"], "evidence": ["Eldridge Colby"]}
    suite = parse_suite(
        {"thresholds": {"answer": 0.9, "evidence@4": 0.8, "tolerance": 0.05}, "cases": [good]}, DOCUMENTS
    )
    assert suite.thresholds == {"answer": 0.9, "evidence": 0.8}
    assert suite.tolerance["citation-precision"] == 0.05
    with pytest.raises(CaseError, match=r"case 'c1': field 'id' is used twice"):
        parse_suite({"cases": [good, good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: field 'thresholds.accuracy' is not a metric"):
        parse_suite({"thresholds": {"accuracy": 0.9}, "cases": [good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: field 'thresholds.answer' must be a number from 0 to 1"):
        parse_suite({"thresholds": {"answer": 90}, "cases": [good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: field 'cases'"):
        parse_suite({"thresholds": {}}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: field 'split' must be 'dev' or 'test', not 'train'"):
        parse_suite({"split": "train", "cases": [good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: field 'tolerance' must be a number from 0 to 1, not 2"):
        parse_suite({"tolerance": 2, "cases": [good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"header: unknown field 'threshold' \(fields: corpus, split, thresholds"):
        parse_suite({"threshold": {}, "cases": [good]}, DOCUMENTS)
    with pytest.raises(CaseError, match=r"case #2: must be a mapping with id, question, answers and evidence"):
        parse_suite({"cases": [good, "Who?"]}, DOCUMENTS)


def test_load_suite_reports_every_problem_with_its_case_and_line(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text(
        "thresholds: {accuracy: 0.9}\n"
        "cases:\n"
        "  - id: good\n"
        "    question: Who?\n"
        "    answers: [Colby]\n"
        "    evidence: [Eldridge Colby]\n"
        "  - id: no-question\n"
        "    answers: []\n"
        "    tags: [unanswerable, '']\n"
        "  - {id: bad-quote, question: 'Who?', answers: [Colby], evidence: [Nobody at all]}\n"
        "  - id: good\n"
        "    question: Who again?\n"
        "    answers: []\n"
    )
    with pytest.raises(CaseError) as raised:
        load_suite(bad, DOCUMENTS)
    first, *problems = str(raised.value).splitlines()
    assert first == f"{bad}: 5 problems:"
    assert problems == [
        f"  header: field 'thresholds.accuracy' is not a metric (metrics: {', '.join(METRICS)})",
        "  case 'no-question' (line 7): field 'question' is missing",
        "  case 'no-question' (line 7): field 'tags[1]' must be non-empty text",
        "  case 'bad-quote' (line 10): field 'evidence[0]': evidence quote 'Nobody at all' is not in the corpus",
        "  case 'good' (line 11): field 'id' is used twice (first at line 3)",
    ]


def test_load_suite_names_the_file(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text("cases:\n  - {id: x1, question: 'Who?', answers: [Colby], evidence: [Nobody at all]}\n")
    with pytest.raises(CaseError, match=r"q\.yaml: case 'x1' \(line 2\): field 'evidence\[0\]'"):
        load_suite(bad, DOCUMENTS)
    bad.write_text("cases: [unclosed")
    with pytest.raises(CaseError, match="not valid YAML"):
        load_suite(bad, DOCUMENTS)


def test_the_question_set_is_complete():
    suite = load_suite(QUESTIONS, DOCUMENTS)
    cases = suite.cases
    tagged = lambda tag: [c for c in cases if tag in c.tags]  # noqa: E731
    assert len(cases) >= 60
    # Every one of the 11 paragraphs has facts asked about it.
    covered = {p.number for c in cases for e in c.evidence for p in PASSAGES if e.start < p.end and p.start < e.end}
    assert covered == set(range(1, 12))
    assert len([c for c in tagged("unanswerable") if c.must_refuse]) >= 12
    follow_ups = [c for c in tagged("follow-up") if [m["role"] for m in c.history] == ["user", "assistant"]]
    assert len(follow_ups) >= 8
    attacks = tagged("injection") + tagged("off-task")
    assert len(attacks) >= 5 and all(c.must_refuse for c in attacks)
    assert all(
        len({p.number for e in c.evidence for p in PASSAGES if p.start <= e.start < p.end}) >= 2
        for c in tagged("multi-hop")
    )
    assert len(tagged("paraphrase")) >= 8
    # Thresholds gate every metric.
    assert set(suite.thresholds) == set(METRICS)


# ----- scoring and metrics on hand-built answers ---------------------------------------------------------------------
def test_check_citations():
    quote = "US Under Secretary of War Eldridge Colby described the moment as the dawn of “NATO 3.0,”"
    good = answer("Colby called it NATO 3.0. [1]", [cite(1, quote)])
    assert check_citations(good, DOC_TEXTS) == []
    assert check_citations(answer("The article does not say.", abstained=True), DOC_TEXTS) == []
    assert "marker [2] has no citation" in check_citations(answer("Colby. [1][2]", [cite(1, quote)]), DOC_TEXTS)
    assert "citation 2 is never marked in the text" in check_citations(
        answer("Colby. [1]", [cite(1, quote), cite(2, "Mark Rutte")]), DOC_TEXTS
    )
    assert "an answer without any citation" in check_citations(answer("Colby called it NATO 3.0."), DOC_TEXTS)
    shifted = cite(1, quote)
    shifted = Citation(**(shifted.to_dict() | {"start": shifted.start + 1, "end": shifted.end + 1}))
    assert any("not the document text" in p for p in check_citations(answer("Colby. [1]", [shifted]), DOC_TEXTS))


def test_metrics_on_hand_built_answers():
    colby = case(id="a1", evidence=["Eldridge Colby described the moment"])
    region = case(
        id="a2", answers=["Indo-Pacific"], evidence=["particularly the Indo-Pacific", "NATO’s latest gathering"]
    )
    age = case(id="r1", answers=[], evidence=None)
    poem = case(id="r2", answers=[], evidence=None)
    results = [
        # Right, cited on the evidence paragraph (2) and on an unrelated one (9); evidence passage ranked 2nd.
        score_case(
            colby,
            answer(
                "Eldridge Colby did. [1] Also a brigade. [2]",
                [cite(1, "Eldridge Colby described the moment"), cite(2, "rotating infantry brigade")],
                retrieved=(9, 2, 3, 4),
                total=1.0,
            ),
            DOC_TEXTS,
            4,
        ),
        # Answerable but refused; its evidence is not retrieved either.
        score_case(
            region,
            answer("The article does not say.", abstained=True, retrieved=(7, 8, 9, 10), total=3.0),
            DOC_TEXTS,
            4,
        ),
        score_case(age, answer("The article does not say.", abstained=True, total=2.0), DOC_TEXTS, 4),
        # Must refuse but answered (and without citations).
        score_case(poem, answer("Roses are red.", total=5.0), DOC_TEXTS, 4),
    ]
    assert [r.passed for r in results] == [True, False, True, False]
    assert results[0].rank == 2 and results[0].answer_ok and results[0].f1 == pytest.approx(1 / 3)
    assert results[1].problems[0].startswith("refused")
    metrics = compute_metrics(results)
    assert metrics == {
        "answer": 0.5,
        "f1": pytest.approx(1 / 6),
        "refusal": 0.5,
        "near-miss": None,  # no case is tagged near-miss
        "false-refusal": 0.5,
        "evidence": 0.5,
        "mrr": 0.25,  # (1/2 + 0) / 2
        "citation-validity": 0.5,  # a1 valid; the uncited answer to r2 is not; abstentions are not counted
        "citation-precision": 0.5,  # 1 of the 2 citations of answered answerable cases points at evidence
        "citation-recall": 1 / 3,  # 1 of 3 evidence quotes cited
    }
    latency = compute_latency(results)
    assert latency["total"]["p50"] == pytest.approx(2.5) and latency["total"]["p95"] == pytest.approx(4.7)
    assert "rewrite" not in latency
    line = format_metric_line(metrics, latency, 4)
    assert line.startswith(
        "answer 0.50  f1 0.17  refusal 0.50  near-miss n/a  false-refusal 0.50  evidence@4 0.50  mrr 0.25"
    )
    assert line.endswith("p50 2.5 s  p95 4.7 s")


def test_compute_percentile_interpolates_between_closest_ranks():
    percentile = compute_percentile
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert (percentile([4, 1, 3, 2], 0), percentile([4, 1, 3, 2], 100)) == (1.0, 4.0)
    assert percentile([5, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([5, 1, 3, 2], 95) == pytest.approx(4.7)  # 3 + 0.85 * (5 - 3)
    with pytest.raises(ValueError, match="whole number from 0 to 100"):
        percentile([1, 2], 101)


def test_patterns_gate_answers_and_refusals():
    result = score_case(
        case(must_contain=[["Eldridge"], ["3\\.0", "three"]], must_not_contain=[["Rutte"]]),
        answer("Colby described NATO 3.0. [1]", [cite(1, "Eldridge Colby")]),
        DOC_TEXTS,
        4,
    )
    assert not result.answer_ok and result.problems == ["missing one of ['Eldridge']"]
    refused = score_case(
        case(answers=[], evidence=None, must_not_contain=[["secret"]]),
        answer("The article does not say, secret.", abstained=True),
        DOC_TEXTS,
        4,
    )
    assert refused.refusal_ok is False and "contains 'secret'" in refused.problems


# ----- gates and exit codes ------------------------------------------------------------------------------------------
def test_check_gates_thresholds_and_baseline():
    metrics = {"answer": 0.97, "false-refusal": 0.05, "citation-precision": 0.95, "mrr": None}
    tolerance = {"citation-precision": 0.02}
    assert check_gates(metrics, {"answer": 0.9}, {"answer": 0.98, "citation-precision": 0.96}, tolerance, 4) == []
    failures = check_gates(
        metrics,
        {"answer": 0.98, "false-refusal": 0.02, "mrr": 0.9},
        {"citation-precision": 0.98, "false-refusal": 0.0, "mrr": 1.0},
        tolerance,
        4,
    )
    assert failures == [
        "answer 0.97 < threshold 0.98",
        "false-refusal 0.05 > maximum 0.02",  # lower is better: inverted
        "false-refusal 0.05 > baseline 0.00 + 0.02",
        "citation-precision 0.95 < baseline 0.98 - 0.02",
    ]
    assert check_gates({"evidence": 0.5}, {"evidence": 0.9}, None, {}, 1) == ["evidence@1 0.50 < threshold 0.90"]


class FakeAssistant:
    """Stands in for the Assistant: answers every question with Colby, cited, or refuses must-refuse ones."""

    def __init__(self, settings, chat_model=None, embeddings=None):
        self.settings = settings
        self.chat_model, self.index = chat_model or object(), SimpleNamespace(embeddings=embeddings)
        self.documents = DOCUMENTS

    def warm_up(self):
        return "skipped"

    def answer(self, question, history=None):
        if "old" in question:
            return answer("The article does not say.", abstained=True)
        return answer("Eldridge Colby did. [1]", [cite(1, "Eldridge Colby")], retrieved=(1, 2, 3, 4))


def write_cases(path: Path, thresholds=None):
    path.write_text(
        yaml.safe_dump(
            {
                "thresholds": thresholds or {"answer": 0.5},
                "cases": [
                    {"id": "who", "question": "Who?", "answers": ["Colby"], "evidence": ["Eldridge Colby"]},
                    {"id": "age", "question": "How old is Colby?", "answers": []},
                ],
            }
        )
    )


def eval_args(cases: Path, **options) -> Namespace:
    args = build_parser().parse_args(["eval", str(cases)])
    for key, value in options.items():
        setattr(args, key, value)
    return args


def test_main_writes_reports_and_baseline_then_gates_on_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("assistant.answering.Assistant", FakeAssistant)
    cases, baseline, report = tmp_path / "q.yaml", tmp_path / "base.json", tmp_path / "reports"
    write_cases(cases)
    assert run_suite(eval_args(cases, baseline=baseline, report=report, update_baseline=True)) == 0
    out = capsys.readouterr().out
    assert re.search(r"^who\s+ok\s+ok\s+ok\s+ok\s+\d+$", out, re.M), out
    assert "answer 1.00  f1 0.50  refusal 1.00  near-miss n/a  false-refusal 0.00  evidence@4 1.00  mrr 0.50" in out
    stored = json.loads(baseline.read_text())
    assert stored["metrics"]["mrr"] == 0.5 and stored["passed"] == {"who": True, "age": True}
    data = json.loads((report / "eval.json").read_text())
    assert data["cases"][0]["citations"][0]["quote"] == "Eldridge Colby" and data["cases"][0]["checks"]["answer"]
    assert (report / "eval.html").read_text().startswith("<!DOCTYPE html>")

    # Same answers against the baseline: passes. A better baseline than the run: fails, naming the metric.
    assert run_suite(eval_args(cases, baseline=baseline)) == 0
    stored["metrics"]["mrr"] = 0.9
    baseline.write_text(json.dumps(stored))
    capsys.readouterr()
    assert run_suite(eval_args(cases, baseline=baseline)) == 1
    assert "FAILED: mrr 0.50 < baseline 0.90 - 0.02" in capsys.readouterr().out

    # A threshold missed fails too, baseline or not.
    write_cases(cases, {"mrr": 0.75})
    assert run_suite(eval_args(cases)) == 1
    assert "FAILED: mrr 0.50 < threshold 0.75" in capsys.readouterr().out


def test_main_rejects_bad_input_before_loading_models(tmp_path, monkeypatch, capsys):
    def boom(settings, **models):
        raise AssertionError("the models must not load")

    monkeypatch.setattr("assistant.answering.Assistant", boom)
    cases = tmp_path / "q.yaml"
    write_cases(cases)
    assert run_suite(eval_args(cases, baseline=tmp_path / "missing.json")) == 2
    assert "--update-baseline" in capsys.readouterr().err
    assert run_suite(eval_args(cases, only=["nope"])) == 2
    assert "no case with id 'nope'" in capsys.readouterr().err
    assert run_suite(eval_args(cases, only=["who"], update_baseline=True, baseline=tmp_path / "b.json")) == 2
    assert run_suite(eval_args(cases, top_k=0)) == 2
    assert "top_k" in capsys.readouterr().err
    cases.write_text("cases:\n  - {id: x, question: 'Who?', answers: [Colby]}\n")
    assert run_suite(eval_args(cases)) == 2
    assert "case 'x' (line 2): field 'evidence' is missing" in capsys.readouterr().err


def test_cli_parses_eval_options():
    args = build_parser().parse_args(
        ["eval", "q.yaml", "--baseline", "b.json", "--report", "r", "-k", "1", "--no-grounding", "--only", "a", "b"]
    )
    assert (args.cases, args.baseline, args.report) == ([Path("q.yaml")], Path("b.json"), Path("r"))
    assert (args.top_k, args.no_grounding, args.only, args.update_baseline) == (1, True, ["a", "b"], False)
    args = build_parser().parse_args(["eval", "a.yaml", "b.yaml", "--no-verify"])
    assert (args.cases, args.no_verify) == ([Path("a.yaml"), Path("b.yaml")], True)


def test_eval_imports_nothing_heavy():
    code = "import sys, assistant.eval; print(sorted(m for m in ('langchain_core', 'chromadb', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----- HTML ----------------------------------------------------------------------------------------------------------
def test_html_report_escapes_all_text_and_is_self_contained():
    evil = "<script>alert('x')</script>"
    c = case(id="evil", question=f"Who? {evil}", answers=["Colby"])
    a = answer(f"Eldridge Colby {evil} [1]", [cite(1, "Eldridge Colby")])
    a.reason = "<b>answered</b>"
    result = score_case(c, a, DOC_TEXTS, 4)
    report = build_report(
        [result],
        case_file="<q>.yaml",
        settings={"top_k": 4, "grounding_check": True},
        thresholds={"answer": 0.9},
        baseline={"answer": 1.0},
        failures=[f"answer 0.00 < threshold 0.90 {evil}"],
    )
    page = render_html(report)
    assert "<script" not in page and "<b>answered" not in page and "<q>" not in page
    assert "&lt;script&gt;" in page
    assert '<a href="#c0-1">[1]</a>' in page  # markers link to their citations
    assert "<mark>Eldridge Colby</mark>" in page  # the quote is highlighted inside its passage
    assert "US Under Secretary of War <mark>" in page
    assert "<svg" in page and "</svg>" in page
    # Without the passage's offsets, the quote alone is shown (marked).
    del report["cases"][0]["citations"][0]["passage_start"]
    page = render_html(report)
    assert "<mark>Eldridge Colby</mark>" in page and "US Under Secretary of War <mark>" not in page
    assert not re.search(r"(src|href)=\"(?!#)|<link|@import|url\(", page)  # no external assets


# ----- real models ---------------------------------------------------------------------------------------------------
def run_eval(*options: str, report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "assistant.cli", "eval", str(QUESTIONS), "--baseline", str(BASELINE)]
    return subprocess.run(
        [*command, "--report", str(report), *options], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600
    )


@pytest.mark.real
def test_real_suite_passes_against_the_baseline(tmp_path):
    result = run_eval(report=tmp_path)
    assert result.returncode == 0, (
        f"eval failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    data = json.loads((tmp_path / "eval.json").read_text())
    assert len(data["cases"]) >= 60 and not data["failures"]
    assert (tmp_path / "eval.html").exists()


# Must-refuse questions (names and facts the article lacks) and multi-hop questions: the grounding check is what
# refuses the former and cites the latter.
SUBSET = [
    "na-italy-minister",
    "na-uk-minister",
    "na-rutte-predecessor",
    "mh-who-said-what",
    "mh-commands-but-saceur",
]


@pytest.mark.real
def test_real_suite_fails_when_grounding_is_turned_off(tmp_path):
    # With the default settings these cases pass in test_real_suite_passes_against_the_baseline (each real-model
    # question set runs once): only the switch differs.
    broken = run_eval("--only", *SUBSET, "--no-grounding", report=tmp_path / "broken")
    assert broken.returncode == 1, broken.stdout[-4000:]
    failed = re.findall(r"^FAILED: (\S+) ", broken.stdout, re.M)
    assert "citation-validity" in failed, broken.stdout[-4000:]
    assert re.search(r"^FAILED: citation-validity \d\.\d\d < (threshold|baseline) \d\.\d\d", broken.stdout, re.M)
