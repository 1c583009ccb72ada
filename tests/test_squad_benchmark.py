"""benchmarks/squad.py without any model: scoring, the fixed sample and split, the corpus it builds, and --render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import squad, squad_data, squad_engines, squad_kinds, squad_report, squad_run, squad_scoring
from benchmarks.squad_data import Case

REAL_DATA = squad_data.DEFAULT_DATA


def qa(qid: str, question: str, answer: str | None = None, trap: str | None = None) -> dict:
    """One SQuAD 2.0 question: answerable when answer is given, else impossible with trap as plausible answer."""
    if answer is not None:
        return {
            "id": qid,
            "question": question,
            "answers": [{"text": answer, "answer_start": 0}],
            "is_impossible": False,
        }
    return {
        "id": qid,
        "question": question,
        "answers": [],
        "plausible_answers": [{"text": trap, "answer_start": 0}],
        "is_impossible": True,
    }


def tiny_squad() -> dict:
    """Two short articles in SQuAD 2.0's format, with a paragraph that has a line break and outer spaces."""
    alpha = [
        {
            "context": "Alpha Town was founded in 1562 by river traders. It grew quickly.",
            "qas": [
                qa("a1", "When was Alpha Town founded?", answer="1562"),
                qa("a2", "When was Alpha Town abandoned?", trap="1562"),
                qa("a3", "Who founded Alpha Town?", answer="river traders"),
            ],
        },
        {
            "context": "  The town hall burned down in 1901.\nIt was rebuilt in stone.  ",
            "qas": [
                qa("a4", "When did the town hall burn?", answer="1901"),
                qa("a5", "When did the town hall flood?", trap="1901"),
                qa("a6", "What was the hall rebuilt in?", answer="stone"),
                qa("a7", "What was the bridge rebuilt in?", trap="stone"),
            ],
        },
    ]
    beta = [
        {
            "context": "The Beta River is 300 kilometres long and flows into the sea.",
            "qas": [qa("b1", "How long is the Beta River?", answer="300 kilometres")],
        },
        {
            "context": "Fishermen on the Beta River catch trout, eel and perch in spring.",
            "qas": [
                qa("b2", "What do fishermen catch?", answer="trout"),
                qa("b3", "What do farmers grow?", trap="eel"),
            ],
        },
    ]
    return {
        "version": "v2.0",
        "data": [{"title": "Beta_River", "paragraphs": beta}, {"title": "Alpha_Town", "paragraphs": alpha}],
    }


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_squad()), encoding="utf-8")
    return path


def case(kind: str = "answerable", answers=("Edict of Nantes",), traps=(), article="alpha-town", number=2) -> Case:
    return Case("q1", article, kind, "Q?", tuple(answers), tuple(traps), f"{article}:p{number}", number)


# ----- normalisation and scoring -----------------------------------------------------------------------------------
def test_normalisation_is_squads():
    assert squad_scoring.normalize_answer("The Edict of Nantes!") == "edict of nantes"
    assert squad_scoring.normalize_answer("  An apple,  a PEAR;\tthe plum. ") == "apple pear plum"
    assert squad_scoring.normalize_answer("one-eighth (about)") == "oneeighth about"
    assert squad_scoring.normalize_answer("theatre and anthem") == "theatre and anthem"  # only whole words go


def test_an_answer_must_be_in_the_reply_as_whole_words():
    assert squad_scoring.contains_answer("It ended with the Edict of Nantes [1].", ["the Edict of Nantes"])
    assert squad_scoring.contains_answer("From 1562 to 1598.", ["562 to 1598", "1562 to 1598"])
    assert not squad_scoring.contains_answer("From 1562 to 1598.", ["562 to 1598"])
    assert not squad_scoring.contains_answer("It was founded then [1].", ["1"])  # a citation marker is not an answer
    assert not squad_scoring.contains_answer(
        "Anything.", ["the", ""]
    )  # a gold answer that normalises to nothing never hits


