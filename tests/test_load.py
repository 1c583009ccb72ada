"""Load test through the running web server: 20 concurrent sessions of 5 questions, 0 errors, answers right and cited."""

from __future__ import annotations

import pytest

from assistant import web
from assistant.settings import Settings
from benchmarks.load import run_load


@pytest.mark.real
def test_twenty_concurrent_sessions(free_port, capsys):
    settings = Settings(port=free_port())
    demo = web.build_app(settings)
    url = web.launch(demo, settings, block=False)
    try:
        assert demo.warmup.done.wait(600) and demo.warmup.state == "ready"
        report = run_load(url, sessions=20, questions=5, time_limit=1500)
    finally:
        demo.close()
    with capsys.disabled():
        print(
            f"\nload: {report['requests']} requests in {report['wall_s']:.0f} s, {report['errors']} errors, "
            f"{report['wrong']} wrong, p50 {report['p50_s']:.1f} s, p95 {report['p95_s']:.1f} s, "
            f"max {report['max_s']:.1f} s"
        )
    assert report["requests"] == 100
    assert report["errors"] == 0, report["failures"]
    assert report["wrong"] == 0, report["failures"]
