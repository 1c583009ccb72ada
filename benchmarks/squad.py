"""Real articles and real questions: the assistant on twelve whole Wikipedia articles of SQuAD 2.0.

    python -m benchmarks.squad [--split dev|test|all] [--answerable 20] [--unanswerable 20] [--all-together 5]
                               [--before COMMIT] [--baseline-every 4] [--articles SLUG ...] [--limit-articles N]
                               [--data FILE] [--workdir DIR] [--out benchmarks/results/squad.json]
    python -m benchmarks.squad --render benchmarks/results/squad.json   # only rewrite BENCHMARKS.md's section

Corpus. Each SQuAD article becomes `<slug of its title>.txt` with one SQuAD paragraph (`context`) per line, and a
`.meta.json` with its title, its Wikipedia address and the CC BY-SA 4.0 attribution, in `<workdir>/corpus`, with the
index in `<workdir>/index` (default workdir `~/.cache/nato-assistant/squad`). Files are rewritten only when their
content changed, so a second run reuses the folder and its index. After writing, the corpus is read back with the
assistant's own loader and every SQuAD paragraph must be exactly one passage (by text): the loader takes short lines
without closing punctuation for headings and leaves them out of the numbering, so line numbers are never trusted; a
paragraph that did not become a passage stops the run. A question's gold paragraph is the passage its context became.
The model file and saved model states stay in the assistant's usual cache folder (Settings' default cache_dir): a
cache_dir of its own would assemble a second copy of the 1.1 GB model file.

Split. By article, never by question: sort the titles (case-folded) and give the i-th article the split
`SPLIT_CYCLE[i % 2]`, i.e. dev, test, dev, test, ... (6 and 6). Dev articles are for tuning, test ones for reporting.

Sample. Per article, the answerable and the unanswerable questions are each sorted by id and shuffled with a seed made
of `SEED`, the article's slug and the kind; the first N of each are taken (so a smaller N is a prefix of a larger
one) and asked alternately. The all-together mode asks the first `--all-together` of each kind of the same sample.

Modes. "single": every article is its own scope (`answer(q, scope=doc_id)`, after `warm_up(doc_id)`). "all": the
same questions with all twelve articles at once (`scope=None`, after `warm_up(None)`).

Engines, in the same run, alternating which goes first case by case so that machine noise falls on all of them:
"ours" (this tree), "before" (`--before COMMIT`, checked out into a git worktree and run in a worker process, as
benchmarks/versions.py does) and "tutorial" (benchmarks/tutorial.py, LangChain's RAG tutorial, on every
`--baseline-every`-th case, built over the scope's text: one article, or all twelve). "ours" runs in this process
because the tutorial borrows its embedding and chat models (as benchmarks/generalization.py does): one copy of the
model in memory instead of two on a small machine. All three engines go through the same `handle()` (the worker
runs its source), and every time reported is the engine's own `timings`, so the process boundary is not measured.
Before any question, each engine loads its index and model once (reported as loading); then `warm_up(scope)` is
timed per scope: the one-time reading of that article (for the tutorial: building its index over that text).

Scoring, per case, after SQuAD's normalisation (lower case, no punctuation, no a/an/the, single spaces; `[n]`
markers are removed from the reply first): an answerable is right when it is not refused and some normalised gold
answer occurs in the normalised reply as whole words (not as any substring: "1" must not be found in "1562"); an
unanswerable is refused when the engine abstained, and "trap" marks a reply that gives its plausible (wrong) answer.
Citation of the gold paragraph: some citation's (doc_id, paragraph number) is the gold paragraph, over the answered
answerable cases (the tutorial has none). A failed answer (an exception) counts as neither right nor refused.

Kinds. Each record holds the question's category by benchmarks/squad_kinds.py (word rules, an approximation): for an
unanswerable, how it differs from the gold paragraph's sentence holding its trap (negation, antonym, impossible
condition, swapped entity, neighbouring thing, other word changed, other); for an answerable, what its wh-word asks
(who, when, how many/much, where, what/which, why/how, other). The report tabulates this tree's answers by kind, so
a missed target says which questions fail; for runs saved before records held it, --render reads the category from
the run's data file.

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0 (see ATTRIBUTION).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import random
import re
import shlex
import string
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import write_section
from benchmarks.squad_kinds import ANSWERABLE, UNANSWERABLE, question_kind

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad2" / "dev-v2.0-12-articles.json"
DEFAULT_WORKDIR = Path.home() / ".cache" / "nato-assistant" / "squad"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "squad.json"

# The split of the i-th article in case-folded title order is SPLIT_CYCLE[i % 2]: dev, test, dev, test, ...
SPLIT_CYCLE = ("dev", "test")
SEED = "squad2-sample-v1"  # changing it changes every sample: keep it fixed

ATTRIBUTION = (
    "Text from Wikipedia, via the SQuAD 2.0 dataset (Rajpurkar, Jia and Liang, \"Know What You Don't Know: "
    'Unanswerable Questions for SQuAD", ACL 2018), licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).'
)
START, END = "<!-- squad:start -->", "<!-- squad:end -->"
HEADING = "## Real articles: SQuAD 2.0"
MODES = {"single": "each article as its own scope", "all": "all articles together (scope=None)"}
ENGINES = ("ours", "retrieved", "before", "tutorial")
ASSISTANTS = ("ours", "retrieved", "before")  # the engines that are this project (cite, abstain, have targets)
TARGETS = {  # (key, label, target, higher is better, modes it applies to)
    "p50": ("whole answer p50", 5.0, False, ("single",)),
    "p95": ("whole answer p95", 10.0, False, ("single",)),
    "p50_all": ("whole answer p50", 8.0, False, ("all",)),
    "answerable_right": ("answerable right", 0.80, True, ("single", "all")),
    "unanswerable_refused": ("unanswerable refused", 0.80, True, ("single", "all")),
    "false_refusal": ("false refusals", 0.10, False, ("single", "all")),
    "citation_gold": ("citation of gold paragraph", 0.95, True, ("single", "all")),
}
# Characters str.splitlines() breaks at: a paragraph must stay one line of the corpus file.
_MARKER = re.compile(r"\[\d+\]")  # a citation marker in a reply
_PUNCTUATION = frozenset(string.punctuation)
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class SquadError(RuntimeError):
    """The data or the corpus built from it is not what the benchmark needs; the message says what is wrong."""


@dataclass(frozen=True)
class Article:
    """One SQuAD article: its slug (the corpus doc_id), title, split and paragraphs as written to the corpus."""

    slug: str
    title: str
    split: str
    paragraphs: tuple[str, ...]
    qas: tuple[tuple[int, dict], ...]  # (paragraph index, SQuAD question) for every question of the article


@dataclass(frozen=True)
class Case:
    """One question to ask, with what scores it: gold answers, trap answers and the gold passage."""

    qid: str
    article: str
    kind: str  # "answerable" or "unanswerable"
    question: str
    answers: tuple[str, ...]  # gold spans (answerable)
    traps: tuple[str, ...]  # plausible answers (unanswerable): what a careless reader would say
    gold: str  # passage_id of the paragraph the question was written against
    number: int  # its paragraph number in the article, as the corpus loader counts
    paragraph: str = ""  # the gold paragraph's text, which the question's category is read against


# ----- data and corpus -------------------------------------------------------------------------------------------
def slugify(title: str) -> str:
    """A file name and doc_id from a title: lower-case ASCII letters, digits and hyphens."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-") or "article"


