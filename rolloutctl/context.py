"""What every command of the engine takes (`Context`: the store, the clock, who acts, where
reports go) and gives back (`Outcome`: what it did, rendered by the CLI as text or JSON).

A leaf module: the engine, controls, reconciliation and reports all use these types, and none
of them needs another to do so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict  # pydantic reads this one on 3.11

from rolloutctl.errors import ExitCode

if TYPE_CHECKING:
    from rolloutctl.results import GateResult
    from rolloutctl.state.store import Store


@dataclass
class Context:
    store: Store
    actor: str
    reports_dir: Path
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    lock_wait: float = 0.0
    # Time series in gate reports: "all" gates, or only gates that act ("decisions"; the demo
    # uses it: its many holding looks keep their reports short).
    charts: str = "all"
    # Where gate reports are queued instead of drawn at once (None: drawn before the engine
    # returns). The CLI sets a list and draws them after printing the verdict: charts are
    # off the critical path, and the report still lands before the process exits.
    deferred: list[Callable[[], list[str]]] | None = None


class ControlChange(TypedDict):
    """What `control apply` or `control revert` changed: the control's flags before and
    after (flag key -> value as the backend holds it)."""

    name: str
    layer: str
    title: str
    operation: str  # apply | revert
    before: dict[str, Any]
    after: dict[str, Any]
    applied: bool  # is the control in force now?


@dataclass
class Outcome:
    """What a command did, rendered by the CLI as text or JSON."""

    rollout: str
    action: str
    status: str
    stage: str
    canary_percent: float
    message: str
    exit_code: ExitCode = ExitCode.OK
    gate: GateResult | None = None
    warnings: list[str] = field(default_factory=list)
    control: ControlChange | None = None  # set by `control apply` and `control revert`

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rollout": self.rollout,
            "action": self.action,
            "status": self.status,
            "stage": self.stage,
            "canary_percent": self.canary_percent,
            "message": self.message,
            "exit_code": int(self.exit_code),
            "warnings": self.warnings,
        }
        if self.gate is not None:
            data.update(self.gate.to_dict())
            data["rollout"], data["stage"] = self.rollout, self.gate.stage
        if self.control is not None:
            data["control"] = self.control
        return data
