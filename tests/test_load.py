"""Load test through the running web server: 20 concurrent sessions of 2 questions (most of them a question and its
follow-up), 0 errors, answers right and cited. Two, not five: the queue is as deep at 20 sessions either way, and
CI's time is bounded (python -m benchmarks.load runs more)."""

from __future__ import annotations

import pytest

from assistant import web
from assistant.answering import Assistant
from assistant.settings import Settings
from benchmarks.load import FOLLOW_UP, POOL, plan_for, run_load


@pytest.mark.real
def test_twenty_concurrent_sessions(free_port, capsys, assistant):
    settings = Settings(port=free_port())
    bot = Assistant(settings, chat_model=assistant.chat_model, embeddings=assistant.index.embeddings)
    demo = web.build_app(settings, bot)  # the session's warmed model: one model in memory, read once
    url = web.launch(demo, settings, block=False)
    try:
        assert demo.warmup.done.wait(600) and demo.warmup.state == "ready"
        report = run_load(url, sessions=20, questions=2, time_limit=1500)
    finally:
        demo.close()
    with capsys.disabled():
        print(
            f"\nload: {report['requests']} requests in {report['wall_s']:.0f} s, {report['errors']} errors, "
            f"{report['wrong']} wrong, p50 {report['p50_s']:.1f} s, p95 {report['p95_s']:.1f} s, "
            f"max {report['max_s']:.1f} s"
        )
    assert report["requests"] == 40
    assert report["errors"] == 0, report["failures"]
    assert report["wrong"] == 0, report["failures"]


def test_sessions_ask_follow_ups_refusals_and_injections_at_any_length():
    for questions in (2, 3, 5):
        plans = [plan_for(s, questions) for s in range(20)]
        assert all(len(p) == questions for p in plans)
        asked = [q for plan in plans for q in plan]
        for plan in plans:  # a follow-up always comes right after the question it follows up
            assert all(plan[i - 1] == POOL[0] for i, q in enumerate(plan) if q == FOLLOW_UP)
        assert asked.count(FOLLOW_UP) >= 10
        assert {q for q, pattern, _ in asked if pattern is None} >= {POOL[5][0], POOL[7][0]}
