"""Beyond one machine and one article (issue 7): a Chroma server, llama.cpp's model server, several articles.

The servers are real processes started here on 127.0.0.1 and stopped in fixture finalisers. Tests with the real
chat model are marked `real`; everything else uses a fake chat model and the real embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakes import fake

from assistant.answer.guard import InvalidQuestion
from assistant.answering import NOT_IN_ARTICLE, Assistant
from assistant.index.corpus import load_passages
from assistant.index.indexing import IndexStoreError, PassageIndex
from assistant.settings import PROJECT_ROOT, Settings
from benchmarks.servers import Server, free_port, start_chroma

MULTI_CORPUS = Path(__file__).parent / "data" / "multi-corpus"
CORPUS = PROJECT_ROOT / "corpus"
SPENDING = "Which countries will exceed the new spending target?"
SPENDING_REPLY = (
    "Denmark, Estonia, Latvia, Lithuania and Poland are set to exceed the newly agreed target of spending 3.5% of "
    "GDP on defence."
)


# ----- helpers -------------------------------------------------------------------------------------------------------


def start_llama_server(folder: Path) -> tuple[Server, int, str]:
    """Start llama.cpp's OpenAI-compatible server with the default model; return it, its port and model id."""
    from assistant.index.models import chat_model_file

    model = chat_model_file(Settings())
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port)]
    command += ["--host", "127.0.0.1", "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 2)]
    # Several workers share this server: by default it cuts a streaming answer short as soon as another request
    # waits (interrupt_requests), which the grounding check then sees as an empty, unsupported draft.
    command += ["--interrupt_requests", "false"]
    server = Server("llama_cpp.server", command, folder / "llama-server.log")
    models: list = []

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
            models.extend(json.load(response)["data"])
        return True

    server.wait_until(ready, 120)
    return server, port, models[0]["id"]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    server, port = start_chroma(tmp_path_factory.mktemp("chroma-server"))
    yield port
    server.stop()


@pytest.fixture
def multi_corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(MULTI_CORPUS, folder)
    return folder


_collections = iter(range(10**6))


def store_settings(tmp_path: Path, corpus: Path, store: str, port: int | None, **extra) -> Settings:
    """Settings for the embedded store in tmp_path, or for the Chroma server (a collection of its own per test)."""
    if store == "server":
        extra.update(chroma_host="127.0.0.1", chroma_port=port, collection_name=f"test-{next(_collections)}")
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", **extra)


def server_ids(port: int, collection: str, doc_id: str | None = None) -> list[str]:
    """What the Chroma server itself holds, asked through a client of its own."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False))
    where = {"doc_id": doc_id} if doc_id else None
    return sorted(client.get_collection(collection).get(where=where, include=[])["ids"])


# ----- the Chroma server -----------------------------------------------------------------------------------------------
def test_index_and_answer_through_the_chroma_server(tmp_path, chroma_server, embeddings):
    settings = store_settings(tmp_path, CORPUS, "server", chroma_server)
    assistant = Assistant(settings, chat_model=fake(SPENDING_REPLY), embeddings=embeddings)
    assistant.load()
    assert assistant.index_report.action == "built" and assistant.index_report.added == 11
    assert server_ids(chroma_server, settings.index.collection_name) == sorted(f"nato-3-0:p{i}" for i in range(1, 12))
    assert not settings.paths.index_dir.exists()  # nothing of the store is kept on this machine

    answer = assistant.answer(SPENDING)
    assert not answer.abstained, answer.draft
    assert "Denmark" in answer.text and answer.text.endswith("[1].")
    assert [c.passage_id for c in answer.citations] == ["nato-3-0:p5"]
    citation = answer.citations[0]
    document = (CORPUS / "nato-3-0.txt").read_text(encoding="utf-8")
    assert document[citation.start : citation.end] == citation.quote
    # Cosine distances, as in the embedded store: the best passage is close, far below the unrelated threshold.
    assert answer.passages[0].passage_id == "nato-3-0:p5" and answer.passages[0].distance < 0.6


def test_a_second_machine_reuses_the_servers_index(tmp_path, chroma_server, embeddings):
    first = store_settings(tmp_path / "one", CORPUS, "server", chroma_server)
    Assistant(first, chat_model=fake(), embeddings=embeddings).load()
    # Another machine: its own cache folder, same server and collection. The record of what the collection was
    # built from lives on the server, so it is reused, not wiped and rebuilt under the first machine.
    second = first.updated(cache_dir=tmp_path / "two" / "cache", index_dir=tmp_path / "two" / "x")
    other = Assistant(second, chat_model=fake(SPENDING_REPLY), embeddings=embeddings)
    other.load()
    assert other.index_report.action == "reused"
    assert not other.answer(SPENDING).abstained


def test_emptied_server_collection_is_rebuilt(tmp_path, chroma_server, embeddings):
    import chromadb

    settings = store_settings(tmp_path, CORPUS, "server", chroma_server)
    Assistant(settings, chat_model=fake(), embeddings=embeddings).load()
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    client.get_collection(settings.index.collection_name).delete(ids=["nato-3-0:p1", "nato-3-0:p2"])
    again = Assistant(settings, chat_model=fake(), embeddings=embeddings)
    again.load()
    assert again.index_report.action == "built" and again.index_report.added == 11
    assert len(server_ids(chroma_server, settings.index.collection_name)) == 11


def test_chroma_server_down_names_the_fix(tmp_path, embeddings):
    settings = store_settings(tmp_path, CORPUS, "server", free_port())
    documents, passages = load_passages(CORPUS)
    with pytest.raises(IndexStoreError, match="chroma run"):
        PassageIndex(settings, embeddings).open(documents, passages)


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_indexes_several_articles_into_the_chroma_server(tmp_path, multi_corpus, chroma_server):
    env = {
        "ASSISTANT_CORPUS_DIR": str(multi_corpus),
        "ASSISTANT_INDEX_DIR": str(tmp_path / "index"),
        "ASSISTANT_CACHE_DIR": str(tmp_path / "cache"),
        "ASSISTANT_CHROMA_HOST": "127.0.0.1",
        "ASSISTANT_CHROMA_PORT": str(chroma_server),
        "ASSISTANT_COLLECTION_NAME": "cli-articles",
    }
    built = cli("index", env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "Index built: 3 document(s), 19 passages (19 embedded, 0 removed)" in built.stdout
    assert f"Chroma server 127.0.0.1:{chroma_server}, collection cli-articles" in built.stdout
    assert len(server_ids(chroma_server, "cli-articles")) == 19
    again = cli("index", env=env)
    assert "Index reused" in again.stdout, again.stdout + again.stderr[-2000:]
    # An unknown --scope is refused before any model loads, naming the articles there are.
    wrong = cli("ask", "How much did the repairs cost?", "--scope", "library", env=env)
    assert wrong.returncode == 2, wrong.stderr[-2000:]
    assert "There is no article 'library'; choose one of: harbour-library, nato-3-0, valley-railway." in wrong.stderr


# ----- many articles, in the embedded store and on the Chroma server --------------------------------------------------
@pytest.mark.parametrize("store", ["embedded", "server"])
def test_incremental_indexing_of_several_articles(tmp_path, multi_corpus, store, request, embeddings):
    port = request.getfixturevalue("chroma_server") if store == "server" else None
    settings = store_settings(tmp_path, multi_corpus, store, port)
    assistant = Assistant(settings, chat_model=fake(), embeddings=embeddings)
    assistant.load()
    counts = {d.doc_id: sum(p.doc_id == d.doc_id for p in assistant.passages) for d in assistant.documents}
    assert counts == {"harbour-library": 4, "nato-3-0": 11, "valley-railway": 4}
    report = assistant.index_report
    assert (report.action, report.added, report.removed) == ("built", 19, 0)

    def ids(doc_id=None):
        if store == "server":
            return server_ids(port, settings.index.collection_name, doc_id)
        where = {"doc_id": doc_id} if doc_id else None
        return sorted(assistant.index.store._collection.get(where=where, include=[])["ids"])

    # Change one article: only its passages are embedded again (the edited one and a new last paragraph).
    railway = multi_corpus / "valley-railway.txt"
    text = railway.read_text(encoding="utf-8").replace("every hour", "every half hour")
    railway.write_text(text + "The first train is due to leave Alder Cross on 1 April.\n", encoding="utf-8")
    assistant.load()
    report = assistant.index_report
    assert (report.action, report.added, report.removed) == ("updated", 5, 4)
    assert ids("valley-railway") == [f"valley-railway:p{i}" for i in range(1, 6)]
    assert len(ids()) == 20
    found = assistant.retrieve("How often will the trains run?", scope="valley-railway")
    assert found[0].passage_id == "valley-railway:p2" and "every half hour" in found[0].text

    # Remove one: its passages leave the index, and it can no longer be chosen as a scope.
    (multi_corpus / "harbour-library.md").unlink()
    (multi_corpus / "harbour-library.meta.json").unlink()
    assistant.load()
    report = assistant.index_report
    assert (report.action, report.added, report.removed) == ("updated", 0, 4)
    assert ids("harbour-library") == [] and len(ids()) == 16
    assert all(p.doc_id != "harbour-library" for p in assistant.retrieve("library repairs flood", k=10))
    with pytest.raises(InvalidQuestion, match="harbour-library"):
        assistant.answer("How much did the repairs cost?", scope="harbour-library")

    # A fresh process over the same store: nothing to do.
    again = Assistant(settings, chat_model=fake(), embeddings=embeddings)
    again.load()
    assert (again.index_report.action, again.index_report.added) == ("reused", 0)


@pytest.fixture(scope="module")
def multi_settings(tmp_path_factory) -> Settings:
    tmp = tmp_path_factory.mktemp("multi")
    shutil.copytree(MULTI_CORPUS, tmp / "corpus")
    return Settings(corpus_dir=tmp / "corpus", index_dir=tmp / "index", cache_dir=tmp / "cache")


# (question, the model's reply, the passage it must be cited to)
PER_ARTICLE = [
    (SPENDING, SPENDING_REPLY, "nato-3-0:p5"),
    (
        "How much did the Harbour Library repairs cost?",
        "The repairs cost 2.4 million euros, most of it paid by the regional flood fund.",
        "harbour-library:p3",
    ),
    (
        "Who is the librarian in Port Ellery?",
        "Librarian Maya Okonkwo said the reading room had been moved to the first floor.",
        "harbour-library:p2",
    ),
    (
        "How long is the train journey between Alder Cross and Millford?",
        "Trains will run every hour between Alder Cross and Millford, a journey of 38 kilometres that will take 41 minutes.",
        "valley-railway:p2",
    ),
    (
        "How will the Brenna Valley trains be powered?",
        "The trains will be battery-powered, charged at both ends of the line.",
        "valley-railway:p3",
    ),
]


@pytest.mark.parametrize(("question", "reply", "passage_id"), PER_ARTICLE)
def test_questions_about_each_article_retrieve_and_cite_it(multi_settings, embeddings, question, reply, passage_id):
    doc_id = passage_id.split(":")[0]
    assistant = Assistant(multi_settings, chat_model=fake(reply), embeddings=embeddings)
    found = assistant.retrieve(question)
    assert found[0].doc_id == doc_id and passage_id in [p.passage_id for p in found], found
    answer = assistant.answer(question)
    assert not answer.abstained, (answer.reason, answer.draft)
    assert answer.passages[0].doc_id == doc_id
    [citation] = answer.citations
    titles = {d.doc_id: d.title for d in assistant.documents}
    meta = json.loads((MULTI_CORPUS / f"{doc_id}.meta.json").read_text(encoding="utf-8"))
    assert (citation.passage_id, citation.doc_id) == (passage_id, doc_id)
    assert citation.title == titles[doc_id] == meta["title"] and citation.source == meta["source"]
    assert citation.number == int(passage_id.rsplit("p", 1)[1])
    document = next(d.text for d in assistant.documents if d.doc_id == doc_id)
    assert document[citation.start : citation.end] == citation.quote
    assert document[citation.passage_start : citation.passage_end] == citation.text


def test_scope_restricts_retrieval_and_citations(multi_settings, embeddings):
    # The distance gate is opened so that the model is called and its reply meets the grounding check.
    settings = multi_settings.updated(max_distance=2.0)
    unscoped = Assistant(settings, chat_model=fake(SPENDING_REPLY), embeddings=embeddings)
    answer = unscoped.answer(SPENDING)
    assert [c.passage_id for c in answer.citations] == ["nato-3-0:p5"]

    scoped = Assistant(settings, chat_model=fake(SPENDING_REPLY), embeddings=embeddings)
    assert {p.doc_id for p in scoped.retrieve(SPENDING, k=10, scope="valley-railway")} == {"valley-railway"}
    answer = scoped.answer(SPENDING, scope="valley-railway")
    # The same reply, true of another article, is not supported by this one: dropped, and nothing is cited.
    assert answer.abstained and answer.text.startswith(NOT_IN_ARTICLE.rstrip(".")) and answer.citations == []
    assert answer.reason == "unsupported" and answer.draft == SPENDING_REPLY
    assert answer.passages and {p.doc_id for p in answer.passages} == {"valley-railway"}


def test_scoped_answer_cites_only_its_article(multi_settings, embeddings):
    reply = "The repairs cost 2.4 million euros, most of it paid by the regional flood fund."
    assistant = Assistant(multi_settings, chat_model=fake(reply), embeddings=embeddings)
    answer = assistant.answer("How much did the repairs cost?", scope="harbour-library")
    assert not answer.abstained, answer.reason
    assert [c.passage_id for c in answer.citations] == ["harbour-library:p3"]
    assert {p.doc_id for p in answer.passages} == {"harbour-library"}
    # A name only another article mentions is unknown inside this scope: refused before the model is asked.
    refused = Assistant(multi_settings, chat_model=fake(), embeddings=embeddings)
    answer = refused.answer("What did Mark Rutte say?", scope="harbour-library")
    assert answer.abstained and answer.reason == "not_in_article" and answer.citations == []


def test_unknown_scope_is_an_invalid_question(multi_settings, embeddings):
    assistant = Assistant(multi_settings, chat_model=fake(), embeddings=embeddings)
    with pytest.raises(InvalidQuestion, match="no article 'nato'.*harbour-library, nato-3-0, valley-railway"):
        assistant.answer(SPENDING, scope="nato")
    with pytest.raises(InvalidQuestion):
        assistant.retrieve(SPENDING, scope="nato")


# ----- llama.cpp's OpenAI-compatible model server (real model) ---------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    server, port, model_id = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    yield f"http://127.0.0.1:{port}/v1", model_id
    server.stop()


def remote_settings(folder: Path, llama_server, **extra) -> Settings:
    base_url, model_id = llama_server
    return Settings(
        index_dir=folder / "index",
        cache_dir=folder / "cache",
        llm_backend="openai",
        llm_base_url=base_url,
        llm_model_name=model_id,
        llm_timeout=600,  # the first request reads the whole article; the machine may be busy
        llm_extra_body={"repeat_penalty": 1.0},  # the server's default is 1.1; in-process decoding uses 1.0
        **extra,
    )


@pytest.fixture(scope="module")
def remote(tmp_path_factory, llama_server, embeddings) -> Assistant:
    return Assistant(remote_settings(tmp_path_factory.mktemp("remote"), llama_server), embeddings=embeddings)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, embeddings) -> Assistant:
    tmp = tmp_path_factory.mktemp("in-process")
    # The assembled model and its states; the judgement reads the article first, as it does for a remote server.
    settings = Settings(index_dir=tmp / "index", cache_dir=Settings().paths.cache_dir, verify_with_article=True)
    assistant = Assistant(settings, embeddings=embeddings)
    assistant.warm_up()
    return assistant


@pytest.fixture(scope="module")
def ask_remote(remote):
    """The model server's answer to a question, asked once per module: each test of it reads the same answer."""
    answers: dict = {}

    def ask(question: str):
        if question not in answers:
            answers[question] = remote.answer(question)
        return answers[question]

    return ask


@pytest.mark.real
def test_model_server_answers_with_citations(ask_remote):
    answer = ask_remote(SPENDING)
    assert not answer.abstained, answer.draft
    assert "Denmark" in answer.text
    assert "nato-3-0:p5" in {c.passage_id for c in answer.citations}
    for c in answer.citations:
        assert f"[{c.index}]" in answer.text and c.quote in c.text
    assert answer.timings["first_token"] < answer.timings["total"]


@pytest.mark.real
def test_model_server_question_the_article_does_not_answer_is_refused(ask_remote):
    answer = ask_remote("What did Italy's defence minister say?")
    assert answer.abstained and answer.text.startswith(NOT_IN_ARTICLE.rstrip(".")) and answer.citations == []
    # The model declines, or the judgement of its answer (logprobs from the server) refuses it.
    assert answer.reason in ("not_in_article", "unverified", "unsupported")
    assert all(v.source == "logprobs" for v in answer.verdicts)


@pytest.mark.real
def test_model_server_unsupported_draft_is_dropped(ask_remote):
    # The model answers this from its own "knowledge" (an age the article never gives): the check drops it.
    answer = ask_remote("How old is Eldridge Colby?")
    assert answer.draft.strip(), "the model was expected to draft an answer"
    assert answer.abstained and answer.text.startswith(NOT_IN_ARTICLE.rstrip(".")) and answer.citations == []
    assert answer.reason == "unsupported"


@pytest.mark.real
@pytest.mark.parametrize("question", [SPENDING, "What did Italy's defence minister say?", "How old is Eldridge Colby?"])
def test_model_server_behaves_as_the_in_process_model(ask_remote, in_process, question):
    over_http, local = ask_remote(question), in_process.answer(question)
    assert (over_http.abstained, over_http.reason) == (local.abstained, local.reason), (over_http.draft, local.draft)
    assert {c.passage_id for c in over_http.citations} == {c.passage_id for c in local.citations}
    # Same GGUF file, same threads, greedy decoding with the same repeat penalty: the very same draft.
    assert over_http.draft == local.draft


@pytest.mark.real
def test_model_server_honours_the_answer_length_cap(tmp_path, llama_server, embeddings):
    settings = remote_settings(tmp_path, llama_server, max_answer_tokens=8)
    answer = Assistant(settings, embeddings=embeddings).answer(
        "Explain in detail everything the article says about Europe."
    )
    assert 0 < len(answer.draft.split()) <= 10, answer.draft


@pytest.mark.real
def test_two_workers_share_one_model_server(tmp_path, llama_server, chroma_server, embeddings):
    # Two web workers: separate Assistants (own embeddings, own HTTP clients), one Chroma server, one model server.
    from assistant.index.indexing import load_embeddings

    shared = dict(chroma_host="127.0.0.1", chroma_port=chroma_server, collection_name="workers")
    workers = [
        Assistant(
            remote_settings(tmp_path / f"worker-{i}", llama_server, **shared), embeddings=load_embeddings(Settings())
        )
        for i in range(2)
    ]
    workers[0].load()  # index once before the workers start, as a deployment would (`assistant index`)
    questions = [
        (SPENDING, r"Denmark", "nato-3-0:p5"),
        ("Who described the moment as NATO 3.0?", r"Colby", "nato-3-0:p2"),
    ]
    started = threading.Barrier(2)

    def ask(i: int):
        started.wait()
        return workers[i].answer(questions[i][0])

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, range(2)))
    for (question, word, passage_id), answer in zip(questions, answers, strict=True):
        assert not answer.abstained, (question, answer.draft)
        assert word in answer.text, answer.text
        assert passage_id in {c.passage_id for c in answer.citations}, (question, answer.citations)
    assert workers[1].index_report.action == "reused"
