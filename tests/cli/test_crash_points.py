"""A kill at every write of every command: afterwards the flag, the state and the audit log
agree once the command is run again (what an operator does after a crash).

Each command runs in a real process whose file writes are counted (every atomic write of a
flag, state, intent, control or notification file, and every audit append); the process is
killed with os._exit right after write number n, for every n the command makes. Then the
same command is run again, normally, and three things must hold:

- the rollout flag serves what the state says (never canary traffic the state does not know),
  and a control recorded as applied has its values in the flags;
- every state version has its audit event (no transition unaudited), and none is audited twice;
- `status` reports no change "outside rolloutctl" (rolloutctl explains its own crashes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.cli.test_controls import CONTROLS
from tests.conftest import PLAYBOOK, START, Workspace, cli_env, make_workspace

pytestmark = pytest.mark.slow  # every test kills rolloutctl at each of its writes

# Counts writes; exits with status 9 right after write number KILL_AFTER (0: never; the
# count is printed to stderr at exit so the test knows how many writes a command makes).
KILLER = """\
import atexit, os, sys
import rolloutctl.atomic as atomic

kill_after = int(os.environ["KILL_AFTER"])
count = 0

def counted(write):
    def wrapper(*args, **kwargs):
        global count
        result = write(*args, **kwargs)
        count += 1
        if count == kill_after:
            os._exit(9)
        return result
    return wrapper

atomic.atomic_write = counted(atomic.atomic_write)  # before any module imports it
from rolloutctl.state.file import FileStore
FileStore._append_audit = counted(FileStore._append_audit)
atexit.register(lambda: sys.stderr.write(f"\\nWRITES {count}\\n"))
from rolloutctl.cli.entry import run

sys.argv = ["rolloutctl", *sys.argv[1:]]
run()
"""

COMMANDS: dict[str, list[str]] = {
    "advance": ["advance", "shop-answers"],
    "rollback": ["rollback", "shop-answers", "--reason", "on-call"],
    "pause": ["pause", "shop-answers", "--reason", "look"],
    "resume": ["resume", "shop-answers", "--reason", "seen"],
    "promote": ["promote", "shop-answers", "--reason", "looks good"],
    "retry": ["retry", "shop-answers", "--reason", "fixed"],
    "control apply": ["control", "apply", "shop-answers", "provider-off", "--reason", "down"],
    "control apply (other flag)": [
        "control",
        "apply",
        "shop-answers",
        "health-off",
        "--reason",
        "bad",
    ],
    "control revert": ["control", "revert", "shop-answers", "provider-off", "--reason", "ok"],
    "control revert (other flag)": [
        "control",
        "revert",
        "shop-answers",
        "health-off",
        "--reason",
        "ok",
    ],
}
# What must have happened before a command can run (from the started rollout).
SETUP: dict[str, list[str]] = {
    "resume": ["pause"],
    "retry": ["rollback"],
    "control revert": ["control apply", "control apply (other flag)"],
    "control revert (other flag)": ["control apply", "control apply (other flag)"],
}
AT = START + timedelta(hours=2)  # the log covers two hours: the first stage can pass


def _run_killed(ws: Workspace, args: list[str], kill_after: int) -> tuple[int, str]:
    env = cli_env(ws.root, ws.store_spec)
    env["KILL_AFTER"] = str(kill_after)
    env["ROLLOUTCTL_NOW"] = AT.isoformat()
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, *args],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stderr


def _writes_of(ws: Workspace, args: list[str]) -> tuple[int, int]:
    """How many writes the command makes when it is not killed, and its exit code."""
    code, err = _run_killed(ws, args, 0)
    return int(err.rsplit("WRITES", 1)[1].split()[0]), code


def _flag_percent(ws: Workspace) -> float:
    flag = ws.flag
    targeting = flag.get("targeting")
    if not targeting:
        return 100.0 if flag["defaultVariant"] == "v2" else 0.0
    split = targeting["if"][1] if "if" in targeting else targeting
    weights = dict(split["fractional"])
    return 100 * weights.get("v2", 0) / sum(weights.values())


def _assert_consistent(ws: Workspace) -> None:
    state = ws.state()
    assert _flag_percent(ws) == pytest.approx(state["canary_percent"]), (state, ws.flag)
    events = [e for e in ws.audit() if e.get("id")]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an audit event was appended twice"
    versions = sorted(e["after"]["version"] for e in events)
    assert versions == list(range(1, state["version"] + 1)), versions
    controls = ws.run("--json", "control", "list", "shop-answers").json()["controls"]
    for row in controls:  # what the book records as applied, the flags hold
        assert row["applied_by"] is None or row["state"] == "applied", row
    status = ws.run("status", "shop-answers")
    assert "outside rolloutctl" not in status.err + status.out, status.err


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rollout started with controls, copied for every crash."""
    root = tmp_path_factory.mktemp("started")
    ws = make_workspace(root)
    ws.playbook.write_text(PLAYBOOK + CONTROLS)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    return root