def clean_paragraph(text: str) -> str:
    """The paragraph as one corpus line: line breaks become spaces, outer white space goes (the loader strips it)."""
    return _LINE_BREAKS.sub(" ", text).strip()


def load_articles(path: Path) -> list[Article]:
    """Read a SQuAD 2.0 JSON file into articles, each given its split by the rule of SPLIT_CYCLE."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SquadError(f"Cannot read the SQuAD file {path} ({exc}); pass its path with --data.") from exc
    raw = sorted(data["data"], key=lambda a: a["title"].casefold())
    articles, seen = [], set()
    for i, entry in enumerate(raw):
        slug = slugify(entry["title"])
        if slug in seen:
            raise SquadError(f"Two articles share the slug {slug!r}; their titles must differ in letters or digits.")
        seen.add(slug)
        paragraphs = tuple(clean_paragraph(p["context"]) for p in entry["paragraphs"])
        qas = tuple((j, qa) for j, p in enumerate(entry["paragraphs"]) for qa in p["qas"])
        articles.append(Article(slug, entry["title"].replace("_", " "), SPLIT_CYCLE[i % 2], paragraphs, qas))
    return articles


def corpus_files(article: Article) -> dict[str, str]:
    """File name -> content of the article's two corpus files."""
    meta = {
        "title": article.title,
        "source": "https://en.wikipedia.org/wiki/" + article.title.replace(" ", "_"),
        "attribution": ATTRIBUTION,
        "licence": "CC BY-SA 4.0",
    }
    return {
        f"{article.slug}.txt": "\n".join(article.paragraphs) + "\n",
        f"{article.slug}.meta.json": json.dumps(meta, indent=1, ensure_ascii=False) + "\n",
    }


