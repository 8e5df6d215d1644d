"""The stages before the canary, through the CLI: a smoke test against a local
OpenAI-compatible server, and an offline eval on the eval files of tests/data/evalfiles
(baseline v1 fails q03, q08, q11; candidate v2 fails q05 in health and q11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rolloutctl import schemas
from tests.conftest import PLAYBOOK, START, Workspace
from tests.stages.test_smoke_calls import KEY, MODEL, Server

EVALS = Path(__file__).resolve().parents[1] / "data" / "evalfiles" / "jsonl"

STAGES = """\
stages:
  - {name: smoke, kind: smoke, endpoint: "${CANDIDATE_BASE_URL}", model: v2, api_key: "${CANDIDATE_API_KEY}", timeout: 2s}
  - {name: offline-eval, kind: offline_eval, source: evals, min_pass_rate: 0.8, no_new_failures_in: [health]}
  - {name: c1, traffic: 20, min_duration: 1h}
  - {name: c2, traffic: 50, min_duration: 1h}
"""


def playbook(candidate: Path, min_pass_rate: float = 0.8) -> str:
    text = PLAYBOOK.replace(
        '  requests: {kind: requestlog, path: "data/*.parquet"}\n',
        '  requests: {kind: requestlog, path: "data/*.parquet"}\n'
        f"  evals: {{kind: evalfile, baseline: '{EVALS / 'v1.jsonl'}', "
        f"candidate: '{candidate}'}}\n",
    )
    head, _, tail = text.partition("stages:\n")
    stages = STAGES.replace("min_pass_rate: 0.8", f"min_pass_rate: {min_pass_rate}")
    return head + stages + tail[tail.index("triggers:") :]


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def endpoint(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("CANDIDATE_BASE_URL", f"{server.url}/good")
    monkeypatch.setenv("CANDIDATE_API_KEY", KEY)
    return server


def test_smoke_then_offline_eval_finds_the_new_failure_in_health(
    ws: Workspace, endpoint: Server
) -> None:
    ws.playbook.write_text(playbook(EVALS / "v2.jsonl"))
    assert ws.run("validate", str(ws.playbook)).code == 0
    started = ws.run("start", str(ws.playbook), now=START)
    assert started.code == 0, started.err
    assert ws.state()["stage"] == "smoke" and ws.state()["canary_percent"] == 0
    assert ws.flag.get("targeting") is None  # nobody gets the candidate yet

    smoke = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=1))
    assert smoke.code == 0, smoke.out + smoke.err
    gate = smoke.json()
    assert (gate["verdict"], gate["decision"]) == ("pass", "advance")
    assert {m["name"] for m in gate["metrics"]} >= {"reachable", "auth", "usage", "latency"}
    assert all(m["verdict"] == "pass" for m in gate["metrics"])
    assert ws.state()["stage"] == "offline-eval" and ws.state()["canary_percent"] == 0
    assert KEY not in smoke.out + smoke.err
    assert KEY not in Path(gate["report"]).read_text()

    evaluated = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=2))
    assert evaluated.code == 10, evaluated.out + evaluated.err
    gate = evaluated.json()
    assert (gate["verdict"], gate["decision"]) == ("fail", "rollback")
    assert any("new failures in health: q05" in r for r in gate["reasons"])
    rows = {(m["name"], json.dumps(m["segment"])): m for m in gate["metrics"]}
    assert rows[("new_failures", '{"category": "health"}')]["verdict"] == "fail"
    assert rows[("pass_rate", "null")]["verdict"] == "pass"  # 10 of 12 pass: above 80%
    assert rows[("pass_rate", "null")]["canary"]["value"] == pytest.approx(10 / 12)
    assert ws.state()["status"] == "rolled_back"
    report = Path(gate["report"]).read_text()
    assert "Offline eval checks" in report and "q05" in report


def test_an_identical_eval_passes_into_the_canary(ws: Workspace, endpoint: Server) -> None:
    ws.playbook.write_text(playbook(EVALS / "v1.jsonl", min_pass_rate=0.75))  # 9 of 12 pass
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert ws.run("advance", "shop-answers", now=START + timedelta(minutes=1)).code == 0
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=2))
    assert r.code == 0, r.out + r.err
    assert r.json()["decision"] == "advance"
    assert ws.state()["stage"] == "c1" and ws.state()["canary_percent"] == 20
    assert ws.flag["targeting"]["fractional"][1] == ["v2", 20000]


def test_a_broken_endpoint_fails_the_smoke_stage_and_rolls_back(
    ws: Workspace, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANDIDATE_BASE_URL", f"{server.url}/unauth")
    monkeypatch.setenv("CANDIDATE_API_KEY", KEY)
    ws.playbook.write_text(playbook(EVALS / "v2.jsonl"))
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=1))
    assert r.code == 10, r.out + r.err
    gate = r.json()
    assert gate["decision"] == "rollback"
    assert any("refused the API key" in reason for reason in gate["reasons"])
    assert KEY not in r.out + r.err + Path(gate["report"]).read_text()
    assert ws.state()["status"] == "rolled_back" and ws.state()["canary_percent"] == 0


def test_the_smoke_command_runs_the_checks_without_a_rollout(
    ws: Workspace, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.playbook.write_text(playbook(EVALS / "v2.jsonl"))
    monkeypatch.setenv("CANDIDATE_API_KEY", KEY)
    monkeypatch.setenv("CANDIDATE_BASE_URL", f"{server.url}/good")
    good = ws.run("smoke", str(ws.playbook))
    assert good.code == 0, good.err
    assert "✓ the endpoint accepts the API key" in good.out and "smoke test passed" in good.out
    monkeypatch.setenv("CANDIDATE_BASE_URL", f"{server.url}/nousage")
    bad = ws.run("--json", "smoke", str(ws.playbook))
    assert bad.code == 10
    data = bad.json()
    schemas.adapter("smoke").validate_python(data)
    [stage] = data["stages"]
    checks = {c["name"]: c for c in stage["checks"]}
    assert data["passed"] is False and checks["usage"]["passed"] is False
    assert "prompt_tokens" in checks["usage"]["reason"] and stage["model"] == MODEL
    assert not (ws.root / "state").exists()  # nothing was started or changed
    monkeypatch.delenv("CANDIDATE_API_KEY")
    unset = ws.run("smoke", str(ws.playbook))
    assert unset.code == 3 and "CANDIDATE_API_KEY" in unset.err


def test_plan_says_what_each_stage_kind_is_judged_on(ws: Workspace) -> None:
    ws.playbook.write_text(
        playbook(EVALS / "v2.jsonl").replace(
            "  - {name: c1, traffic: 20, min_duration: 1h}\n",
            "  - {name: shadow, kind: shadow, min_duration: 1h}\n"
            "  - {name: c1, traffic: 20, min_duration: 1h}\n",
        )
    )
    ws.log("healthy", START, 1, 0, "history", seed=3)
    r = ws.run("--json", "plan", str(ws.playbook))
    assert r.code == 0, r.err
    schemas.adapter("plan").validate_python(r.json())
    stages = {s["name"]: s for s in r.json()["stages"]}
    assert stages["smoke"]["metrics"] == [] and "endpoint" in stages["smoke"]["note"]
    assert stages["offline-eval"]["metrics"] == [] and "eval runs" in stages["offline-eval"]["note"]
    shadow = stages["shadow"]
    assert "pairs" in shadow["note"]
    assert all(m["samples_per_arm"] for m in shadow["metrics"])  # sized from the log's v1 rows
    text = ws.run("plan", str(ws.playbook)).out
    assert "request pairs to show" in text and "no traffic: judged on" in text
