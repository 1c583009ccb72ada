"""The pipeline's own runs on SQuAD 2.0 articles, kept for fitting the decision (assistant/answer/decision.py).

    python -m benchmarks.runs collect --split dev --per-article 90 [--store DIR] [--workdir DIR]
    python -m benchmarks.runs questions --split all [--per-article N] [--store DIR]

`collect` answers each sampled question with the real pipeline, letting every sentence the word check keeps
through the judge (verify_threshold 0, no correction), so that the answer the model would give is seen whole; with
--claim each judged sentence is also put to the second judgement framing (prompts/entails.txt: does the evidence
state this answer?), which on the first 96 judged sentences of the dev articles separated right answers from traps
worse than the judgement (ROC AUC 0.76 against 0.92) and added nothing to it. It saves, per question, a JSON line (the question, its kind, gold and trap answers, the reply, every
verdict with its passages and P(yes), the retrieved passages with their distances, the
timings) and the hidden states of the tapped layers at three places: the question's end (before the first answer
token), after each judged sentence, and each judgement's end (`states/<id>.npz`, float16).

`questions` reads only the question's end for every question (the prompt is read, no answer is generated): the
cheap way to thousands of examples for a question probe.

Both are background jobs that show progress and can be stopped and started again: a question already saved is
skipped. They write outside the repository (default `~/.cache/nato-assistant/runs`); a refit then takes seconds
(`python -m benchmarks.decision fit`).

Data: SQuAD 2.0 (Rajpurkar, Jia and Liang, ACL 2018), text from Wikipedia, CC BY-SA 4.0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.squad_data import (
    ATTRIBUTION,
    DEFAULT_DATA,
    DEFAULT_WORKDIR,
    article_sample,
    build_corpus,
    choose_articles,
    load_articles,
)
from benchmarks.squad_engines import tree_commit
from benchmarks.squad_run import say
from benchmarks.squad_scoring import category

DEFAULT_STORE = Path.home() / ".cache" / "nato-assistant" / "runs"
LAYERS = (4, 8, 12, 16, 20, 24, 27)  # Qwen2.5-1.5B has 28; the probe check found the late ones best


def settings_for(args):
    """The assistant's settings for a collecting run: every judged sentence passes, every state is read."""
    from assistant.settings import Settings

    return Settings(
        corpus_dir=args.workdir / "corpus",
        index_dir=args.workdir / "index",
        verify_threshold=0.0,
        decision=False,
        question_words=False,
        early_refusal=False,
        correct_premise="off",
        probe_layers=LAYERS,
    )


def save_states(path: Path, states: dict[str, dict | None]) -> None:
    """Write {place: {layer: vector}} as one .npz of float16 arrays named place_layer (atomically)."""
    import numpy as np

    arrays = {
        f"{place}_{layer}": np.asarray(vector, dtype=np.float16)
        for place, by_layer in states.items()
        if by_layer
        for layer, vector in by_layer.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays)
    tmp.replace(path)


def case_fields(case) -> dict:
    return {
        "id": case.qid,
        "article": case.article,
        "kind": case.kind,
        "category": category(case),
        "question": case.question,
        "answers": list(case.answers),
        "traps": list(case.traps),
        "gold": case.gold,
    }


def collect_one(bot, case, states_dir: Path, claim: bool = False) -> dict:
    """Answer case with the pipeline (with claim, judge each verdict's sentence under the second framing too);
    save the states."""
    started = time.perf_counter()
    answer = bot.answer(case.question, None, scope=case.article)
    checker = bot.parts.fact_checker
    verdicts, states = [], {}
    for i, verdict in enumerate(answer.verdicts):
        places = dict(verdict.states or {})
        row = verdict.to_dict()
        if claim:
            second = checker.judge(answer.standalone_question, verdict.sentence, list(verdict.evidence))
            row["p_claim"], places["claim"] = second.p_yes, second.states
        verdicts.append(row)
        for place, by_layer in places.items():
            key = "question" if place == "question" else f"{place}{i}"
            if by_layer and key not in states:
                states[key] = by_layer
    if states:
        save_states(states_dir / f"{case.qid}.npz", states)
    return case_fields(case) | {
        "reply": answer.text,
        "abstained": answer.abstained,
        "reason": answer.reason,
        "draft": answer.draft,
        "citations": [c.passage_id for c in answer.citations],
        "verdicts": verdicts,
        "passages": [{"id": p.passage_id, "score": p.score, "distance": p.distance} for p in answer.passages],
        "timings": answer.timings,
        "seconds": round(time.perf_counter() - started, 3),
    }


def question_state(bot, case) -> dict | None:
    """The state at the question's end, as the pipeline would read it (None: refused before the model)."""
    from assistant.answer.gate import gate
    from assistant.answer.retrieve import retrieve
    from assistant.answer.state import AnswerState

    parts = bot.parts
    state = AnswerState(case.question, [], bot.view(case.article))
    for stage in (retrieve, gate):
        state = state.apply(stage(state, parts))
        if state.reason:
            return None
    messages = parts.prompts.answer.format_messages(
        title=state.title, context=state.context, history=[], question=case.question
    )
    sink: list = []
    for _ in parts.tokens(messages, hidden_states=sink, max_tokens=1):
        pass
    return sink[0] if sink else None


def done_ids(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def run(args, argv: list[str]) -> None:
    from assistant.answering import Assistant

    articles = load_articles(args.data)
    cases = build_corpus(articles, args.workdir / "corpus")
    chosen = choose_articles(articles, args.split, args.articles, None)
    store = args.store
    store.mkdir(parents=True, exist_ok=True)
    (store / "about.json").write_text(
        json.dumps(
            {
                "command": "python -m benchmarks.runs " + " ".join(argv),
                "commit": tree_commit(),
                "layers": LAYERS,
                "data": str(args.data),
                "attribution": ATTRIBUTION,
            },
            indent=1,
        )
    )
    bot = Assistant(settings_for(args))
    bot.load()
    out_path = store / ("runs.jsonl" if args.command == "collect" else "questions.jsonl")
    seen = done_ids(out_path)
    todo = [
        (a, c)
        for a in chosen
        for c in (
            article_sample(cases[a.slug], a.slug, args.per_article, args.per_article)
            if args.per_article
            else cases[a.slug]
        )
        if c.qid not in seen
    ]
    say(f"{len(todo)} questions to do ({len(seen)} already saved) -> {out_path}")
    warmed, started = set(), time.perf_counter()
    with out_path.open("a", encoding="utf-8") as out:
        for n, (article, case) in enumerate(todo, 1):
            if article.slug not in warmed:
                say(f"reading {article.slug}: {bot.warm_up(article.slug)}")
                warmed.add(article.slug)
            if args.command == "collect":
                row = collect_one(bot, case, store / "states", args.claim)
            else:
                vector = question_state(bot, case)
                if vector:
                    save_states(store / "questions" / f"{case.qid}.npz", {"question": vector})
                row = case_fields(case) | {"read": vector is not None}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            rate = (time.perf_counter() - started) / n
            say(
                f"[{n}/{len(todo)}] {article.slug} {case.kind}: {rate:.1f} s each, "
                f"{rate * (len(todo) - n) / 60:.0f} min left"
            )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("collect", "questions"))
    parser.add_argument("--split", default="dev", choices=("dev", "test", "all"))
    parser.add_argument("--per-article", type=int, default=90, help="answerable and unanswerable each; 0: all")
    parser.add_argument("--articles", nargs="*", help="only these article slugs")
    parser.add_argument("--claim", action="store_true", help="also judge each sentence under prompts/entails.txt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run(parse_args(argv), argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
