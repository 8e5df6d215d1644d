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

from rolloutctl.errors import ExitCode

if TYPE_CHECKING:
    from rolloutctl.gate import GateResult
    from rolloutctl.state.store import StateStore


@dataclass
class Context:
    store: StateStore
    actor: str
    reports_dir: Path
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    lock_wait: float = 0.0
    # Time series in gate reports: "all" gates, or only gates that act ("decisions"; the demo
    # uses it to stay fast, since drawing costs about a second per report).
    charts: str = "all"


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
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific keys, e.g. control

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
        data.update(self.extra)
        return data
