"""`control list | apply | revert` through the real CLI: flag file, state, audit, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PLAYBOOK, START, Workspace, cli_env

CONTROLS = """\
controls:
  - {name: provider-off, layer: provider, title: "Send all answers to the stable model", set: {answer-model: {canary_percent: 0}}}
  - {name: health-off, layer: scenario, title: "Stop AI answers for health questions", set: {ai-answers-health: false}}
  - {name: review-all, layer: review, title: "Require human review before answers are sent", set: {review-threshold: 1.0}}
"""


@pytest.fixture
def cws(ws: Workspace) -> Workspace:
    ws.playbook.write_text(PLAYBOOK + CONTROLS)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    return ws


def flags(ws: Workspace) -> dict[str, object]:
    data: dict[str, object] = json.loads((ws.root / "flags" / "flags.json").read_text())["flags"]
    return data


def value(ws: Workspace, key: str) -> object:
    flag = flags(ws)[key]
    assert isinstance(flag, dict)
    return flag["variants"][flag["defaultVariant"]]


def test_list_shows_titles_layers_and_state_from_the_flags(cws: Workspace) -> None:
    r = cws.run("--json", "control", "list", "shop-answers")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in r.json()["controls"]}
    assert list(rows) == ["provider-off", "health-off", "review-all"]
    assert rows["health-off"]["layer"] == "scenario"
    assert rows["health-off"]["title"] == "Stop AI answers for health questions"
    assert rows["health-off"]["current"] == {"ai-answers-health": True}  # released at start
    assert [row["applied"] for row in rows.values()] == [False, False, False]
    assert rows["review-all"]["current"] == {"review-threshold": None}
    text = cws.run("control", "list", "shop-answers")
    assert text.code == 0 and "[off] health-off" in text.out


def test_apply_and_revert_restore_exactly_what_was_there(cws: Workspace) -> None:
    before = flags(cws)
    r = cws.run("--json", "control", "apply", "shop-answers", "health-off", "--reason", "bad")
    assert r.code == 0, r.err
    data = r.json()
    assert data["action"] == "control" and data["status"] == "running"
    assert data["control"] == {
        "name": "health-off",
        "layer": "scenario",
        "title": "Stop AI answers for health questions",
        "operation": "apply",
        "before": {"ai-answers-health": True},
        "after": {"ai-answers-health": False},
        "applied": True,
    }
    assert value(cws, "ai-answers-health") is False
    assert cws.run("control", "apply", "shop-answers", "review-all", "--reason", "x").code == 0
    assert value(cws, "review-threshold") == 1.0
    listed = {
        row["name"]: row
        for row in cws.run("--json", "control", "list", "shop-answers").json()["controls"]
    }
    assert listed["health-off"]["applied"] and listed["health-off"]["state"] == "applied"
    assert listed["health-off"]["applied_by"]["reason"] == "bad"

    again = cws.run("control", "apply", "shop-answers", "health-off", "--reason", "twice")
    assert again.code == 0 and "already applied" in again.out

    for name in ("health-off", "review-all"):
        r = cws.run("--json", "control", "revert", "shop-answers", name, "--reason", "fixed")
        assert r.code == 0, r.err
        assert r.json()["control"]["applied"] is False
    assert flags(cws) == before  # the numeric flag that did not exist is gone again
    events = [e for e in cws.audit() if e["command"] == "control"]
    assert [(e["after"]["control"], e["after"]["operation"]) for e in events] == [
        ("health-off", "apply"),
        ("review-all", "apply"),
        ("health-off", "revert"),
        ("review-all", "revert"),
    ]
    first = events[0]
    assert first["actor"] == "tester" and first["reason"] == "bad"
    assert first["before"]["values"] == {"ai-answers-health": True}
    assert first["after"]["values"] == {"ai-answers-health": False}


def test_provider_switch_moves_the_rollout_flag_and_holds_the_gate(cws: Workspace) -> None:
    r = cws.run("--json", "control", "apply", "shop-answers", "provider-off", "--reason", "p")
    assert r.code == 0 and r.json()["canary_percent"] == 0
    assert "targeting" not in cws.flag and cws.state()["canary_percent"] == 0
    status = cws.run("status")
    assert status.code == 0 and "changed outside" not in status.err
    held = cws.run("advance", "shop-answers")
    assert held.code == 12 and "provider-off" in held.out
    assert cws.run("promote", "shop-answers", "--reason", "x").code == 5
    assert cws.run("control", "revert", "shop-answers", "provider-off", "--reason", "ok").code == 0
    assert cws.flag["targeting"]["fractional"] == [["v1", 80000], ["v2", 20000]]
    assert cws.state()["canary_percent"] == 20


def test_revert_refuses_a_flag_changed_by_hand_unless_forced(cws: Workspace) -> None:
    assert cws.run("control", "apply", "shop-answers", "health-off", "--reason", "a").code == 0
    path = cws.root / "flags" / "flags.json"
    data = json.loads(path.read_text())
    data["flags"]["ai-answers-health"]["defaultVariant"] = "on"
    path.write_text(json.dumps(data))
    refused = cws.run("control", "revert", "shop-answers", "health-off", "--reason", "b")
    assert refused.code == 5 and "--force" in refused.err
    forced = cws.run("control", "revert", "shop-answers", "health-off", "--reason", "b", "--force")
    assert forced.code == 0 and value(cws, "ai-answers-health") is True


def test_usage_errors_and_exit_codes(cws: Workspace) -> None:
    no_reason = cws.run("control", "apply", "shop-answers", "health-off")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    unknown = cws.run("control", "apply", "shop-answers", "nope", "--reason", "x")
    assert unknown.code == 2 and "health-off" in unknown.err
    missing = cws.run("control", "list", "nope")
    assert missing.code == 5 and "no rollout named" in missing.err
    assert cws.run("control", "apply", "shop-answers").code == 2
    assert cws.run("control", "--help").code == 0
    not_applied = cws.run("control", "revert", "shop-answers", "review-all", "--reason", "x")
    assert not_applied.code == 0 and "not applied" in not_applied.out
    assert value(cws, "ai-answers-health") is True  # nothing changed


def test_controls_work_with_metrics_unreadable_and_without_the_playbook(cws: Workspace) -> None:
    cws.log("healthy", START, 1, 20, "p1", seed=1)
    for log in (cws.root / "data").glob("*"):
        log.unlink()
    cws.playbook.unlink()  # the controls live in the state folder
    r = cws.run("control", "apply", "shop-answers", "health-off", "--reason", "metrics down")
    assert r.code == 0, r.err
    assert value(cws, "ai-answers-health") is False


def test_control_waits_for_a_running_gate_evaluation(cws: Workspace) -> None:
    spec = cws.store_spec or str(cws.root / "state")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from rolloutctl.state.registry import open_store\n"
            f"with open_store({spec!r}).lock('shop-answers', 'advance'):\n"
            "    print('locked', flush=True); time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        r = cws.run("control", "apply", "shop-answers", "health-off", "--reason", "now")
        assert r.code == 0, r.err
        assert time.monotonic() - started > 0.5  # it waited for the lock, then acted
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert value(cws, "ai-answers-health") is False


def test_rollback_leaves_controls_as_they_are(cws: Workspace) -> None:
    assert cws.run("control", "apply", "shop-answers", "health-off", "--reason", "a").code == 0
    assert cws.run("control", "apply", "shop-answers", "review-all", "--reason", "b").code == 0
    r = cws.run("rollback", "shop-answers", "--reason", "pager")
    assert r.code == 0 and cws.state()["status"] == "rolled_back"
    assert value(cws, "ai-answers-health") is False and value(cws, "review-threshold") == 1.0
    listed = cws.run("--json", "control", "list", "shop-answers").json()["controls"]
    assert {row["name"] for row in listed if row["applied"]} >= {"health-off", "review-all"}
    # A control that would reopen canary traffic is refused on a rolled-back rollout.
    data = cws.doc("controls")
    data["controls"].append(
        {
            "name": "five",
            "layer": "provider",
            "title": "5% only",
            "set": {"answer-model": {"canary_percent": 5}},
        }
    )
    cws.write_doc("controls", data)
    assert cws.run("control", "apply", "shop-answers", "five", "--reason", "x").code == 5
    assert "targeting" not in cws.flag


def test_control_does_not_import_heavy_modules(cws: Workspace) -> None:
    heavy = {
        "pandas",
        "scipy",
        "duckdb",
        "numpy",
        "typer",
        "pydantic",
        "rich",
        "httpx",
    }
    for argv in (
        ["control", "list", "shop-answers"],
        ["--json", "control", "apply", "shop-answers", "health-off", "--reason", "x"],
        ["control", "revert", "shop-answers", "health-off", "--reason=y", "--force"],
    ):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "rolloutctl", *argv],
            capture_output=True,
            text=True,
            env=cli_env(cws.root, cws.store_spec),
            cwd=cws.root,
        )
        assert proc.returncode == 0, (argv, proc.stderr)
        imported = {
            line.split("|")[-1].strip().split(".")[0]
            for line in proc.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "rolloutctl" in imported and not imported & heavy, (argv, imported & heavy)
    assert [e["after"]["operation"] for e in cws.audit() if e["command"] == "control"] == [
        "apply",
        "revert",
    ]


@pytest.mark.folder_store
def test_a_corrupt_control_book_stops_start_before_the_flag_moves(cws: Workspace) -> None:
    assert cws.run("rollback", "shop-answers", "--reason", "pager").code == 0
    book = cws.root / "state" / "shop-answers" / "controls.json"
    book.write_text("{not json")
    before = json.dumps(flags(cws), sort_keys=True)
    again = cws.run("start", str(cws.playbook), now=START)
    assert again.code == 5 and "controls.json is corrupt" in again.err
    assert "rolloutctl start" not in again.err  # the hint must not suggest what just failed
    assert json.dumps(flags(cws), sort_keys=True) == before  # no canary traffic reopened
    assert cws.state()["status"] == "rolled_back"


def test_start_releases_a_kill_switch_that_exists_engaged(ws: Workspace) -> None:
    """A control flag that already exists with its control's value (a kill switch created
    'off' in the flag system) is released at start, on every backend, and start says so."""
    from rolloutctl.flags.file import FileFlagBackend

    ws.playbook.write_text(PLAYBOOK + CONTROLS)
    backend = FileFlagBackend(ws.root / "flags" / "flags.json", "answer-model", "v1", "v2")
    backend.set_control("ai-answers-health", False)  # health-off's value: engaged
    r = ws.run("--json", "start", str(ws.playbook), now=START)
    assert r.code == 0, r.err
    assert value(ws, "ai-answers-health") is True
    assert any(
        "'ai-answers-health' was False, released it to True" in w for w in r.json()["warnings"]
    )
    listed = ws.run("--json", "control", "list", "shop-answers").json()["controls"]
    assert {row["name"]: row["state"] for row in listed}["health-off"] == "not applied"
