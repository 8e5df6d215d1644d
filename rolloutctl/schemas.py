"""The JSON Schemas rolloutctl publishes (`rolloutctl schema --output NAME`), each derived
from the classes that produce the documents, so a schema cannot drift from what is printed:

- `playbook`: what a playbook may say (playbook/model.py);
- `gate-result`: one evaluation of a stage's gate, the `gate` object of a gate record
  (results.GateResult);
- `command-result`: what `start`, `check`, `advance`, `monitor`, `pause`, `resume`,
  `rollback`, `promote`, `retry` and `control apply|revert` print with `--json` (context.Outcome,
  with the gate result's keys when a gate was evaluated);
- `status`: what `status --json` prints: each rollout's stored state (state/store.RolloutState),
  with an interrupted change still pending and a warning when the flag disagrees;
- `history`: what `history --json` prints: the audit log's events (state/store.AuditEvent);
- `controls`: what `control list --json` prints (controls.ControlList);
- `validate`: what `validate --json` prints (playbook/load.ValidateResult);
- `plan`: what `plan --json` prints (planning.PlanResult);
- `backtest`: what `backtest --json` prints (backtest.BacktestResult and the exit code);
- `smoke`, `report`, `simulate`, `demo`, `init`: what those commands print with `--json`
  (results.SmokeRun, ReportResult, SimulatedLog or SimulatedEvals, DemoResult, InitResult);
- `error`: what every command prints with `--json` when it fails.

Validation refuses unknown keys at every level, so tests/test_schemas.py catches a key printed
but not declared."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NotRequired, get_args, get_origin, get_type_hints

from pydantic import ConfigDict, TypeAdapter, create_model, with_config
from typing_extensions import TypedDict, is_typeddict

from rolloutctl import results
from rolloutctl.context import ControlChange, Outcome
from rolloutctl.results import GateResult

NAMES = (
    "playbook",
    "gate-result",
    "command-result",
    "status",
    "history",
    "controls",
    "validate",
    "plan",
    "backtest",
    "smoke",
    "report",
    "simulate",
    "demo",
    "init",
    "state",
    "error",
)
DRAFT = "https://json-schema.org/draft/2020-12/schema"


class ErrorResult(TypedDict):
    """A failed command's JSON: the message, what to do about it, and the exit code."""

    error: str
    hint: str | None
    exit_code: int


def _command_result() -> Any:
    """Outcome's own keys, always; a gate result's keys when a gate was evaluated; `control`
    for `control apply|revert` (Outcome.to_dict flattens them into one object)."""
    own = get_type_hints(Outcome, localns={"GateResult": GateResult})
    always = {k: v for k, v in own.items() if k not in ("gate", "control")}
    gate = {k: NotRequired[v] for k, v in get_type_hints(GateResult).items() if k not in always}
    fields = {**always, **gate, "control": NotRequired[ControlChange]}
    return _closed(TypedDict("CommandResult", fields))  # type: ignore[operator]


def _status_result() -> Any:
    """{"rollouts": [a state row, ...]}; the row is RolloutState's fields (engine.status)."""
    from rolloutctl.state.store import RolloutState

    fields = {
        **get_type_hints(RolloutState),
        "pending": NotRequired[dict[str, Any]],  # an intent whose state write never happened
        "flag_warning": str | None,  # the flag and the state disagree (reconcile.flag_drift)
    }
    row: Any = _closed(TypedDict("StatusRow", fields))  # type: ignore[operator]
    return create_model(
        "StatusResult", __config__=ConfigDict(extra="forbid"), rollouts=(list[row], ...)
    )


def _closed(shape: Any) -> Any:
    """The shape, with every TypedDict and dataclass inside it refusing unknown keys
    (pydantic's default ignores them)."""
    seen: set[Any] = set()

    def close(hint: Any) -> None:
        if get_origin(hint) is not None:  # list[X], X | None, NotRequired[X], ...
            for arg in get_args(hint):
                close(arg)
        elif (is_typeddict(hint) or dataclasses.is_dataclass(hint)) and hint not in seen:
            seen.add(hint)
            with_config(ConfigDict(extra="forbid"))(hint)
            for field_hint in get_type_hints(hint).values():
                close(field_hint)

    close(shape)
    return shape


def adapter(name: str) -> TypeAdapter[Any]:
    """A validator of the document `name` (not `playbook`: load_playbook validates those).
    Only the asked shape is built."""
    return TypeAdapter(_SHAPES[name]())


def _history() -> Any:
    from rolloutctl.state.store import History

    return _closed(History)


def _state() -> Any:
    from rolloutctl.state.store import StateCommandResult

    return _closed(StateCommandResult)


def _controls() -> Any:
    from rolloutctl.controls import ControlList

    return _closed(ControlList)


def _validate() -> Any:
    from rolloutctl.playbook.load import ValidateResult

    return _closed(ValidateResult)


def _plan() -> Any:
    from rolloutctl.planning import PlanResult

    return _closed(PlanResult)


def _backtest() -> Any:
    """BacktestResult's fields and the exit code (10 when the replay would have rolled
    back)."""
    from rolloutctl.backtest import BacktestResult

    fields = {**get_type_hints(BacktestResult), "exit_code": int}
    return _closed(TypedDict("BacktestRun", fields))  # type: ignore[operator]


_SHAPES: dict[str, Callable[[], Any]] = {
    "gate-result": lambda: _closed(GateResult),
    "command-result": _command_result,
    "status": _status_result,
    "history": _history,
    "controls": _controls,
    "validate": _validate,
    "plan": _plan,
    "backtest": _backtest,
    "smoke": lambda: _closed(results.SmokeRun),
    "report": lambda: _closed(results.ReportResult),
    "simulate": lambda: _closed(results.SimulatedLog | results.SimulatedEvals),
    "demo": lambda: _closed(results.DemoResult),
    "init": lambda: _closed(results.InitResult),
    "state": _state,
    "error": lambda: _closed(ErrorResult),
}


def json_schema(name: str) -> dict[str, Any]:
    if name == "playbook":
        from rolloutctl.playbook.model import Playbook

        data = Playbook.model_json_schema()
        title = "rolloutctl playbook"
    else:
        data = adapter(name).json_schema()
        title = f"rolloutctl {name}"
    return {"$schema": DRAFT, **data, "title": title}
