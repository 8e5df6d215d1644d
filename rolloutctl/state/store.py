"""What a state store keeps, and the small interface every store backend implements.

Per rollout: its state (`RolloutState`, versioned: a write names the version it read), an
append-only audit log (`AuditEvent`), a pending intent (a flag change whose state write has
not happened yet), named documents (the stored controls and notification targets) and the
gate records reports are rendered from; and an exclusive lock held by every command that
changes the rollout. `Store` is that interface; `state/file.py` keeps it in a folder (the
default), `state/postgres.py` in a PostgreSQL database a team shares; `state/registry.py`
opens one from `--state`."""

from __future__ import annotations

import re
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import (
    Any,
    NotRequired,  # pydantic reads these on 3.11
    Protocol,
)

from typing_extensions import TypedDict

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
    # A rollback made while the store was down: `time` is when the flag was flipped,
    # `recorded_at` when the store learnt of it (state/spool.py).
    spooled: NotRequired[bool]
    recorded_at: NotRequired[str]
    line: NotRequired[int]  # an unreadable line's number


class StateCommandResult(TypedDict):
    """`state migrate --json` and `state import --json`: the store (its URL without the
    password) and what was done to it."""

    store: str
    schema_version: NotRequired[int]  # migrate
    imported: NotRequired[list[str]]  # import: the rollouts written


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


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(spec: str) -> bool:
    """Whether a `--state` value names a PostgreSQL database (else it is a folder)."""
    return spec.startswith(POSTGRES_SCHEMES)


def shown(spec: str) -> str:
    """The spec as messages print it: a URL without its password."""
    if not is_postgres(spec):
        return spec
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_name(rollout: str) -> str:
    """The rollout's name, refused when it is not one (it names a folder or a row)."""
    if not _NAME.fullmatch(rollout):
        raise UsageError(
            f"{rollout!r} is not a rollout name: lowercase letters, digits, '.', '_' and "
            "'-', starting with a letter or digit",
            hint="`rolloutctl status` lists the rollouts",
        )
    return rollout


def state_from(data: Any) -> RolloutState:
    """A stored state document as a RolloutState (keys it does not know are dropped);
    TypeError when it is not one."""
    if not isinstance(data, dict):
        raise TypeError(f"a JSON object was expected, found {type(data).__name__}")
    allowed = {f.name for f in fields(RolloutState)}
    return RolloutState(**{k: v for k, v in data.items() if k in allowed})


class AuditsByEvents:
    """`Store.audit` for both stores: the event built once, appended as `append_events`
    appends a spooled one. An event that is not a transition (a notification, a control)
    has no id."""

    def append_events(self, rollout: str, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError

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
        event = audit_event(actor, command, reason, before, after, verdict, at)
        self.append_events(rollout, [event])


def audit_event(
    actor: str,
    command: str,
    reason: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    verdict: dict[str, Any] | None,
    at: str | None,
) -> dict[str, Any]:
    """An audit event's fields, in the order the log keeps them."""
    return {
        "time": at or now_iso(),
        "actor": actor,
        "command": command,
        "reason": reason,
        "before": before,
        "after": after,
        "verdict": verdict,
    }


def transition_event(
    state: RolloutState,
    *,
    actor: str,
    command: str,
    reason: str | None,
    before: dict[str, Any] | None,
    after_extra: dict[str, Any] | None,
    verdict: dict[str, Any] | None,
    at: str | None,
    event_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The audit event of a transition to `state` (its version already counted);
    `event_extra` adds keys to the event itself (a spooled rollback's id and both times)."""
    after = {**snapshot(state), **(after_extra or {})}
    return {
        "id": uuid.uuid4().hex[:16],
        **audit_event(actor, command, reason, before, after, verdict, at),
        **(event_extra or {}),
    }


def version_conflict(rollout: str, current: int, expected: int) -> StateConflict:
    return StateConflict(
        f"rollout {rollout!r} changed underneath this command "
        f"(version {current}, expected {expected})",
        hint="run `rolloutctl status` and try again",
    )


class Store(Protocol):
    """Where rollouts are kept. Every method raises StateConflict (exit 5) for a conflict
    or a rollout it does not know, and BackendError (exit 4) when the store cannot be
    reached."""

    where: str  # for messages: the folder, or the database URL without its password

    def names(self) -> list[str]: ...

    def exists(self, rollout: str) -> bool: ...

    def load(self, rollout: str) -> RolloutState: ...

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
        """Save a transition and its audit event as one durable step; StateConflict when
        the stored version is not `expected_version`."""

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
        """Append an event that changes no state (a notification, a control)."""

    def append_events(self, rollout: str, events: list[dict[str, Any]]) -> None:
        """Append events as they are (a spooled rollback's, synced later)."""

    def history(self, rollout: str) -> list[AuditEvent]: ...

    def write_intent(self, rollout: str, intent: dict[str, Any]) -> None: ...

    def read_intent(self, rollout: str) -> dict[str, Any] | None:
        """The pending intent; {} when one is there but unreadable; None when none is."""

    def clear_intent(self, rollout: str) -> None: ...

    def read_doc(self, rollout: str, name: str) -> Any:
        """A stored document ("controls", "notify"); None when never stored; ValueError
        naming where it is when it is unreadable."""

    def write_doc(self, rollout: str, name: str, data: Any) -> None: ...

    def save_record(self, rollout: str, name: str, record: dict[str, Any]) -> None:
        """A gate record (what its report is rendered from), by the report's file name."""

    def records(self, rollout: str) -> dict[str, dict[str, Any]]:
        """Every gate record of the rollout by name, in the order of their names."""

    def restore(self, state: RolloutState, events: list[dict[str, Any]]) -> None:
        """Write a state as it is (its version kept) and append its events: `state import`."""

    def lock(self, rollout: str, command: str, wait: float = 0.0) -> AbstractContextManager[None]:
        """Held by every command that changes the rollout; a holder that dies releases it.
        StateConflict naming the holder when it is still held after `wait` seconds."""

    def flag_lock(
        self, flag_id: str, command: str, wait: float = 0.0
    ) -> AbstractContextManager[None]:
        """Held while a rollout takes a flag, so two rollouts cannot both take it."""

    def close(self) -> None: ...
