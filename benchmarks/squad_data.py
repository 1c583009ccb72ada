"""The SQuAD benchmark's data: SQuAD 2.0 articles read, split, written as a corpus and mapped to its passages, and
the fixed sample of questions asked (see benchmarks/squad.py for the rules)."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad2" / "dev-v2.0-12-articles.json"
DEFAULT_WORKDIR = Path.home() / ".cache" / "nato-assistant" / "squad"


# The split of the i-th article in case-folded title order is SPLIT_CYCLE[i % 2]: dev, test, dev, test, ...
SPLIT_CYCLE = ("dev", "test")
SEED = "squad2-sample-v1"  # changing it changes every sample: keep it fixed


ATTRIBUTION = (
    "Text from Wikipedia, via the SQuAD 2.0 dataset (Rajpurkar, Jia and Liang, \"Know What You Don't Know: "
    'Unanswerable Questions for SQuAD", ACL 2018), licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).'
)
MODES = {"single": "each article as its own scope", "all": "all articles together (scope=None)"}


# Characters str.splitlines() breaks at: a paragraph must stay one line of the corpus file.
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
