"""Servers against one process: index build and answer latency with a Chroma server and llama.cpp's model server,
next to the embedded store and the in-process model. Starts and stops both servers itself, on 127.0.0.1 only.

python -m benchmarks.servers                  # 5 questions ×2 rounds, 3 index builds per set-up, markdown table
python -m benchmarks.servers --haystack 100   # also time index builds of a 100-document corpus
python -m benchmarks.servers --questions 3 --rounds 1 --builds 1 --out servers.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

QUESTIONS = [
    "Who described the moment as NATO 3.0?",
    "Which countries will exceed the new spending target?",
    "Who is the NATO Secretary General?",
    "What is Germany's defence minister called?",
    "What will the US not replace in Romania?",
    "Where has NATO increased its vigilance?",
    "What did the Dutch defence minister highlight?",
]
LOCAL, REMOTE = "embedded store + in-process model", "Chroma server + llama.cpp server"
SERVER_TIMEOUT_S = 900.0  # a CPU-bound model server can take minutes over a long prompt: never give up on it first


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process on 127.0.0.1, logging to a file; stop() ends it and anything it spawned."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict | None = None):
        self.name, self.log_path = name, log
        self.log = log.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.startup = float("nan")

    def wait_until(self, ready, timeout: float) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if ready():
                    self.startup = time.perf_counter() - self.started
                    return self
            except Exception:  # not listening yet
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


def start_chroma(work: Path) -> tuple[Server, int]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    command = [str(chroma), "run", "--path", str(work / "chroma-data"), "--port", str(port), "--host", "127.0.0.1"]
    server = Server("chroma", command, work / "chroma.log", dict(os.environ, ANONYMIZED_TELEMETRY="False"))
    settings = ChromaSettings(anonymized_telemetry=False)
    return server.wait_until(
        lambda: chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings).heartbeat(), 60
    ), port


def start_llama_server(work: Path, model: Path, threads: int) -> tuple[Server, int]:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads), "--interrupt_requests", "false"]
    server = Server("llama_cpp.server", command, work / "llama-server.log")

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
            return bool(json.load(response)["data"])

    return server.wait_until(ready, 120), port


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def say(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5, help="questions timed per set-up (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="times each question is asked per set-up (default 2)")
    parser.add_argument("--builds", type=int, default=3, help="index builds per set-up (default 3)")
    parser.add_argument("--haystack", type=int, default=0, help="also time index builds of N generated documents")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: the settings' corpus)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.disable(logging.WARNING)

    from assistant.index.corpus import load_passages
    from assistant.index.indexing import load_embeddings
    from assistant.index.models import chat_model_file
    from assistant.settings import Settings
    from benchmarks.__main__ import machine

    base = Settings(**({"corpus_dir": args.corpus} if args.corpus else {}))
    threads = base.generation.llm_threads or os.cpu_count() or 2
    model = chat_model_file(base)
    embeddings = load_embeddings(base)
    documents, passages = load_passages(base.paths.corpus_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    servers: list[Server] = []
    try:
        say("Starting the Chroma server and the llama.cpp server…")
        chroma, chroma_port = start_chroma(work)
        servers.append(chroma)
        llama, llama_port = start_llama_server(work, model, threads)
        servers.append(llama)
        setups = {
            LOCAL: base.updated(index_dir=work / "index"),
            REMOTE: remote_settings(base, work, chroma_port, llama_port),
        }
        measured = {"builds": time_index_builds(args, setups, work, embeddings, (documents, passages))}
        measured |= time_first_answers(setups, embeddings)
        measured |= time_warm_answers(args, measured["bots"])
    finally:
        for server in reversed(servers):
            server.stop()
    lines = [
        f"Machine: {machine()}. Command: `python -m benchmarks.servers {' '.join(sys.argv[1:])}`.",
        f"Corpus: {len(documents)} document(s), {len(passages)} passages. Model threads: {threads} (both set-ups).",
        "",
        *table(args, list(setups), measured, chroma.startup, llama.startup),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0


def remote_settings(base, work: Path, chroma_port: int, llama_port: int):
    """The settings of the server set-up: the Chroma server and llama.cpp's OpenAI-compatible server."""
    return base.model_copy(
        update={
            "index_dir": work / "unused",
            "cache_dir": work / "cache",
            "chroma_host": "127.0.0.1",
            "chroma_port": chroma_port,
            "llm_backend": "openai",
            "llm_base_url": f"http://127.0.0.1:{llama_port}/v1",
            "llm_model_name": "default",
            "llm_timeout": SERVER_TIMEOUT_S,
            # llama.cpp's server defaults to repeat_penalty 1.1; the in-process model decodes with 1.0.
            "llm_extra_body": {"repeat_penalty": 1.0},
        }
    )


