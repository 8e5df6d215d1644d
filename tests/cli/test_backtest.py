"""`rolloutctl backtest` through the real CLI on simulated historical logs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rolloutctl import schemas
from tests.conftest import START, Workspace


def test_a_healthy_log_replays_to_completion(ws: Workspace) -> None:
    # Each hour served at the split of the stage the replay is in then: 20%, 50%, 100%.
    ws.log("healthy", START, 1, 20, "c1", seed=4)
    ws.log("healthy", START + timedelta(hours=1), 1, 50, "c2", seed=5)
    ws.log("healthy", START + timedelta(hours=2), 1, 100, "full", seed=6)
    result = ws.run("--json", "backtest", str(ws.playbook), "--every", "15m")
    assert result.code == 0, result.err
    data = result.json()
    schemas.adapter("backtest").validate_python(data)
    assert data["outcome"].startswith("completed")
    assert data["split"] == "configured"
    assert [(s["name"], s["result"]) for s in data["stages"]] == [
        ("c1", "passed"),
        ("c2", "passed"),
        ("full", "passed"),
    ]
    c1 = [look for look in data["looks"] if look["stage"] == "c1"]
    # Held until the stage's minimum duration (1h), then passed at that look.
    assert [look["decision"] for look in c1] == ["hold", "hold", "hold", "advance"]
    assert c1[-1]["elapsed"] == "1h"
    assert data["notes"] == []
    assert not (ws.root / "state").exists()  # a backtest writes nothing


def _playbook(ws: Workspace, name: str, c1: str) -> Path:
    """The test playbook with its first stage replaced by `c1` (a YAML flow mapping)."""
    path = ws.root / name
    stage = "{name: c1, traffic: 20, min_duration: 1h}"
    path.write_text(ws.playbook.read_text().replace(stage, c1))
    return path


def test_a_broken_split_holds_on_sample_ratio_mismatch(ws: Workspace) -> None:
    """The canary got 6.75% of units where the stage configures 5%: the live gate holds on
    the sample-ratio mismatch, and so does the backtest, unless told to judge at the log's
    split."""
    ws.log("healthy", START, 2, 6.75, "broken", seed=7)
    playbook = _playbook(ws, "five.yaml", "{name: c1, traffic: 5, min_duration: 1h}")
    data = ws.run("--json", "backtest", str(playbook), "--every", "15m").json()
    assert data["split"] == "configured"
    c1 = [look for look in data["looks"] if look["stage"] == "c1"]
    assert c1 and all(look["decision"] == "hold" for look in c1)
    held = [look for look in c1 if look["elapsed"] in ("1h", "1h30m", "2h")]
    assert held and all(look["reasons"][0].startswith("sample ratio mismatch") for look in held)
    assert (data["stages"][0]["result"], data["stages"][0]["ended"]) == ("held", None)
    assert data["outcome"].startswith("still at c1 (held)")
    text = ws.run("backtest", str(playbook), "--every", "15m")
    assert "configured 5%" in text.out and "sample ratio mismatch" in text.out

    at_log = ws.run("--json", "backtest", str(playbook), "--every", "15m", "--at-log-split")
    data = at_log.json()
    assert data["split"] == "log"
    reasons = [reason for look in data["looks"] for reason in look["reasons"]]
    assert not any(reason.startswith("sample ratio mismatch") for reason in reasons)
    assert any("judged at the log's split" in note for note in data["notes"])
    assert any(note.startswith("c1: the log's split differs") for note in data["notes"])
    assert data["stages"][0]["result"] == "passed"
    text = ws.run("backtest", str(playbook), "--every", "15m", "--at-log-split")
    assert "judged at the log's split (--at-log-split" in text.out


def test_the_last_look_reaches_a_stage_that_ends_with_the_log(ws: Workspace) -> None:
    """A 24 h log's last row falls just short of 24 h; a 24 h stage is judged at its end."""
    ws.log("healthy", START, 24, 20, "day", seed=9, rate=5_000)
    day_end = (START + timedelta(hours=24)).isoformat()

    passing = _playbook(ws, "min.yaml", "{name: c1, traffic: 20, min_duration: 24h}")
    data = ws.run("--json", "backtest", str(passing), "--every", "15m").json()
    last = data["looks"][-1]
    assert (last["time"], last["stage"], last["decision"]) == (day_end, "c1", "advance")
    assert data["stages"][0]["result"] == "passed" and data["stages"][0]["ended"] == day_end
    assert data["outcome"].startswith(f"c1 passed at {day_end}")
    assert any(note.startswith("c1: the log ends") for note in data["notes"])

    # Never enough samples, so inconclusive until max_duration decides.
    stage = (
        "{name: c1, traffic: 20, min_duration: 1h, max_duration: 24h, "
        "min_samples_per_arm: 10000000, on_inconclusive_at_max: rollback}"
    )
    at_max = _playbook(ws, "max.yaml", stage)
    result = ws.run("--json", "backtest", str(at_max), "--every", "15m")
    assert result.code == 10, result.err
    last = result.json()["looks"][-1]
    judged = [last[key] for key in ("time", "verdict", "decision")]
    assert judged == [day_end, "inconclusive", "rollback"]
    assert last["reasons"][0].startswith("minimum samples not reached")
    assert result.json()["outcome"].startswith("rolled back at c1 after 1d")


