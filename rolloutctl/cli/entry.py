"""The `rolloutctl` entry point.

`rollback`, `pause`, `resume`, `status` and `control` are what on-call types under stress, so a
well-formed invocation of one of them is parsed here, with argparse, and run straight on the
engine: no typer, click, pydantic, rich, pandas or DuckDB is imported, and the command finishes
in about the time Python takes to start. `validate`, which CI runs on every commit, takes the
same path (it loads the playbook schema, pydantic, but no CLI framework). Anything else —
another command, `--help`, an invocation this grammar refuses — goes to the full typer app,
which owns help and usage errors.

Both parsers read one grammar (tests/cli/test_fast_path_grammar.py feeds the same argument
lists to both and compares their exit codes):

    rolloutctl [--state FOLDER|URL] [--reports-dir DIR] [--actor NAME] [--now ISO] [--wait S]
               COMMAND ARGUMENTS [COMMAND OPTIONS]

- the global options come before the command;
- `--json` and `-v`/`--verbose` may come anywhere before a `--`: `normalize` moves them in
  front of the command for both parsers;
- an option that takes a value takes the next argument, whatever it is (`--reason -x`), as
  click does; `--reason=TEXT` works too.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

FAST_COMMANDS = frozenset({"rollback", "pause", "resume", "status", "control", "validate"})
_GLOBAL_VALUE_OPTIONS = ("--state", "--state-dir", "--reports-dir", "--actor", "--now", "--wait")
_VALUE_OPTIONS = frozenset({*_GLOBAL_VALUE_OPTIONS, "--reason"})
_OUTPUT = frozenset({"-v", "-vv", "--verbose", "-q", "--quiet", "--no-color"})
_ANYWHERE = frozenset({"--json", *_OUTPUT})
_FLAGS = frozenset({*_ANYWHERE, "--force"})


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


def normalize(argv: list[str]) -> list[str]:
    """`--json`, `-v` and `--verbose` moved in front of everything (up to a `--`), where
    both parsers read them; every other argument keeps its order."""
    end = argv.index("--") if "--" in argv else len(argv)
    head = argv[:end]
    return (
        [a for a in head if a in _ANYWHERE] + [a for a in head if a not in _ANYWHERE] + argv[end:]
    )


class _NotFast(Exception):
    """argparse refused the invocation: the full CLI reports the usage error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotFast(message)


def _grammar() -> argparse.ArgumentParser:
    def parser(owner: argparse._SubParsersAction[_Parser], name: str) -> _Parser:
        return owner.add_parser(name, add_help=False, allow_abbrev=False)

    root = _Parser(prog="rolloutctl", add_help=False, allow_abbrev=False)
    for option in _GLOBAL_VALUE_OPTIONS:
        root.add_argument(option, type=float if option == "--wait" else str)
    root.add_argument("--json", action="store_true")
    root.add_argument("-v", "--verbose", action="count", default=0)
    root.add_argument("-vv", action="store_true")
    root.add_argument("-q", "--quiet", action="store_true")
    root.add_argument("--no-color", action="store_true")
    commands = root.add_subparsers(dest="command", required=True)
    for name in ("rollback", "pause", "resume"):
        command = parser(commands, name)
        command.add_argument("rollout")
        command.add_argument("--reason")
    parser(commands, "status").add_argument("rollout", nargs="?")
    parser(commands, "validate").add_argument("playbooks", nargs="+")
    operations = parser(commands, "control").add_subparsers(dest="operation", required=True)
    parser(operations, "list").add_argument("rollout")
    for name in ("apply", "revert"):
        operation = parser(operations, name)
        operation.add_argument("rollout")
        operation.add_argument("name")
        operation.add_argument("--reason")
        if name == "revert":
            operation.add_argument("--force", action="store_true")
    return root


def parse_fast(argv: list[str]) -> FastCall | None:
    """The (normalized) invocation as a FastCall, or None when the full CLI should handle
    it: another command, help, or a usage error, which typer explains."""
    words = [a for a in argv[: argv.index("--") if "--" in argv else None] if a[:1] != "-"]
    if not words or not FAST_COMMANDS & set(words):
        return None  # surely another command: skip building the parser
    joined: list[str] = []
    i = 0
    while i < len(argv):  # `--reason -x` -> `--reason=-x`: the next argument is the value
        arg = argv[i]
        if arg == "--":
            joined += argv[i:]
            break
        if arg in _VALUE_OPTIONS and i + 1 < len(argv):
            arg, i = f"{arg}={argv[i + 1]}", i + 1
        name, _, value = arg.partition("=")
        if arg[:1] == "-" and name not in _VALUE_OPTIONS | _FLAGS:
            return None  # an unknown option (or `-1`, which argparse would take as a value)
        if name in _VALUE_OPTIONS and value == "--":
            return None  # argparse drops a `--` even as a value; typer takes it
        joined.append(arg)
        i += 1
    try:
        parsed = _grammar().parse_args(joined)
    except _NotFast:
        return None
    options = {
        option: str(value)
        for option in _GLOBAL_VALUE_OPTIONS
        if (value := getattr(parsed, option[2:].replace("-", "_"))) is not None
    }
    call = FastCall(
        command=parsed.command,
        rollout=getattr(parsed, "rollout", None),
        reason=getattr(parsed, "reason", None),
        options=options,
        json=parsed.json,
        verbose=parsed.verbose > 0 or parsed.vv,
        force=getattr(parsed, "force", False),
    )
    if call.command == "validate":
        call.args = parsed.playbooks
    if call.command == "control":
        call.args = [parsed.operation] + ([parsed.name] if parsed.operation != "list" else [])
    return call


