"""Tests of the ingest stage: uploads become corpus documents (or are refused without a trace), and go again."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.index import ingest
from assistant.index.corpus import load_documents, load_passages
from assistant.index.ingest import UploadError, add_document, add_text, reflow, remove_document, slugify
from assistant.settings import PROJECT_ROOT, Settings

CORPUS = PROJECT_ROOT / "corpus"
MULTI = Path(__file__).parent / "data" / "multi-corpus"
(ONLY,) = load_documents(CORPUS)  # the shipped corpus holds one article

ARTICLE_HTML = b"""<!DOCTYPE html>
<html><head><title>Ferry returns | Coast Courier</title>
<meta property="og:title" content="Island ferry returns to daily service">
<script>var tracker = "SCRIPT_PAYLOAD"; document.write("injected");</script>
<style>body { color: red }</style></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li>
<li><a href="/weather">Weather</a></li></ul></nav>
<header><a href="/subscribe">Subscribe to the Coast Courier</a></header>
<main><article>
<h1>Island ferry returns to daily service</h1>
<p>The ferry between Brannock and the island of Skarra returned to daily service on Tuesday after a new
engine was fitted at the shipyard in Holm, the operator said.</p>
<p>The crossing takes forty minutes and costs six crowns for adults.<br>Children travel free until the end of the
summer season, when the winter timetable begins.</p>
<h2>A longer season</h2>
<p>From next year the ferry will also sail on Sundays in winter, a change islanders had asked for since the old
vessel was retired, according to the harbour master Ilse Varga.</p>
<script>console.log("BODY_SCRIPT_PAYLOAD")</script>
</article></main>
<footer><p>Copyright 2026 Coast Courier. All rights reserved. Privacy policy. Cookie settings.</p></footer>
</body></html>
"""

MARKDOWN = """# Orchard harvest breaks a record

The orchards of the Lind valley picked more apples this autumn than in any year
since records began, the growers' association said on Friday.

## Why the harvest grew

A mild spring without late frost let almost every blossom set fruit, and the
dry summer kept the trees free of scab.

- Pickers came from three neighbouring valleys.
- The cider press ran day and night for a week.

* * *

Prices
------

