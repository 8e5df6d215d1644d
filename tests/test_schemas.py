"""What the commands print with --json is what `rolloutctl schema --output NAME` publishes:
every document of a rollout's life (start, a held and a passing advance, pause, resume, a
control applied and reverted, rollback, status, history, the control list, validate, an
error) validates against its schema, which
refuses keys it does not declare; and the schemas themselves are what a CI job would load."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rolloutctl import schemas
from tests.cli.test_controls import CONTROLS
from tests.conftest import PLAYBOOK, START, Workspace


def _valid(name: str, document: Any) -> None:
    schemas.adapter(name).validate_python(document)


def test_a_rollouts_json_documents_match_the_published_schemas(ws: Workspace) -> None:
    ws.playbook.write_text(PLAYBOOK + CONTROLS)
    printed: list[dict[str, Any]] = []

    def run(*args: str, now: Any, code: int) -> None:
        r = ws.run("--json", *args, now=now)
        assert r.code == code, r.out + r.err
        printed.append(r.json())

    run("start", str(ws.playbook), now=START, code=0)
    run("advance", "shop-answers", now=START + timedelta(minutes=20), code=11)
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    run("advance", "shop-answers", now=START + timedelta(hours=2), code=0)
    later = START + timedelta(hours=2, minutes=5)
    run("control", "apply", "shop-answers", "health-off", "--reason", "r", now=later, code=0)
    run("control", "revert", "shop-answers", "health-off", "--reason", "r", now=later, code=0)
    run("pause", "shop-answers", "--reason", "look", now=later, code=12)  # held by a person
    run("resume", "shop-answers", "--reason", "go", now=later, code=0)
    run("rollback", "shop-answers", "--reason", "done", now=later, code=0)
    for document in printed:
        _valid("command-result", document)
    gated = [d for d in printed if "metrics" in d]
    assert len(gated) == 2 and all(d["metrics"] for d in gated)
    assert [d["control"]["operation"] for d in printed if "control" in d] == ["apply", "revert"]

    records = sorted((ws.root / "state" / "shop-answers" / "gates").glob("*.json"))
    assert len(records) == 2
    for record in records:
        _valid("gate-result", json.loads(record.read_text())["gate"])

    status = ws.run("--json", "status", now=later)
    assert status.code == 0, status.err
    _valid("status", status.json())
    assert [r["status"] for r in status.json()["rollouts"]] == ["rolled_back"]

    for name, args in (
        ("history", ("history", "shop-answers")),
        ("controls", ("control", "list", "shop-answers")),
        ("validate", ("validate", str(ws.playbook))),
    ):
        r = ws.run("--json", *args, now=later)
        assert r.code == 0, r.err
        _valid(name, r.json())
    events = ws.run("--json", "history", "shop-answers").json()["events"]
    assert [e["command"] for e in events][:2] == ["start", "advance"]
    broken = ws.root / "broken.yaml"
    broken.write_text(PLAYBOOK.replace("traffic: 20", "traffic: lots"))
    r = ws.run("--json", "validate", str(broken))
    assert r.code == 3
    _valid("validate", r.json())
    assert r.json()["playbooks"][0]["ok"] is False and r.json()["playbooks"][0]["problems"]

    report = ws.run("--json", "report", "shop-answers", now=later)
    assert report.code == 0, report.err
    _valid("report", report.json())
    assert report.json()["report"].endswith("index.html")

    error = ws.run("--json", "status", "nosuch")
    assert error.code == 5
    _valid("error", error.json())


@pytest.mark.parametrize("stage", ["canary", "shadow", "eval"])
def test_simulate_prints_what_the_schema_publishes(ws: Workspace, stage: str) -> None:
    out = ws.root / (f"sim-{stage}" if stage == "eval" else f"sim-{stage}.parquet")
    r = ws.run("--json", "simulate", "--stage", stage, "--hours", "1", "--out", str(out))
    assert r.code == 0, r.err
    _valid("simulate", r.json())
    assert r.json()["stage"] == stage
    assert ("shadow_calls" in r.json()) == (stage == "shadow")


def test_init_and_simulate_take_json_after_the_command_too(ws: Workspace) -> None:
    r = ws.run("init", str(ws.root / "new"), "--json")
    assert r.code == 0, r.err
    _valid("init", r.json())
    assert r.json()["wrote"].endswith("rollout.yaml")
    out = ws.root / "after.parquet"
    r = ws.run("simulate", "--hours", "1", "--out", str(out), "--json")
    assert r.code == 0, r.err
    _valid("simulate", r.json())


def test_a_key_the_schema_does_not_declare_is_refused() -> None:
    document = {"error": "e", "hint": None, "exit_code": 5}
    _valid("error", document)
    with pytest.raises(ValidationError):
        _valid("error", {**document, "detail": "undeclared"})
    row_arm = {"n": 1, "value": 0.5, "stderr": 0.1}
    with pytest.raises(ValidationError, match="stderr"):
        schemas.adapter("gate-result").validate_python(
            {"metrics": [{"control": row_arm}]}, strict=False
        )


@pytest.mark.parametrize("name", schemas.NAMES)
def test_schema_prints_each_published_schema(ws: Workspace, name: str) -> None:
    r = ws.run("schema", "--output", name)
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["$schema"] == schemas.DRAFT
    assert data["title"] == f"rolloutctl {name}"
    shapes = (
        [data["$defs"][s["$ref"].split("/")[-1]] for s in data["anyOf"]]
        if "anyOf" in data
        else [data]
    )
    assert all(s["type"] == "object" and s["additionalProperties"] is False for s in shapes)


def test_schema_refuses_a_name_it_does_not_publish(ws: Workspace) -> None:
    r = ws.run("schema", "--output", "gate")
    assert r.code == 2
    assert (
        "one of: playbook, gate-result, command-result, status, history, controls, validate, "
        "plan, backtest, smoke, report, simulate, demo, init, state, error" in r.err
    )
