"""Tests of the conversations stage: the SQLite store (per-user, durable through kill -9), Markdown export, and
feedback exported as eval cases that `assistant eval` loads."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
import yaml
from pydantic import SecretStr

from assistant.cli import main as cli_main
from assistant.eval import export_cases, load_suite, plan_cases
from assistant.index.corpus import corpus_hash, load_passages
from assistant.settings import PROJECT_ROOT, Settings
from assistant.store import conversations
from assistant.store.conversations import (
    ConversationError,
    ConversationNotFound,
    ConversationStore,
    Feedback,
    make_title,
    open_store,
)
from assistant.store.transcript import conversation_markdown

CORPUS = PROJECT_ROOT / "corpus"
DOCUMENTS, PASSAGES = load_passages(CORPUS)
HASH = corpus_hash(DOCUMENTS)
TITLE = DOCUMENTS[0].title
COLBY = "US Under Secretary of War Eldridge Colby"  # verbatim from corpus/nato-3-0.txt, ¶2, once
BRUSSELS = "NATO’s latest gathering in Brussels"  # ¶1, once


def citation(index: int, quote: str) -> dict:
    """A citation as Answer.to_dict() gives it, of a real quote of the corpus."""
    passage = next(p for p in PASSAGES if quote in p.text)
    start = DOCUMENTS[0].text.index(quote)
    return {
        "index": index,
        "passage_id": passage.passage_id,
        "text": passage.text,
        "quote": quote,
        "start": start,
        "end": start + len(quote),
        "source": passage.source,
        "doc_id": passage.doc_id,
        "title": passage.title,
        "number": passage.number,
        "section": passage.section,
        "passage_start": passage.start,
        "passage_end": passage.end,
    }


ANSWER = {
    "question": "Who spoke of NATO 3.0, and where?",
    "text": "Eldridge Colby spoke of NATO 3.0 [1]. It was at the gathering in Brussels [2].",
    "abstained": False,
    "reason": "answered",
    "citations": [citation(1, COLBY), citation(2, BRUSSELS)],
}
REFUSAL = {"question": "What did Macron say?", "text": "The article does not say.", "abstained": True}
HISTORY = [
    {"role": "user", "content": "Who is NATO's Secretary General?"},
    {"role": "assistant", "content": "Mark Rutte is NATO's Secretary General [1]."},
]


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "assistant.db") as opened:
        yield opened


def chat(store, user: str, question: str, answer: dict | None = None) -> tuple[str, int]:
    """A conversation of one finished turn."""
    cid = store.create(user, question, None)
    position = store.start_turn(cid, user, question)
    answer = answer or {"text": f"About {question}", "citations": []}
    store.update_turn(cid, user, position, answer["text"], answer, state="done")
    return cid, position


def rate(store, user, cid, position, rating, note="", kind=None, *, answer=ANSWER, history=(), corpus=HASH) -> int:
    return store.add_feedback(
        user,
        cid,
        position,
        rating,
        note,
        kind,
        question=answer["question"],
        history=list(history),
        answer=answer,
        corpus_hash=corpus,
        settings={"top_k": 4},
    )


# ----- the store ----------------------------------------------------------------------------------------------------
def test_create_list_get_delete(store):
    cid = store.create("", "Who spoke of NATO 3.0?", "nato-3-0")
    assert len(cid) == 32 and int(cid, 16) >= 0  # uuid4 hex
    first = store.start_turn(cid, "", "Who spoke of NATO 3.0?")
    store.update_turn(cid, "", first, ANSWER["text"], ANSWER, state="done")
    second = store.start_turn(cid, "", "And where?")
    assert (first, second) == (0, 1)

    [summary] = store.list("")
    assert (summary.id, summary.title, summary.scope, summary.turns) == (cid, "Who spoke of NATO 3.0?", "nato-3-0", 2)
    got = store.get("", cid)
    assert [t.question for t in got.turns] == ["Who spoke of NATO 3.0?", "And where?"]
    assert got.turns[0].answer == ANSWER["text"] and got.turns[0].answer_json == ANSWER
    assert got.turns[0].state == "done" and got.turns[0].citations == ANSWER["citations"]
    assert (got.turns[1].answer, got.turns[1].answer_json, got.turns[1].state) == ("", None, "streaming")

    rate(store, "", cid, 0, 1)
    assert store.delete("", cid) is True
    assert store.list("") == [] and store.list_feedback() == []
    assert store.delete("", cid) is False
    with pytest.raises(ConversationNotFound):
        store.get("", cid)
    assert store._conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0


def test_title_is_the_first_question_cut_to_80_characters():
    assert make_title("  Who spoke\nof NATO 3.0? ") == "Who spoke of NATO 3.0?"
    long = make_title("word " * 40)
    assert len(long) == 80 and long.endswith("…")


def test_users_never_see_or_change_each_others_rows(store):
    bob, bob_turn = chat(store, "bob", "Bob's question")
    ann, _ = chat(store, "ann", "Ann's question")
    nobody, _ = chat(store, "", "A question without auth")
    rate(store, "bob", bob, bob_turn, -1, "Mark Rutte")

    assert [s.id for s in store.list("ann")] == [ann]
    assert [s.id for s in store.list("")] == [nobody]
    with pytest.raises(ConversationNotFound):
        store.get("ann", bob)
    with pytest.raises(ConversationNotFound):
        conversation_markdown(store.get("ann", bob))
    assert store.delete("ann", bob) is False
    with pytest.raises(ConversationNotFound):
        store.start_turn(bob, "ann", "sneaky")
    with pytest.raises(ConversationNotFound):
        store.update_turn(bob, "ann", bob_turn, "overwritten", state="done")
    with pytest.raises(ConversationNotFound):
        rate(store, "ann", bob, bob_turn, 1)

    assert store.list_feedback("ann") == [] and store.list_feedback("") == []
    assert [f.user for f in store.list_feedback("bob")] == ["bob"]
    assert store.get("bob", bob).turns[0].answer == "About Bob's question"  # untouched
    assert len(store.get("bob", bob).turns) == 1


def test_list_is_most_recently_active_first(store):
    first, _ = chat(store, "", "first")
    second, _ = chat(store, "", "second")
    third, _ = chat(store, "", "third")
    assert [s.id for s in store.list("")] == [third, second, first]
    store.start_turn(first, "", "a follow-up")  # activity moves a conversation to the top
    assert [s.id for s in store.list("")] == [first, third, second]


def test_update_turn_keeps_the_stored_json_and_checks_its_arguments(store):
    cid, position = chat(store, "", "q", ANSWER)
    store.update_turn(cid, "", position, "edited", state="error")
    turn = store.get("", cid).turns[0]
    assert (turn.answer, turn.answer_json, turn.state) == ("edited", ANSWER, "error")
    with pytest.raises(ConversationError, match="state"):
        store.update_turn(cid, "", position, "x", state="finished")
    with pytest.raises(ConversationNotFound):
        store.update_turn(cid, "", 5, "x")


def test_a_streaming_turn_survives_reopening_with_its_partial_text(tmp_path):
    path = tmp_path / "assistant.db"
    with ConversationStore(path) as store:
        cid = store.create("", "Who spoke of NATO 3.0?")
        position = store.start_turn(cid, "", "Who spoke of NATO 3.0?")
        store.update_turn(cid, "", position, "Eldridge Colby spoke")
    with ConversationStore(path) as store:
        turn = store.get("", cid).turns[position]
        assert (turn.answer, turn.state) == ("Eldridge Colby spoke", "streaming")
        assert "*(interrupted" in conversation_markdown(store.get("", cid))
        version, mode = (
            store._conn.execute("PRAGMA user_version").fetchone()[0],
            store._conn.execute("PRAGMA journal_mode").fetchone()[0],
        )
        assert (version, mode) == (conversations.SCHEMA_VERSION, "wal")


def test_a_database_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "assistant.db"
    ConversationStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {conversations.SCHEMA_VERSION + 1}")
    with pytest.raises(ConversationError, match="newer version"):
        ConversationStore(path)


def test_open_store_makes_the_data_folder(tmp_path):
    settings = Settings(data_dir=tmp_path / "new" / "folder")
    with open_store(settings) as store:
        assert store.path == tmp_path / "new" / "folder" / "assistant.db" and store.path.exists()


def test_worker_threads_share_one_store(store):
    errors = []

    def worker(user: str) -> None:
        try:
            cid = store.create(user, f"{user}'s question")
            for i in range(3):
                position = store.start_turn(cid, user, f"question {i}")
                for n in range(10):
                    store.update_turn(cid, user, position, f"sentence {n}.")
                store.update_turn(cid, user, position, "done.", {"text": "done."}, state="done")
                store.list(user)
        except Exception as exc:  # reported below: an exception in a thread does not fail the test by itself
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"user{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i in range(6):
        [summary] = store.list(f"user{i}")
        assert summary.turns == 3
        assert {t.state for t in store.get(f"user{i}", summary.id).turns} == {"done"}


# ----- feedback -----------------------------------------------------------------------------------------------------
def test_feedback_keeps_copies_but_never_the_api_key(store):
    cid, position = chat(store, "ann", ANSWER["question"], ANSWER)
    settings = Settings(llm_api_key=SecretStr("sk-secret"), auth="ann:pw", data_dir=store.path.parent)
    fid = store.add_feedback(
        "ann",
        cid,
        position,
        -1,
        "Colby",
        "correct_answer",
        question=ANSWER["question"],
        history=HISTORY,
        answer=ANSWER,
        corpus_hash=HASH,
        settings=settings,
    )
    [item] = store.list_feedback("ann")
    assert (item.id, item.conversation_id, item.position, item.rating, item.note, item.kind) == (
        fid,
        cid,
        position,
        -1,
        "Colby",
        "correct_answer",
    )
    assert item.history == HISTORY and item.answer == ANSWER and item.citations == ANSWER["citations"]
    assert item.settings["top_k"] == settings.retrieval.top_k and "llm_api_key" not in item.settings
    assert "auth" not in item.settings
    rate(store, "ann", cid, position, 1)  # a dict of settings is cleaned too
    raw = store._conn.execute("SELECT settings FROM feedback").fetchall()
    assert all("sk-secret" not in row[0] and "pw" not in row[0] for row in raw)
    store.add_feedback(
        "ann", cid, position, 1, question="q", history=[], answer={}, corpus_hash="h", settings={"llm_api_key": "k"}
    )
    assert "llm_api_key" not in store.list_feedback("ann")[0].settings


def test_rating_a_turn_again_replaces_the_rating_and_keeps_its_id(store):
    cid, position = chat(store, "", "q", ANSWER)
    first = rate(store, "", cid, position, 1)
    again = rate(store, "", cid, position, -1, kind="not_in_article")
    assert first == again
    [item] = store.list_feedback()
    assert (item.rating, item.kind) == (-1, "not_in_article")


def test_feedback_checks_rating_kind_and_turn(store):
    cid, position = chat(store, "", "q", ANSWER)
    with pytest.raises(ConversationError, match="rating"):
        rate(store, "", cid, position, 0)
    with pytest.raises(ConversationError, match="rating"):
        rate(store, "", cid, position, True)
    with pytest.raises(ConversationError, match="kind"):
        rate(store, "", cid, position, -1, kind="wrong")
    with pytest.raises(ConversationNotFound):
        rate(store, "", cid, position + 1, -1)
    assert store.list_feedback() == []


# ----- Markdown -----------------------------------------------------------------------------------------------------
def test_export_markdown_turns_markers_into_footnotes_quoting_the_spans(store):
    cid = store.create("", "Who spoke of NATO 3.0, and where?")
    first = store.start_turn(cid, "", ANSWER["question"])
    store.update_turn(cid, "", first, ANSWER["text"], ANSWER, state="done")
    second = store.start_turn(cid, "", "Say it again?")
    again = {"text": "It was Colby [1].", "citations": [citation(1, COLBY)]}
    store.update_turn(cid, "", second, again["text"], again, state="done")

    markdown = conversation_markdown(store.get("", cid))
    assert markdown.startswith("# Who spoke of NATO 3.0, and where?\n")
    assert f"**Q:** {ANSWER['question']}" in markdown and "**Q:** Say it again?" in markdown
    assert "Eldridge Colby spoke of NATO 3.0[^1]. It was at the gathering in Brussels[^2]." in markdown
    assert f'[^1]: "{COLBY}" — {TITLE}, ¶2' in markdown
    assert f'[^2]: "{BRUSSELS}" — {TITLE}, ¶1' in markdown
    # footnote labels are one namespace per document: the second answer's [1] continues the numbering
    assert "It was Colby[^3]." in markdown and f'[^3]: "{COLBY}" — {TITLE}, ¶2' in markdown
    assert "[1]" not in markdown and "[2]" not in markdown
    lines = markdown.splitlines()
    assert lines.index(f'[^2]: "{BRUSSELS}" — {TITLE}, ¶1') < lines.index("**Q:** Say it again?")


def test_markdown_leaves_a_marker_without_its_citation_alone():
    turn = conversations.Turn.stored(0, "q", "Said [1] and [7].", {"citations": [citation(1, COLBY)]}, "error")
    markdown = conversation_markdown(conversations.Conversation("c", "", "t", None, 0.0, 0.0, [turn]))
    assert "Said[^1] and [7]. *(the answer failed)*" in markdown


def test_markdown_quotes_a_refusals_nearest_passage_as_such_and_never_as_a_footnote(store):
    cid = store.create("", "Who opened the bridge?")
    position = store.start_turn(cid, "", "Who opened the bridge?")
    refusal = {"text": "The article does not say.", "abstained": True, "citations": [], "closest": citation(1, COLBY)}
    store.update_turn(cid, "", position, refusal["text"], refusal, state="done")

    lines = conversation_markdown(store.get("", cid)).splitlines()
    quote = f'> Nearest passage, not an answer: "{COLBY}" — {TITLE}, ¶2'
    assert lines.index("The article does not say.") < lines.index(quote)
    assert not any(line.startswith("[^") for line in lines)
    # an answer without a nearest passage (or from before the field existed) exports as before
    store.update_turn(cid, "", position, refusal["text"], {**refusal, "closest": None}, state="done")
    assert "Nearest passage" not in conversation_markdown(store.get("", cid))


# ----- feedback as eval cases ---------------------------------------------------------------------------------------
def feedback(fid, rating, note="", kind=None, *, answer=ANSWER, history=(), corpus=HASH, position=0) -> Feedback:
    return Feedback(
        fid,
        "c0ffee",
        position,
        "",
        rating,
        note,
        kind,
        answer["question"],
        list(history),
        answer,
        list(answer.get("citations", [])),
        corpus,
        {},
        1_700_000_000.0,
    )


def write_yaml(path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_export_cases_makes_the_three_kinds_and_the_file_loads(tmp_path):
    items = [
        feedback(1, -1, kind="not_in_article", answer=REFUSAL | {"question": "What did Macron say?"}),
        feedback(2, -1, "Mark Rutte", "correct_answer", history=HISTORY, position=1),
        feedback(3, 1),
    ]
    data = export_cases(items, include_positive=True, documents=DOCUMENTS, corpus_hash=HASH)
    refuse, corrected, kept = data["cases"]
    assert data["split"] == "dev"
    assert (refuse["id"], refuse["answers"], "evidence" not in refuse) == ("feedback-1", [], True)
    assert corrected["id"] == "feedback-2" and corrected["answers"] == ["Mark Rutte"]
    assert "Mark Rutte" in corrected["evidence"][0]
    assert corrected["history"] == [
        {"role": "user", "content": "Who is NATO's Secretary General?"},
        {"role": "assistant", "content": "Mark Rutte is NATO's Secretary General."},  # without its marker
    ]
    assert kept["answers"] == ["Eldridge Colby spoke of NATO 3.0. It was at the gathering in Brussels."]
    assert kept["evidence"] == [COLBY, BRUSSELS]
    assert all("history" not in c for c in (refuse, kept))
    assert all(c["tags"] == ["feedback"] and "From feedback" in c["note"] for c in data["cases"])
    assert "turn 2 of conversation c0ffee" in corrected["note"]

    path = tmp_path / "feedback.yaml"
    write_yaml(path, data)
    suite = load_suite(path, CORPUS)
    by_id = {c.id: c for c in suite.cases}
    assert by_id["feedback-1"].must_refuse
    assert by_id["feedback-2"].answers == ("Mark Rutte",) and len(by_id["feedback-2"].history) == 2
    assert [e.quote for e in by_id["feedback-3"].evidence] == [COLBY, BRUSSELS]
    assert by_id["feedback-3"].evidence[0].start == DOCUMENTS[0].text.index(COLBY)


def test_positive_ratings_only_on_request_and_a_rated_refusal_must_be_refused():
    items = [feedback(1, 1), feedback(2, 1, answer=REFUSAL)]
    assert plan_cases(items, documents=DOCUMENTS).cases == []
    cases = plan_cases(items, include_positive=True, documents=DOCUMENTS).cases
    assert [c["answers"] for c in cases][1] == []


def test_a_quote_found_twice_is_replaced_by_its_passage(tmp_path):
    ambiguous = citation(1, COLBY) | {"quote": "NATO"}
    answer = ANSWER | {"text": "Colby [1].", "citations": [ambiguous]}
    [case] = plan_cases([feedback(1, 1, answer=answer)], include_positive=True, documents=DOCUMENTS).cases
    assert case["evidence"] == [ambiguous["text"]]
    write_yaml(tmp_path / "f.yaml", {"cases": [case]})
    assert load_suite(tmp_path / "f.yaml", DOCUMENTS).cases[0].evidence[0].doc_id == "nato-3-0"


def test_feedback_that_makes_no_case_is_reported_with_a_draft():
    items = [
        feedback(1, -1),  # thumbs down, nothing said
        feedback(2, -1, "the Moon landing of 1969"),  # a note the article does not hold
        feedback(3, 1, answer=ANSWER | {"citations": []}),
    ]
    export = plan_cases(items, include_positive=True, documents=DOCUMENTS)
    assert export.cases == []
    assert [s.feedback_id for s in export.skipped] == [1, 2, 3]
    assert export.skipped[0].draft is None
    draft = export.skipped[1].draft
    assert draft["answers"] == ["the Moon landing of 1969"] and draft["id"] == "feedback-2"


def test_feedback_on_another_corpus_is_exported_and_marked():
    export = plan_cases([feedback(1, -1, kind="not_in_article", corpus="0" * 64)], corpus_hash=HASH)
    [case] = export.cases
    assert "other-corpus" in case["tags"] and "another corpus" in case["note"]
    assert export.notes and "another corpus" in export.notes[0]


# ----- command line -------------------------------------------------------------------------------------------------
@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(folder))
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(CORPUS))
    return folder


def test_cli_lists_and_exports_feedback(data_dir, tmp_path, capsys):
    assert cli_main(["feedback", "list"]) == 0
    assert "No feedback yet" in capsys.readouterr().out
    with open_store(Settings(data_dir=data_dir)) as store:
        cid, position = chat(store, "ann", ANSWER["question"], ANSWER)
        rate(store, "ann", cid, position, 1)
        cid2, position2 = chat(store, "bob", "What did Macron say?", REFUSAL)
        rate(store, "bob", cid2, position2, -1, "Nothing, he is not in it", "not_in_article", answer=REFUSAL)

    assert cli_main(["feedback", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "rating", "created", "kind", "question", "note"]
    assert table[1].split()[:2] == ["1", "+1"] and "Who spoke of NATO 3.0" in table[1]
    assert table[2].split()[:2] == ["2", "-1"] and "not_in_article" in table[2] and "Nothing, he is" in table[2]

    out = tmp_path / "feedback.yaml"
    assert cli_main(["feedback", "export", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Wrote 1 case(s)" in printed and f"assistant eval {out}" in printed
    assert [c.id for c in load_suite(out, CORPUS).cases] == ["feedback-2"]
    assert out.read_text(encoding="utf-8").startswith("# Regression cases made from user feedback")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    assert cli_main(["feedback", "export", str(out), "--all"]) == 0
    assert "Wrote 2 case(s)" in capsys.readouterr().out
    assert [c.id for c in load_suite(out, CORPUS).cases] == ["feedback-1", "feedback-2"]


def test_cli_export_errors_exit_2(data_dir, tmp_path, capsys):
    with open_store(Settings(data_dir=data_dir)) as store:
        cid, position = chat(store, "", ANSWER["question"], ANSWER)
        rate(store, "", cid, position, 1)
        rate(store, "", *chat(store, "", "Bad answer"), -1, "")  # no note: makes no case

    out = tmp_path / "feedback.yaml"
    assert cli_main(["feedback", "export", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Skipped feedback 2" in err and "Error: no feedback makes a case (1 +1 rating(s): add --all" in err
    assert not out.exists()

    assert cli_main(["feedback", "export", str(tmp_path / "missing" / "f.yaml"), "--all"]) == 2
    assert "Error: cannot write" in capsys.readouterr().err


def test_cli_keeps_the_drafts_of_skipped_feedback_commented_out(data_dir, tmp_path, capsys):
    with open_store(Settings(data_dir=data_dir)) as store:
        cid, position = chat(store, "", "What did Macron say?", REFUSAL)
        rate(store, "", cid, position, -1, kind="not_in_article", answer=REFUSAL)
        rate(store, "", *chat(store, "", "When?"), -1, "on the dark side of the Moon")
    out = tmp_path / "feedback.yaml"
    assert cli_main(["feedback", "export", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "# Feedback 2 made no case" in text and "#     answers:" in text
    assert [c.id for c in load_suite(out, CORPUS).cases] == ["feedback-1"]


# ----- durability: kill -9 while an answer streams ------------------------------------------------------------------
CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from assistant.store.conversations import ConversationStore

store = ConversationStore(sys.argv[1])
cid = store.create("", "Who spoke of NATO 3.0?")
position = store.start_turn(cid, "", "Who spoke of NATO 3.0?")
print(cid, flush=True)
text = ""
for i in range(100_000):
    text += f"Sentence {{i}} of the answer [1]. "
    store.update_turn(cid, "", position, text)
    print(json.dumps(text), flush=True)  # only once update_turn has returned: what the page would have shown
"""


