"""The rollout lifecycle through the real CLI: exit codes, JSON, flag file, state, audit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.conftest import START, Workspace, cli_env

GATE_KEYS = {"rollout", "stage", "verdict", "decision", "reasons", "srm", "report", "metrics"}
METRIC_KEYS = {
    "name",
    "group",
    "segment",
    "kind",
    "critical",
    "control",
    "canary",
    "estimate",
    "ci",
    "margin",
    "verdict",
}


def test_healthy_candidate_advances_and_completes(ws: Workspace) -> None:
    r = ws.run("start", str(ws.playbook), now=START)
    assert r.code == 0, r.err
    targeting = ws.flag["targeting"]["fractional"]
    assert targeting == [["v1", 80000], ["v2", 20000]]
    assert ws.flag["defaultVariant"] == "v1"

    early = ws.run("--json", "advance", "shop-answers", now=START + timedelta(minutes=20))
    assert early.code == 11  # inconclusive: minimum duration not reached
    assert any("minimum duration" in reason for reason in early.json()["reasons"])

    ws.log("healthy", START, 2, 20, "p1", seed=1)
    r = ws.run("advance", "shop-answers", "--json", now=START + timedelta(hours=2))
    assert r.code == 0, r.out + r.err
    data = r.json()
    assert set(data) >= GATE_KEYS
    assert data["verdict"] == "pass" and data["decision"] == "advance"
    assert set(data["metrics"][0]) >= METRIC_KEYS
    assert data["srm"]["ok"] is True and set(data["srm"]) >= {"p_value", "ok"}
    assert os.path.exists(data["report"])
    assert ws.state()["stage"] == "c2" and ws.flag["targeting"]["fractional"][1] == ["v2", 50000]

    t = START + timedelta(hours=2)
    ws.log("healthy", t, 1.5, 50, "p2", seed=2)
    assert ws.run("advance", "shop-answers", now=t + timedelta(hours=1.5)).code == 0
    assert ws.state()["stage"] == "full"
    t += timedelta(hours=1.5)
    ws.log("healthy", t, 1, 100, "p3", seed=3)
    r = ws.run("--json", "advance", "shop-answers", now=t + timedelta(hours=1))
    assert r.code == 0, r.out
    assert r.json()["decision"] == "complete" and ws.state()["status"] == "completed"
    again = ws.run("advance", "shop-answers", now=t + timedelta(hours=2))
    assert again.code == 0 and "already completed" in again.out

    history = ws.run("--json", "history", "shop-answers").json()["events"]
    assert [e["command"] for e in history] == ["start", "advance", "advance", "advance", "advance"]
    assert all(e["actor"] == "tester" for e in history)


def test_regression_is_rolled_back_with_exit_10(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    check = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=2))
    assert check.code == 10 and check.json()["decision"] == "rollback"
    assert ws.state()["status"] == "running"  # check never acts
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2))
    assert r.code == 10
    data = r.json()
    failing = [m for m in data["metrics"] if m["verdict"] == "fail"]
    assert any(m["name"] == "hallucination_rate" for m in failing)
    assert "hallucination" in data["reasons"][0]
    assert "targeting" not in ws.flag and ws.flag["defaultVariant"] == "v1"
    assert ws.state()["status"] == "rolled_back"
    assert ws.run("advance", "shop-answers", now=START + timedelta(hours=3)).code == 5
    retry = ws.run("retry", "shop-answers", now=START + timedelta(hours=3))
    assert retry.code == 0 and ws.state()["status"] == "running"
    assert ws.flag["targeting"]["fractional"][1] == ["v2", 20000]


def test_rollback_needs_a_reason_and_works_without_any_metrics(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    no_reason = ws.run("rollback", "shop-answers")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    assert ws.state()["status"] == "running"
    # No request log exists at all: rollback must not care.
    r = ws.run("--json", "rollback", str(ws.playbook), "--reason", "pager: answers look off")
    assert r.code == 0, r.err
    assert r.json()["status"] == "rolled_back" and "targeting" not in ws.flag
    again = ws.run("rollback", "shop-answers", "--reason", "twice")
    assert again.code == 0 and "already" in again.out
    last = ws.audit()[-1]
    assert last["command"] == "rollback" and last["reason"] == "pager: answers look off"


def test_on_call_commands_do_not_import_heavy_modules(ws: Workspace) -> None:
    """rollback, pause, resume, status and control take the hand-parsed fast path: no analysis stack
    and no CLI framework, so they start fast and work with every metrics backend down."""
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    env = cli_env(ws.root, ws.store_spec)
    heavy = {
        "pandas",
        "scipy",
        "duckdb",
        "numpy",
        "typer",
        "click",
        "pydantic",
        "rich",
        "httpx",
        "httpcore",
    }
    for argv, exit_code in (
        (["status"], 0),
        (["control", "list", "shop-answers"], 0),
        (["pause", "shop-answers", "--reason", "look"], 12),
        (["resume", "shop-answers", "--reason=ok"], 0),
        (["--json", "status", "shop-answers"], 0),
        (["rollback", "shop-answers", "--reason", "fast path"], 0),
    ):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "rolloutctl", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=ws.root,
        )
        assert proc.returncode == exit_code, (argv, proc.stderr)
        imported = {
            line.split("|")[-1].strip().split(".")[0]
            for line in proc.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "rolloutctl" in imported
        assert not imported & heavy, (argv, imported & heavy)
    assert ws.state()["status"] == "rolled_back"
    assert [e["command"] for e in ws.audit()][-3:] == ["pause", "resume", "rollback"]


def test_on_call_commands_fall_back_to_the_full_cli_for_help_and_usage(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    helped = ws.run("rollback", "--help")
    assert helped.code == 0 and "--reason" in helped.out
    missing = ws.run("rollback")
    assert missing.code == 2 and "Missing argument" in missing.err
    no_reason = ws.run("rollback", "shop-answers")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    unknown = ws.run("pause", "shop-answers", "--reasn", "x")
    assert unknown.code == 2 and "--reasn" in unknown.err
    assert ws.state()["status"] == "running"


def test_pause_resume_and_promote(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert ws.run("pause", "shop-answers", "--reason", "holiday freeze").code == 12
    assert ws.state()["status"] == "paused"
    # pausing a paused rollout changes nothing and still says it is paused: exit 12
    again = ws.run("pause", "shop-answers", "--reason", "still frozen")
    assert again.code == 12 and "already paused" in again.out, again.out + again.err
    assert ws.audit()[-1]["reason"] == "holiday freeze"
    assert ws.run("advance", "shop-answers", now=START + timedelta(hours=3)).code == 12
    assert ws.run("resume", "shop-answers", "--reason", "freeze over").code == 0
    promoted = ws.run("--json", "promote", "shop-answers", "--reason", "exec decision")
    assert promoted.code == 0 and promoted.json()["stage"] == "c2"
    assert ws.audit()[-1]["reason"] == "exec decision"


def test_two_concurrent_advances_make_one_transition(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=5)
    env = cli_env(ws.root, ws.store_spec)
    env["ROLLOUTCTL_NOW"] = (START + timedelta(hours=2)).isoformat()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rolloutctl", "advance", "shop-answers"],
            cwd=ws.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert 0 in codes and codes != [0, 0]
    if 5 in codes:
        assert any("locked by another rolloutctl run" in err for _, err in results)
    advances = [e for e in ws.audit() if (e.get("verdict") or {}).get("decision") == "advance"]
    assert len(advances) == 1
    assert ws.state()["stage"] == "c2"


def test_a_killed_lock_holder_does_not_block(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from rolloutctl.state.registry import open_store\n"
            f"with open_store({ws.spec()!r}).lock('shop-answers', 'test'):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    blocked = ws.run("rollback", "shop-answers", "--reason", "x")
    assert blocked.code == 5 and f"pid {holder.pid}" in blocked.err
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    assert ws.run("rollback", "shop-answers", "--reason", "after kill").code == 0


def test_flag_changed_by_hand_is_detected(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    path = ws.root / "flags" / "flags.json"
    data = json.loads(path.read_text())
    data["flags"]["answer-model"]["targeting"]["fractional"] = [["v1", 0], ["v2", 100000]]
    path.write_text(json.dumps(data))
    status = ws.run("status")
    assert status.code == 0 and "changed outside rolloutctl" in status.err
    ws.log("healthy", START, 2, 20, "p1", seed=6)
    refused = ws.run("advance", "shop-answers", now=START + timedelta(hours=2))
    assert refused.code == 5 and "--force" in refused.err
    assert json.loads(path.read_text()) == data  # nothing touched
    forced = ws.run("advance", "shop-answers", "--force", now=START + timedelta(hours=2))
    assert forced.code == 0, forced.err
    assert ws.state()["stage"] == "c2"
    fractional = json.loads(path.read_text())["flags"]["answer-model"]["targeting"]["fractional"]
    assert fractional == [["v1", 50_000], ["v2", 50_000]]  # c2 replaced the hand edit


def test_a_rollback_interrupted_before_its_state_write_is_reconciled(ws: Workspace) -> None:
    """The flag was flipped to the control but the process died before writing the state:
    the next advance records the rollback from the flag instead of re-opening traffic."""
    from rolloutctl.flags.registry import build_backend

    assert ws.run("start", str(ws.playbook), now=START).code == 0
    build_backend(ws.state()["flag"]).rollback(rollout="shop-answers", reason="crashed")
    assert ws.state()["status"] == "running"  # the state never heard of it
    ws.log("healthy", START, 2, 20, "p1", seed=6)
    r = ws.run("advance", "shop-answers", now=START + timedelta(hours=2))
    assert r.code == 5 and "recorded it in the state now" in r.err
    state = ws.state()
    assert state["status"] == "rolled_back" and state["canary_percent"] == 0
    assert ws.audit()[-1]["command"] == "reconcile"
    assert ws.flag["defaultVariant"] == "v1" and "fractional" not in json.dumps(ws.flag)
    status = ws.run("status")
    assert "changed outside rolloutctl" not in status.err


CRASH_ON_STATE_WRITE = (
    "import os, sys\n"
    "from rolloutctl.state.file import FileStore\n"
    "from rolloutctl.state.postgres import PostgresStore\n"
    "def crash(self, *args):\n"
    "    os._exit(9)\n"
    "FileStore._write_state = PostgresStore._write_state = crash\n"
    "from rolloutctl.cli.entry import run\n"
    "sys.argv = ['rolloutctl', *sys.argv[1:]]\n"
    "run()\n"
)


def test_an_advance_interrupted_between_flag_and_state_write_is_reconciled(
    ws: Workspace,
) -> None:
    """The process dies after the flag moved to c2 and before state.json says so: the next
    command finds pending.json, sees the flag at c2's split, and records the stage change."""
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    env = cli_env(ws.root, ws.store_spec)
    env["ROLLOUTCTL_NOW"] = (START + timedelta(hours=2)).isoformat()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_ON_STATE_WRITE, "advance", "shop-answers"],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert ws.flag["targeting"]["fractional"][1] == ["v2", 50000]  # the flag moved ...
    assert ws.state()["stage"] == "c1"  # ... the state did not
    assert ws.intent()["stage"] == "c2"

    status = ws.run("--json", "status", "shop-answers")
    assert status.json()["rollouts"][0]["pending"]["stage"] == "c2"

    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2, minutes=5))
    assert r.code == 11, r.err  # now judged as c2, which has only just started
    state = ws.state()
    assert state["stage"] == "c2" and state["canary_percent"] == 50
    assert state["stage_started_at"] == (START + timedelta(hours=2)).isoformat()
    reconcile = [e for e in ws.audit() if e["command"] == "reconcile"]
    assert len(reconcile) == 1 and "interrupted advance" in reconcile[0]["reason"]
    assert ws.intent() is None
    assert "changed outside rolloutctl" not in ws.run("status").err


