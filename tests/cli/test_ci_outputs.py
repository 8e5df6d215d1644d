"""CI outputs through the real CLI: `--markdown`, `--junit` and the GitHub step summary are
written for every gate outcome, before the process exits with the gate's own code."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import START, Result, Workspace, cli_env

TWO_HOURS = START + timedelta(hours=2)


def _junit(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return suite


def _run_with_summary(ws: Workspace, summary: Path, *args: str, now: datetime) -> Result:
    env = cli_env(ws.root, ws.store_spec)
    env.update(GITHUB_STEP_SUMMARY=str(summary), ROLLOUTCTL_NOW=now.isoformat())
    proc = subprocess.run(
        [sys.executable, "-m", "rolloutctl", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ws.root,
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_check_writes_both_files_on_pass_and_on_fail(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    r = ws.run(
        "check", "shop-answers", "--markdown", "pass.md", "--junit", "pass.xml", now=TWO_HOURS
    )
    assert r.code == 0, r.err
    first = (ws.root / "pass.md").read_text(encoding="utf-8").splitlines()[0]
    assert first == "### ✅ shop-answers · c1: gate passed, would advance"
    suite = _junit(ws.root / "pass.xml")
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")
    assert int(suite.get("tests") or 0) == len(suite.findall("testcase")) > 10

    (ws.root / "data" / "p1.parquet").unlink()
    ws.log("hallucination_regression", START, 2, 20, "p2", seed=4)
    (ws.root / "out").mkdir()
    r = ws.run(
        "--json",
        "check",
        "shop-answers",
        "--markdown",
        "out/fail.md",
        "--junit",
        "out/fail.xml",
        now=TWO_HOURS,
    )
    assert r.code == 10, r.err
    assert r.json()["verdict"] == "fail"  # --json still prints only the one object
    markdown = (ws.root / "out" / "fail.md").read_text(encoding="utf-8")
    assert markdown.startswith("### ❌ shop-answers · c1: gate failed, would roll back\n")
    assert "hallucination rate (critical)" in markdown
    suite = _junit(ws.root / "out" / "fail.xml")
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert "hallucination_rate" in {c.get("name") for c in failures}
    assert suite.get("failures") == str(len(failures))


def test_advance_writes_them_when_it_rolls_back_and_when_it_holds(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    early = ws.run(
        "advance",
        "shop-answers",
        "--markdown",
        "hold.md",
        "--junit",
        "hold.xml",
        now=START + timedelta(minutes=20),
    )
    assert early.code == 11, early.err
    assert (ws.root / "hold.md").read_text(encoding="utf-8").startswith("### ⏳ shop-answers · c1")
    waiting = [
        c
        for c in _junit(ws.root / "hold.xml").findall("testcase")
        if c.get("name") == "min_duration"
    ]
    assert len(waiting) == 1 and "minimum duration" in (waiting[0].findtext("skipped") or "")

    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    r = ws.run(
        "advance", "shop-answers", "--markdown", "back.md", "--junit", "back.xml", now=TWO_HOURS
    )
    assert r.code == 10, r.err
    assert ws.state()["status"] == "rolled_back"
    first = (ws.root / "back.md").read_text(encoding="utf-8").splitlines()[0]
    assert first == "### ❌ shop-answers · c1: gate failed, rolled back"
    assert _junit(ws.root / "back.xml").get("failures") != "0"


def test_advance_watch_writes_the_final_outcome(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=2)
    r = ws.run(
        "advance",
        "shop-answers",
        "--watch",
        "--interval",
        "0",
        "--markdown",
        "w.md",
        "--junit",
        "w.xml",
        now=TWO_HOURS,
    )
    assert r.code == 0, r.err
    assert ws.state()["stage"] == "c2"
    first = (ws.root / "w.md").read_text(encoding="utf-8").splitlines()[0]
    assert first == "### ✅ shop-answers · c1: gate passed, advanced"
    assert _junit(ws.root / "w.xml").get("failures") == "0"


def test_the_step_summary_is_appended_never_overwritten(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    summary = ws.root / "summary.md"
    summary.write_text("## earlier step\n", encoding="utf-8")
    for _ in range(2):
        r = _run_with_summary(ws, summary, "--json", "check", "shop-answers", now=TWO_HOURS)
        assert r.code == 10, r.err
        assert r.json()["decision"] == "rollback"
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## earlier step\n")
    heading = "### ❌ shop-answers · c1: gate failed, would roll back"
    assert text.count(heading) == 2
    assert text.count("| Metric | Control (n) |") == 2


def test_an_unwritable_step_summary_warns_and_keeps_the_exit_code(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    missing = ws.root / "no-such-folder" / "summary.md"
    r = _run_with_summary(ws, missing, "check", "shop-answers", "--junit", "j.xml", now=TWO_HOURS)
    assert r.code == 10, r.err
    assert "warning:" in r.err and "GITHUB_STEP_SUMMARY" in r.err and str(missing) in r.err
    assert (ws.root / "j.xml").is_file() and not missing.exists()


def test_an_unwritable_output_path_is_a_usage_error_before_the_gate_acts(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    audit_before = len(ws.audit())
    bad = ws.root / "missing-folder" / "junit.xml"
    r = ws.run("advance", "shop-answers", "--junit", str(bad), now=TWO_HOURS)
    assert r.code == 2, (r.code, r.err)
    assert str(bad) in r.err and "does not exist" in r.err
    # Refused before anything ran: no rollback, no audit event, no folder made.
    assert ws.state()["status"] == "running" and len(ws.audit()) == audit_before
    assert not bad.parent.exists()
    into_dir = ws.run("check", "shop-answers", "--markdown", str(ws.root), now=TWO_HOURS)
    assert into_dir.code == 2 and "is a directory" in into_dir.err
