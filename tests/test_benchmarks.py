"""Smoke run of the benchmarks (few questions, small corpora), so the script keeps working; figures are not gated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from assistant.settings import PROJECT_ROOT


@pytest.mark.real
def test_quick_benchmark_runs_and_reports_both_pipelines(tmp_path):
    out = tmp_path / "BENCH.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--plot", str(tmp_path / "scale.png")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for figure in (
        "first token p50",
        "whole answer p95",
        "cold start",
        "index build",
        "peak memory",
        "answer accuracy",
    ):
        assert f"| {figure}" in report
    assert "| 1 | 11 |" in report  # the scale table's one-article row
    assert (tmp_path / "scale.png").stat().st_size > 1000
