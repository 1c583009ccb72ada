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
import json
import sys
from pathlib import Path

from benchmarks.report import write_section
from benchmarks.squad_data import DEFAULT_DATA, DEFAULT_WORKDIR, ROOT, SquadError
from benchmarks.squad_report import END, START, render
from benchmarks.squad_run import run, say

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "squad.json"


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
