"""The shadow stage through the CLI: the candidate answers the same requests in the
background (`shadow:v2` rows, from `simulate.generate_shadow`); the flag stays at 0%."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rolloutctl import simulate
from tests.conftest import PLAYBOOK, START, Workspace

STAGES = """\
stages:
  - {name: shadow, kind: shadow, min_duration: 1h, min_samples_per_arm: 2000}
  - {name: c1, traffic: 20, min_duration: 1h}
"""


def shadow_rollout(ws: Workspace, scenario: str) -> None:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    ws.playbook.write_text(head + STAGES + tail[tail.index("triggers:") :])
    frame = simulate.generate_shadow(
        scenario, START, START + timedelta(hours=3), requests_per_hour=20_000, seed=21
    )
    simulate.write(frame, ws.root / "data" / "shadow.parquet")
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert ws.state()["stage"] == "shadow" and ws.state()["canary_percent"] == 0


def test_an_equivalent_candidate_passes_the_shadow_stage(ws: Workspace) -> None:
    shadow_rollout(ws, "healthy")
    early = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=30))
    assert early.code == 11, early.out + early.err
    assert any("minimum duration" in r for r in early.json()["reasons"])
    assert ws.flag.get("targeting") is None  # nobody is served the candidate
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=3))
    assert r.code == 0, r.out + r.err
    gate = r.json()
    assert (gate["verdict"], gate["decision"]) == ("pass", "advance")
    names = {m["name"] for m in gate["metrics"]}
    assert {"p95_latency_ms", "cost_per_request", "shadow_error_rate", "shadow_coverage"} <= names
    assert ws.state()["stage"] == "c1" and ws.state()["canary_percent"] == 20


def test_a_shadow_latency_regression_rolls_back_before_any_user_sees_it(ws: Workspace) -> None:
    shadow_rollout(ws, "latency_regression")
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=3))
    assert r.code == 10, r.out + r.err
    gate = r.json()
    assert (gate["verdict"], gate["decision"]) == ("fail", "rollback")
    failing = {m["name"] for m in gate["metrics"] if m["verdict"] == "fail" and m["vetoes"]}
    assert "p95_latency_ms" in failing
    assert any("latency" in reason for reason in gate["reasons"])
    assert ws.state()["status"] == "rolled_back" and ws.state()["canary_percent"] == 0
    report = Path(gate["report"]).read_text()
    assert "paired by request_id" in report and "Rolled back at shadow" in report
