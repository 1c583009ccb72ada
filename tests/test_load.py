"""Load test through the running web server: 20 concurrent sessions of 3 questions (one of them a follow-up), 0
errors, answers right and cited. Three, not five: the queue is as deep at 20 sessions either way, and CI's time is
bounded (python -m benchmarks.load runs more)."""

from __future__ import annotations

import pytest

from assistant import web
from assistant.answering import Assistant
from assistant.settings import Settings
from benchmarks.load import run_load


@pytest.mark.real
def test_twenty_concurrent_sessions(free_port, capsys, assistant):
    settings = Settings(port=free_port())
    bot = Assistant(settings, chat_model=assistant.chat_model, embeddings=assistant.index.embeddings)
    demo = web.build_app(settings, bot)  # the session's warmed model: one model in memory, read once
    url = web.launch(demo, settings, block=False)
    try:
        assert demo.warmup.done.wait(600) and demo.warmup.state == "ready"
        report = run_load(url, sessions=20, questions=3, time_limit=1500)
    finally:
        demo.close()
    with capsys.disabled():
        print(
            f"\nload: {report['requests']} requests in {report['wall_s']:.0f} s, {report['errors']} errors, "
            f"{report['wrong']} wrong, p50 {report['p50_s']:.1f} s, p95 {report['p95_s']:.1f} s, "
            f"max {report['max_s']:.1f} s"
        )
    assert report["requests"] == 60
    assert report["errors"] == 0, report["failures"]
    assert report["wrong"] == 0, report["failures"]