def time_index_builds(args, setups: dict, work: Path, embeddings, corpus: tuple) -> dict[str, dict[str, list[float]]]:
    """Index build from nothing, alternating set-ups so that machine noise hits both: label -> set-up -> seconds."""
    from assistant.index.corpus import load_passages
    from assistant.index.indexing import PassageIndex

    corpora = {"": corpus}
    if args.haystack:
        from benchmarks.haystack import build_haystack

        article = next(d.path for d in corpus[0])
        corpora[f", {args.haystack} documents"] = load_passages(build_haystack(work / "hay", args.haystack, article))
    builds: dict[str, dict[str, list[float]]] = {}
    for label, (docs, parts) in corpora.items():
        say(f"Index build ({len(parts)} passages) ×{args.builds}…")
        label = f"index build from nothing ({len(parts)} passages{label}, median of {args.builds})"
        builds[label] = {name: [] for name in setups}
        for r in range(args.builds):
            for name, settings in setups.items():
                s = settings.updated(
                    index_dir=work / f"index-{len(parts)}-{r}", collection_name=f"build-{len(parts)}-{r}"
                )
                builds[label][name].append(PassageIndex(s, embeddings).open(docs, parts, rebuild=True).seconds)
    return builds


def time_first_answers(setups: dict, embeddings) -> dict:
    """Start-up to the first answer: the in-process model loads and restores (or reads) the article prefix; the
    model server, already up, reads the article on its first request."""
    from assistant.answering import Assistant

    say("First answers…")
    bots, first, warm = {}, {}, {}
    for name, settings in setups.items():
        started = time.perf_counter()
        bots[name] = Assistant(settings, embeddings=embeddings)
        warm[name] = bots[name].warm_up()  # in-process: "restored" (saved state) or "computed"; remote: "skipped"
        bots[name].answer(QUESTIONS[-1])
        first[name] = time.perf_counter() - started
    return {"bots": bots, "first": first, "warm": warm}


def time_warm_answers(args, bots: dict) -> dict:
    """Warm answers, alternating set-ups question by question: each answer's timings, and how many were answered."""
    say(f"Answer latency over {args.questions} questions ×{args.rounds}…")
    timings: dict[str, list[dict]] = {name: [] for name in bots}
    answered: dict[str, int] = dict.fromkeys(bots, 0)
    for question in QUESTIONS[: args.questions] * args.rounds:
        for name, bot in bots.items():
            answer = bot.answer(question)
            timings[name].append(answer.timings)
            answered[name] += not answer.abstained
            say(f"  {name}: {answer.timings.get('total', 0):.2f} s  {answer.text[:70]!r}")
    return {"timings": timings, "answered": answered}


def table(args, setups: list[str], measured: dict, chroma_startup: float, llama_startup: float) -> list[str]:
    """The report's table of both set-ups, and a line on start-up."""
    timings, warm = measured["timings"], measured["warm"]

    def row(label: str, values: dict[str, float], unit: str = " s", fmt: str = "{:.2f}") -> str:
        cells = [(fmt.format(values[name]) + unit) if values[name] == values[name] else "–" for name in setups]
        return f"| {label} | {' | '.join(cells)} |"

    def stat(key: str) -> dict[str, float]:
        return {name: median([t[key] for t in timings[name] if key in t]) for name in setups}

    n = args.questions * args.rounds
    answered = {k: float(v) for k, v in measured["answered"].items()}
    return [
        f"| figure | {LOCAL} | {REMOTE} |",
        "|---|---|---|",
        *(row(label, {k: median(v) for k, v in b.items()}) for label, b in measured["builds"].items()),
        row("server start-up (until it answers)", {LOCAL: float("nan"), REMOTE: max(chroma_startup, llama_startup)}),
        row("first answer after start-up (reads the article)", measured["first"]),
        row(f"retrieval, median of {n}", {k: v * 1000 for k, v in stat("retrieve").items()}, " ms", "{:.0f}"),
        row(f"first token, median of {n}", stat("first_token")),
        row(f"first checked text, median of {n}", stat("first_text")),
        row(f"whole answer, median of {n}", stat("total")),
        row("questions answered (not refused)", answered, f" / {n}", "{:.0f}"),
        "",
        f"Server start-up: Chroma {chroma_startup:.1f} s, llama.cpp server {llama_startup:.1f} s (model load). "
        f"The first answer includes building the index and reading the article: in-process, the article prefix was "
        f"{warm[LOCAL]} (saved state); the model server reads it on its first request.",
    ]


if __name__ == "__main__":
    sys.exit(main())