def test_scores_of_an_answerable_question():
    cited = [{"passage_id": "alpha-town:p2", "doc_id": "alpha-town", "number": 2}]
    right = squad_scoring.score(case(), {"text": "The Edict of Nantes [1].", "abstained": False, "citations": cited})
    assert right == {"right": True, "refused": None, "false_refusal": False, "citation_gold": True, "trap": None}
    wrong = squad_scoring.score(case(), {"text": "The Peace of Augsburg.", "abstained": False, "citations": []})
    assert wrong["right"] is False and wrong["citation_gold"] is False
    refused = squad_scoring.score(case(), {"text": "The article does not say.", "abstained": True})
    assert refused["right"] is False and refused["false_refusal"] is True and refused["citation_gold"] is None
    by_id = squad_scoring.score(case(), {"text": "Edict of Nantes", "citations": [{"passage_id": "alpha-town:p2"}]})
    assert by_id["citation_gold"] is True
    other = squad_scoring.score(case(), {"text": "Edict of Nantes", "citations": [{"passage_id": "alpha-town:p3"}]})
    assert other["citation_gold"] is False
    tutorial = squad_scoring.score(case(), {"text": "Edict of Nantes", "abstained": False}, cites=False)
    assert tutorial["right"] is True and tutorial["citation_gold"] is None


def test_scores_of_an_unanswerable_question():
    trap = case("unanswerable", answers=(), traps=("1562",))
    assert squad_scoring.score(trap, {"text": "The article does not say.", "abstained": True})["refused"] is True
    fell = squad_scoring.score(trap, {"text": "In 1562 [1].", "abstained": False})
    assert fell["refused"] is False and fell["trap"] is True and fell["right"] is None
    assert squad_scoring.score(trap, {"text": "In 1600.", "abstained": False})["trap"] is False
    failed = squad_scoring.score(trap, {"error": "ModelUnavailable: gone", "abstained": True})
    assert failed["refused"] is False  # an error is not a refusal


# ----- corpus, split and sample ----------------------------------------------------------------------------------
def test_the_corpus_maps_every_paragraph_to_its_passage(data_file, tmp_path):
    articles = squad_data.load_articles(data_file)
    assert [a.slug for a in articles] == ["alpha-town", "beta-river"]
    assert [a.title for a in articles] == ["Alpha Town", "Beta River"]
    corpus = tmp_path / "corpus"
    cases = squad_data.build_corpus(articles, corpus)
    assert sorted(p.name for p in corpus.iterdir()) == [
        "alpha-town.meta.json",
        "alpha-town.txt",
        "beta-river.meta.json",
        "beta-river.txt",
    ]
    lines = (corpus / "alpha-town.txt").read_text(encoding="utf-8").splitlines()
    assert lines[1] == "The town hall burned down in 1901. It was rebuilt in stone."
    meta = json.loads((corpus / "alpha-town.meta.json").read_text(encoding="utf-8"))
    assert meta["title"] == "Alpha Town" and "CC BY-SA 4.0" in meta["attribution"]
    assert meta["source"] == "https://en.wikipedia.org/wiki/Alpha_Town"
    by_id = {c.qid: c for cs in cases.values() for c in cs}
    assert len(by_id) == 10
    assert (by_id["a1"].gold, by_id["a1"].number, by_id["a1"].kind) == ("alpha-town:p1", 1, "answerable")
    assert (by_id["a5"].gold, by_id["a5"].kind, by_id["a5"].traps) == ("alpha-town:p2", "unanswerable", ("1901",))
    assert by_id["b2"].gold == "beta-river:p2" and by_id["b2"].answers == ("trout",)
    assert squad_data.write_corpus(articles, corpus) == 0, "a second build reuses the files (and so the index)"


def test_a_paragraph_the_loader_takes_for_a_heading_stops_the_run(tmp_path):
    data = tiny_squad()
    data["data"][0]["paragraphs"].insert(0, {"context": "Geography and climate", "qas": []})
    path = tmp_path / "heading.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(squad_data.SquadError, match="Paragraph 1 of 'Beta River' became no passage"):
        squad_data.build_corpus(squad_data.load_articles(path), tmp_path / "corpus")