def run_fast(call: FastCall) -> int:
    from rolloutctl.cli import common

    if call.command == "validate":  # reads playbooks only: no state, no engine
        return common.validate_playbooks([Path(p) for p in call.args], call.json)
    from rolloutctl import engine
    from rolloutctl.state.registry import choose

    given = call.options
    common.GLOBALS.append(
        common.Globals(
            state=choose(given.get("--state"), given.get("--state-dir")),
            reports_dir=Path(
                given["--reports-dir"]
                if "--reports-dir" in given
                else os.environ.get("ROLLOUTCTL_REPORTS_DIR", "reports")
            ),
            actor=call.options.get("--actor") or common.default_actor(),
            json=call.json,
            verbose=call.verbose,
            now=common.parse_now(call.options.get("--now") or os.environ.get("ROLLOUTCTL_NOW")),
            wait=float(call.options.get("--wait", "0")),
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
    name = common.resolve_rollout(call.rollout)
    if call.command == "rollback":
        outcome = engine.rollback(ctx, name, why, common.given_playbook(call.rollout))
    else:
        action = {"pause": engine.pause, "resume": engine.resume}
        outcome = action[call.command](ctx, name, why)
    return common.render_outcome(outcome, call.json)


def run_full(argv: list[str]) -> int:
    """The typer app on a normalized invocation; errors become a message, a hint and the
    right exit code (the README's exit-code table)."""
    import typer
    from typer._click.exceptions import ClickException  # click, as typer ships it

    from rolloutctl.cli import common, help
    from rolloutctl.cli.main import app
    from rolloutctl.errors import RolloutError

    head = argv[: argv.index("--") if "--" in argv else None]
    verbose = output_options(argv)[0] > 0
    json_flag = "--json" in head
    command = help.polish(typer.main.get_command(app))
    try:
        code = command.main(args=argv, prog_name="rolloutctl", standalone_mode=False)
    except RolloutError as exc:
        return common.report_error(exc, verbose, json_flag)
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:  # a usage error: missing argument, unknown option (exit 2)
        exc.show()
        if json_flag:
            common.emit_error_json(exc.format_message(), "see --help", exc.exit_code)
        return exc.exit_code
    except typer.Abort:
        if json_flag:
            common.emit_error_json("aborted", None, 1)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        if json_flag:
            common.emit_error_json("interrupted", None, 130)
        return 130
    except Exception as exc:
        return common.report_bug(exc, verbose, json_flag)
    return code if isinstance(code, int) else 0


def output_options(argv: list[str]) -> tuple[int, bool, bool]:
    """(verbosity, quiet, no colour) from the (normalized) arguments before a `--`: -v is 1,
    -vv or -v -v 2."""
    head = argv[: argv.index("--") if "--" in argv else None]
    verbosity = sum({"-v": 1, "--verbose": 1, "-vv": 2}.get(a, 0) for a in head)
    no_color = "--no-color" in head or bool(os.environ.get("NO_COLOR"))
    return min(verbosity, 2), "-q" in head or "--quiet" in head, no_color


def main(argv: list[str]) -> int:
    """The exit code of `rolloutctl ARGV`: the fast path when it applies, else typer."""
    if argv in (["--version"], ["-V"]):
        from rolloutctl.cli.common import version

        sys.stdout.write(f"rolloutctl {version()}\n")
        return 0
    argv = normalize(argv)
    from rolloutctl.cli import output

    head = argv[: argv.index("--") if "--" in argv else None]
    output.configure(*output_options(argv), json="--json" in head)
    call = parse_fast(argv)
    if call is None:
        return run_full(argv)
    from rolloutctl.cli import common
    from rolloutctl.errors import RolloutError

    try:
        return run_fast(call)
    except RolloutError as exc:
        return common.report_error(exc, call.verbose, call.json)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        if call.json:
            common.emit_error_json("interrupted", None, 130)
        return 130
    except Exception as exc:
        return common.report_bug(exc, call.verbose, call.json)


def run() -> None:
    """Console entry point."""
    sys.exit(main(sys.argv[1:]))