def write_corpus(articles: list[Article], corpus_dir: Path) -> int:
    """Write the corpus folder, touching only files whose content changed (so the index is reused); return how
    many files were written. Files of articles no longer in the data are removed."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    wanted = {name: text for a in articles for name, text in corpus_files(a).items()}
    written = 0
    for name, text in wanted.items():
        path = corpus_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written += 1
    for path in corpus_dir.iterdir():
        if path.is_file() and path.name not in wanted and path.name.endswith((".txt", ".meta.json")):
            path.unlink()
            written += 1
    return written


def map_paragraphs(articles: list[Article], corpus_dir: Path) -> dict[str, list]:
    """slug -> the passage each paragraph became, read back with the assistant's loader; raises SquadError when a
    paragraph is not exactly one passage (taken for a heading, split, or repeated)."""
    from assistant.index.corpus import load_passages

    _, passages = load_passages(corpus_dir)
    by_doc: dict[str, dict[str, list]] = {}
    for p in passages:
        by_doc.setdefault(p.doc_id, {}).setdefault(p.text, []).append(p)
    mapping = {}
    for article in articles:
        texts = by_doc.get(article.slug, {})
        found = []
        for j, paragraph in enumerate(article.paragraphs):
            matches = texts.get(paragraph, [])
            if len(matches) != 1:
                why = "no passage (the loader took it for a heading?)" if not matches else f"{len(matches)} passages"
                raise SquadError(f"Paragraph {j + 1} of {article.title!r} became {why}: {paragraph[:80]!r}")
            found.append(matches[0])
        if len(found) != sum(len(v) for v in texts.values()):
            raise SquadError(f"The corpus file of {article.title!r} holds passages that are not SQuAD paragraphs.")
        mapping[article.slug] = found
    return mapping


def build_corpus(articles: list[Article], corpus_dir: Path) -> dict[str, list[Case]]:
    """Write (or reuse) the corpus and return every question of every article as a Case with its gold passage."""
    write_corpus(articles, corpus_dir)
    mapping = map_paragraphs(articles, corpus_dir)
    return {
        article.slug: [to_case(article, j, qa, mapping[article.slug][j]) for j, qa in article.qas]
        for article in articles
    }


def to_case(article: Article, j: int, qa: dict, passage=None) -> Case:
    """The Case of SQuAD question qa of paragraph j; without the passage it became, gold and number stay empty."""
    return Case(
        qid=qa["id"],
        article=article.slug,
        kind="unanswerable" if qa.get("is_impossible") else "answerable",
        question=qa["question"],
        answers=tuple(a["text"] for a in qa.get("answers") or ()),
        traps=tuple(a["text"] for a in qa.get("plausible_answers") or ()),
        gold=passage.passage_id if passage else "",
        number=passage.number if passage else 0,
        paragraph=article.paragraphs[j],
    )


# ----- choosing articles and questions ---------------------------------------------------------------------------
def choose_articles(articles: list[Article], split: str, names: list[str] | None, limit: int | None) -> list[Article]:
    """The articles to ask about: of the split, maybe only the named slugs, maybe only the first limit."""
    chosen = [a for a in articles if split in ("all", a.split)]
    if names:
        known = {a.slug for a in articles}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SquadError(f"No article {', '.join(unknown)}; choose from: {', '.join(sorted(known))}.")
        chosen = [a for a in chosen if a.slug in names]
        if not chosen:
            raise SquadError(f"None of {', '.join(names)} is in the {split} split; add --split all.")
    return chosen[:limit] if limit else chosen


def sample(cases: list[Case], n: int, key: str) -> list[Case]:
    """n cases chosen by a seeded shuffle of the id-sorted list: the same on every run, and a prefix for smaller n."""
    pool = sorted(cases, key=lambda c: c.qid)
    random.Random(f"{SEED}:{key}").shuffle(pool)
    return pool[:n]


def interleave(first: list, second: list) -> list:
    """first[0], second[0], first[1], ...: the kinds alternate, so a partial run still holds both."""
    out = []
    for i in range(max(len(first), len(second))):
        out += first[i : i + 1] + second[i : i + 1]
    return out


def article_sample(cases: list[Case], slug: str, answerable: int, unanswerable: int) -> list[Case]:
    """The fixed sample of one article: answerable and unanswerable questions, alternating."""
    yes = sample([c for c in cases if c.kind == "answerable"], answerable, f"{slug}:answerable")
    no = sample([c for c in cases if c.kind == "unanswerable"], unanswerable, f"{slug}:unanswerable")
    return interleave(yes, no)


def together_sample(chosen: list[Case], n: int) -> list[Case]:
    """The first n of each kind of an article's sample, for the all-together mode."""
    yes = [c for c in chosen if c.kind == "answerable"][:n]
    no = [c for c in chosen if c.kind == "unanswerable"][:n]
    return interleave(yes, no)


# ----- scoring ---------------------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, the articles a/an/the removed, white space collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


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


# ----- engines ---------------------------------------------------------------------------------------------------
def handle(bot, job: dict) -> dict:
    """Do one job with an assistant-like bot: "load" (index and model), "warm" (warm_up(scope)) or "answer".

    The same function serves every engine, here and (as source) in the worker of an earlier tree, so that all are
    driven and timed alike; it uses only the public Assistant API, which an older tree has too.
    """
    import time

    started = time.perf_counter()
    try:
        if job["do"] == "load":
            bot.load()
            model = bot.chat_model
            if hasattr(model, "load"):
                model.load()
            out = {}
        elif job["do"] == "warm":
            out = {"how": str(bot.warm_up(job["scope"]))}
        else:
            a = bot.answer(job["question"], None, scope=job["scope"])
            cited = [
                {"passage_id": c.passage_id, "doc_id": getattr(c, "doc_id", None), "number": getattr(c, "number", None)}
                for c in a.citations
            ]
            out = {
                "text": a.text,
                "abstained": bool(a.abstained),
                "reason": str(a.reason),
                "citations": cited,
                "timings": dict(a.timings),
                "draft": getattr(a, "draft", ""),
                "verdicts": [v.to_dict() for v in getattr(a, "verdicts", ())],
            }
    except Exception as exc:  # reported with the case; a failed load or warm-up stops the run (see Engine.run)
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - started, 4)
    return out


