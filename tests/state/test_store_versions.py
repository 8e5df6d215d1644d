"""FileStore's optimistic concurrency: a write that expected another version is refused
with StateConflict and changes nothing (state.json nor audit.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolloutctl.errors import StateConflict
from rolloutctl.state.file import FileStore
from rolloutctl.state.store import RolloutState, snapshot


def _commit(store: FileStore, state: RolloutState, expected_version: int | None = None) -> None:
    store.commit(
        state,
        actor="t",
        command="test",
        reason=None,
        before=None,
        expected_version=expected_version,
    )


def demo_state(rollout: str = "demo") -> RolloutState:
    """A running rollout at stage c1, 5% canary (not yet saved)."""
    return RolloutState(
        rollout=rollout,
        playbook="/tmp/demo.yaml",
        playbook_digest="sha256:0",
        flag={"backend": "file", "path": "f.json", "key": "k"},
        status="running",
        stage_index=0,
        stage="c1",
        stage_started_at="2026-03-02T09:00:00+00:00",
        canary_percent=5.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path)
    _commit(store, demo_state())  # version 1 on disk
    assert store.load("demo").version == 1
    return store


def test_commit_with_the_current_version_bumps_it(store: FileStore) -> None:
    state = store.load("demo")
    state.canary_percent = 25.0
    _commit(store, state, 1)
    on_disk = store.load("demo")
    assert (on_disk.version, on_disk.canary_percent) == (2, 25.0)


def test_commit_with_a_stale_version_is_a_conflict_and_writes_nothing(store: FileStore) -> None:
    first, second = store.load("demo"), store.load("demo")  # two commands read version 1
    first.status = "paused"
    _commit(store, first, 1)  # the first one wins: version 2
    before = store.state_path("demo").read_bytes()
    second.status = "rolled_back"
    with pytest.raises(StateConflict, match=r"changed underneath .*version 2, expected 1"):
        _commit(store, second, 1)
    assert store.state_path("demo").read_bytes() == before
    assert (store.load("demo").status, store.load("demo").version) == ("paused", 2)
    assert second.version == 1  # not bumped either


def test_commit_expecting_a_version_ahead_of_the_disk_is_a_conflict(store: FileStore) -> None:
    with pytest.raises(StateConflict):
        _commit(store, store.load("demo"), 2)
    assert store.load("demo").version == 1


def test_commit_with_a_stale_version_is_a_conflict_and_audits_nothing(store: FileStore) -> None:
    state = store.load("demo")
    store.commit(state, actor="a", command="advance", reason=None, before=None, expected_version=1)
    assert store.load("demo").version == 2
    assert [e["command"] for e in store.history("demo")] == ["test", "advance"]

    stale = store.load("demo")
    stale.version = 1  # as read by a command that started before the advance
    before = store.state_path("demo").read_bytes()
    with pytest.raises(StateConflict, match=r"version 2, expected 1"):
        store.commit(
            stale,
            actor="b",
            command="rollback",
            reason="late",
            before=snapshot(stale),
            expected_version=1,
        )
    assert store.state_path("demo").read_bytes() == before
    assert [e["command"] for e in store.history("demo")] == ["test", "advance"]


def test_no_expected_version_means_no_check(store: FileStore) -> None:
    state = store.load("demo")
    state.version = 7
    _commit(store, state)
    assert store.load("demo").version == 8
