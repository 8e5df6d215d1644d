"""The monitor's console header names the playbook's `window:`, and every audit event of a
manual action or a failed notification carries the command's clock (`--now`), as `advance`
does."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import PLAYBOOK, START, Workspace

MONITOR = """\
stages:
  - {name: full, traffic: 100, min_duration: 30m}
  - {name: monitor, kind: monitor, baseline: pre-rollout, window: 3h, duration: 14d}
"""


def test_monitor_console_header_shows_the_configured_window(ws: Workspace) -> None:
    head, _, tail = PLAYBOOK.partition("stages:\n")
    ws.playbook.write_text(head + MONITOR + tail[tail.index("triggers:") :])
    ws.log("healthy", START - timedelta(hours=8), 8, 0, "p0", seed=1)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 8, 100, "p1", seed=2)
    r = ws.run("advance", "shop-answers", now=START + timedelta(hours=1))
    assert r.code == 0, r.out + r.err
    assert ws.state()["stage"] == "monitor"
    r = ws.run("monitor", "shop-answers", now=START + timedelta(hours=8))
    assert r.code == 0, r.out + r.err
    assert "window 3h" in r.out and "window 7h" not in r.out, r.out
    data = ws.run("--json", "monitor", "shop-answers", now=START + timedelta(hours=8)).json()
    assert data["window"]["start"] == (START + timedelta(hours=5)).isoformat()


def test_manual_actions_and_notify_events_are_audited_at_now(ws: Workspace) -> None:
    # a notification target that refuses the connection: its failure is audited
    ws.playbook.write_text(
        PLAYBOOK + "notify:\n  - {kind: webhook, url: 'http://127.0.0.1:9/n', "
        "on: [rollback, pause]}\n"
    )
    ws.log("healthy", START, 1, 20, "p1")
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    times = {
        "pause": START + timedelta(hours=1),
        "resume": START + timedelta(hours=2),
        "rollback": START + timedelta(hours=3),
    }
    exit_codes = {"pause": 12, "resume": 0, "rollback": 0}  # 12: paused
    for command, at in times.items():
        r = ws.run(command, "shop-answers", "--reason", f"by hand {command}", now=at)
        assert r.code == exit_codes[command], r.out + r.err
    events = ws.run("--json", "history", "shop-answers").json()["events"]
    by_command: dict[str, list[str]] = {}
    for e in events:
        by_command.setdefault(e["command"], []).append(e["time"])
    for command, at in times.items():
        assert by_command[command] == [at.isoformat()], (command, by_command)
    notified = [times["pause"].isoformat(), times["rollback"].isoformat()]
    assert sorted(by_command["notify"]) == notified
    text = ws.run("history", "shop-answers").out
    for at in times.values():
        assert at.isoformat() in text