def test_the_split_is_by_article_sorted_titles_alternating(tmp_path):
    data = {"version": "v2.0", "data": []}
    for title in ["Delta", "alpha", "Charlie", "Bravo", "Echo", "Foxtrot"]:
        data["data"].append({"title": title, "paragraphs": [{"context": f"{title} is a word here.", "qas": []}]})
    path = tmp_path / "six.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    splits = {a.title: a.split for a in squad_data.load_articles(path)}
    assert splits == {
        "alpha": "dev",
        "Bravo": "test",
        "Charlie": "dev",
        "Delta": "test",
        "Echo": "dev",
        "Foxtrot": "test",
    }
    articles = squad_data.load_articles(path)
    dev = {a.slug for a in squad_data.choose_articles(articles, "dev", None, None)}
    test = {a.slug for a in squad_data.choose_articles(articles, "test", None, None)}
    assert dev.isdisjoint(test) and len(dev | test) == 6
    assert [a.slug for a in squad_data.choose_articles(articles, "test", None, 2)] == ["bravo", "delta"]
    assert [a.slug for a in squad_data.choose_articles(articles, "all", ["echo"], None)] == ["echo"]
    with pytest.raises(squad_data.SquadError, match="No article nope"):
        squad_data.choose_articles(articles, "all", ["nope"], None)


@pytest.mark.skipif(not REAL_DATA.is_file(), reason="the SQuAD 2.0 file is not on this machine")
def test_the_real_data_splits_six_and_six_with_no_article_in_both():
    articles = squad_data.load_articles(REAL_DATA)
    dev = [a.slug for a in articles if a.split == "dev"]
    test = [a.slug for a in articles if a.split == "test"]
    assert len(dev) == len(test) == 6 and not set(dev) & set(test)


def test_the_sample_is_fixed_and_alternates_kinds(data_file, tmp_path):
    articles = squad_data.load_articles(data_file)
    cases = squad_data.build_corpus(articles, tmp_path / "corpus")["alpha-town"]
    first = squad_data.article_sample(cases, "alpha-town", 3, 2)
    again = squad_data.article_sample(list(reversed(cases)), "alpha-town", 3, 2)
    assert [c.qid for c in first] == [c.qid for c in again], "the same on every run, whatever the input order"
    assert [c.kind for c in first] == ["answerable", "unanswerable", "answerable", "unanswerable", "answerable"]
    smaller = squad_data.article_sample(cases, "alpha-town", 2, 1)
    assert [c.qid for c in smaller] == [c.qid for c in first[:3]], "a smaller sample is a prefix"
    together = squad_data.together_sample(first, 1)
    assert [c.qid for c in together] == [c.qid for c in first[:2]]
    assert len(squad_data.article_sample(cases, "alpha-town", 50, 50)) == len(cases)


def test_engines_take_turns_going_first_and_the_tutorial_every_nth_case(data_file, tmp_path):
    cases = squad_data.build_corpus(squad_data.load_articles(data_file), tmp_path / "corpus")["alpha-town"]
    jobs = squad_run.schedule([("single", "alpha-town", cases)], ["ours", "before", "tutorial"], 2)
    assert [len(names) for *_, names in jobs] == [3, 2, 3, 2, 3, 2, 3]
    # each set of engines rotates on its own: every engine goes first in turn
    assert [names[0] for *_, names in jobs if len(names) == 3] == ["ours", "before", "tutorial", "ours"]
    assert [names[0] for *_, names in jobs if len(names) == 2] == ["ours", "before", "ours"]
    assert all(sorted(names) == sorted(set(names)) for *_, names in jobs)
    assert [names for *_, names in squad_run.schedule([("all", None, cases[:2])], ["ours"], 0)] == [["ours"], ["ours"]]


def test_the_worker_script_compiles():
    compile(squad_engines.WORKER, "worker", "exec")
    assert "def handle(bot, job" in squad_engines.WORKER


FAKE_ASSISTANT = """
class Citation:
    def __init__(self, passage_id):
        self.passage_id, self.doc_id, self.number = passage_id, passage_id.split(":")[0], int(passage_id[-1])

class Answer:
    def __init__(self, text, scope):
        self.text, self.abstained, self.reason = f"{text} in {scope}", False, "answered"
        self.citations, self.timings = [Citation(f"{scope}:p1")], {"total": 0.5}

class Assistant:
    def __init__(self, settings):
        self.settings, self.chat_model, self.warmed = settings, object(), []
    def load(self):
        return self
    def warm_up(self, scope=None):
        self.warmed.append(scope)
        return "read " + str(scope)
    def answer(self, question, history=None, scope=None):
        if not self.warmed or self.warmed[-1] != scope:
            raise RuntimeError("not warmed up on this scope")
        return Answer(question, scope)
"""


