"""The A/B stage with a fixed horizon: product metrics compared once at the planned end with
fixed-horizon tests, while the safety and technical metrics keep their sequential guard."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import PLAYBOOK, START, Workspace

PRODUCT = (
    "  - {name: task_completion, group: product, source: requests, kind: proportion, "
    "event: task_completed, worse: lower, margin: {relative: 0.03}}\n"
)
STAGES = """\
stages:
  - {name: c1, traffic: 20, min_duration: 1h}
  - {name: ab-test, kind: ab, traffic: 50, method: fixed, duration: 6h, metrics: [task_completion]}
  - {name: full, traffic: 100, min_duration: 30m}
"""


def ab_playbook() -> str:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    head = head.replace("metrics:\n", "metrics:\n" + PRODUCT, 1)
    return head + STAGES + tail[tail.index("triggers:") :]


def at_ab(ws: Workspace) -> None:
    ws.playbook.write_text(ab_playbook())
    assert ws.run("validate", str(ws.playbook)).code == 0
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert ws.run("promote", "shop-answers", "--reason", "skip c1", now=START).code == 0
    assert ws.state()["stage"] == "ab-test" and ws.state()["canary_percent"] == 50


def test_product_metrics_wait_for_the_planned_end(ws: Workspace) -> None:
    at_ab(ws)
    ws.log("healthy", START, 6, 50, "ab", seed=11)
    middle = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=3))
    assert middle.code == 11, middle.out + middle.err
    gate = middle.json()
    rows = {m["name"]: m for m in gate["metrics"] if m["segment"] is None}
    assert rows["task_completion"]["verdict"] == "inconclusive"
    assert (
        "compared once, at the end of the planned 6h (3h left)" in rows["task_completion"]["note"]
    )
    assert rows["task_completion"]["p_value"] is None and not rows["task_completion"]["vetoes"]
    assert "sequential" in rows["error_rate"]["test"]  # the guards are judged meanwhile
    assert any("A/B test runs its planned 6h" in r for r in gate["reasons"])

    end = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=6))
    assert end.code == 0, end.out + end.err
    gate = end.json()
    rows = {m["name"]: m for m in gate["metrics"] if m["segment"] is None}
    assert rows["task_completion"]["verdict"] == "pass"
    assert "fixed" in rows["task_completion"]["test"] and rows["task_completion"]["vetoes"]
    assert "sequential" in rows["error_rate"]["test"]
    assert gate["decision"] == "advance" and ws.state()["stage"] == "full"


def test_a_guard_still_rolls_back_before_the_end(ws: Workspace) -> None:
    at_ab(ws)
    ws.log("hallucination_regression", START, 3, 50, "ab", seed=12)
    r = ws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=3))
    assert r.code == 10, r.out + r.err
    gate = r.json()
    failing = {m["name"] for m in gate["metrics"] if m["verdict"] == "fail" and m["vetoes"]}
    assert "hallucination_rate" in failing and "task_completion" not in failing
    assert ws.state()["status"] == "rolled_back"


def test_plan_shows_the_duration_the_ab_metrics_need(ws: Workspace) -> None:
    ws.playbook.write_text(ab_playbook())
    ws.log("healthy", START, 2, 20, "p1", seed=13)
    r = ws.run("--json", "plan", str(ws.playbook))
    assert r.code == 0, r.err
    [ab] = [s for s in r.json()["stages"] if s["name"] == "ab-test"]
    rows = {m["name"]: m for m in ab["metrics"]}
    assert rows["task_completion"]["method"] == "fixed"
    assert rows["error_rate"]["method"] == "sequential"
    assert ab["ab"]["hours_needed"] == rows["task_completion"]["hours"] > 0
    assert ab["ab"]["planned_hours"] == 6
    assert ab["ab"]["enough"] == (rows["task_completion"]["hours"] <= 6)
    # No A/B stage passes before its planned end, whatever its metrics need.
    assert ab["to_pass"]["hours"] >= 6
