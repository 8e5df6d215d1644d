"""The PostgreSQL state store as a team uses it, through the real CLI: a CI runner and an
on-call laptop that share nothing but the database (and the flag), a store that goes down
in the middle of a command, rollouts moved between stores, and what the store must never
hold (secrets, passwords in messages).

The flag is a flagd file both "machines" name by the same absolute path: it stands in for
the flag service a team shares (tests/flags/ run the real Unleash server)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rolloutctl import schemas
from tests.conftest import PLAYBOOK, START, Result, Workspace, cli_env, make_workspace

ROLLOUT = "shop-answers"


def shared_playbook(root: Path, flags: Path, data: Path) -> Path:
    """The test playbook with the flag and the request logs at absolute paths, so two
    working directories read the same ones."""
    text = PLAYBOOK.replace("path: flags/flags.json", f"path: {flags}").replace(
        'path: "data/*.parquet"', f'path: "{data}/*.parquet"'
    )
    path = root / "rollout.yaml"
    path.write_text(text)
    return path


def machine(root: Path, store: str | None, flags: Path, data: Path) -> Workspace:
    """A working directory of its own (state folder, spool, reports) on the shared store."""
    root.mkdir(parents=True, exist_ok=True)
    ws = make_workspace(root, store)
    ws.playbook = shared_playbook(root, flags, data)
    return ws


def canary_share(flags: Path) -> int:
    """Of 100 000 buckets, how many the flag file sends to the canary v2."""
    flag = json.loads(flags.read_text())["flags"]["answer-model"]
    if "targeting" not in flag:
        return 0 if flag["defaultVariant"] == "v1" else 100_000
    return sum(weight for variant, weight in flag["targeting"]["fractional"] if variant == "v2")


@pytest.fixture
def team(tmp_path: Path, pg_url: str) -> tuple[Workspace, Workspace, Path]:
    """A CI runner and an on-call laptop on one PostgreSQL store; the shared flag file."""
    flags, data = tmp_path / "shared" / "flags.json", tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    ci = machine(tmp_path / "ci", pg_url, flags, data)
    on_call = machine(tmp_path / "on-call", pg_url, flags, data)
    return ci, on_call, flags


def log_healthy(ws: Workspace, data: Path, hours: float, percent: float, part: str) -> None:
    path = ws.log("healthy", START, hours, percent, part, seed=1)
    shutil.move(str(path), data / path.name)


def test_ci_advances_on_call_rolls_back_from_another_folder_and_ci_sees_it(
    team: tuple[Workspace, Workspace, Path],
) -> None:
    ci, on_call, flags = team
    data = flags.parent / "data"
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    log_healthy(ci, data, 2, 20, "p1")
    advanced = ci.run("--json", "advance", ROLLOUT, now=START + timedelta(hours=2))
    assert advanced.code == 0, advanced.err
    assert advanced.json()["decision"] == "advance" and canary_share(flags) == 50_000

    # On-call has the playbook and the store URL, none of the CI runner's files.
    assert not (on_call.root / "state").exists()
    r = on_call.run("rollback", str(on_call.playbook), "--reason", "pager: answers look off")
    assert r.code == 0, r.err
    assert canary_share(flags) == 0  # what a client of the flag serves now

    assert ci.state()["status"] == "rolled_back"
    again = ci.run("--json", "advance", ROLLOUT, now=START + timedelta(hours=3))
    assert again.code == 5, again.out + again.err  # documented: a rolled-back rollout conflicts
    assert "was rolled back" in again.err and canary_share(flags) == 0
    history = ci.run("--json", "history", ROLLOUT).json()["events"]
    assert [e["command"] for e in history] == ["start", "advance", "rollback"]
    assert history[-1]["reason"] == "pager: answers look off"


def test_rollback_of_a_playbook_the_store_has_never_seen_creates_its_record(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On-call's laptop has no record at all (a file store in an empty folder, or a database
    the CI runner never wrote to): the playbook's flag section is enough."""
    store = (
        request.getfixturevalue("pg_url")
        if request.config.getoption("--state-backend") == "postgres"
        else None
    )
    flags, data = tmp_path / "shared" / "flags.json", tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    ci = machine(tmp_path / "ci", None, flags, data)
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    assert canary_share(flags) == 20_000
    on_call = machine(tmp_path / "on-call", store, flags, data)
    r = on_call.run("--json", "rollback", str(on_call.playbook), "--reason", "incident 4711")
    assert r.code == 0, r.err
    assert r.json()["status"] == "rolled_back" and canary_share(flags) == 0
    state = on_call.state()
    assert state["status"] == "rolled_back" and state["canary_percent"] == 0
    assert [e["command"] for e in on_call.audit()] == ["rollback"]
    by_name = on_call.run("rollback", ROLLOUT, "--reason", "again")
    assert by_name.code == 0 and "already rolled back" in by_name.out