# Runs inside a worker started in another tree: one JSON job per line on stdin, one JSON result per line on stdout.
WORKER = f"""
import json, sys
sys.path.insert(0, sys.argv[1])
from assistant.answering import Assistant
from assistant.settings import Settings

{inspect.getsource(handle)}
bot = Assistant(Settings(corpus_dir=sys.argv[2], index_dir=sys.argv[3]))
print(json.dumps({{"ready": True}}), flush=True)
for line in sys.stdin:
    print(json.dumps(handle(bot, json.loads(line))), flush=True)
"""


class Engine:
    """An engine in this process: this tree's Assistant, or the tutorial behind the same interface."""

    def __init__(self, name: str, bot, cites: bool = True):
        self.name, self.bot, self.cites = name, bot, cites

    def run(self, job: dict) -> dict:
        """Do job (see handle); a failed load or warm-up is fatal, a failed answer is a case result."""
        out = self.call(job)
        if out.get("error") and job["do"] != "answer":
            raise SquadError(f"{self.name}: {job['do']} failed: {out['error']}")
        return out

    def call(self, job: dict) -> dict:
        """The job's result, unchecked."""
        return handle(self.bot, job)

    def close(self) -> None:
        """Nothing to stop for an engine in this process."""


class WorkerEngine(Engine):
    """An assistant of another tree in a worker process of its own (as benchmarks/versions.py runs one)."""

    def __init__(self, name: str, root: Path, corpus: Path, index: Path):
        super().__init__(name, None)
        args = [sys.executable, "-c", WORKER, str(root), str(corpus), str(index)]
        self.process = subprocess.Popen(args, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.read()  # ready

    def read(self) -> dict:
        """The worker's next JSON line (other output, such as a library's, is skipped)."""
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise SquadError(f"The {self.name} worker stopped (its error is above).")

    def call(self, job: dict) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        """End the worker: closing its stdin ends its loop."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


class TutorialBot:
    """LangChain's RAG tutorial (benchmarks/tutorial.py) shaped like an Assistant for handle().

    It has no scope, so warm_up(scope) builds its index over that scope's text (one article, or all of them): its
    one-time reading. It borrows the embedding and chat models of this tree's assistant, as generalization.py does.
    """

    def __init__(self, assistant):
        self.assistant = assistant
        self.pipelines: dict = {}

    def load(self):
        return self.assistant.load()

    @property
    def chat_model(self):
        return self.assistant.chat_model

    def warm_up(self, scope: str | None = None) -> str:
        """Build the tutorial's index over the scope's text (one article, or all)."""
        from benchmarks.tutorial import TutorialRAG

        rag = TutorialRAG(self.assistant.index.embeddings, self.assistant.chat_model)
        rag.build_index([d for d in self.assistant.documents if scope in (None, d.doc_id)])
        self.pipelines[scope] = rag
        return f"{rag.chunks} chunks"

    def answer(self, question: str, history=None, scope: str | None = None):
        """The tutorial's answer from the index of that scope (built now if warm_up was not called)."""
        if scope not in self.pipelines:
            self.warm_up(scope)
        return self.pipelines[scope].answer(question, history)


def short_commit(revision: str = "HEAD") -> str:
    """The short hash of revision; fails loudly on an unknown one."""
    done = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SquadError(f"git does not know {revision!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def tree_commit() -> str:
    """This tree's commit, with -dirty when tracked files differ from it."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return short_commit() + ("-dirty" if status.stdout.strip() else "")


def start_engines(args, corpus_dir: Path, tree: Path | None) -> dict[str, Engine]:
    """ours (in this process), before (a worker in tree, when given) and the tutorial, each loaded once."""
    from assistant.answering import Assistant
    from assistant.settings import Settings

    settings = Settings(corpus_dir=corpus_dir, index_dir=args.workdir / "index")
    ours = Assistant(settings)
    engines = {"ours": Engine("ours", ours)}
    if args.retrieved:
        # The same chat model, answering from the retrieved sentences even where it has read the article.
        retrieved = Assistant(settings.updated(whole_article=False), chat_model=ours.chat_model)
        engines["retrieved"] = Engine("retrieved", retrieved)
    if tree is not None:
        index = args.workdir / f"index-before-{short_commit(args.before)}"
        engines["before"] = WorkerEngine("before", tree, corpus_dir, index)
    if args.baseline_every:
        engines["tutorial"] = Engine("tutorial", TutorialBot(ours), cites=False)
    return engines


@contextlib.contextmanager
def before_tree(revision: str | None):
    """A temporary git worktree of revision (None: no tree), removed afterwards."""
    if not revision:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="squad-before-") as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True, capture_output=True
        )
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


# ----- running ---------------------------------------------------------------------------------------------------
def say(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def plan(chosen: list[Article], samples: dict[str, list[Case]], together: int) -> list[tuple]:
    """(mode, scope, cases) in the order they run: every article on its own, then all of them at once."""
    steps = [("single", a.slug, samples[a.slug]) for a in chosen]
    if together:
        steps.append(("all", None, [c for a in chosen for c in together_sample(samples[a.slug], together)]))
    return steps


def schedule(steps: list[tuple], engines: list[str], every: int, before_every: int = 1) -> list[tuple]:
    """(mode, scope, case, engine names in the order they answer) for every case.

    The tutorial joins every `every`-th case, the earlier commit every `before_every`-th (both are slow). Whoever
    goes first rotates each time the same set of engines meets, so that a slow moment of the machine falls on each
    engine alike.
    """
    jobs, uses, k = [], {}, 0
    for mode, scope, cases in steps:
        for case in cases:
            names = [n for n in ASSISTANTS if n in engines and (n != "before" or k % max(1, before_every) == 0)]
            if "tutorial" in engines and every and k % every == 0:
                names.append("tutorial")
            turn = uses.get(tuple(names), 0)
            uses[tuple(names)] = turn + 1
            r = turn % len(names)
            jobs.append((mode, scope, case, names[r:] + names[:r]))
            k += 1
    return jobs


def category(case: Case) -> str:
    """The case's kind by benchmarks/squad_kinds.py: what an answerable asks for, how an unanswerable was made."""
    return question_kind(case.question, case.paragraph, case.traps, answerable=case.kind == "answerable")


def record(case: Case, engine: str, mode: str, out: dict, cites: bool) -> dict:
    """What is saved of one answer: the case, the reply, its timings and its scores."""
    return {
        "id": case.qid,
        "article": case.article,
        "kind": case.kind,
        "category": category(case),
        "engine": engine,
        "mode": mode,
        "question": case.question,
        "reply": out.get("text") or "",
        "abstained": bool(out.get("abstained")),
        "reason": out.get("reason"),
        "citations": [c.get("passage_id") for c in out.get("citations") or []],
        "draft": out.get("draft") or "",  # what the model wrote before the checks: why a right answer was refused
        "verdicts": out.get("verdicts") or [],
        "gold": case.gold,
        "timings": out.get("timings") or {},
        "seconds": out.get("seconds"),
        "error": out.get("error"),
        "scores": score(case, out, cites),
    }


def run_schedule(engines: dict[str, Engine], jobs: list[tuple], results: dict, save) -> None:
    """Answer every job, warming each engine up on a scope just before its first case there; results grows as it
    goes and save(results) is called after every case, so an interrupted run keeps what it did."""
    done, total, warmed = 0, sum(len(names) for *_, names in jobs), set()
    for mode, scope, case, names in jobs:
        for name in names:
            engine = engines[name]
            if (mode, scope, name) not in warmed:
                out = engine.run({"do": "warm", "scope": scope})
                warmed.add((mode, scope, name))
                results["warm_up"].append(
                    {"engine": name, "mode": mode, "scope": scope, "seconds": out["seconds"], "how": out.get("how")}
                )
                say(f"warm_up({scope}) {name}: {out['seconds']:.1f} s ({out.get('how')})")
            out = engine.run({"do": "answer", "question": case.question, "scope": scope})
            rec = record(case, name, mode, out, engine.cites)
            results["cases"].append(rec)
            done += 1
            verdict = "error" if rec["error"] else "refused" if rec["abstained"] else "answered"
            good = rec["scores"]["right"] if case.kind == "answerable" else rec["scores"]["refused"]
            say(
                f"[{done}/{total}] {mode} {case.article} {case.kind} {name}: {out['seconds']:.1f} s, {verdict}"
                f" ({'ok' if good else 'miss'}) {(rec['error'] or rec['reply'])[:70]!r}"
            )
        save(results)


def describe(articles: list[Article], cases: dict[str, list[Case]]) -> dict:
    """What the run's JSON says of every article of the data."""
    return {
        a.slug: {
            "title": a.title,
            "split": a.split,
            "paragraphs": len(a.paragraphs),
            "answerable": sum(c.kind == "answerable" for c in cases[a.slug]),
            "unanswerable": sum(c.kind == "unanswerable" for c in cases[a.slug]),
        }
        for a in articles
    }


def run(args, argv: list[str]) -> dict:
    """Build the corpus, choose the cases, start the engines and answer; return (and keep saving) the results."""
    from benchmarks.__main__ import machine

    articles = load_articles(args.data)
    corpus_dir = args.workdir / "corpus"
    cases = build_corpus(articles, corpus_dir)
    chosen = choose_articles(articles, args.split, args.articles, args.limit_articles)
    samples = {a.slug: article_sample(cases[a.slug], a.slug, args.answerable, args.unanswerable) for a in chosen}
    results = {
        "command": "python -m benchmarks.squad " + shlex.join(argv),
        "commit": tree_commit(),
        "before": short_commit(args.before) if args.before else None,
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": machine(),
        "data": str(args.data),
        "attribution": ATTRIBUTION,
        "split": args.split,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "articles": describe(articles, cases),
        "chosen": [a.slug for a in chosen],
        "complete": False,
        "loading": {},
        "warm_up": [],
        "cases": [],
    }
    save = lambda r: write_json(r, args.out)  # noqa: E731
    with before_tree(args.before) as tree:
        engines = start_engines(args, corpus_dir, tree)
        try:
            for name in ASSISTANTS:
                if name in engines:
                    results["loading"][name] = engines[name].run({"do": "load"})["seconds"]
                    say(f"{name}: index and model loaded in {results['loading'][name]:.1f} s")
            steps = plan(chosen, samples, args.all_together)
            jobs = schedule(steps, list(engines), args.baseline_every, args.before_every)
            run_schedule(engines, jobs, results, save)
        finally:
            for engine in engines.values():
                engine.close()
    results["complete"] = True
    save(results)
    return results


def write_json(results: dict, path: Path) -> None:
    """Save results (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    partial.replace(path)


# ----- figures and the report ------------------------------------------------------------------------------------
def interval(share: float | None, n: int) -> tuple[float, float] | None:
    """The 95 % Wilson interval of a share of n cases (None without cases): 48 cases move by about ±0.07."""
    import math

    if share is None or n == 0:
        return None
    z = 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def share(flags: list) -> float | None:
    """The share of true flags among those that apply (None: none apply)."""
    flags = [f for f in flags if f is not None]
    return sum(map(bool, flags)) / len(flags) if flags else None


def figures(records: list[dict]) -> dict:
    """The report's figures over records (one engine, one mode, one article or all)."""
    from assistant.eval import compute_percentile

    def timing(key: str) -> list[float]:
        return [r["timings"][key] for r in records if key in (r.get("timings") or {})]

    yes = [r for r in records if r["kind"] == "answerable"]
    no = [r for r in records if r["kind"] == "unanswerable"]
    refusals = [r for r in records if r.get("abstained") and not r.get("error")]
    # When the reader sees the refusal: it is streamed before its correction is asked for (pipeline.correct).
    shown = [r["timings"]["total"] - r["timings"].get("correct", 0.0) for r in refusals if "total" in r["timings"]]
    return {
        "cases": len(records),
        "answerable": len(yes),
        "unanswerable": len(no),
        "errors": sum(bool(r.get("error")) for r in records),
        "answerable_right": share([r["scores"]["right"] for r in yes]),
        "unanswerable_refused": share([r["scores"]["refused"] for r in no]),
        "false_refusal": share([r["scores"]["false_refusal"] for r in yes]),
        "citation_gold": share([r["scores"]["citation_gold"] for r in yes]),
        "trap": share([r["scores"]["trap"] for r in no]),
        "corrected": share([corrected(r.get("reply", "")) for r in refusals]),
        "refusal_shown_p50": compute_percentile(shown, 50),
        "p50": compute_percentile(timing("total"), 50),
        "p95": compute_percentile(timing("total"), 95),
        "first_text_p50": compute_percentile(timing("first_text"), 50),
        "verify_p50": compute_percentile(timing("verify"), 50),
    }


def corrected(reply: str) -> bool:
    """True for a refusal that says what the article says instead ("The article does not say that …; it says …")."""
    from assistant.answer.state import NOT_IN_ARTICLE

    return reply.startswith(NOT_IN_ARTICLE.rstrip(".")) and reply.strip() != NOT_IN_ARTICLE


def summarise(records: list[dict]) -> dict:
    """mode -> engine -> article slug (and "overall") -> figures."""
    out: dict = {}
    for mode in MODES:
        for engine in ENGINES:
            mine = [r for r in records if r["mode"] == mode and r["engine"] == engine]
            if not mine:
                continue
            rows = {
                slug: figures([r for r in mine if r["article"] == slug])
                for slug in dict.fromkeys(r["article"] for r in mine)
            }
            rows["overall"] = figures(mine)
            out.setdefault(mode, {})[engine] = rows
    return out


def fmt(value, digits: int = 2, unit: str = "") -> str:
    """A figure for the table; – where it does not apply (no such cases, or no such timing)."""
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def with_interval(value: float | None, n: int) -> str:
    """A share with its 95 % interval: "0.72 (0.64–0.79)"."""
    bounds = interval(value, n)
    return fmt(value) if bounds is None else f"{value:.2f} ({bounds[0]:.2f}–{bounds[1]:.2f})"


def engine_label(results: dict, engine: str) -> str:
    """How the report names an engine: the assistants by their commit."""
    labels = {
        "ours": f"this tree ({results['commit']})",
        "retrieved": f"this tree, retrieved sentences only ({results['commit']}, ASSISTANT_WHOLE_ARTICLE=false)",
        "before": f"before ({results.get('before')})",
    }
    return labels.get(engine, "tutorial")


def mode_table(results: dict, mode: str, summary: dict) -> list[str]:
    """One mode's table: a row per article and engine, then an overall row per engine."""
    warm = {(w["mode"], w["scope"], w["engine"]): w["seconds"] for w in results.get("warm_up", [])}
    titles = {slug: a["title"] for slug, a in results["articles"].items()}
    lines = [
        f"**{MODES[mode][0].upper()}{MODES[mode][1:]}.**",
        "",
        "| article | engine | cases (ans.+unans.) | answerable right | unanswerable refused | false refusals "
        "| citation of gold ¶ | trap answer given | refusals corrected | whole answer p50 | p95 "
        "| first checked text p50 | refusal shown p50 | verification p50 | warm_up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    slugs = list(dict.fromkeys(s for rows in summary.values() for s in rows if s != "overall"))
    for slug in [*slugs, "overall"]:
        for engine, rows in summary.items():
            if slug in rows:
                seconds = warm.get((mode, None if slug == "overall" else slug, engine))
                name = "**overall**" if slug == "overall" else titles.get(slug, slug)
                lines.append(table_row(name, engine_label(results, engine), rows[slug], seconds))
    return [*lines, ""]


def table_row(name: str, engine: str, f: dict, warm_up: float | None) -> str:
    """One row of a mode's table."""
    errors = f" ({f['errors']} failed)" if f["errors"] else ""
    cells = [
        name,
        engine,
        f"{f['cases']} ({f['answerable']}+{f['unanswerable']}){errors}",
        with_interval(f["answerable_right"], f["answerable"]),
        with_interval(f["unanswerable_refused"], f["unanswerable"]),
        with_interval(f["false_refusal"], f["answerable"]),
        fmt(f["citation_gold"]),
        fmt(f["trap"]),
        fmt(f["corrected"]),
        fmt(f["p50"], 1, " s"),
        fmt(f["p95"], 1, " s"),
        fmt(f["first_text_p50"], 1, " s"),
        fmt(f["refusal_shown_p50"], 1, " s"),
        fmt(f["verify_p50"], 2, " s"),
        fmt(warm_up, 1, " s"),
    ]
    return "| " + " | ".join(cells) + " |"


def targets_line() -> str:
    """The targets, as the report states them (TARGETS holds the same numbers for missed())."""
    return (
        "Targets: single article whole answer p50 ≤ 5 s, p95 ≤ 10 s; all twelve together p50 ≤ 8 s; answerable right "
        "≥ 0.80, unanswerable refused (or premise corrected) ≥ 0.80, false refusals ≤ 0.10, citation of gold paragraph "
        "≥ 0.95. Shares are given with their 95 % interval (Wilson)."
    )


def missed(results: dict, summary: dict) -> list[str]:
    """Each overall figure of the assistant (this tree, and the earlier commit) that misses its target, by how much."""
    rows = []
    for mode, engines in summary.items():
        for engine in ASSISTANTS:
            f = engines.get(engine, {}).get("overall")
            if f is None:
                continue
            for key, (label, target, higher, modes) in TARGETS.items():
                value = f.get(key.removesuffix("_all"))
                if mode not in modes or value is None or (value >= target if higher else value <= target):
                    continue
                unit = " s" if key.startswith("p") else ""
                gap = f"{target - value:.2f} short" if higher else f"{value - target:.2f}{unit} over"
                sign = "≥" if higher else "≤"
                rows.append(
                    f"- {MODES[mode]}, {engine_label(results, engine)}: {label} {value:.2f}{unit}, "
                    f"target {sign} {target:.2f}{unit} ({gap})."
                )
    return ["Where a target is missed:", "", *rows, ""] if rows else ["Every target is met.", ""]


def with_categories(results: dict) -> list[dict]:
    """The records, each with its category: as saved or, for a run saved before records held one, read from its
    data file (results' "data", else DEFAULT_DATA); None where neither knows the question."""
    records = results["cases"]
    missing = {r["id"] for r in records if not r.get("category")}
    paths = [Path(p) for p in (results.get("data"), DEFAULT_DATA) if p and Path(p).is_file()]
    if not missing or not paths:
        return records
    found = {
        qa["id"]: category(to_case(article, j, qa))
        for article in load_articles(paths[0])
        for j, qa in article.qas
        if qa["id"] in missing
    }
    return [r if r.get("category") else {**r, "category": found.get(r["id"])} for r in records]


# (kind, the heading of its categories, those in order, the two scores shown, their labels)
KIND_TABLES = (
    ("unanswerable", "unanswerable, how it was made", UNANSWERABLE, ("refused", "trap"), ("refused", "trap given")),
    ("answerable", "answerable, what it asks", ANSWERABLE, ("right", "false_refusal"), ("right", "false refusal")),
)


def kinds_tables(results: dict) -> list[str]:
    """This tree's answers by kind of question, a table per kind with columns per mode: which kinds fail."""
    ours = [r for r in with_categories(results) if r["engine"] == "ours"]
    if not ours:
        return []
    if not any(r.get("category") for r in ours):
        return ["Which questions fail, by kind: not known (no SQuAD data file here holds the run's questions).", ""]
    modes = [m for m in MODES if any(r["mode"] == m for r in ours)]
    lines = [
        "Which questions fail, by kind (this tree; single = each article as its own scope, all = all together). "
        "Kinds are read by word rules (`benchmarks/squad_kinds.py`), an approximation of SQuAD 2.0's categories: "
        "an unanswerable by how it differs from the sentence holding its trap, an answerable by its wh-word.",
        "",
    ]
    for kind, heading, names, keys, labels in KIND_TABLES:
        mine = [r for r in ours if r["kind"] == kind]
        head = [heading, *(f"{m}: {c}" for m in modes for c in ("questions", *labels))]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for name in [*names, None]:
            rows = [[r for r in mine if r["mode"] == m and r.get("category") == name] for m in modes]
            if any(rows):
                cells = [str(name or "not known")]
                for got in rows:
                    cells += [str(len(got)), *(fmt(share([r["scores"][k] for r in got])) for k in keys)]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render(results: dict) -> str:
    """BENCHMARKS.md's section for a run: what was asked, a table per mode, the targets and what misses them."""
    options, summary = results.get("options", {}), summarise(results["cases"])
    chosen = [results["articles"][slug]["title"] for slug in results.get("chosen", [])]
    loading = ", ".join(f"{engine_label(results, k)} {v:.1f} s" for k, v in results.get("loading", {}).items())
    lines = [
        START,
        HEADING,
        "",
        f"Real, crowd-written questions on whole Wikipedia articles: {len(results['articles'])} articles of SQuAD "
        "2.0's development set, each its own corpus file with one SQuAD paragraph per line; about half the questions are "
        "SQuAD 2.0's adversarial unanswerables, whose plausible (wrong) answer is the trap. Split by article: the "
        "titles in sorted order go alternately to dev and test. "
        f"This run: {results['split']} split, {len(chosen)} article(s) ({', '.join(chosen)}); per article "
        f"{options.get('answerable')} answerable and {options.get('unanswerable')} unanswerable questions (a fixed "
        "seeded sample); "
        + (
            f"all {len(results['articles'])} articles together on the first {options['all_together']} of each kind"
            if options.get("all_together")
            else "all articles together: not run"
        )
        + "; the tutorial "
        + (f"on one case in {options['baseline_every']}." if options.get("baseline_every") else "not run.")
        + ("" if results.get("complete", True) else f" Interrupted run: {len(results['cases'])} answers."),
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Commit: `{results['commit']}`. "
        f"Command: `{results['command']}`. Loading index and model once per engine: {loading or '–'}; warm_up is "
        "the one-time reading of the scope (for the tutorial: building its index over that text).",
        "",
        f"Data: {results.get('attribution', ATTRIBUTION)}",
        "",
    ]
    for mode in MODES:
        if mode in summary:
            lines += mode_table(results, mode, summary[mode])
    lines += [
        "Scoring: SQuAD normalisation; right = not refused and a gold answer in the reply; citation of gold ¶ over "
        "answered answerable questions (the tutorial has no citations); trap = an unanswerable answered with its "
        'plausible answer; refusals corrected = refusals whose reply says what the article says instead ("The '
        "article does not say that …; it says …\"); times are the engine's own (whole answer, first checked text, "
        "verification); refusal shown = a refusal's whole answer less its correction, which comes after it.",
        "",
        targets_line(),
        "",
        *missed(results, summary),
        *kinds_tables(results),
        END,
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.squad", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="SQuAD 2.0 JSON file (default: %(default)s)")
    add("--workdir", type=Path, default=DEFAULT_WORKDIR, help="folder of the built corpus and its indexes")
    add("--out", type=Path, default=DEFAULT_OUT, help="JSON file of the results (default: %(default)s)")
    add("--split", choices=("dev", "test", "all"), default="test", help="articles to ask about (default: test)")
    add("--articles", nargs="+", metavar="SLUG", help="only these articles (slugs of their titles)")
    add("--limit-articles", type=int, metavar="N", help="only the first N articles of the split")
    add("--answerable", type=int, default=20, metavar="N", help="answerable questions per article (default: 20)")
    add("--unanswerable", type=int, default=20, metavar="N", help="unanswerable questions per article (default: 20)")
    add(
        "--all-together",
        type=int,
        default=5,
        metavar="N",
        help="N answerable and N unanswerable per article asked with all articles at once (default: 5; 0: skip)",
    )
    add("--before", metavar="COMMIT", help="also run this earlier commit, from a git worktree, in a worker")
    add("--baseline-every", type=int, default=4, metavar="N", help="the tutorial on every Nth case (0: never)")
    add("--before-every", type=int, default=1, metavar="N", help="the earlier commit on every Nth case (default: all)")
    add(
        "--retrieved",
        action="store_true",
        help="also this tree answering from the retrieved sentences only (ASSISTANT_WHOLE_ARTICLE=false)",
    )
    add("--render", type=Path, metavar="JSON", help="only rewrite BENCHMARKS.md's section from a saved run")
    add("--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="report file the section goes into")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.expanduser()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (the report goes to stdout, never into BENCHMARKS.md), or with --render only write it."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        if args.render:
            section = render(json.loads(args.render.read_text(encoding="utf-8")))
            write_section(section, args.markdown, START, END)
            print(section)
            return 0
        results = run(args, argv)
    except SquadError as exc:
        say(f"error: {exc}")
        return 1
    print(render(results))
    say(f"Saved {args.out}; `python -m benchmarks.squad --render {args.out}` puts it into BENCHMARKS.md.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
