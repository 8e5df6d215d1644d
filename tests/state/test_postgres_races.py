"""PostgresStore under real concurrency: eight processes racing for one rollout, round after
round, with and without the rollout's lock; and a process killed with SIGKILL in the middle
of a commit's transaction. Each worker is a separate process with its own connection, so
the lock (a session advisory lock) and the versioned update are exercised as commands on
different machines would exercise them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from rolloutctl.errors import StateConflict
from rolloutctl.state.postgres import PostgresStore
from rolloutctl.state.store import snapshot
from tests.state.test_store_versions import demo_state

WORKERS = 8
LOCKED_ROUNDS = 100
UNLOCKED_ROUNDS = 100
NAME = "race"
BARRIER_TIMEOUT_S = 30
# Spawned, not forked: the parent may hold threads and connections a fork would copy.
CTX = multiprocessing.get_context("spawn")


def _seed(url: str) -> int:
    """The rollout at stage_index 0; its version."""
    store = PostgresStore(url)
    try:
        state = demo_state(NAME)
        store.commit(state, actor="seed", command="start", reason=None, before=None)
        return store.load(NAME).version
    finally:
        store.close()


def _step(store: PostgresStore, state: Any, r: int, worker: int) -> None:
    """Move the state from stage_index r to r+1, at the version it was read."""
    before = snapshot(state)
    read = state.version
    state.stage_index = r + 1
    state.stage = f"s{r + 1}"
    store.commit(
        state,
        actor=f"worker-{worker}",
        command="race",
        reason=f"round {r}",
        before=before,
        expected_version=read,
        after_extra={"stage_index": r + 1, "round": r},
    )


def _race_worker(
    url: str, worker: int, rounds: int, use_lock: bool, barrier: Any, results: Any
) -> None:
    """Each round: wait for the others, then try to move the rollout from round r to r+1.
    Reports its counts on `results`; an unexpected exception is reported too."""
    counts = {"won": 0, "lock_conflicts": 0, "version_conflicts": 0, "skipped": 0}
    messages: list[str] = []
    store = PostgresStore(url)
    try:
        store.load(NAME)  # connect (and check the schema) before the race starts
        for r in range(rounds):
            barrier.wait(BARRIER_TIMEOUT_S)
            try:
                if use_lock:
                    try:
                        with store.lock(NAME, "race"):
                            state = store.load(NAME)
                            if state.stage_index == r:
                                # Under the lock nobody else may commit: a conflict here
                                # is a failure, reported as an error below.
                                _step(store, state, r, worker)
                                counts["won"] += 1
                            else:
                                counts["skipped"] += 1
                    except StateConflict as exc:
                        if "locked by another rolloutctl run" not in str(exc):
                            raise
                        counts["lock_conflicts"] += 1
                        if len(messages) < 3:
                            messages.append(str(exc))
                else:
                    state = store.load(NAME)
                    if state.stage_index == r:
                        try:
                            _step(store, state, r, worker)
                            counts["won"] += 1
                        except StateConflict as exc:
                            assert "changed underneath" in str(exc), str(exc)
                            counts["version_conflicts"] += 1
                    else:
                        counts["skipped"] += 1
            finally:
                # Every worker is done with round r before anyone starts round r+1.
                barrier.wait(BARRIER_TIMEOUT_S)
        results.put(("ok", worker, counts, messages))
    except BaseException as exc:  # reported to the test, which fails with it
        barrier.abort()
        results.put(("error", worker, f"{type(exc).__name__}: {exc}", messages))
    finally:
        store.close()


def _race(url: str, rounds: int, use_lock: bool) -> dict[str, Any]:
    initial = _seed(url)
    barrier = CTX.Barrier(WORKERS)
    results = CTX.Queue()
    procs = [
        CTX.Process(target=_race_worker, args=(url, i, rounds, use_lock, barrier, results))
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=120))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
                p.join(5)
    errors = [r for r in reports if r[0] == "error"]
    assert not errors, errors
    totals = {k: sum(r[2][k] for r in reports) for k in reports[0][2]}
    return {
        "initial": initial,
        "totals": totals,
        "messages": [m for r in reports for m in r[3]],
    }


def _check_outcome(url: str, rounds: int, initial: int) -> None:
    """One transition per round: the version and stage counted exactly, and the audit log
    holds the seed event and one event per round, consecutive, with no id twice."""
    store = PostgresStore(url)
    try:
        state = store.load(NAME)
        assert state.version == initial + rounds
        assert state.stage_index == rounds
        events = store.history(NAME)
    finally:
        store.close()
    assert [e["command"] for e in events] == ["start"] + ["race"] * rounds
    ids = [e["id"] for e in events]
    assert all(ids) and len(set(ids)) == len(ids), "missing or duplicate event ids"
    versions = [e["after"]["version"] for e in events]
    assert versions == list(range(initial, initial + rounds + 1))
    # Each round's event moved the stage from r to r+1, from the version before it.
    for r, event in enumerate(events[1:]):
        assert event["after"]["round"] == r
        assert event["after"]["stage_index"] == r + 1
        assert event["before"]["version"] == initial + r


def test_eight_processes_under_the_lock_make_one_transition_per_round(pg_url: str) -> None:
    outcome = _race(pg_url, LOCKED_ROUNDS, use_lock=True)
    totals = outcome["totals"]
    assert totals["won"] == LOCKED_ROUNDS, totals
    assert totals["version_conflicts"] == 0, totals
    assert totals["won"] + totals["lock_conflicts"] + totals["skipped"] == (LOCKED_ROUNDS * WORKERS)
    assert totals["lock_conflicts"] > 0, totals  # the race was real: someone found it held
    assert all("rollout 'race' is locked" in m for m in outcome["messages"])
    _check_outcome(pg_url, LOCKED_ROUNDS, outcome["initial"])


def test_eight_processes_without_the_lock_make_one_commit_per_round(pg_url: str) -> None:
    outcome = _race(pg_url, UNLOCKED_ROUNDS, use_lock=False)
    totals = outcome["totals"]
    assert totals["won"] == UNLOCKED_ROUNDS, totals
    assert totals["lock_conflicts"] == 0, totals
    assert totals["won"] + totals["version_conflicts"] + totals["skipped"] == (
        UNLOCKED_ROUNDS * WORKERS
    )
    assert totals["version_conflicts"] > 0, totals  # several read the same version
    _check_outcome(pg_url, UNLOCKED_ROUNDS, outcome["initial"])


# ---------------------------------------------------------------- kill -9 mid-transaction


def _commit_then_hang(url: str, marker: str) -> None:
    """Take the lock and commit, blocking inside the transaction once the state row is
    updated (the audit insert writes the marker and sleeps)."""
    import rolloutctl.state.postgres as pg

    def hang(cur: Any, rollout: str, event: dict[str, Any]) -> None:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(60)

    pg._insert_event = hang
    store = PostgresStore(url)
    with store.lock(NAME, "doomed"):
        state = store.load(NAME)
        state.status = "paused"
        store.commit(
            state,
            actor="doomed",
            command="pause",
            reason="killed",
            before=snapshot(state),
            expected_version=state.version,
        )


def test_a_process_killed_mid_commit_leaves_nothing_and_releases_the_lock(
    pg_url: str, tmp_path: Path
) -> None:
    initial = _seed(pg_url)
    store = PostgresStore(pg_url)
    before_state = store.load(NAME).to_dict()
    before_audit = store.history(NAME)
    store.close()

    marker = tmp_path / "in-transaction"
    child = CTX.Process(target=_commit_then_hang, args=(pg_url, str(marker)))
    child.start()
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.is_alive(), f"the child exited {child.exitcode} before the marker"
            assert time.monotonic() < deadline, "the child never reached the audit insert"
            time.sleep(0.02)
        # The child holds the lock and an open transaction with the row updated.
        probe = PostgresStore(pg_url)
        try:
            try:
                with probe.lock(NAME, "probe"):
                    raise AssertionError("the lock was free while the child held it")
            except StateConflict as exc:
                assert "running doomed" in str(exc), str(exc)
            assert probe.load(NAME).version == initial  # the update is not visible
        finally:
            probe.close()
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(5)

    fresh = PostgresStore(pg_url)
    try:
        t = time.monotonic()
        with fresh.lock(NAME, "after", wait=5):
            took = time.monotonic() - t
            assert fresh.load(NAME).to_dict() == before_state  # rolled back: version, status
            assert fresh.history(NAME) == before_audit
            # The row lock went with the dead transaction: a commit goes through.
            state = fresh.load(NAME)
            fresh.commit(
                state,
                actor="after",
                command="resume",
                reason=None,
                before=snapshot(state),
                expected_version=initial,
            )
        assert took < 3, f"the lock took {took:.1f} s to be released"
        assert fresh.load(NAME).version == initial + 1
        assert [e["command"] for e in fresh.history(NAME)] == ["start", "resume"]
    finally:
        fresh.close()
