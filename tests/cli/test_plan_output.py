"""`plan --log` tells the truth about each stage: a 100% stage is not sized because no control
arm is left (not for want of a log), and a scoped stage's hours count only the scope's share
of the traffic."""

from __future__ import annotations

from tests.conftest import START, Workspace

SCOPED = "  - {name: c2, traffic: 50, min_duration: 1h, scope: \"category in ['health']\"}\n"


def _hours(out: str, stage: str, metric: str) -> float:
    block = out.split(f"- {stage} (", 1)[1].split("\n- ", 1)[0]
    line = next(x for x in block.splitlines() if x.strip().startswith(f"{metric}:"))
    return float(line.split("about ")[1].split(" h")[0])


def test_plan_with_a_log_sizes_scoped_stages_on_the_scope_share(ws: Workspace) -> None:
    text = ws.playbook.read_text()
    ws.playbook.write_text(
        text.replace("  - {name: c2, traffic: 50, min_duration: 1h}\n", SCOPED).replace(
            "name: c1, traffic: 20", "name: c1, traffic: 50"
        )
    )
    ws.log("healthy", START, 4, 0, "p0")
    r = ws.run("plan", str(ws.playbook), "--log", "data/p0.parquet")
    assert r.code == 0, r.out + r.err
    assert "pass --log" not in r.out
    full = r.out.split("- full (", 1)[1]
    assert "no control arm" in full
    assert "hours count only the scope's" in r.out
    # same traffic, same baseline: the scoped stage's canary gets about a tenth of the rows
    ratio = _hours(r.out, "c2", "unsafe_answer_rate") / _hours(r.out, "c1", "unsafe_answer_rate")
    data = ws.run("--json", "plan", str(ws.playbook), "--log", "data/p0.parquet").json()
    share = next(s for s in data["stages"] if s["name"] == "c2")["scope_share"]
    assert 0.05 < share < 0.2
    assert 0.8 / share < ratio < 1.3 / share  # (sample sizes differ a little with the tuning)


def test_plan_without_a_log_says_scoped_hours_assume_the_whole_traffic(ws: Workspace) -> None:
    text = ws.playbook.read_text()
    ws.playbook.write_text(text.replace("  - {name: c2, traffic: 50, min_duration: 1h}\n", SCOPED))
    r = ws.run("plan", str(ws.playbook))  # data/*.parquet matches nothing
    assert r.code == 0, r.out + r.err
    assert "no baseline to size it (pass --log)" in r.out
    assert "hours assume the whole traffic" in r.out