def test_the_worker_runs_the_other_trees_assistant(tmp_path):
    tree = tmp_path / "tree"
    (tree / "assistant").mkdir(parents=True)
    (tree / "assistant" / "__init__.py").write_text("", encoding="utf-8")
    (tree / "assistant" / "answering.py").write_text(FAKE_ASSISTANT, encoding="utf-8")
    (tree / "assistant" / "settings.py").write_text("Settings = dict\n", encoding="utf-8")
    worker = squad_engines.WorkerEngine("before", tree, tmp_path / "corpus", tmp_path / "index")
    try:
        assert worker.run({"do": "load"})["seconds"] >= 0
        assert worker.run({"do": "warm", "scope": "alpha-town"})["how"] == "read alpha-town"
        out = worker.run({"do": "answer", "question": "Q?", "scope": "alpha-town"})
        assert out["text"] == "Q? in alpha-town" and out["timings"] == {"total": 0.5}
        assert out["citations"] == [{"passage_id": "alpha-town:p1", "doc_id": "alpha-town", "number": 1}]
        failed = worker.run({"do": "answer", "question": "Q?", "scope": "beta-river"})
        assert failed["error"] == "RuntimeError: not warmed up on this scope"
    finally:
        worker.close()
    assert worker.process.returncode == 0


# ----- the report ------------------------------------------------------------------------------------------------
def fake_results() -> dict:
    def rec(engine, mode, article, kind, total, right, abstained, cited=True, category=None):
        scores = {
            "right": right if kind == "answerable" else None,
            "refused": abstained if kind == "unanswerable" else None,
            "false_refusal": abstained if kind == "answerable" else None,
            "citation_gold": (cited if engine != "tutorial" else None)
            if kind == "answerable" and not abstained
            else None,
            "trap": (not abstained and not right) if kind == "unanswerable" else None,
        }
        return {
            "id": f"{article}-{kind}-{total}",
            "article": article,
            "kind": kind,
            "category": category,
            "engine": engine,
            "mode": mode,
            "abstained": abstained,
            "timings": {"total": total, "first_text": total / 2, "verify": 0.5},
            "scores": scores,
            "error": None,
        }

    cases = []
    for engine in ("ours", "tutorial"):
        slow = 3.0 if engine == "tutorial" else 1.0
        for article in ("alpha-town", "beta-river"):
            cases += [
                rec(engine, "single", article, "answerable", 4.0 * slow, True, False, category="who"),
                rec(engine, "single", article, "answerable", 7.0 * slow, False, True, category="what/which"),
                rec(engine, "single", article, "unanswerable", 3.0 * slow, False, True, category="negation"),
                rec(engine, "single", article, "unanswerable", 12.0 * slow, False, False, category="swapped entity"),
            ]
    cases.append(rec("ours", "all", "alpha-town", "answerable", 6.0, True, False, category="when"))
    cases.append(rec("ours", "all", "beta-river", "unanswerable", 6.0, False, True, category="negation"))
    return {
        "command": "python -m benchmarks.squad --limit-articles 2",
        "commit": "abc1234-dirty",
        "before": None,
        "date": "2026-12-01T10:00",
        "machine": "2 cores (Test CPU)",
        "attribution": squad_data.ATTRIBUTION,
        "split": "test",
        "options": {"answerable": 2, "unanswerable": 2, "all_together": 1, "baseline_every": 1},
        "articles": {
            "alpha-town": {"title": "Alpha Town", "split": "test"},
            "beta-river": {"title": "Beta River", "split": "test"},
        },
        "chosen": ["alpha-town", "beta-river"],
        "complete": True,
        "loading": {"ours": 4.2},
        "warm_up": [
            {"engine": "ours", "mode": "single", "scope": "alpha-town", "seconds": 61.5, "how": "computed"},
            {"engine": "ours", "mode": "all", "scope": None, "seconds": 0.1, "how": "skipped"},
        ],
        "cases": cases,
    }


