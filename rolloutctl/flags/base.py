"""The contract of a flag backend: read the split, set it, roll back, verify.

Backends must be cheap to import: `rollback` loads them on its fast path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class FlagSplit:
    canary_percent: float
    scope: Any  # JsonLogic condition limiting who may get the canary, or None
    fingerprint: str  # hash of the flag as the backend holds it now
    # Set when the flag holds something rolloutctl cannot read as a split (a hand edit): the
    # share is then unknown (canary_percent is NaN) and nothing may be concluded from it.
    problem: str | None = None
    owner: str | None = None  # the rollout the flag says set it, where the backend keeps that


class FlagBackend(Protocol):
    KIND: ClassVar[str]

    def read(self) -> FlagSplit | None:
        """The rollout flag as it is now, or None when it does not exist yet."""
        ...

    def set_split(
        self, canary_percent: float, scope: Any, *, rollout: str, stage: str
    ) -> FlagSplit:
        """Serve the canary to canary_percent of (in-scope) traffic; read back to verify."""
        ...

    def rollback(self, *, rollout: str, reason: str) -> FlagSplit:
        """0% to the canary, control as default; read back to verify."""
        ...

    def set_control(self, key: str, value: Any) -> None:
        """Flip a kill switch or operator control flag; read back to verify."""
        ...

    def read_control(self, key: str) -> Any:
        """A control flag's value now, or None when the flag does not exist."""
        ...

    def remove_control(self, key: str) -> None:
        """Delete a control flag rolloutctl created (revert of a control whose flag did not
        exist before); backends whose flags must exist beforehand refuse."""
        ...