Growers were paid eleven cents a kilo, two cents less than last year.
"""

WRAPPED_LINES = [
    (0, "Bridge repairs finish early"),
    (28, "Repairs to the old stone bridge over the river Aln finished two weeks"),
    (14, "ahead of schedule, the county engineer told a meeting of the council on"),
    (14, "Thursday evening."),
    (22, "The bridge reopens to cars on Monday. Lorries heavier than twelve tonnes"),
    (14, "must still use the bypass until the load test is done in spring."),
]


def make_pdf(pages: list[list[tuple[int, str]]]) -> bytes:
    """A minimal PDF with one text object per page; each line is (gap below the previous line, text)."""
    objects: dict[int, bytes] = {}
    font = 3 + 2 * len(pages)
    kids = []
    for i, lines in enumerate(pages):
        page, content = 3 + 2 * i, 4 + 2 * i
        kids.append(f"{page} 0 R")
        ops = ["BT", "/F1 11 Tf", "72 740 Td"]
        for gap, text in lines:
            ops += [f"0 {-gap} Td"] if gap else []
            ops.append("(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj")
        stream = "\n".join([*ops, "ET"]).encode("latin-1")
        objects[content] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        ).encode()
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


@pytest.fixture
def settings(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of folder, hidden ones too, with its content hash."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def passages_of(settings, doc_id):
    _, passages = load_passages(settings.paths.corpus_dir)
    return [p for p in passages if p.doc_id == doc_id]


# ----- accepted types ----------------------------------------------------------------------------------------------
def test_text_file_with_bom_and_crlf_keeps_its_paragraphs(settings):
    data = "\ufeffCanal museum opens\r\nThe canal museum in Wern opened its doors on Saturday to more visitors than expected.\r\n"
    data += "Entry is free for the first month, the museum's director said at the opening.\r\n"
    added = add_document(settings, data.encode("utf-8"), "canal museum.txt")
    assert added.doc_id == "canal-museum" and added.title == "canal museum"
    stored = added.path.read_text(encoding="utf-8")
    assert "\r" not in stored and "\ufeff" not in stored and added.chars == len(stored)
    passages = passages_of(settings, "canal-museum")
    assert [p.section for p in passages] == ["Canal museum opens"] * 2
    assert passages[0].text.startswith("The canal museum in Wern opened")
    assert passages[1].text.startswith("Entry is free")


def test_markdown_headings_lists_and_wrapped_lines(settings):
    added = add_document(settings, MARKDOWN.encode(), "orchard.md")
    assert added.path.name == "orchard.md" and added.title == "Orchard harvest breaks a record"
    passages = passages_of(settings, "orchard")
    assert [p.text[:30] for p in passages] == [
        "The orchards of the Lind valle",
        "A mild spring without late fro",
        "- Pickers came from three neig",
        "- The cider press ran day and ",
        "Growers were paid eleven cents",
    ]
    # Hard-wrapped lines are one paragraph again, and the setext heading is a section.
    assert "this autumn than in any year since records began" in passages[0].text
    assert [p.section for p in passages] == ["Orchard harvest breaks a record"] + ["Why the harvest grew"] * 3 + [
        "Prices"
    ]


@pytest.mark.parametrize("name", ["ferry.html", "ferry.HTM"])
def test_html_keeps_the_article_and_drops_scripts_and_boilerplate(settings, name):
    added = add_document(settings, ARTICLE_HTML, name)
    stored = added.path.read_text(encoding="utf-8")
    assert added.path.name == "ferry.txt" and added.title == "Island ferry returns to daily service"
    for junk in ("SCRIPT_PAYLOAD", "injected", "tracker", "color: red", "Subscribe", "Weather", "Cookie settings"):
        assert junk not in stored
    passages = passages_of(settings, "ferry")
    assert len(passages) == 3
    assert passages[0].text.startswith("The ferry between Brannock") and "new engine was fitted" in passages[0].text
    assert "six crowns for adults. Children travel free" in passages[1].text  # <br> is a space, not a paragraph
    assert passages[2].section == "A longer season"


def test_pdf_lines_are_reflowed_into_paragraphs(settings):
    data = make_pdf([WRAPPED_LINES, [(0, "The council thanked the masons for their careful work.")]])
    added = add_document(settings, data, "bridge.pdf")
    assert added.path.name == "bridge.txt"
    passages = passages_of(settings, "bridge")
    assert [p.section for p in passages] == ["Bridge repairs finish early"] * 3
    assert passages[0].text == (
        "Repairs to the old stone bridge over the river Aln finished two weeks ahead of schedule, the county "
        "engineer told a meeting of the council on Thursday evening."
    )
    assert passages[1].text.startswith("The bridge reopens to cars on Monday. Lorries heavier")
    assert passages[2].text == "The council thanked the masons for their careful work."


def test_pasted_text_needs_a_title(settings):
    text = "Hard wrapped text from an email that goes\non to a second line here.\n\nAnd a second paragraph."
    added = add_text(settings, text, "Mail note")
    assert added.doc_id == "mail-note" and added.path.name == "mail-note.txt"
    assert [p.text for p in passages_of(settings, "mail-note")] == [
        "Hard wrapped text from an email that goes on to a second line here.",
        "And a second paragraph.",
    ]
    meta = json.loads((settings.paths.corpus_dir / "mail-note.meta.json").read_text(encoding="utf-8"))
    assert meta["source"] == "pasted text" and meta["original_type"] == "text"
    before = snapshot(settings.paths.corpus_dir)
    for title in ("", "   "):
        with pytest.raises(UploadError, match="title"):
            add_text(settings, "Some text.", title)
    with pytest.raises(UploadError, match="empty"):
        add_text(settings, " \n\t\n", "Blank")
    assert snapshot(settings.paths.corpus_dir) == before


def test_metadata_sidecar_is_valid_json(settings):
    added = add_document(settings, MARKDOWN.encode(), "orchard.md", title="  My\ttitle ", source="Lind Gazette")
    meta = json.loads((settings.paths.corpus_dir / "my-title.meta.json").read_text(encoding="utf-8"))
    assert added.doc_id == "my-title" and meta["title"] == "My title" == added.title
    assert meta["source"] == "Lind Gazette" and meta["original_type"] == "md"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", meta["added"])
    document = next(d for d in load_documents(settings.paths.corpus_dir) if d.doc_id == "my-title")
    assert (document.title, document.source) == ("My title", "Lind Gazette")


# ----- rejections --------------------------------------------------------------------------------------------------
REJECTED = [
    ("empty.txt", b"", "holds no text"),
    ("blank.md", b"  \n\r\n\t \n", "holds no text"),
    (
        "script-only.html",
        b"<html><body><script>alert(1)</script><nav><a href='/'>Home</a></nav></body></html>",
        "no article text",
    ),
    ("image.txt", b"abc\x00\x01\x02def", "not a text file"),
    ("page.htm", b"<p>text</p>\x00\x00", "not a text file"),
    ("photo.png", b"\x89PNG\r\n\x1a\n", r"\.png files are not accepted.*\.txt, \.md, \.html \(\.htm\) or \.pdf"),
    ("README", b"plain words", "without a suffix are not accepted"),
    ("latin.txt", "Caf\u00e9 au lait".encode("latin-1"), "Re-save it as UTF-8"),
    ("fake.pdf", b"Just some text pretending.", "not a PDF"),
    ("pdf-in-disguise.txt", make_pdf([[(0, "Hello there.")]]), "rename it to .pdf"),
    ("notags.html", b"Just words, no markup at all.", "does not look like an HTML page"),
    ("scan.pdf", make_pdf([[], []]), "looks scanned.*OCR.*paste"),
    ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n", "could not be read as a PDF.*damaged"),
    ("cut.pdf", make_pdf([WRAPPED_LINES])[:300], "could not be read as a PDF"),
]


@pytest.mark.parametrize(("name", "data", "message"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejections_say_what_to_do_and_change_nothing(settings, name, data, message):
    before = snapshot(settings.paths.corpus_dir)
    with pytest.raises(UploadError, match=message):
        add_document(settings, data, name)
    assert snapshot(settings.paths.corpus_dir) == before


def test_size_limit_names_the_setting(settings):
    settings.uploads.max_upload_bytes = 1_000
    before = snapshot(settings.paths.corpus_dir)
    with pytest.raises(UploadError, match=r"long.txt is larger than 0\.001 MB .*ASSISTANT_MAX_UPLOAD_BYTES"):
        add_document(settings, b"word " * 300, "long.txt")
    with pytest.raises(UploadError, match="ASSISTANT_MAX_UPLOAD_BYTES"):
        add_text(settings, "word " * 300, "Long")
    settings.uploads.max_upload_bytes = Settings().uploads.max_upload_bytes
    with pytest.raises(UploadError, match=r"larger than 2 MB \(2,000,000 bytes\), the limit"):
        add_document(settings, b"a" * 2_000_001, "big.txt")
    assert snapshot(settings.paths.corpus_dir) == before


def test_duplicates_are_rejected_naming_the_existing_document(settings):
    before = snapshot(settings.paths.corpus_dir)
    article = ONLY.path.read_bytes()
    with pytest.raises(UploadError, match=f"already in the corpus as '{ONLY.doc_id}'"):
        add_document(settings, article, "copy.txt")
    # The same text with other line endings, a BOM, or as Markdown is the same article.
    with pytest.raises(UploadError, match=f"'{ONLY.doc_id}'"):
        add_document(settings, b"\xef\xbb\xbf" + article.replace(b"\n", b"\r\n"), "same.md")
    assert snapshot(settings.paths.corpus_dir) == before
    shutil.copy(MULTI / "harbour-library.md", settings.paths.corpus_dir)
    with pytest.raises(UploadError, match="'harbour-library'"):
        add_document(settings, (MULTI / "harbour-library.md").read_bytes(), "harbour.md")


def test_a_taken_name_with_other_text_gets_a_number(settings):
    name = ONLY.doc_id
    first = add_document(settings, b"The first text of this name, long enough.\n", f"{name}.txt")
    second = add_document(settings, b"A second, different text of the same name.\n", f"{name}.md")
    assert (first.doc_id, second.doc_id) == (f"{name}-2", f"{name}-3")
    assert {d.doc_id for d in load_documents(settings.paths.corpus_dir)} == {name, f"{name}-2", f"{name}-3"}


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd.txt",
        "a/b.md",
        "..\\..\\windows\\win.ini.txt",
        "..txt",
        "/abs/path/x.txt",
        "....md",
        "ü中.txt",
        "\x1b[31mred\x1b[0m.txt",
    ],
)
def test_file_names_cannot_escape_the_corpus(settings, tmp_path, name):
    added = add_document(settings, f"Text uploaded as {name!r}, a paragraph.\n".encode(), name)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", added.doc_id) and len(added.doc_id) <= 60
    assert added.path.parent == settings.paths.corpus_dir and any(ch.isalnum() for ch in added.title)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # nothing written beside the corpus


def test_slugs_are_safe_and_short():
    assert slugify("Ärger über Straßen: 3 Fragen!") == "arger-uber-straen-3-fragen"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("...") == ""
    assert len(slugify("word " * 40)) <= 60 and not slugify("word " * 40).endswith("-")


def test_readme_is_never_a_document_name(settings):
    added = add_document(settings, b"A document that someone called readme.\n", "README.md")
    assert added.doc_id != "readme" and added.doc_id in {d.doc_id for d in load_documents(settings.paths.corpus_dir)}


# ----- writing -----------------------------------------------------------------------------------------------------
def test_hidden_files_are_not_documents(settings):
    # Temp files start with "." while being written; the corpus must not pick one up half-written.
    (settings.paths.corpus_dir / ".half-written.txt").write_text("Half a docu", encoding="utf-8")
    (settings.paths.corpus_dir / ".half-written.md.x1y2.tmp").write_text("Half", encoding="utf-8")
    assert [d.doc_id for d in load_documents(settings.paths.corpus_dir)] == [ONLY.doc_id]


def test_a_failed_write_leaves_nothing_behind(settings, monkeypatch):
    before = snapshot(settings.paths.corpus_dir)
    real_replace = ingest.os.replace

    def fail_on_text(src, dst):
        if str(dst).endswith(".txt"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(ingest.os, "replace", fail_on_text)
    with pytest.raises(UploadError, match="No space left"):
        add_document(settings, b"A new article that will not fit.\n", "full.txt")
    assert snapshot(settings.paths.corpus_dir) == before


def test_metadata_is_written_before_the_text(settings, monkeypatch):
    order = []
    real_replace = ingest.os.replace
    monkeypatch.setattr(ingest.os, "replace", lambda src, dst: (order.append(Path(dst).name), real_replace(src, dst)))
    add_document(settings, b"Order matters for a reader in between.\n", "order.txt")
    assert order == ["order.meta.json", "order.txt"]
    assert all(not name.startswith(".") for name in snapshot(settings.paths.corpus_dir))  # no temp file left


def test_adding_to_an_empty_or_missing_folder(tmp_path):
    settings = Settings(corpus_dir=tmp_path / "new" / "corpus", index_dir=tmp_path / "index")
    added = add_document(settings, b"The first article of a new corpus.\n", "first.txt")
    assert [d.doc_id for d in load_documents(settings.paths.corpus_dir)] == [added.doc_id] == ["first"]


# ----- removing ----------------------------------------------------------------------------------------------------
def test_remove_deletes_the_text_and_its_metadata_only(settings):
    before = snapshot(settings.paths.corpus_dir)
    add_document(settings, MARKDOWN.encode(), "orchard.md")
    (settings.paths.corpus_dir / "notes.json").write_text("{}", encoding="utf-8")
    remove_document(settings, "orchard")
    after = snapshot(settings.paths.corpus_dir)
    assert after.pop("notes.json") and after == before


def test_remove_unknown_or_last_document_is_refused(settings):
    before = snapshot(settings.paths.corpus_dir)
    for bad in ("nope", f"../corpus/{ONLY.doc_id}", ONLY.path.name, ""):
        with pytest.raises(UploadError, match=f"documents are: {ONLY.doc_id}"):
            remove_document(settings, bad)
    with pytest.raises(UploadError, match="only document.*needs one"):
        remove_document(settings, ONLY.doc_id)
    assert snapshot(settings.paths.corpus_dir) == before


# ----- re-flowing --------------------------------------------------------------------------------------------------
def test_one_paragraph_per_line_text_keeps_its_lines():
    text = ONLY.text
    assert reflow(text) == [line.strip() for line in text.splitlines() if line.strip()]


def test_hyphens_at_line_ends():
    lines = ["The committee agreed that the well-", "known problem of the bridge's founda-", "tions is solved now."]
    wrapped = "\n".join(lines + ["", "Next paragraph starts here."])
    assert reflow(wrapped)[0].startswith(
        "The committee agreed that the well-known problem of the bridge's founda-tions"
    )
    assert "foundations is solved" in reflow(wrapped, from_pdf=True)[0]


# ----- command line ------------------------------------------------------------------------------------------------
@pytest.fixture
def reindexed(settings, monkeypatch):
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(settings.paths.corpus_dir))
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(settings.paths.index_dir))
    calls = []
    monkeypatch.setattr(ingest, "reindex", lambda s, progress=None: calls.append(s.paths.corpus_dir))
    return calls


def test_cli_add_and_remove(settings, reindexed, tmp_path, capsys):
    article = tmp_path / "ferry page.html"
    article.write_bytes(ARTICLE_HTML)
    assert main(["add", str(article), "--title", "Ferry back", "--no-examples"]) == 0
    out = capsys.readouterr().out
    chars = (settings.paths.corpus_dir / "ferry-back.txt").stat().st_size
    assert out.strip() == f'Added ferry-back "Ferry back" ({chars} characters); indexed.'
    assert reindexed == [settings.paths.corpus_dir]
    assert main(["remove", "ferry-back"]) == 0
    assert capsys.readouterr().out.strip() == "Removed ferry-back; indexed."
    assert len(reindexed) == 2 and not (settings.paths.corpus_dir / "ferry-back.txt").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "{tmp}/scan.pdf"], "looks scanned"),
        (["add", "{tmp}/missing.txt"], "No such file"),
        (["add", "{tmp}/big.txt"], "big.txt is larger than 2 MB"),
        (["remove", "nope"], f"documents are: {ONLY.doc_id}"),
        (["remove", ONLY.doc_id], "only document"),
    ],
)
def test_cli_errors_exit_2_without_a_traceback(settings, reindexed, tmp_path, capsys, argv, message):
    (tmp_path / "scan.pdf").write_bytes(make_pdf([[]]))
    (tmp_path / "big.txt").write_bytes(b"word " * 500_000)
    before = snapshot(settings.paths.corpus_dir)
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("Error: ") and re.search(message, captured.err)
    assert "Traceback" not in captured.err + captured.out
    assert reindexed == [] and snapshot(settings.paths.corpus_dir) == before


# ----- the index follows -------------------------------------------------------------------------------------------
def test_added_document_is_indexed_and_found_then_removed(settings, embeddings):
    from assistant.index.indexing import PassageIndex

    assert ingest.reindex(settings, embeddings=embeddings).action == "built"
    add_document(settings, ARTICLE_HTML, "ferry.html")
    seen = []
    report = ingest.reindex(settings, progress=lambda done, total: seen.append((done, total)), embeddings=embeddings)
    assert (report.action, report.added, report.removed) == ("updated", 3, 0)
    assert seen == [(3, 3)]  # one batch: only the new document's passages are embedded
    documents, passages = load_passages(settings.paths.corpus_dir)
    index = PassageIndex(settings, embeddings)
    assert index.open(documents, passages).action == "reused"
    best, _ = index.search("How much does the ferry crossing cost for adults?", k=1)[0]
    assert best == "ferry:p2"
    remove_document(settings, "ferry")
    report = ingest.reindex(settings, embeddings=embeddings)
    assert (report.action, report.added, report.removed) == ("updated", 0, 3)