def kill_while_streaming(path, lines: int) -> tuple[str, list[str]]:
    """Run a child streaming an answer into the store at path, kill -9 it after it printed `lines` texts."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(PROJECT_ROOT)), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cid = child.stdout.readline().strip()
        assert cid, child.stderr.read()
        printed = []
        while len(printed) < lines:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            printed.append(json.loads(line))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # What it printed before the kill and this process had not read yet (a busy machine lets the child run ahead)
    # was shown too; a line cut short by the kill was not.
    printed += [json.loads(line) for line in child.stdout.read().splitlines(keepends=True) if line.endswith("\n")]
    return cid, printed


def test_kill_during_streaming_loses_nothing_shown(tmp_path):
    path = tmp_path / "assistant.db"
    rounds = []
    for lines in (3, 40, 150):
        rounds.append(kill_while_streaming(path, lines))
        with ConversationStore(path) as store:  # reopening recovers from the WAL the killed process left
            for cid, printed in rounds:
                turn = store.get("", cid).turns[0]
                assert turn.state == "streaming"
                assert turn.answer.startswith(printed[-1])
                assert all(turn.answer.startswith(text) for text in printed)
                # at most the one write that committed before its print was cut short
                assert len(turn.answer) - len(printed[-1]) < 60
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_the_page_s_turn_and_the_store_s_row_are_one_record(tmp_path):
    """A turn streamed and finished on the page, written as it went, reads back from the store with the same fields;
    a failed one keeps its message; one cut off while streaming reads back 'streaming' with the text shown."""
    from assistant.answer.cite import Citation
    from assistant.answer.state import Answer
    from assistant.store.turn import Turn
    from assistant.web.workspace import Recorder, web_turn

    passage = next(p for p in PASSAGES if COLBY in p.text)
    start = DOCUMENTS[0].text.index(COLBY)
    cited = Citation.of(passage, 1, start, start + len(COLBY), DOCUMENTS[0].text)
    store = ConversationStore(tmp_path / "assistant.db")
    turns = []
    for question in ("Who spoke for the US?", "And then?", "Why?"):
        recorder = Recorder(store, "ann", turns[0][0].conversation if turns else None)
        recorder.start(question, None)
        turn = Turn(question, position=recorder.position, state="waiting")
        recorder.write(turn)
        turn.state, turn.answer = "streaming", "It was"
        recorder.write(turn)
        turns.append((recorder, turn))
    turns[0][1].finish(Answer("Who spoke for the US?", f"{COLBY} spoke [1].", citations=[cited], reason="answered"))
    turns[1][1].fail("The model file is missing: run the set-up again.")
    for recorder, turn in turns[:2]:
        recorder.write(turn)

    done, failed, cut = store.get("ann", turns[0][0].conversation).turns
    fields = ("question", "answer", "position", "state", "abstained", "reason", "citations", "closest", "error")
    for name in fields:
        assert getattr(done, name) == getattr(turns[0][1], name), name
        assert getattr(failed, name) == getattr(turns[1][1], name), name
    assert done.citations[0]["quote"] == COLBY and done.answer_json["citations"] == done.citations
    assert failed.state == "error" and failed.error.startswith("The model file is missing")
    assert cut.state == "streaming" and cut.answer == "It was" and not cut.ended
    shown = web_turn(cut)  # no request of a new process answers it: the page calls it stopped
    assert shown.state == "stopped" and shown.answered and shown.ended
    assert web_turn(done) is done and not web_turn(failed).answered
    store.close()
