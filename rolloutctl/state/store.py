"""Per-rollout state on disk: `state.json` (atomic, versioned), `audit.jsonl` (append-only),
and an exclusive lock held by every command that changes state.

The lock is an flock on `<rollout>/lock`: the kernel drops it when its holder dies, so a
killed process never leaves a lock that blocks the next run. The file's text names the
holder, for the message a second process prints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import StateConflict

ACTIVE = ("running", "paused", "awaiting_approval")
FINISHED = ("completed", "rolled_back")


@dataclass
class RolloutState:
    rollout: str
    playbook: str  # absolute path of the playbook file
    playbook_digest: str
    flag: dict[str, Any]  # the flag section, resolved: rollback needs nothing else
    status: str  # running | paused | awaiting_approval | rolled_back | completed
    stage_index: int
    stage: str
    stage_started_at: str
    canary_percent: float
    scope: Any = None
    flag_fingerprint: str | None = None
    consecutive_errors: int = 0
    last_verdict: str | None = None
    last_decision: str | None = None
    last_reasons: list[str] = field(default_factory=list)
    last_report: str | None = None
    last_checked_at: str | None = None
    paused_reason: str | None = None
    created_at: str = ""
    updated_at: str = ""
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(state: RolloutState) -> dict[str, Any]:
    """What the audit log records of a state before and after each command."""
    return {
        "status": state.status,
        "stage": state.stage,
        "canary_percent": state.canary_percent,
        "version": state.version,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, rollout: str) -> Path:
        return self.root / rollout

    def state_path(self, rollout: str) -> Path:
        return self.dir(rollout) / "state.json"

    def intent_path(self, rollout: str) -> Path:
        return self.dir(rollout) / "pending.json"

    def audit_path(self, rollout: str) -> Path:
        return self.dir(rollout) / "audit.jsonl"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/state.json"))

    def exists(self, rollout: str) -> bool:
        return self.state_path(rollout).exists()

    # ------------------------------------------------------------ state.json

    def load(self, rollout: str) -> RolloutState:
        path = self.state_path(rollout)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise StateConflict(
                f"no rollout named {rollout!r} in {self.root} (known: {known})",
                hint="start it with `rolloutctl start PLAYBOOK`, or pass --state-dir",
            ) from None
        try:
            data = json.loads(raw)
            allowed = {f.name for f in fields(RolloutState)}
            return RolloutState(**{k: v for k, v in data.items() if k in allowed})
        except (json.JSONDecodeError, TypeError) as exc:
            raise StateConflict(
                f"{path} is corrupt ({exc}); nothing was changed",
                hint=f"the audit log {self.audit_path(rollout)} records every past transition;"
                " restore state.json from it or a backup",
            ) from None

    def save(self, state: RolloutState, *, expected_version: int | None = None) -> None:
        """Write atomically with the version counter bumped (checked when given)."""
        if expected_version is not None and self.exists(state.rollout):
            current = self.load(state.rollout).version
            if current != expected_version:
                raise StateConflict(
                    f"rollout {state.rollout!r} changed underneath this command "
                    f"(version {current}, expected {expected_version})",
                    hint="run `rolloutctl status` and try again",
                )
        state.version += 1
        state.updated_at = now_iso()
        if not state.created_at:
            state.created_at = state.updated_at
        text = json.dumps(state.to_dict(), indent=2) + "\n"
        atomic_write(self.state_path(state.rollout), text.encode())
        # Whatever flag change was pending is now either recorded or known not to matter.
        self.intent_path(state.rollout).unlink(missing_ok=True)

    # ------------------------------------------------------------ pending.json

    def write_intent(self, rollout: str, intent: dict[str, Any]) -> None:
        """Written before a flag change whose state write comes later: if the process dies
        between the two, the next command finds this and reconciles from the flag."""
        text = json.dumps(intent, indent=2) + "\n"
        atomic_write(self.intent_path(rollout), text.encode())

    def read_intent(self, rollout: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.intent_path(rollout).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return {}  # unreadable: still a sign that a change was interrupted
        return data if isinstance(data, dict) else {}

    def clear_intent(self, rollout: str) -> None:
        self.intent_path(rollout).unlink(missing_ok=True)

    # ------------------------------------------------------------ audit.jsonl

    def audit(
        self,
        rollout: str,
        *,
        actor: str,
        command: str,
        reason: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        verdict: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> None:
        event = {
            "time": at or now_iso(),
            "actor": actor,
            "command": command,
            "reason": reason,
            "before": before,
            "after": after,
            "verdict": verdict,
        }
        line = json.dumps(event, separators=(",", ":")) + "\n"
        path = self.audit_path(rollout)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self, rollout: str) -> list[dict[str, Any]]:
        path = self.audit_path(rollout)
        if not path.exists():
            if not self.exists(rollout):
                self.load(rollout)  # raises the "no rollout named" conflict
            return []
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                events.append({"time": None, "command": "(unreadable)", "line": number})
        return events

    # ------------------------------------------------------------ the lock

    @contextlib.contextmanager
    def lock(self, rollout: str, command: str, wait: float = 0.0) -> Iterator[None]:
        directory = self.dir(rollout)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                        raise StateConflict(
                            f"rollout {rollout!r} is locked by another rolloutctl run"
                            f" ({holder or 'holder unknown'})",
                            hint="wait for it to finish (or pass --wait SECONDS); "
                            "a killed process releases its lock by itself",
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} running {command} since {now_iso()}".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
