"""The flag file under faults: shared by rollouts, linked, hand-edited, broken, or not a file.
Every case checks what a reader of the file (flagd) gets, not only the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rolloutctl.errors import BackendError
from rolloutctl.flags.file import FileFlagBackend
from rolloutctl.flags.localfile import LocalFlagFile
from tests.conftest import PLAYBOOK, START, Workspace, cli_env

SHARED = """\
rollout: {name}
flag: {{backend: file, path: flags/flags.json, key: {key}, control: v1, canary: v2}}
sources:
  requests: {{kind: requestlog, path: "data/*.parquet"}}
metrics:
  - {{name: error_rate, group: technical, source: requests, kind: proportion, event: "status = 'error'", worse: higher, margin: {{absolute: 0.01}}, critical: true}}
stages:
  - {{name: c1, traffic: 20, min_duration: 1h}}
"""


def canary_share(flags_file: Path, key: str) -> float:
    flag = json.loads(flags_file.read_text())["flags"][key]
    backend = FileFlagBackend(flags_file, key, "v1", "v2")
    return backend._split_of(flag).canary_percent


# ---------------------------------------------------------------- one writer at a time


def test_a_change_waits_for_the_file_lock_and_keeps_the_other_writers_change(
    tmp_path: Path,
) -> None:
    """Another process in the middle of its read-modify-write holds the lock; a rollback
    waits, then reads what the other wrote, so neither change is lost."""
    path = tmp_path / "flags.json"
    a = FileFlagBackend(path, "flag-a", "v1", "v2")
    b = FileFlagBackend(path, "flag-b", "v1", "v2")
    a.set_split(20, None, rollout="a", stage="c1")
    b.set_split(20, None, rollout="b", stage="c1")
    holding = threading.Event()

    def slow_writer() -> None:  # what another rolloutctl does: read, change, write
        with LocalFlagFile(path, "flag file").locked():
            data = json.loads(path.read_text())
            holding.set()
            time.sleep(0.3)
            data["flags"]["flag-a"] = a.definition(0.0, None, {"rollout": "a"})
            path.write_text(json.dumps(data))

    writer = threading.Thread(target=slow_writer)
    writer.start()
    holding.wait(5)
    started = time.monotonic()
    b.rollback(rollout="b", reason="test")
    waited = time.monotonic() - started
    writer.join()
    assert waited >= 0.2  # it waited for the lock ...
    assert canary_share(path, "flag-a") == 0  # ... and kept the other writer's rollback
    assert canary_share(path, "flag-b") == 0


@pytest.mark.slow
def test_concurrent_rollbacks_of_rollouts_sharing_a_flag_file_all_hold(tmp_path: Path) -> None:
    """Three rollouts in one flagd file, rolled back at once by three processes, five times:
    every rollback exits 0 and every flag serves only the control afterwards."""
    env = cli_env(tmp_path)
    names = [f"r{i}" for i in range(3)]
    for name in names:
        book = tmp_path / f"{name}.yaml"
        book.write_text(SHARED.format(name=name, key=f"flag-{name}"))
    flags_file = tmp_path / "flags" / "flags.json"
    for trial in range(5):
        for name in names:
            if trial:
                assert _cli(tmp_path, env, "retry", name, "--reason", "again").returncode == 0
            else:
                assert _cli(tmp_path, env, "start", f"{name}.yaml").returncode == 0
        assert all(canary_share(flags_file, f"flag-{n}") == 20 for n in names)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "rolloutctl", "rollback", name, "--reason", "race"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names
        ]
        results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
        assert [code for code, _ in results] == [0, 0, 0], results
        shares = {n: canary_share(flags_file, f"flag-{n}") for n in names}
        assert set(shares.values()) == {0.0}, f"trial {trial}: {shares}"


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rolloutctl", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- links and non-files


def test_a_linked_flag_file_is_written_through_and_stays_a_link(ws: Workspace) -> None:
    real = ws.root / "mounted" / "flags.json"
    real.parent.mkdir()
    link = ws.root / "flags" / "flags.json"
    link.parent.mkdir()
    link.symlink_to(real)
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert link.is_symlink() and canary_share(real, "answer-model") == 20
    r = ws.run("rollback", "shop-answers", "--reason", "bad")
    assert r.code == 0, r.err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert canary_share(real, "answer-model") == 0  # what flagd reads


def test_a_flag_path_that_is_not_a_regular_file_is_refused(ws: Workspace) -> None:
    ws.playbook.write_text(PLAYBOOK.replace("path: flags/flags.json", "path: /dev/zero"))
    r = ws.run("start", str(ws.playbook), now=START, timeout=30)
    assert r.code == 4 and "/dev/zero: not a regular file" in r.err, r.err
    assert not (ws.root / "state" / "shop-answers" / "state.json").exists()


# ---------------------------------------------------------------- hand edits and breakage


def _edit_flag(ws: Workspace, change: object) -> None:
    path = ws.root / "flags" / "flags.json"
    data = json.loads(path.read_text())
    flag = data["flags"]["answer-model"]
    if callable(change):
        change(flag)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda f: f["targeting"]["fractional"][1].__setitem__(1, "lots"), "weight of 'v2'"),
        (lambda f: f.__setitem__("targeting", {"if": []}), "three parts"),
        (lambda f: f.__setitem__("state", "DISABLED"), "not ENABLED"),
    ],
    ids=["string weight", "empty if", "disabled"],
)
def test_a_hand_edited_flag_is_unknown_to_status_and_rollback_rewrites_it(
    ws: Workspace, edit: object, problem: str
) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    _edit_flag(ws, edit)
    status = ws.run("status", "shop-answers")
    assert status.code == 0, status.err
    assert problem in status.out + status.err and "unknown" in status.out + status.err
    advance = ws.run("advance", "shop-answers", now=START)
    assert advance.code == 5 and "outside rolloutctl" in advance.err, advance.err
    r = ws.run("rollback", "shop-answers", "--reason", "broken flag")
    assert r.code == 0, r.err
    assert canary_share(ws.root / "flags" / "flags.json", "answer-model") == 0
    assert ws.state()["status"] == "rolled_back"


def test_a_flag_file_nested_too_deeply_stops_rollback_with_the_manual_step(
    ws: Workspace,
) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    path = ws.root / "flags" / "flags.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    status = ws.run("status", "shop-answers")
    assert status.code == 0 and "nested too deeply" in status.err, status.err
    r = ws.run("rollback", "shop-answers", "--reason", "broken file")
    assert r.code == 4 and "nested too deeply" in r.err, r.err
    assert "did NOT complete" in r.err and "serve only 'v1' by hand" in r.err
    assert "Traceback" not in r.err
    assert ws.state()["status"] == "running"  # nothing recorded that did not happen


def test_a_non_finite_number_never_reaches_the_flag_file(ws: Workspace, tmp_path: Path) -> None:
    ws.playbook.write_text(
        PLAYBOOK.replace(
            "{name: c1, traffic: 20, min_duration: 1h}",
            '{name: c1, traffic: 20, min_duration: 1h, scope: "score < 1e999"}',
        )
    )
    r = ws.run("validate", str(ws.playbook))
    assert r.code == 3 and "stages[0].scope" in r.out and "1e999" in r.out, r.out
    with pytest.raises(BackendError, match="JSON cannot say"):
        FileFlagBackend(tmp_path / "f.json", "k", "v1", "v2").set_split(
            5, {"<": [{"var": "score"}, float("inf")]}, rollout="r", stage="c1"
        )
    assert not (tmp_path / "f.json").exists()


# ---------------------------------------------------------------- who owns the flag


def test_start_refuses_a_flag_another_rollout_drives_unless_forced(ws: Workspace) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    other = ws.root / "other.yaml"
    other.write_text(PLAYBOOK.replace("rollout: shop-answers", "rollout: other-answers"))
    r = ws.run("start", str(other), now=START)
    assert r.code == 5 and "driven by rollout 'shop-answers'" in r.err and "--force" in r.err
    assert not (ws.root / "state" / "other-answers" / "state.json").exists()
    assert ws.flag["metadata"]["rollout"] == "shop-answers"
    # The flag itself names its rollout: a state folder elsewhere still finds it.
    env_free = ws.run("--state-dir", "elsewhere", "start", str(other), now=START)
    assert env_free.code == 5 and "'shop-answers'" in env_free.err
    forced = ws.run("start", "--force", str(other), now=START)
    assert forced.code == 0, forced.err
    assert ws.flag["metadata"]["rollout"] == "other-answers"


def test_a_rolled_back_rollout_whose_flag_was_reopened_is_rolled_back_again(
    ws: Workspace,
) -> None:
    assert ws.run("start", str(ws.playbook), now=START).code == 0
    assert ws.run("rollback", "shop-answers", "--reason", "bad").code == 0
    backend = FileFlagBackend(ws.root / "flags" / "flags.json", "answer-model", "v1", "v2")
    backend.set_split(20, None, rollout="shop-answers", stage="c1")  # a tool sets it back
    r = ws.run("rollback", "shop-answers", "--reason", "again")
    assert r.code == 0 and "already" not in r.out, r.out
    assert canary_share(ws.root / "flags" / "flags.json", "answer-model") == 0


# ---------------------------------------------------------------- state paths


def test_state_paths_never_leave_the_state_folder(ws: Workspace) -> None:
    victim = ws.root / "victim" / "state.json"
    victim.parent.mkdir()
    victim.write_text('{"rollout": "victim"}')
    for name in ("../victim", "../../x/victim", "/etc", "Shop"):
        r = ws.run("rollback", name, "--reason", "x")
        assert r.code == 2 and "is not a rollout name" in r.err, (name, r.err)
    assert victim.read_text() == '{"rollout": "victim"}'
    blocker = ws.root / "a-file"
    blocker.write_text("")
    r = ws.run("--state-dir", str(blocker), "start", str(ws.playbook), now=START)
    assert r.code == 2 and "is not a folder" in r.err and "Traceback" not in r.err, r.err
    assert not (ws.root / "flags" / "flags.json").exists()


def test_a_gateway_config_nested_too_deeply_is_a_backend_error(tmp_path: Path) -> None:
    from rolloutctl.flags.gateway import GatewayFlagBackend

    config = tmp_path / "config.yaml"
    config.write_text("[" * 100_000 + "]" * 100_000)
    backend = GatewayFlagBackend(config, "answer", "v1", "v2")
    with pytest.raises(BackendError, match="nested too deeply"):
        backend.rollback(rollout="r", reason="x")