# ---------------------------------------------------------------- the store goes down


@pytest.fixture
def own_server(state_server: Any) -> Iterator[Any]:
    """The test server, which this test stops; started again whatever happens."""
    yield state_server
    state_server.start()


def wait_refused(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"PostgreSQL still accepts connections on {port}")


# Runs the CLI with PostgresStore.commit wrapped: the server is shut down (its sessions
# are ended) just before the command's transition is committed.
STOP_AT_COMMIT = """\
import os, runpy, signal, socket, sys, time
from rolloutctl.state import postgres

original = postgres.PostgresStore.commit

def commit(self, *args, **kwargs):
    os.kill(int(os.environ["PG_PID"]), signal.SIGINT)
    port = int(os.environ["PG_PORT"])
    for _ in range(400):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.05)
    return original(self, *args, **kwargs)

postgres.PostgresStore.commit = commit
sys.argv = ["rolloutctl", *sys.argv[1:]]
runpy.run_module("rolloutctl", run_name="__main__")
"""


def run_stopping_store(ws: Workspace, server: Any, *args: str, now: Any = None) -> Result:
    env = cli_env(ws.root, ws.store_spec)
    env.update(PG_PID=str(server.proc.pid), PG_PORT=str(server.db.port))
    if now is not None:
        env["ROLLOUTCTL_NOW"] = now.isoformat()
    proc = subprocess.run(
        [sys.executable, "-c", STOP_AT_COMMIT, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ws.root,
        timeout=120,
    )
    server.proc.wait(timeout=30)  # reap it: the test started it
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spooled(ws: Workspace) -> list[Path]:
    return sorted((ws.root / "spool").glob("*.json"))


def test_store_down_before_rollback_flips_the_flag_and_spools_the_event(
    team: tuple[Workspace, Workspace, Path], own_server: Any
) -> None:
    ci, on_call, flags = team
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    own_server.stop()
    wait_refused(own_server.db.port)

    by_name = on_call.run("rollback", ROLLOUT, "--reason", "no playbook at hand")
    assert by_name.code == 4
    assert "flag was NOT changed" in by_name.err and "rollback PLAYBOOK" in by_name.err
    assert canary_share(flags) == 20_000

    r = on_call.run("rollback", str(on_call.playbook), "--reason", "store down, pager on")
    assert r.code == 0, r.err
    assert canary_share(flags) == 0
    assert "NOT recorded" in r.err and len(spooled(on_call)) == 1

    own_server.start()
    status = on_call.run("status", ROLLOUT)
    assert status.code == 0, status.err
    assert "recorded the rollback" in status.err and spooled(on_call) == []
    state = ci.state()
    assert state["status"] == "rolled_back" and state["canary_percent"] == 0
    last = ci.audit()[-1]
    assert last["command"] == "rollback" and last["reason"] == "store down, pager on"
    assert last["spooled"] is True and last["recorded_at"] > last["time"]
    assert on_call.run("status", ROLLOUT).code == 0
    assert [e["command"] for e in ci.audit()] == ["start", "rollback"]  # synced once


def test_store_down_during_rollback_keeps_the_flip_and_spools_the_event(
    team: tuple[Workspace, Workspace, Path], own_server: Any
) -> None:
    ci, on_call, flags = team
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    r = run_stopping_store(on_call, own_server, "rollback", ROLLOUT, "--reason", "mid-flight")
    assert r.code == 0, r.err
    assert canary_share(flags) == 0 and "NOT recorded" in r.err
    assert len(spooled(on_call)) == 1

    own_server.start()
    assert on_call.run("status").code == 0
    assert ci.state()["status"] == "rolled_back" and spooled(on_call) == []
    assert [e["command"] for e in ci.audit()] == ["start", "rollback"]


def test_store_down_during_advance_changes_nothing(
    team: tuple[Workspace, Workspace, Path], own_server: Any
) -> None:
    ci, _, flags = team
    data = flags.parent / "data"
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    version = ci.state()["version"]
    log_healthy(ci, data, 2, 20, "p1")
    r = run_stopping_store(ci, own_server, "advance", ROLLOUT, now=START + timedelta(hours=2))
    assert r.code == 4, r.out + r.err
    assert "set back to 20%" in r.err and "nothing changed" in r.err
    assert canary_share(flags) == 20_000  # the move to 50% was undone

    own_server.start()
    status = ci.run("--json", "status", ROLLOUT)
    assert status.code == 0, status.err
    state = ci.state()
    assert (state["stage"], state["canary_percent"], state["version"]) == ("c1", 20, version)
    assert [e["command"] for e in ci.audit()] == ["start"]
    again = ci.run("--json", "advance", ROLLOUT, now=START + timedelta(hours=2))
    assert again.code == 0, again.err
    assert ci.state()["stage"] == "c2" and canary_share(flags) == 50_000


def test_store_down_when_the_gate_rolls_back_keeps_traffic_safe(
    team: tuple[Workspace, Workspace, Path], own_server: Any
) -> None:
    ci, _, flags = team
    data = flags.parent / "data"
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    path = ci.log("hallucination_regression", START, 2, 20, "p1", seed=4)
    shutil.move(str(path), data / path.name)
    r = run_stopping_store(ci, own_server, "advance", ROLLOUT, now=START + timedelta(hours=2))
    assert r.code == 10, r.out + r.err
    assert canary_share(flags) == 0 and "NOT recorded" in r.err and len(spooled(ci)) == 1

    own_server.start()
    assert ci.run("status", ROLLOUT).code == 0
    assert ci.state()["status"] == "rolled_back"
    assert [e["command"] for e in ci.audit()] == ["start", "rollback"]


# ---------------------------------------------------------------- moving and migrating


def test_state_moves_from_a_folder_to_postgres_with_its_history(
    tmp_path: Path, pg_url: str
) -> None:
    ws = make_workspace(tmp_path)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    ws.log("healthy", START, 2, 20, "p1", seed=1)
    assert ws.run("advance", ROLLOUT, now=START + timedelta(hours=2)).code == 0
    bundle = tmp_path / "bundle.json"
    assert ws.run("state", "export", "--out", str(bundle)).code == 0

    assert ws.run("--state", pg_url, "state", "migrate").code == 0
    imported = ws.run("--state", pg_url, "--json", "state", "import", str(bundle))
    assert imported.code == 0, imported.err
    assert imported.json()["imported"] == [ROLLOUT]
    schemas.adapter("state").validate_python(imported.json())
    assert "***" in imported.json()["store"] and pg_url not in imported.out
    in_pg = ws.run("--state", pg_url, "--json", "history", ROLLOUT).json()["events"]
    in_files = ws.run("--json", "history", ROLLOUT).json()["events"]
    assert in_pg == in_files and [e["command"] for e in in_pg] == ["start", "advance"]
    report = ws.run("--state", pg_url, "report", ROLLOUT)
    assert report.code == 0, report.err  # the gate record came along

    twice = ws.run("--state", pg_url, "state", "import", str(bundle))
    assert twice.code == 5 and "--replace" in twice.err
    pg_status = ws.run("--state", pg_url, "--json", "status", ROLLOUT).json()
    files_status = ws.run("--json", "status", ROLLOUT).json()
    assert pg_status == files_status


def test_migrate_is_idempotent_and_reports_the_schema_version(tmp_path: Path, pg_url: str) -> None:
    ws = make_workspace(tmp_path)
    for _ in range(2):
        r = ws.run("--state", pg_url, "--json", "state", "migrate")
        assert r.code == 0, r.err
        assert r.json()["schema_version"] == 1
        schemas.adapter("state").validate_python(r.json())
    folder = ws.run("state", "migrate")
    assert folder.code == 2 and "needs no migration" in folder.err


# ---------------------------------------------------------------- what is never kept or shown


def test_the_store_holds_no_secret_and_messages_hide_the_password(
    tmp_path: Path, pg_url: str, state_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    ws = make_workspace(tmp_path, pg_url)
    ws.playbook.write_text(
        PLAYBOOK + "notify:\n  - {kind: webhook, url: '${HOOK_URL}', on: [rollback]}\n"
    )
    env_secret = "https://hooks.example/T0K3N-never-stored"
    monkeypatch.setenv("HOOK_URL", env_secret)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    with psycopg.connect(pg_url) as conn:
        dumped = " ".join(
            str(row)
            for table in ("rollouts", "audit", "documents", "records", "intents", "holders")
            for row in conn.execute(f"SELECT * FROM rolloutctl.{table}").fetchall()
        )
    assert "${HOOK_URL}" in dumped and "T0K3N" not in dumped

    password = state_server.db.password
    wrong = pg_url.replace(f":{state_server.db.port}/", ":1/")
    r = ws.run("--state", wrong, "status")
    assert r.code == 4 and "cannot reach the state store" in r.err
    assert password not in r.err + r.out


def readme_role_sql() -> str:
    """The README's least-privilege role, exactly as a reader copies it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = readme[readme.index("A least-privilege role for the tool") :]
    body = after[after.index("```sql\n") + len("```sql\n") :]
    sql = body[: body.index("```")]
    assert "CREATE ROLE rolloutctl " in sql, sql
    return sql


def test_the_readme_least_privilege_role_runs_every_command_and_cannot_rewrite_the_audit(
    tmp_path: Path, pg_url: str, state_server: Any
) -> None:
    import psycopg

    ws = make_workspace(tmp_path)
    assert ws.run("--state", pg_url, "state", "migrate").code == 0  # as the owner
    role, password = f"rolloutctl_{state_server.db.port}", "change-me"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(
            readme_role_sql()
            .replace("ROLE rolloutctl ", f"ROLE {role} ")
            .replace("TO rolloutctl", f"TO {role}")
        )
    host_and_db = pg_url.split("@", 1)[1]
    app_url = f"postgresql://{role}:{password}@{host_and_db}"
    (tmp_path / "app").mkdir()
    app = make_workspace(tmp_path / "app", app_url)
    started = app.run("start", str(app.playbook), now=START)
    assert started.code == 0, started.err
    app.log("healthy", START, 2, 20, "p1", seed=1)
    assert app.run("advance", ROLLOUT, now=START + timedelta(hours=2)).code == 0
    assert app.run("pause", ROLLOUT, "--reason", "look").code == 12
    assert app.run("resume", ROLLOUT, "--reason", "ok").code == 0
    assert app.run("rollback", ROLLOUT, "--reason", "done").code == 0
    assert app.run("report", ROLLOUT).code == 0
    assert [e["command"] for e in app.audit()][-3:] == ["pause", "resume", "rollback"]
    with psycopg.connect(app_url, autocommit=True) as conn:
        for statement in (
            "DELETE FROM rolloutctl.audit",
            "UPDATE rolloutctl.audit SET rollout = 'x'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_two_rollouts_on_two_machines_cannot_both_drive_one_flag(
    team: tuple[Workspace, Workspace, Path],
) -> None:
    ci, on_call, flags = team
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    other = on_call.playbook.read_text().replace("rollout: shop-answers", "rollout: shop-other")
    on_call.playbook.write_text(other)
    r = on_call.run("start", str(on_call.playbook), now=START)
    assert r.code == 5 and "driven by rollout 'shop-answers'" in r.err, r.err
    assert canary_share(flags) == 20_000
    listed = on_call.run("--json", "status").json()["rollouts"]
    assert [row["rollout"] for row in listed] == [ROLLOUT]  # nothing recorded of shop-other


def test_store_down_during_retry_leaves_a_rolled_back_flag_on_the_control(
    team: tuple[Workspace, Workspace, Path], own_server: Any
) -> None:
    ci, _, flags = team
    assert ci.run("start", str(ci.playbook), now=START).code == 0
    assert ci.run("rollback", ROLLOUT, "--reason", "pager").code == 0
    r = run_stopping_store(ci, own_server, "retry", ROLLOUT, "--reason", "fixed")
    assert r.code == 4, r.out + r.err
    assert "set back" in r.err and "nothing changed" in r.err
    assert canary_share(flags) == 0  # the retry's 20% was undone

    own_server.start()
    assert ci.run("status", ROLLOUT).code == 0
    assert ci.state()["status"] == "rolled_back"
    assert [e["command"] for e in ci.audit()] == ["start", "rollback"]
