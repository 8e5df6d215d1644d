"""Notifications against a real local HTTP server: exact bodies, and failures that never
change what the command did."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rolloutctl import notify
from tests.conftest import PLAYBOOK, START, Workspace


class Hook:
    def __init__(self, status: int) -> None:
        self.status = status
        self.bodies: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook(200)
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting to it is refused


def start_with(ws: Workspace, notify_yaml: str, **env: str) -> None:
    ws.playbook.write_text(PLAYBOOK + notify_yaml)
    r = ws.run("start", str(ws.playbook), now=START, env=env)
    assert r.code == 0, r.err


@pytest.fixture
def envws(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The ws fixture with extra environment variables for the CLI (`env=` keyword)."""
    run = ws.run

    def run_env(*args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        for key, val in (env or {}).items():
            monkeypatch.setenv(key, val)
        return run(*args, **kw)

    ws.run = run_env
    return ws


def test_rollback_sends_slack_text_and_generic_json(envws: Workspace, hook: Hook) -> None:
    start_with(
        envws,
        """\
notify:
  - {kind: slack, url: "${HOOK_BASE}/slack", on: [rollback, pause]}
  - {kind: webhook, url: "${HOOK_BASE:-unused}/json", on: [rollback]}
""",
        HOOK_BASE=hook.url,
    )
    r = envws.run("rollback", "shop-answers", "--reason", "pager: answers look off")
    assert r.code == 0, r.err
    assert "warning" not in r.err
    assert [path for path, _ in hook.bodies] == ["/slack", "/json"]
    slack = hook.bodies[0][1]
    assert set(slack) == {"text"}
    assert slack["text"].splitlines()[:2] == [
        "rolloutctl · shop-answers: rolled back shop-answers: all traffic on v1",
        "Why: pager: answers look off",
    ]
    body = hook.bodies[1][1]
    assert set(body) == {
        "rollout",
        "stage",
        "event",
        "decision",
        "verdict",
        "reasons",
        "report",
        "actor",
        "time",
        "message",
        "control",
    }
    assert body["time"]
    body.pop("time")
    assert body == {
        "rollout": "shop-answers",
        "stage": "c1",
        "event": "rollback",
        "decision": "rollback",
        "verdict": None,
        "reasons": ["pager: answers look off"],
        "report": None,
        "actor": "tester",
        "message": "rolled back shop-answers: all traffic on v1",
        "control": None,
    }
    stored = envws.doc("notify")
    assert stored["notify"][0]["url"] == "${HOOK_BASE}/slack"  # no secret on disk


def test_events_not_asked_for_are_not_sent(envws: Workspace, hook: Hook) -> None:
    start_with(envws, f"notify:\n  - {{kind: webhook, url: '{hook.url}/j', on: [rollback]}}\n")
    assert envws.run("pause", "shop-answers", "--reason", "look").code == 12
    assert envws.run("resume", "shop-answers", "--reason", "ok").code == 0
    assert hook.bodies == []
    assert envws.run("pause", "shop-answers", "--reason", "again").code == 12
    assert hook.bodies == []


def test_a_control_notifies_with_its_name(envws: Workspace, hook: Hook) -> None:
    start_with(
        envws,
        f"""\
controls:
  - {{name: health-off, layer: scenario, title: "Stop AI answers for health questions", set: {{ai-answers-health: false}}}}
notify:
  - {{kind: webhook, url: "{hook.url}/c", on: [control]}}
""",
    )
    r = envws.run("control", "apply", "shop-answers", "health-off", "--reason", "bad answers")
    assert r.code == 0, r.err
    ((_, body),) = hook.bodies
    assert (body["event"], body["decision"], body["control"], body["reasons"]) == (
        "control",
        "apply",
        "health-off",
        ["bad answers"],
    )


@pytest.mark.parametrize("failure", ["500", "refused"])
def test_a_failing_endpoint_never_changes_the_rollback(
    envws: Workspace, failure: str, hook: Hook
) -> None:
    hook.status = 500
    url = hook.url if failure == "500" else f"http://127.0.0.1:{free_port()}"
    start_with(envws, f"notify:\n  - {{kind: slack, url: '{url}/s', on: [rollback]}}\n")
    began = time.monotonic()
    r = envws.run("--json", "rollback", "shop-answers", "--reason", "pager", now=START)
    elapsed = time.monotonic() - began
    assert r.code == 0
    assert r.json()["status"] == "rolled_back" and envws.state()["status"] == "rolled_back"
    assert "targeting" not in envws.flag
    assert "warning: slack notification of rollback" in r.err
    assert len(r.json()["warnings"]) == 1
    if failure == "500":
        assert len(hook.bodies) == notify.TRIES  # retried, then given up
    assert elapsed < notify.DEADLINE + 5
    commands = [e["command"] for e in envws.audit()]
    assert commands[-2:] == ["rollback", "notify"]
    assert {e["time"] for e in envws.audit()[-2:]} == {START.isoformat()}  # --now, both
    assert envws.audit()[-1]["verdict"] == {
        "event": "rollback",
        "kind": "slack",
        "delivered": False,
    }


def test_an_unset_url_variable_warns_at_start_and_at_send(envws: Workspace) -> None:
    envws.playbook.write_text(
        PLAYBOOK + "notify:\n  - {kind: slack, url: '${NO_SUCH_HOOK_URL}', on: [rollback]}\n"
    )
    started = envws.run("start", str(envws.playbook), now=START)
    assert started.code == 0 and "NO_SUCH_HOOK_URL" in started.err
    r = envws.run("rollback", "shop-answers", "--reason", "x")
    assert r.code == 0 and "NO_SUCH_HOOK_URL is not set" in r.err


def test_expand_env_matches_the_playbook_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolloutctl import envvars
    from rolloutctl.envvars import resolve_env
    from rolloutctl.errors import InvalidInput

    monkeypatch.setenv("HOOK_A", "https://hooks.example/a")
    monkeypatch.delenv("HOOK_B", raising=False)
    for text in ("${HOOK_A}/x", "${HOOK_B:-http://fallback}/y", "plain", "${HOOK_A}${HOOK_B:-}"):
        assert envvars.expand(text) == resolve_env(text, where="t")
    with pytest.raises(envvars.UnsetVariable):
        envvars.expand("${HOOK_B}")
    with pytest.raises(InvalidInput):
        resolve_env("${HOOK_B}", where="t")


def test_an_approval_stage_pauses_notifies_and_waits_for_a_named_promoter(
    envws: Workspace, hook: Hook
) -> None:
    """c2 needs approval: the passing gate pauses with exit 12 and says so, the flag stays
    at c1's split, `resume` will not skip the approval, and `promote` by a named actor moves
    on, audited with that name and reason."""
    from datetime import timedelta

    playbook = PLAYBOOK.replace(
        "  - {name: c2, traffic: 50, min_duration: 1h}",
        "  - {name: c2, traffic: 50, min_duration: 1h, approval: required}",
    )
    envws.playbook.write_text(
        playbook + f"notify:\n  - {{kind: webhook, url: '{hook.url}/n', on: [advance, pause]}}\n"
    )
    assert envws.run("start", str(envws.playbook), now=START).code == 0
    envws.log("healthy", START, 2, 20, "p1", seed=1)
    gate = envws.run("--json", "advance", "shop-answers", now=START + timedelta(hours=2))
    assert gate.code == 12, gate.out + gate.err
    assert gate.json()["verdict"] == "pass" and gate.json()["decision"] == "pause"
    state = envws.state()
    assert state["status"] == "awaiting_approval" and state["stage"] == "c1"
    assert "stage c2 requires approval" in state["paused_reason"]
    assert envws.flag["targeting"]["fractional"][1] == ["v2", 20000]
    ((_, paused),) = hook.bodies
    assert paused["event"] == "pause" and paused["report"].endswith(".html")
    assert "requires approval" in paused["message"]

    refused = envws.run("resume", "shop-answers", "--reason", "skip it")
    assert refused.code == 5 and "waiting for approval" in refused.err
    assert envws.run("advance", "shop-answers", now=START + timedelta(hours=3)).code == 12

    approved = envws.run(
        "--actor", "alice", "promote", "shop-answers", "--reason", "reviewed the c1 report"
    )
    assert approved.code == 0, approved.err
    assert envws.state()["stage"] == "c2"
    assert envws.flag["targeting"]["fractional"][1] == ["v2", 50000]
    last = envws.audit()[-1]
    assert (last["command"], last["actor"], last["reason"]) == (
        "promote",
        "alice",
        "reviewed the c1 report",
    )
    assert [body["event"] for _, body in hook.bodies] == ["pause", "advance"]
    assert hook.bodies[-1][1]["actor"] == "alice"


def test_a_failure_names_only_scheme_and_host_of_the_url(envws: Workspace, hook: Hook) -> None:
    hook.status = 500
    secret_url = hook.url.replace("http://", "http://user:pa55@") + "/T000/B000/s3cr3t?token=abc"
    start_with(envws, f"notify:\n  - {{kind: webhook, url: '{secret_url}', on: [rollback]}}\n")
    r = envws.run("rollback", "shop-answers", "--reason", "pager")
    assert r.code == 0 and "warning: webhook notification of rollback" in r.err
    audit = json.dumps(envws.audit())
    for secret in ("pa55", "user:", "s3cr3t", "token=abc"):
        assert secret not in r.err and secret not in audit, secret
    host = hook.url.removeprefix("http://")
    assert f"to http://{host} failed" in r.err


@pytest.mark.folder_store
def test_an_unreadable_notify_file_is_a_warning_not_silence(envws: Workspace, hook: Hook) -> None:
    start_with(envws, f"notify:\n  - {{kind: webhook, url: '{hook.url}/j', on: [rollback]}}\n")
    (envws.root / "state" / "shop-answers" / "notify.json").write_text("{oops")
    r = envws.run("rollback", "shop-answers", "--reason", "pager")
    assert r.code == 0 and envws.state()["status"] == "rolled_back"
    assert "notifications skipped" in r.err and "notify.json is corrupt" in r.err
    assert hook.bodies == []
