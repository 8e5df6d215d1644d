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
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import (
    Any,
    NotRequired,  # pydantic reads these on 3.11
)

from typing_extensions import TypedDict

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import StateConflict, UsageError

# A rollout's name is its folder's name: never a path. Playbooks are held to the same pattern.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,79}$"
_NAME = re.compile(NAME_PATTERN)
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
    # The audit event of the transition that wrote this state, kept with it: if the process
    # dies before the audit line is appended, the next command appends it (`recover_audit`).
    pending_audit: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditEvent(TypedDict):
    """One line of a rollout's audit log (`history --json` lists them). A transition carries
    its `id` and the state before and after (`status`, `stage`, `canary_percent`, `version`,
    and what a control changed); a notification or a manual note carries no id; a line that
    cannot be read is reported with its number."""

    time: str | None
    command: str
    id: NotRequired[str]
    actor: NotRequired[str]
    reason: NotRequired[str | None]
    before: NotRequired[dict[str, Any] | None]
    after: NotRequired[dict[str, Any] | None]
    verdict: NotRequired[dict[str, Any] | None]  # verdict, decision, reasons, report
    recovered: NotRequired[bool]  # appended by the next command after a kill
    line: NotRequired[int]  # an unreadable line's number


class History(TypedDict):
    rollout: str
    events: list[AuditEvent]


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
        if not _NAME.fullmatch(rollout):
            raise UsageError(
                f"{rollout!r} is not a rollout name: lowercase letters, digits, '.', '_' and "
                "'-', starting with a letter or digit",
                hint="`rolloutctl status` lists the rollouts",
            )
        return self.root / rollout

    def _make_dir(self, rollout: str) -> Path:
        directory = self.dir(rollout)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(
                f"the state folder {self.root} is not a folder (a file is in the way)",
                hint="pass --state-dir (or set ROLLOUTCTL_STATE_DIR) to a folder",
            ) from None
        except OSError as exc:
            raise StateConflict(
                f"cannot make the state folder {directory}: {exc.strerror}",
                hint="check the folder's permissions, or pass --state-dir",
            ) from None
        return directory

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
            if not isinstance(data, dict):
                raise TypeError(f"a JSON object was expected, found {type(data).__name__}")
            allowed = {f.name for f in fields(RolloutState)}
            return RolloutState(**{k: v for k, v in data.items() if k in allowed})
        except (json.JSONDecodeError, TypeError) as exc:
            raise StateConflict(
                f"{path} is corrupt ({exc}); nothing was changed",
                hint=f"the audit log {self.audit_path(rollout)} records every past transition;"
                " restore state.json from it or a backup",
            ) from None

    def _check_version(self, rollout: str, expected_version: int | None) -> None:
        if expected_version is not None and self.exists(rollout):
            current = self.load(rollout).version
            if current != expected_version:
                raise StateConflict(
                    f"rollout {rollout!r} changed underneath this command "
                    f"(version {current}, expected {expected_version})",
                    hint="run `rolloutctl status` and try again",
                )

    def _write_state(self, state: RolloutState) -> None:
        state.updated_at = now_iso()
        if not state.created_at:
            state.created_at = state.updated_at
        text = json.dumps(state.to_dict(), indent=2) + "\n"
        atomic_write(self.state_path(state.rollout), text.encode())
        # Whatever flag change was pending is now either recorded or known not to matter.
        self.intent_path(state.rollout).unlink(missing_ok=True)

    def commit(
        self,
        state: RolloutState,
        *,
        actor: str,
        command: str,
        reason: str | None,
        before: dict[str, Any] | None,
        expected_version: int | None = None,
        after_extra: dict[str, Any] | None = None,
        verdict: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> None:
        """Save a transition and audit it as one durable step: the audit event is written
        inside state.json with the state it describes, then appended to audit.jsonl. A kill
        between the two leaves the event in the state, and the next command appends it."""
        self._check_version(state.rollout, expected_version)
        state.version += 1
        event = {
            "id": uuid.uuid4().hex[:16],
            "time": at or now_iso(),
            "actor": actor,
            "command": command,
            "reason": reason,
            "before": before,
            "after": {**snapshot(state), **(after_extra or {})},
            "verdict": verdict,
        }
        state.pending_audit = event
        self._write_state(state)
        self._append_audit(state.rollout, event)

    def recover_audit(self, rollout: str) -> None:
        """Append the audit event of the last transition if a kill kept it from the log.
        Called under the rollout's lock, so no other command is between its two writes."""
        try:
            state = self.load(rollout)
        except StateConflict:
            return
        event = state.pending_audit
        if not isinstance(event, dict) or not event.get("id"):
            return
        if f'"id":"{event["id"]}"' not in self._audit_tail(rollout):
            self._append_audit(rollout, {**event, "recovered": True})

    def _audit_tail(self, rollout: str, size: int = 65536) -> str:
        try:
            with self.audit_path(rollout).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

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
        self._append_audit(rollout, event)

    def _append_audit(self, rollout: str, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        path = self.audit_path(rollout)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self, rollout: str) -> list[AuditEvent]:
        path = self.audit_path(rollout)
        if not path.exists():
            if not self.exists(rollout):
                self.load(rollout)  # raises the "no rollout named" conflict
            return []
        events: list[AuditEvent] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                events.append(AuditEvent(time=None, command="(unreadable)", line=number))
        return events

    # ------------------------------------------------------------ the lock

    @contextlib.contextmanager
    def lock(self, rollout: str, command: str, wait: float = 0.0) -> Iterator[None]:
        directory = self._make_dir(rollout)
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
                self.recover_audit(rollout)
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
