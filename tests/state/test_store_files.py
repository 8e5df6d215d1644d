"""FileStore's files, one behaviour at a time, in this process: names, load errors, the audit
event a commit embeds and appends, recovery of an event a kill cut off, pending intents,
history with a damaged line, and the lock (its holder line, waiting, release)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from rolloutctl.errors import StateConflict, UsageError
from rolloutctl.state.file import FileStore
from rolloutctl.state.store import RolloutState, snapshot
from tests.state.test_store_versions import demo_state as _state


def _commit(store: FileStore, state: RolloutState, **extra: object) -> None:
    store.commit(state, actor="ana", command="start", reason="go", before=None, **extra)  # type: ignore[arg-type]


def test_names_lists_rollouts_with_a_state_sorted(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    assert store.names() == []  # no folder yet
    for name in ("zeta", "alpha"):
        _commit(store, _state(name))
    (tmp_path / "state" / "empty").mkdir()  # a folder without state.json is not a rollout
    assert store.names() == ["alpha", "zeta"]
    assert store.exists("alpha") and not store.exists("empty")


def test_a_bad_rollout_name_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a rollout name"):
        FileStore(tmp_path).dir("../etc")
    assert FileStore(tmp_path).dir("a.b_c-1") == tmp_path / "a.b_c-1"


def test_loading_an_unknown_rollout_names_the_known_ones(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StateConflict) as empty:
        store.load("demo")
    assert f"no rollout named 'demo' in {tmp_path} (known: none)" == empty.value.message
    _commit(store, _state("other"))
    with pytest.raises(StateConflict, match=r"\(known: other\)") as known:
        store.load("demo")
    assert "rolloutctl start PLAYBOOK" in (known.value.hint or "")


@pytest.mark.parametrize("text", ["{not json", '{"rollout": "demo"}', "[1, 2]"])
def test_a_corrupt_state_file_is_a_conflict_naming_the_audit_log(tmp_path: Path, text: str) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    store.state_path("demo").write_text(text)
    with pytest.raises(StateConflict) as err:
        store.load("demo")
    assert err.value.message.startswith(f"{store.state_path('demo')} is corrupt (")
    assert err.value.message.endswith("); nothing was changed")
    assert str(store.audit_path("demo")) in (err.value.hint or "")


def test_unknown_keys_in_the_state_file_are_ignored(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    data = json.loads(store.state_path("demo").read_text())
    data["from_a_newer_version"] = 1
    store.state_path("demo").write_text(json.dumps(data))
    assert store.load("demo").stage == "c1"


def test_a_commit_embeds_its_audit_event_and_appends_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    state = _state()
    before = snapshot(state)
    store.commit(
        state,
        actor="ana",
        command="advance",
        reason="gate passed",
        before=before,
        after_extra={"report": "r.html"},
        verdict={"verdict": "pass"},
        at="2026-03-02T10:00:00+00:00",
    )
    saved = store.load("demo")
    assert saved.version == 1 and saved.created_at and saved.updated_at == saved.created_at
    (line,) = store.audit_path("demo").read_text().splitlines()
    event = json.loads(line)
    assert event == saved.pending_audit
    assert len(event["id"]) == 16
    assert {k: event[k] for k in ("time", "actor", "command", "reason", "verdict")} == {
        "time": "2026-03-02T10:00:00+00:00",
        "actor": "ana",
        "command": "advance",
        "reason": "gate passed",
        "verdict": {"verdict": "pass"},
    }
    assert event["before"] == before
    assert event["after"] == {**snapshot(saved), "report": "r.html"}
    assert line == json.dumps(event, separators=(",", ":"))  # one compact line


def test_a_commit_clears_the_pending_intent_and_a_second_keeps_created_at(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    state = _state()
    _commit(store, state)
    created = store.load("demo").created_at
    store.write_intent("demo", {"stage": "c2", "canary_percent": 25})
    assert store.read_intent("demo") == {"stage": "c2", "canary_percent": 25}
    time.sleep(0.01)
    _commit(store, store.load("demo"), expected_version=1)
    again = store.load("demo")
    assert again.created_at == created and again.updated_at != created
    assert store.read_intent("demo") is None
    assert len(store.history("demo")) == 2


@pytest.mark.parametrize("text", ["{broken", "[1]", '"text"'])
def test_an_unreadable_intent_still_says_a_change_was_interrupted(
    tmp_path: Path, text: str
) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    store.intent_path("demo").write_text(text)
    assert store.read_intent("demo") == {}
    store.clear_intent("demo")
    assert store.read_intent("demo") is None
    store.clear_intent("demo")  # clearing twice is fine


def test_recover_audit_appends_an_event_a_kill_cut_off_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    store.audit_path("demo").write_text("")  # the kill came between the two writes
    store.recover_audit("demo")
    store.recover_audit("demo")  # already there: not appended again
    (event,) = store.history("demo")
    assert event["recovered"] is True
    assert event["id"] == store.load("demo").pending_audit["id"]  # type: ignore[index]


def test_recover_audit_leaves_a_logged_event_and_missing_rollouts_alone(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.recover_audit("nothing")  # no state: nothing to recover, no error
    _commit(store, _state())
    store.recover_audit("demo")
    assert [e.get("recovered") for e in store.history("demo")] == [None]
    state = store.load("demo")
    state.pending_audit = {"time": "x"}  # an event without an id is not recovered
    store.state_path("demo").write_text(json.dumps(state.to_dict()))
    store.recover_audit("demo")
    assert len(store.history("demo")) == 1


def test_recover_audit_finds_the_event_near_the_end_of_a_long_log(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for i in range(3):
        store.audit(
            "demo", actor="a", command=f"c{i}", reason="x" * 40_000, before=None, after=None
        )
    _commit(store, _state())
    size = store.audit_path("demo").stat().st_size
    assert size > 65536
    store.recover_audit("demo")
    assert len(store.history("demo")) == 4  # found in the tail: nothing appended


def test_audit_appends_plain_events_and_history_marks_a_damaged_line(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    store.audit(
        "demo",
        actor="bob",
        command="notify",
        reason=None,
        before=None,
        after={"sent": False},
        verdict=None,
        at="2026-03-02T11:00:00+00:00",
    )
    with store.audit_path("demo").open("a") as handle:
        handle.write("{half a line\n\n")
    events = store.history("demo")
    assert [e["command"] for e in events] == ["start", "notify", "(unreadable)"]
    assert events[1] == {
        "time": "2026-03-02T11:00:00+00:00",
        "actor": "bob",
        "command": "notify",
        "reason": None,
        "before": None,
        "after": {"sent": False},
        "verdict": None,
    }
    assert events[2] == {"time": None, "command": "(unreadable)", "line": 3}


def test_history_of_a_rollout_without_a_log(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StateConflict, match="no rollout named 'demo'"):
        store.history("demo")
    _commit(store, _state())
    store.audit_path("demo").unlink()
    assert store.history("demo") == []


def test_the_lock_records_its_holder_and_refuses_a_second_command(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.lock("demo", "advance"):
        holder = (tmp_path / "demo" / "lock").read_text()
        assert holder.startswith(f"pid {os.getpid()} running advance since ")
        with pytest.raises(StateConflict) as err, FileStore(tmp_path).lock("demo", "rollback"):
            pass
        assert err.value.message == (
            f"rollout 'demo' is locked by another rolloutctl run ({holder})"
        )
        assert "--wait SECONDS" in (err.value.hint or "")
    assert (tmp_path / "demo" / "lock").read_text() == ""  # released and emptied
    with store.lock("demo", "status"):
        pass


def test_the_lock_waits_for_its_holder_when_asked(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with FileStore(tmp_path).lock("demo", "advance"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with store.lock("demo", "rollback", wait=5):
        waited = time.monotonic() - started
    thread.join()
    assert 0.2 < waited < 5


def test_the_lock_recovers_a_cut_off_audit_event(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    _commit(store, _state())
    store.audit_path("demo").write_text("")
    with store.lock("demo", "status"):
        pass
    assert [e.get("recovered") for e in store.history("demo")] == [True]


def test_a_file_where_the_state_folder_should_be_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with (
        pytest.raises(UsageError, match="is not a folder"),
        FileStore(tmp_path / "state").lock("demo", "start"),
    ):
        pass


def test_the_state_folder_has_the_documented_layout(tmp_path: Path) -> None:
    """<state-dir>/<rollout>/state.json (indented JSON), audit.jsonl (one compact event a
    line, audit 'before'/'after' as status, stage, canary_percent, version) and pending.json
    while a flag change is in flight: the files operators and scripts read."""
    store = FileStore(tmp_path / "nested" / "state")
    _commit(store, _state())
    store.write_intent("demo", {"stage": "c2"})
    folder = tmp_path / "nested" / "state" / "demo"
    assert sorted(p.name for p in folder.iterdir()) == ["audit.jsonl", "pending.json", "state.json"]
    state_text = (folder / "state.json").read_text()
    assert state_text.startswith('{\n  "rollout": "demo",') and state_text.endswith("}\n")
    assert (folder / "pending.json").read_text() == '{\n  "stage": "c2"\n}\n'
    event = json.loads((folder / "audit.jsonl").read_text())
    assert event["after"] == {
        "status": "running",
        "stage": "c1",
        "canary_percent": 5.0,
        "version": 1,
    }
    store.audit("other", actor="a", command="notify", reason=None, before=None, after=None)
    assert (tmp_path / "nested" / "state" / "other" / "audit.jsonl").is_file()