def test_an_intent_that_never_reached_the_flag_is_dropped(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.write_intent(
        {
            "command": "advance",
            "stage_index": 1,
            "stage": "c2",
            "canary_percent": 50,
            "scope": None,
            "at": START.isoformat(),
        }
    )
    assert ws.run("pause", "shop-answers", "--reason", "look").code == 12
    assert ws.intent() is None
    state = ws.state()
    assert state["stage"] == "c1" and state["status"] == "paused"
    assert all(e["command"] != "reconcile" for e in ws.audit())


@pytest.mark.folder_store
def test_corrupt_state_and_flag_files(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    flag_path = ws.root / "flags" / "flags.json"
    flag_path.write_text("{not json")
    r = ws.run("rollback", "shop-answers", "--reason", "x")
    assert r.code == 4 and "did NOT complete" in r.err and "Traceback" not in r.err
    assert ws.state()["status"] == "running"  # no record of a flip that did not happen
    assert flag_path.read_text() == "{not json"
    state_path = ws.root / "state" / "shop-answers" / "state.json"
    state_path.write_text('{"rollout": ')
    r = ws.run("status", "shop-answers")
    assert r.code == 5 and "corrupt" in r.err and "Traceback" not in r.err


def test_unknown_rollout_and_usage_errors(ws: Workspace) -> None:
    r = ws.run("status", "nope")
    assert r.code == 5 and "no rollout named 'nope'" in r.err
    assert ws.run("advance").code == 2
    assert ws.run("start", "missing.yaml").code == 3


def test_validate_schema_plan_init(ws: Workspace) -> None:
    ok = ws.run("validate", str(ws.playbook))
    assert ok.code == 0 and "ok" in ok.out
    schema = ws.run("schema").json()
    assert "stages" in schema["properties"] and "$defs" in schema
    plan = ws.run("--json", "plan", str(ws.playbook))
    assert plan.code == 0
    assert [s["name"] for s in plan.json()["stages"]] == ["c1", "c2", "full"]
    init = ws.run("init", "starter")
    assert init.code == 0 and ws.run("validate", "starter/rollout.yaml").code == 0
    assert ws.run("init", "starter").code == 2
