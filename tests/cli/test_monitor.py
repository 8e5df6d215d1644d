"""The post-launch monitor through the CLI: after 100%, recent traffic against the
pre-rollout baseline; drift alerts (exit 10, a `drift` notification) and leaves the flag."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from rolloutctl import simulate
from tests.conftest import PLAYBOOK, START, Workspace
from tests.test_notify import Hook

STAGES = """\
stages:
  - {name: c1, traffic: 20, min_duration: 1h}
  - {name: full, traffic: 100, min_duration: 30m}
  - {name: monitor, kind: monitor, baseline: pre-rollout, window: 6h, duration: 14d}
"""


def test_monitor_is_quiet_on_stable_traffic_and_alerts_on_drift(ws: Workspace) -> None:
    hook = Hook(200)
    try:
        head, _, tail = PLAYBOOK.partition("stages:\n")
        ws.playbook.write_text(
            head
            + STAGES
            + tail[tail.index("triggers:") :]
            + f"notify:\n  - {{kind: webhook, url: '{hook.url}/n', on: [drift]}}\n"
        )
        # Before the rollout: everyone on v1.
        ws.log("healthy", START - timedelta(hours=8), 8, 0, "p0", seed=1)
        assert ws.run("start", str(ws.playbook), now=START).code == 0
        ws.log("healthy", START, 2, 20, "p1", seed=2)
        assert ws.run("advance", "shop-answers", now=START + timedelta(hours=2)).code == 0
        ws.log("healthy", START + timedelta(hours=2), 1, 100, "p2", seed=3)
        r = ws.run("advance", "shop-answers", now=START + timedelta(hours=3))
        assert r.code == 0, r.out + r.err
        assert ws.state()["stage"] == "monitor" and ws.state()["canary_percent"] == 100

        early = ws.run("--json", "monitor", "shop-answers", now=START + timedelta(hours=3))
        assert early.code == 11, early.out + early.err  # nothing recent yet
        ws.log("healthy", START + timedelta(hours=3), 6, 100, "p3", seed=4)
        quiet = ws.run("--json", "monitor", "shop-answers", now=START + timedelta(hours=9))
        assert quiet.code == 0, quiet.out + quiet.err
        gate = quiet.json()
        assert gate["verdict"] == "pass" and gate["decision"] == "hold"
        assert gate["reasons"][0].startswith("no drift")
        assert gate["window"]["baseline_end"] == START.isoformat()
        assert hook.bodies == []

        # Then a new kind of question arrives, and the candidate hallucinates on it.
        t = START + timedelta(hours=9)
        frame = simulate.generate(
            "healthy",
            t,
            t + timedelta(hours=6),
            requests_per_hour=30_000,
            canary_percent=100,
            seed=5,
        )
        rng = np.random.default_rng(5)
        new = rng.random(len(frame)) < 0.06
        frame.loc[new, "category"] = "tax_filing"
        frame.loc[new, "hallucination"] = rng.random(int(new.sum())) < 0.35
        simulate.write(frame, ws.root / "data" / "p4.parquet")
        drift = ws.run("--json", "monitor", "shop-answers", now=t + timedelta(hours=6))
        assert drift.code == 10, drift.out + drift.err
        gate = drift.json()
        assert gate["verdict"] == "fail" and gate["decision"] == "hold"
        assert any("new category value 'tax_filing'" in r for r in gate["reasons"])
        assert any(r.startswith("hallucination rate drifted") for r in gate["reasons"]), gate[
            "reasons"
        ]
        assert ws.state()["canary_percent"] == 100 and ws.state()["status"] == "running"
        assert ws.flag["targeting"]["fractional"][1] == ["v2", 100000]  # the flag is untouched
        ((_, body),) = hook.bodies
        assert body["event"] == "drift" and "tax_filing" in " ".join(body["reasons"])
        page = (ws.root / "reports" / "shop-answers" / gate["report"].split("/")[-1]).read_text()
        assert "tax_filing" in page and "Drift found at monitor (the flag is unchanged)" in page
    finally:
        hook.stop()


def test_monitor_refuses_before_the_monitor_stage(ws: Workspace) -> None:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    ws.playbook.write_text(head + STAGES + tail[tail.index("triggers:") :])
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    r = ws.run("monitor", "shop-answers", now=START + timedelta(hours=1))
    assert r.code == 5 and "monitor runs at a monitor stage" in r.err
    assert "rolloutctl advance shop-answers" in r.err
