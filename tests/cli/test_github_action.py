"""The GitHub Action (action.yml, a composite) runs action/gate.sh with the inputs as
environment variables: the script is run here the way the runner runs it, against a real
rollout, and its outputs, job summary, files and exit code are checked for each outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import START, Workspace, cli_env

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def gate_step() -> dict[str, Any]:
    (step,) = [s for s in ACTION["runs"]["steps"] if s.get("id") == "gate"]
    return step


def test_the_action_is_a_composite_whose_steps_run_scripts_that_exist() -> None:
    assert ACTION["runs"]["using"] == "composite"
    for step in ACTION["runs"]["steps"]:
        if "run" in step:
            script = step["run"].split("/")[-1].rstrip('"')
            assert (ROOT / "action" / script).exists(), step["run"]
            assert step["shell"] == "bash"
    assert set(gate_step()["env"]) >= {"COMMAND", "ROLLOUT", "ROLLOUTCTL_STATE"}
    for name, output in ACTION["outputs"].items():
        assert output["value"] == f"${{{{ steps.gate.outputs.{name} }}}}"
    assert ACTION["inputs"]["rollout"]["required"] is True


def run_gate(
    ws: Workspace, look: timedelta, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """action/gate.sh as the runner runs it: the step's env, GITHUB_OUTPUT and
    GITHUB_STEP_SUMMARY files, rolloutctl on PATH."""
    output, summary = ws.root / "github_output", ws.root / "step_summary.md"
    output.write_text("")
    summary.write_text("")
    env = {
        **cli_env(ws.root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "ROLLOUTCTL_NOW": (START + look).isoformat(),
        "COMMAND": "check",
        "ROLLOUT": "shop-answers",
        "ROLLOUTCTL_STATE": "",  # an empty input: the default store
        "FAIL_ON_INCONCLUSIVE": "false",
        "ARGS": "",
        **inputs,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "action" / "gate.sh")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ws.root,
        timeout=300,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return proc, outputs, summary.read_text()


@pytest.fixture
def started(ws: Workspace) -> Workspace:
    ws.log("hallucination_regression", START, 2, 20, "p1", seed=3, rate=20_000)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    return ws


def test_a_failed_gate_fails_the_job_with_its_outputs_summary_and_files(started: Workspace) -> None:
    proc, outputs, summary = run_gate(started, timedelta(hours=2))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "::error::rolloutctl gate failed" in proc.stdout
    assert outputs["verdict"] == "fail" and outputs["exit-code"] == "10"
    assert outputs["decision"] == "rollback"
    assert Path(started.root / outputs["report"]).exists()
    assert "hallucination" in summary  # rolloutctl appended the Markdown summary
    for name in ("rolloutctl-gate.json", "rolloutctl-gate.md", "rolloutctl-gate.xml"):
        assert (started.root / name).stat().st_size > 0, name
    state = started.state()  # check never acts
    assert state["status"] == "running" and state["canary_percent"] == 20


def test_an_inconclusive_gate_warns_or_fails_as_asked(started: Workspace) -> None:
    early = timedelta(minutes=5)
    proc, outputs, _ = run_gate(started, early)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "::warning::rolloutctl inconclusive" in proc.stdout
    assert outputs["verdict"] == "inconclusive" and outputs["exit-code"] == "11"
    strict, _, _ = run_gate(started, early, FAIL_ON_INCONCLUSIVE="true")
    assert strict.returncode == 1 and "::error::rolloutctl inconclusive" in strict.stdout


def test_advance_through_the_action_acts_and_a_bad_command_is_refused(
    started: Workspace,
) -> None:
    proc, outputs, _ = run_gate(started, timedelta(hours=2), COMMAND="advance")
    assert proc.returncode == 1 and outputs["decision"] == "rollback"
    assert started.state()["status"] == "rolled_back"  # advance acted on the failed gate
    refused, outputs, _ = run_gate(started, timedelta(hours=2), COMMAND="promote")
    assert refused.returncode == 2 and "::error::command must be" in refused.stdout
    assert outputs == {}


def test_an_error_fails_the_job_with_the_message(started: Workspace) -> None:
    proc, outputs, _ = run_gate(started, timedelta(hours=2), ROLLOUT="no-such-rollout")
    assert proc.returncode == 1
    assert outputs["verdict"] == "error" and outputs["exit-code"] == "5"
    assert "no rollout named 'no-such-rollout'" in proc.stdout
