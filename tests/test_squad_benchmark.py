"""benchmarks/squad.py without any model: scoring, the fixed sample and split, the corpus it builds, and --render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import squad
from benchmarks.squad import Case

REAL_DATA = squad.DEFAULT_DATA


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
    assert squad.normalize_answer("The Edict of Nantes!") == "edict of nantes"
    assert squad.normalize_answer("  An apple,  a PEAR;\tthe plum. ") == "apple pear plum"
    assert squad.normalize_answer("one-eighth (about)") == "oneeighth about"
    assert squad.normalize_answer("theatre and anthem") == "theatre and anthem"  # only whole words go


def test_an_answer_must_be_in_the_reply_as_whole_words():
    assert squad.contains_answer("It ended with the Edict of Nantes [1].", ["the Edict of Nantes"])
    assert squad.contains_answer("From 1562 to 1598.", ["562 to 1598", "1562 to 1598"])
    assert not squad.contains_answer("From 1562 to 1598.", ["562 to 1598"])
    assert not squad.contains_answer("It was founded then [1].", ["1"])  # a citation marker is not an answer
    assert not squad.contains_answer("Anything.", ["the", ""])  # a gold answer that normalises to nothing never hits


def test_scores_of_an_answerable_question():
    cited = [{"passage_id": "alpha-town:p2", "doc_id": "alpha-town", "number": 2}]
    right = squad.score(case(), {"text": "The Edict of Nantes [1].", "abstained": False, "citations": cited})
    assert right == {"right": True, "refused": None, "false_refusal": False, "citation_gold": True, "trap": None}
    wrong = squad.score(case(), {"text": "The Peace of Augsburg.", "abstained": False, "citations": []})
    assert wrong["right"] is False and wrong["citation_gold"] is False
    refused = squad.score(case(), {"text": "The article does not say.", "abstained": True})
    assert refused["right"] is False and refused["false_refusal"] is True and refused["citation_gold"] is None
    by_id = squad.score(case(), {"text": "Edict of Nantes", "citations": [{"passage_id": "alpha-town:p2"}]})
    assert by_id["citation_gold"] is True
    other = squad.score(case(), {"text": "Edict of Nantes", "citations": [{"passage_id": "alpha-town:p3"}]})
    assert other["citation_gold"] is False
    tutorial = squad.score(case(), {"text": "Edict of Nantes", "abstained": False}, cites=False)
    assert tutorial["right"] is True and tutorial["citation_gold"] is None


def test_scores_of_an_unanswerable_question():
    trap = case("unanswerable", answers=(), traps=("1562",))
    assert squad.score(trap, {"text": "The article does not say.", "abstained": True})["refused"] is True
    fell = squad.score(trap, {"text": "In 1562 [1].", "abstained": False})
    assert fell["refused"] is False and fell["trap"] is True and fell["right"] is None
    assert squad.score(trap, {"text": "In 1600.", "abstained": False})["trap"] is False
    failed = squad.score(trap, {"error": "ModelUnavailable: gone", "abstained": True})
    assert failed["refused"] is False  # an error is not a refusal


# ----- corpus, split and sample ----------------------------------------------------------------------------------
def test_the_corpus_maps_every_paragraph_to_its_passage(data_file, tmp_path):
    articles = squad.load_articles(data_file)
    assert [a.slug for a in articles] == ["alpha-town", "beta-river"]
    assert [a.title for a in articles] == ["Alpha Town", "Beta River"]
    corpus = tmp_path / "corpus"
    cases = squad.build_corpus(articles, corpus)
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
    assert squad.write_corpus(articles, corpus) == 0, "a second build reuses the files (and so the index)"


def test_a_paragraph_the_loader_takes_for_a_heading_stops_the_run(tmp_path):
    data = tiny_squad()
    data["data"][0]["paragraphs"].insert(0, {"context": "Geography and climate", "qas": []})
    path = tmp_path / "heading.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(squad.SquadError, match="Paragraph 1 of 'Beta River' became no passage"):
        squad.build_corpus(squad.load_articles(path), tmp_path / "corpus")


def test_the_split_is_by_article_sorted_titles_alternating(tmp_path):
    data = {"version": "v2.0", "data": []}
    for title in ["Delta", "alpha", "Charlie", "Bravo", "Echo", "Foxtrot"]:
        data["data"].append({"title": title, "paragraphs": [{"context": f"{title} is a word here.", "qas": []}]})
    path = tmp_path / "six.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    splits = {a.title: a.split for a in squad.load_articles(path)}
    assert splits == {
        "alpha": "dev",
        "Bravo": "test",
        "Charlie": "dev",
        "Delta": "test",
        "Echo": "dev",
        "Foxtrot": "test",
    }
    articles = squad.load_articles(path)
    dev = {a.slug for a in squad.choose_articles(articles, "dev", None, None)}
    test = {a.slug for a in squad.choose_articles(articles, "test", None, None)}
    assert dev.isdisjoint(test) and len(dev | test) == 6
    assert [a.slug for a in squad.choose_articles(articles, "test", None, 2)] == ["bravo", "delta"]
    assert [a.slug for a in squad.choose_articles(articles, "all", ["echo"], None)] == ["echo"]
    with pytest.raises(squad.SquadError, match="No article nope"):
        squad.choose_articles(articles, "all", ["nope"], None)


@pytest.mark.skipif(not REAL_DATA.is_file(), reason="the SQuAD 2.0 file is not on this machine")
def test_the_real_data_splits_six_and_six_with_no_article_in_both():
    articles = squad.load_articles(REAL_DATA)
    dev = [a.slug for a in articles if a.split == "dev"]
    test = [a.slug for a in articles if a.split == "test"]
    assert len(dev) == len(test) == 6 and not set(dev) & set(test)


def test_the_sample_is_fixed_and_alternates_kinds(data_file, tmp_path):
    articles = squad.load_articles(data_file)
    cases = squad.build_corpus(articles, tmp_path / "corpus")["alpha-town"]
    first = squad.article_sample(cases, "alpha-town", 3, 2)
    again = squad.article_sample(list(reversed(cases)), "alpha-town", 3, 2)
    assert [c.qid for c in first] == [c.qid for c in again], "the same on every run, whatever the input order"
    assert [c.kind for c in first] == ["answerable", "unanswerable", "answerable", "unanswerable", "answerable"]
    smaller = squad.article_sample(cases, "alpha-town", 2, 1)
    assert [c.qid for c in smaller] == [c.qid for c in first[:3]], "a smaller sample is a prefix"
    together = squad.together_sample(first, 1)
    assert [c.qid for c in together] == [c.qid for c in first[:2]]
    assert len(squad.article_sample(cases, "alpha-town", 50, 50)) == len(cases)


def test_engines_take_turns_going_first_and_the_tutorial_every_nth_case(data_file, tmp_path):
    cases = squad.build_corpus(squad.load_articles(data_file), tmp_path / "corpus")["alpha-town"]
    jobs = squad.schedule([("single", "alpha-town", cases)], ["ours", "before", "tutorial"], 2)
    assert [len(names) for *_, names in jobs] == [3, 2, 3, 2, 3, 2, 3]
    # each set of engines rotates on its own: every engine goes first in turn
    assert [names[0] for *_, names in jobs if len(names) == 3] == ["ours", "before", "tutorial", "ours"]
    assert [names[0] for *_, names in jobs if len(names) == 2] == ["ours", "before", "ours"]
    assert all(sorted(names) == sorted(set(names)) for *_, names in jobs)
    assert [names for *_, names in squad.schedule([("all", None, cases[:2])], ["ours"], 0)] == [["ours"], ["ours"]]


def test_the_worker_script_compiles():
    compile(squad.WORKER, "worker", "exec")
    assert "def handle(bot, job" in squad.WORKER


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
    worker = squad.WorkerEngine("before", tree, tmp_path / "corpus", tmp_path / "index")
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
    def rec(engine, mode, article, kind, total, right, abstained, cited=True):
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
                rec(engine, "single", article, "answerable", 4.0 * slow, True, False),
                rec(engine, "single", article, "answerable", 7.0 * slow, False, True),
                rec(engine, "single", article, "unanswerable", 3.0 * slow, False, True),
                rec(engine, "single", article, "unanswerable", 12.0 * slow, False, False),
            ]
    cases.append(rec("ours", "all", "alpha-town", "answerable", 6.0, True, False))
    cases.append(rec("ours", "all", "beta-river", "unanswerable", 6.0, False, True))
    return {
        "command": "python -m benchmarks.squad --limit-articles 2",
        "commit": "abc1234-dirty",
        "before": None,
        "date": "2026-12-01T10:00",
        "machine": "2 cores (Test CPU)",
        "attribution": squad.ATTRIBUTION,
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
    assert text.count(squad.START) == 1 and text.rstrip().endswith(squad.END)
    assert "`abc1234-dirty`" in text and "`python -m benchmarks.squad --limit-articles 2`" in text
    assert "CC BY-SA 4.0" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    alpha = next(r for r in rows if r.startswith("| Alpha Town | this tree"))
    # 1 of 2 answerable right, 1 of 2 unanswerable refused, 1 false refusal, the one answer cites gold, p50 5.5 s
    assert "| 4 (2+2) | 0.50 | 0.50 | 0.50 | 1.00 | 0.50 | 5.5 s |" in alpha and alpha.endswith("| 61.5 s |")
    assert any(r.startswith("| **overall** | tutorial") and "| – |" in r for r in rows)  # no citations
    assert any(r.startswith("| **overall** | this tree") and r.endswith("| 0.1 s |") for r in rows)  # all together
    assert "single article whole answer p50 ≤ 5 s, p95 ≤ 10 s; all twelve together p50 ≤ 8 s" in text
    assert "whole answer p95 12.00 s, target ≤ 10.00 s (2.00 s over)" in text
    assert "answerable right 0.50, target ≥ 0.85 (0.35 short)" in text
    assert "citation of gold paragraph" not in text.split("Where a target is missed")[1], "1.00 meets its target"
    assert "tutorial:" not in text.split("Where a target is missed")[1], "targets are the assistant's"

    report.write_text(text.replace("Alpha Town", "Old Name") + "\nAfter.\n", encoding="utf-8")
    assert squad.main(["--render", str(results), "--markdown", str(report)]) == 0
    again = report.read_text(encoding="utf-8")
    assert again.count(squad.START) == 1 and "Old Name" not in again and again.endswith("\nAfter.\n")