def test_render_writes_the_section_between_markers(tmp_path):
    results = tmp_path / "squad.json"
    results.write_text(json.dumps(fake_results()), encoding="utf-8")
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nEarlier text.\n", encoding="utf-8")
    assert squad.main(["--render", str(results), "--markdown", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nEarlier text.\n\n<!-- squad:start -->\n## Real articles: SQuAD 2.0\n")
    assert text.count(squad_report.START) == 1 and text.rstrip().endswith(squad_report.END)
    assert "`abc1234-dirty`" in text and "`python -m benchmarks.squad --limit-articles 2`" in text
    assert "CC BY-SA 4.0" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    alpha = next(r for r in rows if r.startswith("| Alpha Town | this tree"))
    # 1 of 2 answerable right, 1 of 2 unanswerable refused, 1 false refusal, the one answer cites gold, p50 5.5 s
    # each share with its 95 % interval, which on two cases spans most of the range
    assert "| 4 (2+2) | 0.50 (0.09–0.91) | 0.50 (0.09–0.91) | 0.50 (0.09–0.91) | 1.00 | 0.50 | 0.00 | 5.5 s |" in alpha
    assert alpha.endswith("| 61.5 s |")
    assert any(r.startswith("| **overall** | tutorial") and "| – |" in r for r in rows)  # no citations
    assert any(r.startswith("| **overall** | this tree") and r.endswith("| 0.1 s |") for r in rows)  # all together
    assert "single article whole answer p50 ≤ 5 s, p95 ≤ 10 s; all twelve together p50 ≤ 8 s" in text
    assert "whole answer p95 12.00 s, target ≤ 10.00 s (2.00 s over)" in text
    assert "answerable right 0.50, target ≥ 0.80 (0.30 short)" in text
    assert "citation of gold paragraph" not in text.split("Where a target is missed")[1], "1.00 meets its target"
    assert "tutorial:" not in text.split("Where a target is missed")[1], "targets are the assistant's"
    kinds = text.split("Which questions fail, by kind")[1]
    assert "| unanswerable, how it was made | single: questions | single: refused | single: trap given | all: " in kinds
    assert "| negation | 2 | 1.00 | 0.00 | 1 | 1.00 | 0.00 |" in kinds  # this tree only, not the tutorial
    assert "| swapped entity | 2 | 0.00 | 1.00 | 0 | – | – |" in kinds
    assert "| who | 2 | 1.00 | 0.00 | 0 | – | – |" in kinds and "| what/which | 2 | 0.00 | 1.00 |" in kinds
    assert "| when | 0 | – | – | 1 | 1.00 | 0.00 |" in kinds and "| antonym |" not in kinds  # no such question

    report.write_text(text.replace("Alpha Town", "Old Name") + "\nAfter.\n", encoding="utf-8")
    assert squad.main(["--render", str(results), "--markdown", str(report)]) == 0
    again = report.read_text(encoding="utf-8")
    assert again.count(squad_report.START) == 1 and "Old Name" not in again and again.endswith("\nAfter.\n")


# ----- kinds of question -------------------------------------------------------------------------------------------
# A made-up paragraph: the last sentence holds the trap, the one before it is its window's too (a pronoun's name is
# often there), and the first is elsewhere in the paragraph.
HARBOUR = (
    "The old harbour of Porto Vela was dug by fishermen in 1821. "
    "Its trade in salt grew for decades. "
    "In 1840 the merchant Anna Ruiz built the first stone lighthouse at its northern pier."
)


@pytest.mark.parametrize(
    ("question", "trap", "kind"),
    [
        ("Who did not build the first stone lighthouse at the northern pier?", "Anna Ruiz", "negation"),
        ("Who built the first stone lighthouse at the southern pier?", "Anna Ruiz", "antonym"),
        ("Who built the last stone lighthouse at the northern pier?", "Anna Ruiz", "antonym"),
        ("Who built the first stone lighthouse at the northern pier before 1790?", "Anna Ruiz", "impossible condition"),
        ("Who built the tallest stone lighthouse at the northern pier?", "Anna Ruiz", "impossible condition"),
        ("Who built the first stone lighthouse at the northern pier in 1855?", "Anna Ruiz", "swapped entity"),
        ("Who built the first stone lighthouse in Santa Lucia?", "Anna Ruiz", "swapped entity"),
        (
            "What did the merchant build at the harbour besides the lighthouse?",
            "the first stone lighthouse",
            "neighbouring thing",
        ),
        ("Who built the first stone lighthouse for the fishermen?", "Anna Ruiz", "neighbouring thing"),
        ("Who painted the first stone lighthouse at the northern pier?", "Anna Ruiz", "other word changed"),
        ("Whose first stone lighthouse was built at the northern pier?", "Anna Ruiz", "other"),
    ],
)
def test_the_tagger_names_how_an_unanswerable_question_was_made(question, trap, kind):
    assert squad_kinds.unanswerable_kind(question, HARBOUR, [trap]) == kind


def test_an_antonym_made_with_a_prefix():
    said = "In 1902 Ada Stone opened the finished bridge."
    assert squad_kinds.unanswerable_kind("Who opened the unfinished bridge?", said, ["Ada Stone"]) == "antonym"


def test_a_negation_elsewhere_in_the_sentence_or_a_numero_is_no_negation():
    paragraph = "The bridge was not painted for years. In 1902 the town council rebuilt the bridge in stone."
    assert (
        squad_kinds.unanswerable_kind("What did the town council not rebuild in 1902?", paragraph, ["the bridge"])
        == "negation"
    )
    said = "Workers did not strike, and the mill at Dock No. 4 made 300 tonnes of paper a year."
    assert squad_kinds.unanswerable_kind("How much paper did the mill make?", said, ["300 tonnes"]) != "negation"
    assert squad_kinds.unanswerable_kind("How much paper did the mill at Dock No. 4 make?", said, ["300"]) != "negation"


def test_the_trap_sentence_is_the_one_holding_the_trap():
    sentence, window = squad_kinds.trap_window("Who dug the harbour?", HARBOUR, ["Anna Ruiz"])
    assert sentence.startswith("In 1840") and window == "Its trade in salt grew for decades. " + sentence
    sentence, window = squad_kinds.trap_window("Who dug the harbour?", HARBOUR, ["not in the text"])
    assert sentence.startswith("The old harbour") and window == sentence  # no trap: the closest sentence


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who founded the guild?", "who"),
        ("Whose ships reached the port?", "who"),
        ("When did the fair open?", "when"),
        ("In what year did the fair open?", "when"),
        ("How many ships reached the port?", "how many/much"),
        ("How long did the siege last?", "how many/much"),
        ("Where did the ships land?", "where"),
        ("Which city hosted the fair?", "where"),
        ("What did the guild sell?", "what/which"),
        ("The fair sold which goods?", "what/which"),
        ("Why did the fair close?", "why/how"),
        ("How did the guild grow?", "why/how"),
        ("Name of the guild's founder", "other"),
    ],
)
def test_an_answerable_question_is_tagged_by_its_wh_word(question, kind):
    assert squad_kinds.wh_kind(question) == kind
    assert squad_kinds.question_kind(question, HARBOUR, (), answerable=True) == kind