def test_would_this_playbook_have_caught_the_incident(ws: Workspace) -> None:
    """Unsafe answers rise twelvefold in health questions from 10:00. The playbook's 1-hour
    stages and a 0.2 pt margin let it through to 100%; a playbook tuned with a longer first
    stage and a relative margin rolls back, and the timeline says when and why."""
    ws.log("healthy", START, 1, 20, "before", seed=1, rate=150_000)
    ws.log(
        "safety_regression_segment", START.replace(hour=10), 4, 20, "incident", seed=2, rate=150_000
    )
    # The log served 20% throughout, so c2 (50%) is judged at the log's split.
    missed = ws.run("--json", "backtest", str(ws.playbook), "--every", "15m", "--at-log-split")
    assert missed.code == 0 and missed.json()["outcome"].startswith("completed")

    tuned = ws.root / "tuned.yaml"
    tuned.write_text(
        ws.playbook.read_text()
        .replace(
            "{name: c1, traffic: 20, min_duration: 1h}", "{name: c1, traffic: 20, min_duration: 4h}"
        )
        .replace(
            "margin: {absolute: 0.002}, critical: true, per_segment: true",
            "margin: {relative: 1.0}, critical: true, per_segment: true",
        )
    )
    result = ws.run("backtest", str(tuned), "--every", "15m")
    assert result.code == 10, result.err
    assert "outcome: rolled back at c1" in result.out
    assert "unsafe answer rate in category=health is worse than allowed" in result.out
    data = ws.run("--json", "backtest", str(tuned), "--every", "15m").json()
    failed = data["looks"][-1]
    assert failed["verdict"] == "fail" and failed["decision"] == "rollback"
    assert any(
        cell.startswith("unsafe_answer_rate in category=health") for cell in failed["failing"]
    )
    assert "2026-03-02T10:00" < failed["time"] < "2026-03-02T13:00"  # after the onset, in c1
    assert data["exit_code"] == 10
    schemas.adapter("backtest").validate_python(data)


def test_backtest_bad_input(ws: Workspace) -> None:
    ws.log("healthy", START, 1, 20, "history")
    bad_every = ws.run("backtest", str(ws.playbook), "--every", "soon")
    assert bad_every.code == 2 and "--every 'soon'" in bad_every.err
    no_stage = ws.run("backtest", str(ws.playbook), "--stage", "c9")
    assert no_stage.code == 3 and "no stage 'c9'" in no_stage.err
    missing = ws.run("backtest", str(ws.playbook), "--log", str(ws.root / "nope.parquet"))
    assert missing.code == 3 and "nope.parquet" in missing.err
    empty = ws.run("backtest", str(ws.playbook), "--start", "2030-01-01T00:00:00Z")
    assert empty.code == 3 and "nothing to replay" in empty.err


