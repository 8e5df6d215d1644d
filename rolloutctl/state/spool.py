"""Rollbacks made while the state store was down, kept on this machine until it is back.

`rollback PLAYBOOK` flips the flag whatever the store does; when the store cannot be reached
the audit event is written here (one JSON file per rollback, in `ROLLOUTCTL_SPOOL` or
`~/.local/state/rolloutctl/spool`), and the next command on this machine that reaches the
store records it there: the rollout's state becomes `rolled_back` (unless something already
recorded that) and the audit log gets the event with both times, when the flag was flipped
(`time`) and when the store learnt of it (`recorded_at`). Standard library only: rollback
reads and writes these on the fast path."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import RolloutError, StoreUnavailable
from rolloutctl.state.store import RolloutState, now_iso, snapshot

if TYPE_CHECKING:
    from rolloutctl.context import Context


def spool_dir() -> Path:
    if os.environ.get("ROLLOUTCTL_SPOOL"):
        return Path(os.environ["ROLLOUTCTL_SPOOL"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rolloutctl" / "spool"


@dataclass
class Spooled:
    path: Path
    store: str  # the store's `where`: a spool is synced only to the store it was meant for
    rollout: str
    event: dict[str, Any]  # the audit event, with its id and the time the flag was flipped
    state: dict[str, Any]  # the rolled-back state to record when the store has none


def put(store: str, state: RolloutState, event: dict[str, Any]) -> Path:
    """Keep a rollback's event until the store is back; returns the file."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{event['time'].replace(':', '')}-{event['id']}.json"
    data = {"store": store, "rollout": state.rollout, "event": event, "state": state.to_dict()}
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def new_event(actor: str, reason: str, at: str, before: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex[:16],
        "time": at,
        "actor": actor,
        "command": "rollback",
        "reason": reason,
        "before": before,
        "after": {"status": "rolled_back", "canary_percent": 0.0},
        "verdict": None,
    }


def pending(store: str) -> list[Spooled]:
    folder = spool_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("store") == store:
                out.append(Spooled(path, store, data["rollout"], data["event"], data["state"]))
        except (OSError, ValueError, KeyError, AttributeError):
            continue  # not ours to judge; left for a person (the file stays)
    return out


def sync(ctx: Context) -> list[str]:
    """Record every spooled rollback for this store; a store still down leaves them for
    the next command. Returns one line per rollback recorded."""
    done = []
    for item in pending(ctx.store.where):
        try:
            _record(ctx, item)
        except StoreUnavailable:
            break
        except RolloutError as exc:  # a lock held elsewhere: the next command tries again
            done.append(f"a spooled rollback of {item.rollout} is not recorded yet: {exc}")
            continue
        item.path.unlink(missing_ok=True)
        done.append(
            f"recorded the rollback of {item.rollout} made at {item.event['time']} while the "
            "state store was unreachable"
        )
    return done


def _record(ctx: Context, item: Spooled) -> None:
    store = ctx.store
    event = {**item.event, "spooled": True, "recorded_at": now_iso()}
    with store.lock(item.rollout, "rollback (spooled)", ctx.lock_wait):
        if not store.exists(item.rollout):  # the store never knew it: the spooled state
            store.restore(RolloutState(**item.state), [event])
            return
        state = store.load(item.rollout)
        if any(e.get("id") == event["id"] for e in store.history(item.rollout)):
            return  # recorded already by a sync that stopped before deleting the file
        if state.status == "rolled_back":  # recorded meanwhile (a reconcile saw the flag)
            store.append_events(item.rollout, [event])
            return
        before = snapshot(state)
        state.status, state.canary_percent = "rolled_back", 0.0
        state.paused_reason = event.get("reason")
        state.flag_fingerprint = item.state.get("flag_fingerprint")
        store.commit(
            state,
            expected_version=state.version,
            actor=str(event.get("actor")),
            command="rollback",
            reason=event.get("reason"),
            before=before,
            event_extra={k: event[k] for k in ("id", "spooled", "recorded_at")},
            at=str(event["time"]),
        )
