"""Charts off the critical path: a gate command decides, acts and prints first; its report is
drawn after, before the process exits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rolloutctl import engine
from rolloutctl.context import Context
from rolloutctl.state.registry import open_store
from tests.conftest import START, Workspace


def test_the_verdict_is_ready_before_the_report_is_drawn(ws: Workspace) -> None:
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=3, rate=20_000)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    queued: list = []
    ctx = Context(
        store=open_store(str(ws.root / "state")),
        actor="tester",
        reports_dir=ws.root / "reports",
        clock=lambda: START + timedelta(hours=2),
        deferred=queued,
    )
    outcome = engine.advance(ctx, "shop-answers")
    assert outcome.gate is not None and outcome.gate.verdict == "fail"
    assert ws.state()["status"] == "rolled_back"  # acted on
    report = Path(outcome.gate.report)
    report = report if report.is_absolute() else ws.root / report
    assert len(queued) == 1 and not report.exists()  # decided, not yet drawn
    assert queued.pop()() == []
    assert report.exists() and "hallucination" in report.read_text()


def test_through_the_cli_the_report_lands_before_the_process_exits(ws: Workspace) -> None:
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=3, rate=20_000)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    r = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=2))
    assert r.code == 10
    assert (ws.root / r.json()["report"]).exists()
