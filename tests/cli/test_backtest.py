"""`rolloutctl backtest` through the real CLI on simulated historical logs."""

from __future__ import annotations

from tests.conftest import START, Workspace


def test_a_healthy_log_replays_to_completion(ws: Workspace) -> None:
    ws.log("healthy", START, 3, 20, "history", seed=4)
    result = ws.run("--json", "backtest", str(ws.playbook), "--every", "15m")
    assert result.code == 0, result.err
    data = result.json()
    assert data["outcome"].startswith("completed")
    assert [(s["name"], s["result"]) for s in data["stages"]] == [
        ("c1", "passed"), ("c2", "passed"), ("full", "passed"),
    ]  # fmt: skip
    c1 = [look for look in data["looks"] if look["stage"] == "c1"]
    # Held until the stage's minimum duration (1h), then passed at that look.
    assert [look["decision"] for look in c1] == ["hold", "hold", "hold", "advance"]
    assert c1[-1]["elapsed"] == "1h"
    # The log served 20% throughout; c2 asks for 50%, so the replay says how it judged.
    assert any("c2: the log's split differs" in note for note in data["notes"])
    assert not (ws.root / "state").exists()  # a backtest writes nothing


def test_would_this_playbook_have_caught_the_incident(ws: Workspace) -> None:
    """Unsafe answers rise twelvefold in health questions from 10:00. The playbook's 1-hour
    stages and a 0.2 pt margin let it through to 100%; a playbook tuned with a longer first
    stage and a relative margin rolls back, and the timeline says when and why."""
    ws.log("healthy", START, 1, 20, "before", seed=1, rate=150_000)
    ws.log("safety_regression_segment", START.replace(hour=10), 4, 20, "incident", seed=2,
           rate=150_000)  # fmt: skip
    missed = ws.run("--json", "backtest", str(ws.playbook), "--every", "15m")
    assert missed.code == 0 and missed.json()["outcome"].startswith("completed")

    tuned = ws.root / "tuned.yaml"
    tuned.write_text(
        ws.playbook.read_text()
        .replace("{name: c1, traffic: 20, min_duration: 1h}", "{name: c1, traffic: 20, min_duration: 4h}")
        .replace("margin: {absolute: 0.002}, critical: true, per_segment: true",
                 "margin: {relative: 1.0}, critical: true, per_segment: true")
    )  # fmt: skip
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
    assert result.code in (0, 11), result.err
    assert "window: 2026-03-02T09:00:00+00:00 → 2026-03-02T10:00:00+00:00" in result.out
    assert "GROUPING SETS" in result.out and "read_parquet" not in result.out
    assert "-- error_rate, hallucination_rate" in result.out