def test_records_hold_the_category_and_old_runs_read_it_from_the_data(data_file, tmp_path):
    cases = {
        c.qid: c
        for cs in squad_data.build_corpus(squad_data.load_articles(data_file), tmp_path / "c").values()
        for c in cs
    }
    rec = squad_run.record(cases["a5"], "ours", "single", {"text": "In 1901.", "abstained": False}, True)
    assert rec["category"] == "other word changed"  # "flood" for "burned": a word the paragraph does not have
    assert squad_run.record(cases["a1"], "ours", "single", {"abstained": True}, True)["category"] == "when"
    old = {"data": str(data_file), "cases": [{k: v for k, v in rec.items() if k != "category"}]}
    assert [r["category"] for r in squad_report.with_categories(old)] == ["other word changed"]
    gone = {"data": str(tmp_path / "gone.json"), "cases": old["cases"]}
    assert [r.get("category") for r in squad_report.with_categories(gone)] == [None]  # not known, and no error


def test_a_refusal_that_says_what_the_article_says_counts_as_corrected():
    assert squad_report.corrected("The article does not say that the governor opened it; it says the mayor did.")
    assert not squad_report.corrected("The article does not say.")
    assert not squad_report.corrected("The mayor opened it.")
    refused = {"kind": "unanswerable", "abstained": True, "scores": {"refused": True, "trap": False}}
    records = [
        {**refused, "reply": "The article does not say.", "timings": {"total": 4.0}},
        {**refused, "reply": "The article does not say that X; it says Y.", "timings": {"total": 9.0, "correct": 6.0}},
    ]
    f = squad_report.figures(records)
    assert f["corrected"] == 0.5 and f["refusal_shown_p50"] == 3.5  # 4.0 and 9.0 - 6.0: shown before the correction