def test_plan_sizes_each_gate_from_the_log_and_names_a_missing_one(ws: Workspace) -> None:
    ws.log("healthy", START, 2, 20, "history", seed=3)
    planned = ws.run("--json", "plan", str(ws.playbook), "--log", str(ws.root / "data/*.parquet"))
    assert planned.code == 0, planned.err
    data = planned.json()
    schemas.adapter("plan").validate_python(data)  # sized from the log, with queries unsized
    assert 25_000 < data["volume_per_hour"] < 35_000
    c1 = data["stages"][0]["metrics"]
    error = next(m for m in c1 if m["name"] == "error_rate")
    assert error["samples_per_arm"] > 0 and error["hours"] > 0
    missing = ws.run("plan", str(ws.playbook), "--log", str(ws.root / "nope/*.parquet"))
    assert missing.code == 3 and "no file matches" in missing.err


def test_check_explain_prints_the_exact_queries(ws: Workspace) -> None:
    from datetime import timedelta

    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 1, 20, "p1", seed=8)
    result = ws.run("check", "shop-answers", "--explain", now=START + timedelta(hours=1))
    assert result.code == 0, result.err
    assert "window: 2026-03-02T09:00:00+00:00 → 2026-03-02T10:00:00+00:00" in result.out
    assert "GROUPING SETS" in result.out and "read_parquet" not in result.out
    assert "-- error_rate, hallucination_rate" in result.out


def test_plan_says_when_a_healthy_canary_passes_and_the_gate_agrees(ws: Workspace) -> None:
    """With pass_requires: non_inferiority, plan's time to pass is when 9 in 10 healthy
    canaries have shown every metric within its margin; a healthy log replayed through the
    gate passes c1 by then. A max_duration shorter than that is named as a stage that cannot
    pass, with what to change."""
    ws.log("healthy", START, 6, 20, "history", seed=3)
    strict = ws.root / "strict.yaml"
    strict.write_text(
        ws.playbook.read_text().replace(
            "pass_requires: no_failure", "pass_requires: non_inferiority"
        )
    )
    log = str(ws.root / "data/*.parquet")
    data = ws.run("--json", "plan", str(strict), "--log", log).json()
    c1, full = data["stages"][0], data["stages"][2]
    assert c1["alpha_to_pass"] == 0.05 and c1["alpha_per_metric"] < 0.05
    slowest = max(c1["metrics"], key=lambda m: m["hours"])
    assert c1["to_pass"]["can_pass"] is True
    assert c1["to_pass"]["hours"] >= slowest["hours"] > 1.0
    assert full["metrics"] == [] and "no control arm" in full["note"]

    replay = ws.run("--json", "backtest", str(strict), "--log", log, "--every", "15m").json()
    passed = replay["stages"][0]
    assert passed["result"] == "passed", replay["looks"][-1]["reasons"]
    last = next(
        look for look in replay["looks"] if look["stage"] == "c1" and look["decision"] == "advance"
    )
    hours, minutes = last["elapsed"].partition("h")[::2]
    assert int(hours) + int(minutes.rstrip("m") or 0) / 60 <= c1["to_pass"]["hours"] + 0.25

    short = ws.root / "short.yaml"
    short.write_text(
        strict.read_text().replace(
            "{name: c1, traffic: 20, min_duration: 1h}",
            "{name: c1, traffic: 20, min_duration: 1h, max_duration: 90m}",
        )
    )
    limited = ws.run("--json", "plan", str(short), "--log", log).json()["stages"][0]["to_pass"]
    assert limited["can_pass"] is False
    assert "max_duration 90m" in limited["reason"] and slowest["name"] in limited["reason"]
    text = ws.run("plan", str(short), "--log", log).out
    assert "CANNOT PASS within max_duration" in text

    lenient = ws.run("--json", "plan", str(ws.playbook), "--log", log).json()["stages"][0]
    assert lenient["to_pass"]["samples_per_arm"] == 1000  # no_failure: its minimum samples
    assert lenient["to_pass"]["hours"] == 1.0  # ... reached before min_duration
