"""Every command has help and is in README's command reference (the user's manual)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rolloutctl.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
README_COMMANDS = (ROOT / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
COMMANDS = sorted(
    [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    + [g.name or "" for g in app.registered_groups]
)
DESIGN_COMMANDS = {  # ../shared/DESIGN.md, "Commands"
    "init",
    "validate",
    "schema",
    "plan",
    "start",
    "status",
    "check",
    "advance",
    "pause",
    "resume",
    "rollback",
    "promote",
    "retry",
    "history",
    "report",
    "backtest",
    "simulate",
    "demo",
    "control",
    "smoke",
    "monitor",
}


def test_the_command_list_is_complete() -> None:
    assert set(COMMANDS) >= DESIGN_COMMANDS, DESIGN_COMMANDS - set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_documented(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rolloutctl", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert re.search(rf"(^|\s){re.escape(command)}\b", README_COMMANDS, re.M), command


def help_of(*command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "rolloutctl", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SUBCOMMANDS = [["control", "list"], ["control", "apply"], ["state", "migrate"], ["state", "export"]]


@pytest.mark.parametrize("command", [[c] for c in COMMANDS] + SUBCOMMANDS, ids=" ".join)
def test_help_is_in_one_style(command: list[str]) -> None:
    """Values in capitals (ROLLOUT, FILE), no typer-isms ({rollout}, <str>, --x / --no-x,
    [default: no-x]), and --json explained wherever a command has it."""
    text = help_of(*command)
    usage = text.split("\n\n")[0]
    assert "{" not in usage, usage
    assert not re.search(r"<(str|int|float|path|bool|list)", text), text
    assert " / --no-" not in text and "[default: no-" not in text, text
    for line in text.splitlines():
        if line.strip().startswith("--json"):
            assert len(line.split()) > 1, f"--json without help in {command}"


def test_top_level_help_lists_the_exit_codes_and_the_output_switches() -> None:
    text = help_of()
    for code in ("0", "2", "3", "4", "5", "10", "11", "12"):
        assert re.search(rf"^\s+{code}\s+\w", text, re.M), code
    for switch in ("-q, --quiet", "-v, --verbose", "--no-color", "-V, --version"):
        assert switch in text
    version = subprocess.run(
        [sys.executable, "-m", "rolloutctl", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and re.fullmatch(r"rolloutctl \S+\n", version.stdout)


def test_shell_completion_offers_commands_rollout_names_and_playbooks(ws: Any) -> None:
    assert ws.run("start", str(ws.playbook)).code == 0
    env = {
        "_ROLLOUTCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "rolloutctl check ",
        "COMP_CWORD": "2",
    }
    names = ws.run(env=env).out.split()
    assert names == ["shop-answers", "rollout.yaml"]  # the store's rollout, the playbook file
    env = {
        "_ROLLOUTCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "rolloutctl adv",
        "COMP_CWORD": "1",
    }
    assert ws.run(env=env).out.split() == ["advance"]
    script = ws.run("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert script.code == 0 and "_ROLLOUTCTL_COMPLETE" in script.out
