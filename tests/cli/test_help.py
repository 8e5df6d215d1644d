"""Every command has help and is in README's command reference (the user's manual)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
