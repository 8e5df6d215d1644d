"""The `rolloutctl` entry point.

`rollback`, `pause`, `resume`, `status` and `control` are what on-call types under stress, so a
well-formed invocation of one of them is parsed here by hand and run straight on the engine:
no typer, click, pydantic, rich, pandas or DuckDB is imported, and the command finishes in
about the time Python takes to start. Anything else — another command, `--help`, a typo,
a missing argument — goes to the full typer app, which owns help and usage errors.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

FAST_COMMANDS = frozenset({"rollback", "pause", "resume", "status", "control"})
_REASON_COMMANDS = ("rollback", "pause", "resume", "control")
_GLOBAL_VALUE_OPTIONS = {"--state-dir", "--reports-dir", "--actor", "--now", "--wait"}
_FLAGS = {"--json", "-v", "--verbose"}


@dataclass
class FastCall:
    command: str
    rollout: str | None = None
    reason: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    json: bool = False
    verbose: bool = False
    args: list[str] = field(default_factory=list)  # control: [list|apply|revert, NAME]
    force: bool = False


def parse_fast(argv: list[str]) -> FastCall | None:
    """The invocation as a FastCall, or None when the full CLI should handle it."""
    call = FastCall(command="")
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg in ("--json",):
            call.json = True
        elif arg in ("-v", "--verbose"):
            call.verbose = True
        elif name in _GLOBAL_VALUE_OPTIONS and not call.command:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i, value = i + 1, argv[i + 1]
            call.options[name] = value
        elif arg == "--force" and call.command == "control":
            call.force = True
        elif name == "--reason" and call.command in _REASON_COMMANDS:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i, value = i + 1, argv[i + 1]
            call.reason = value
        elif arg.startswith("-"):
            return None  # --help, an unknown option: the full CLI explains
        elif not call.command:
            if arg not in FAST_COMMANDS:
                return None
            call.command = arg
        else:
            positional.append(arg)
        i += 1
    if call.command == "control":
        return _control_call(call, positional)
    if not call.command or len(positional) > 1:
        return None
    if call.command != "status" and not positional:
        return None
    call.rollout = positional[0] if positional else None
    return call


def _control_call(call: FastCall, positional: list[str]) -> FastCall | None:
    """`control list ROLLOUT` or `control apply|revert ROLLOUT NAME`; else the full CLI."""
    if positional[:1] == ["list"] and len(positional) == 2 and call.reason is None:
        call.args, call.rollout = ["list"], positional[1]
    elif positional[:1] in (["apply"], ["revert"]) and len(positional) == 3:
        call.args, call.rollout = [positional[0], positional[2]], positional[1]
    else:
        return None
    if call.force and call.args[0] != "revert":
        return None
    return call


def run_fast(call: FastCall) -> int:
    from rolloutctl import engine
    from rolloutctl.cli import common

    try:
        wait = float(call.options.get("--wait", "0"))
    except ValueError:
        return -1  # let the full CLI report the bad number
    common.GLOBALS.append(
        common.Globals(
            state_dir=Path(
                call.options.get("--state-dir")
                or os.environ.get("ROLLOUTCTL_STATE_DIR", ".rolloutctl")
            ),
            reports_dir=Path(
                call.options.get("--reports-dir")
                or os.environ.get("ROLLOUTCTL_REPORTS_DIR", "reports")
            ),
            actor=call.options.get("--actor") or common.default_actor(),
            json=call.json,
            verbose=call.verbose,
            now=common.parse_now(call.options.get("--now") or os.environ.get("ROLLOUTCTL_NOW")),
            wait=wait,
        )
    )
    ctx = common.context()
    if call.command == "status":
        name = common.resolve_rollout(call.rollout) if call.rollout else None
        common.render_status(engine.status(ctx, name), call.json)
        return 0
    assert call.rollout is not None
    if call.command == "control":
        return common.run_control(
            ctx,
            call.args[0],
            common.resolve_rollout(call.rollout),
            call.args[1] if len(call.args) > 1 else None,
            call.reason,
            call.force,
            call.json,
        )
    why = common.require_reason(call.reason, call.command)
    action = {"rollback": engine.rollback, "pause": engine.pause, "resume": engine.resume}
    outcome = action[call.command](ctx, common.resolve_rollout(call.rollout), why)
    return common.render_outcome(outcome, call.json)


def run() -> None:
    """Console entry point: the fast path when it applies, else the full typer app."""
    call = parse_fast(sys.argv[1:])
    if call is not None:
        from rolloutctl.cli import common
        from rolloutctl.errors import RolloutError

        try:
            code = run_fast(call)
        except RolloutError as exc:
            sys.exit(common.report_error(exc, call.verbose))
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        except Exception as exc:
            sys.exit(common.report_bug(exc, call.verbose))
        if code >= 0:
            sys.exit(code)
    from rolloutctl.cli.main import run as run_full

    run_full()