def _copy(started: Path, tmp_path: Path, name: str) -> Workspace:
    root = tmp_path / name
    shutil.copytree(started, root)
    ws = make_workspace(root)
    state_file = root / "state" / "shop-answers" / "state.json"
    state = json.loads(state_file.read_text())
    state["playbook"] = str(ws.playbook)  # the copy's own playbook
    state["flag"]["path"] = str(root / "flags" / "flags.json")
    state_file.write_text(json.dumps(state))
    return ws


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_kill_at_every_write_is_recovered_by_running_the_command_again(
    command: str, started: Path, tmp_path: Path
) -> None:
    args = COMMANDS[command]

    def prepared(name: str) -> Workspace:
        ws = _copy(started, tmp_path, name)
        for step in SETUP.get(command, []):
            expected = 12 if step == "pause" else 0  # 12: paused
            assert ws.run(*COMMANDS[step], now=AT - timedelta(minutes=30)).code == expected
        return ws

    writes, clean_exit = _writes_of(prepared("count"), args)
    assert clean_exit == (12 if command == "pause" else 0)
    assert writes >= 2  # at least the state and its audit line
    for n in range(1, writes + 1):
        ws = prepared(f"kill-{n}")
        code, err = _run_killed(ws, args, n)
        assert code == 9, f"write {n} of {writes}: {err}"
        moved = ws.state()["stage"] == "c2" or _flag_percent(ws) == 50  # c2's traffic
        again = ws.run(*args, now=AT + timedelta(minutes=5))
        # Run again, the command ends as it does when nothing interrupts it; an advance whose
        # move reached the flag or the state before the kill is recorded (reconciled), and the
        # second advance judges c2, 5 minutes in: a hold.
        expected = 11 if command == "advance" and moved else clean_exit
        assert again.code == expected, f"after a kill at write {n}: {again.err}"
        _assert_consistent(ws)


def test_a_start_killed_at_every_write_can_be_started_again(
    tmp_path: Path,
) -> None:
    def fresh(name: str) -> Workspace:
        (tmp_path / name).mkdir()
        ws = make_workspace(tmp_path / name)
        ws.playbook.write_text(PLAYBOOK + CONTROLS)
        return ws

    first = fresh("count")
    args = ["start", str(first.playbook)]
    writes, clean_exit = _writes_of(first, args)
    assert clean_exit == 0
    state_file = Path("state") / "shop-answers" / "state.json"
    for n in range(1, writes + 1):
        ws = fresh(f"kill-{n}")
        code, err = _run_killed(ws, ["start", str(ws.playbook)], n)
        assert code == 9, err
        started_before_the_kill = (ws.root / state_file).exists()
        again = ws.run("start", str(ws.playbook), now=START)
        # Once the state is written the rollout exists and a second start is refused;
        # before, the second start is the first one.
        if started_before_the_kill:
            assert again.code == 5 and "already running" in again.err, (n, again.err)
        else:
            assert again.code == 0, f"after a kill at write {n} of {writes}: {again.err}"
        assert (ws.root / state_file).exists()
        # A later locking command recovers any audit line the kill cut off.
        assert ws.run("pause", "shop-answers", "--reason", "check").code == 12
        _assert_consistent(ws)
