"""The state store in a folder (the default, `.rolloutctl/`): one folder per rollout with
`state.json` (atomic, versioned), `audit.jsonl` (append-only), `pending.json` (an intent),
`controls.json` and `notify.json` (documents), `gates/*.json` (gate records) and `lock`.

The lock is an flock on `<rollout>/lock`: the kernel drops it when its holder dies, so a
killed process never leaves a lock that blocks the next run. The file's text names the
holder, for the message a second process prints. A state write and its audit line are two
writes: the event goes inside state.json first, and the next command appends it to the log
if a kill came between them (`recover_audit`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import StateConflict, UsageError
from rolloutctl.state.store import (
    AuditEvent,
    AuditsByEvents,
    RolloutState,
    check_name,
    now_iso,
    state_from,
    transition_event,
    version_conflict,
)


class FileStore(AuditsByEvents):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def dir(self, rollout: str) -> Path:
        return self.root / check_name(rollout)

    def _make_dir(self, directory: Path) -> Path:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(
                f"the state folder {self.root} is not a folder (a file is in the way)",
                hint="pass --state (or set ROLLOUTCTL_STATE) to a folder",
            ) from None
        except OSError as exc:
            raise StateConflict(
                f"cannot make the state folder {directory}: {exc.strerror}",
                hint="check the folder's permissions, or pass --state",
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

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ state.json

    def load(self, rollout: str) -> RolloutState:
        path = self.state_path(rollout)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise StateConflict(
                f"no rollout named {rollout!r} in {self.root} (known: {known})",
                hint="start it with `rolloutctl start PLAYBOOK`, or pass --state",
            ) from None
        try:
            return state_from(json.loads(raw))
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
                raise version_conflict(rollout, current, expected_version)

    def _write_state(self, state: RolloutState) -> None:
        state.updated_at = now_iso()
        if not state.created_at:
            state.created_at = state.updated_at
        text = json.dumps(state.to_dict(), indent=2) + "\n"
        self._make_dir(self.dir(state.rollout))
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
        event_extra: dict[str, Any] | None = None,
        verdict: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> None:
        """The audit event is written inside state.json with the state it describes, then
        appended to audit.jsonl. A kill between the two leaves the event in the state, and
        the next command appends it."""
        self._check_version(state.rollout, expected_version)
        state.version += 1
        event = transition_event(
            state,
            actor=actor,
            command=command,
            reason=reason,
            before=before,
            after_extra=after_extra,
            event_extra=event_extra,
            verdict=verdict,
            at=at,
        )
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

    def append_events(self, rollout: str, events: list[dict[str, Any]]) -> None:
        for event in events:
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

    # ------------------------------------------------------------ documents and records

    def doc_path(self, rollout: str, name: str) -> Path:
        return self.dir(rollout) / f"{name}.json"

    def read_doc(self, rollout: str, name: str) -> Any:
        path = self.doc_path(rollout, name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is corrupt ({exc})") from None

    def write_doc(self, rollout: str, name: str, data: Any) -> None:
        self._make_dir(self.dir(rollout))
        atomic_write(self.doc_path(rollout, name), (json.dumps(data, indent=2) + "\n").encode())

    def save_record(self, rollout: str, name: str, record: dict[str, Any]) -> None:
        folder = self._make_dir(self.dir(rollout) / "gates")
        text = json.dumps(record, indent=1, sort_keys=True, default=str)
        atomic_write(folder / f"{name}.json", text.encode())

    def records(self, rollout: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted((self.dir(rollout) / "gates").glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: unreadable report record: {exc}") from None
        return out

    def restore(self, state: RolloutState, events: list[dict[str, Any]]) -> None:
        self._make_dir(self.dir(state.rollout))
        text = json.dumps(state.to_dict(), indent=2) + "\n"
        atomic_write(self.state_path(state.rollout), text.encode())
        self.append_events(state.rollout, events)

    # ------------------------------------------------------------ locks

    @contextlib.contextmanager
    def lock(self, rollout: str, command: str, wait: float = 0.0) -> Iterator[None]:
        directory = self._make_dir(self.dir(rollout))
        with self._flock(directory / "lock", f"rollout {rollout!r}", command, wait):
            self.recover_audit(rollout)
            yield

    @contextlib.contextmanager
    def flag_lock(self, flag_id: str, command: str, wait: float = 0.0) -> Iterator[None]:
        """Held while a rollout takes a flag, so two starts cannot both take it."""
        folder = self._make_dir(self.root / ".flags")
        digest = hashlib.sha256(flag_id.encode()).hexdigest()[:24]
        with self._flock(folder / f"{digest}.lock", f"flag {flag_id!r}", command, wait):
            yield

    @staticmethod
    @contextlib.contextmanager
    def _flock(path: Path, what: str, command: str, wait: float) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
                            f"{what} is locked by another rolloutctl run"
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
