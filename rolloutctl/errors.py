"""The exception hierarchy of rolloutctl; every class carries its exit code (the README's exit-code table).

    RolloutError                  exit 1   a bug; traceback only with -v
     ├── UsageError               exit 2   wrong command-line usage
     ├── InvalidInput             exit 3   playbook, request log, eval file
     │    └── PlaybookInvalid              many located problems at once
     ├── BackendError             exit 4   a metrics or flag backend unreachable or answering garbage
     └── StateConflict            exit 5   locked, illegal transition, flag changed outside, corrupt state

Gate verdicts (fail, inconclusive, paused) are results, never exceptions.
Only the CLI's entry point catches these and renders message + hint.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_INPUT = 3
    BACKEND = 4
    STATE_CONFLICT = 5
    GATE_FAILED = 10
    GATE_INCONCLUSIVE = 11
    PAUSED = 12


# What each exit code means, for `rolloutctl --help` (the README has the same table).
MEANING = {
    ExitCode.OK: "done: the gate passed, the command did what it says",
    ExitCode.INTERNAL: "internal error (a bug; -v shows the traceback)",
    ExitCode.USAGE: "usage error",
    ExitCode.INVALID_INPUT: "invalid input: playbook, request log, eval file",
    ExitCode.BACKEND: "a metrics, flag or state backend unreachable or answering garbage",
    ExitCode.STATE_CONFLICT: "state conflict: locked, illegal transition, flag changed by hand",
    ExitCode.GATE_FAILED: "gate failed (rolled back, or would)",
    ExitCode.GATE_INCONCLUSIVE: "gate inconclusive (holding)",
    ExitCode.PAUSED: "paused (approval, or a trigger paused it)",
}


class RolloutError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(RolloutError):
    exit_code = ExitCode.USAGE


class InvalidInput(RolloutError):
    exit_code = ExitCode.INVALID_INPUT


class PlaybookInvalid(InvalidInput):
    """A playbook with one or more located problems (all of them, not just the first)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        n = len(problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(
            head + "\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix the keys above; `rolloutctl schema` prints every valid key",
        )
        self.path = path
        self.problems = problems


class BackendError(RolloutError):
    exit_code = ExitCode.BACKEND


class StoreUnavailable(BackendError):
    """The state store cannot be reached (a database down, a connection lost)."""


class StateConflict(RolloutError):
    exit_code = ExitCode.STATE_CONFLICT


def first_line(exc: BaseException) -> str:
    """An exception's message, its first line only (drivers add context and SQL below)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
