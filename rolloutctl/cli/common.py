"""Shared CLI plumbing: global options, the engine context, and output.

Kept free of heavy imports: `rollback`, `pause` and `status` pass through here.

Every text line the CLI prints goes through `say`, `warn` or the error reporters here (or
`render.py`, which uses `clean` too), so data from a request log, a playbook or a server
(segment values, titles, reasons) never reaches a terminal as control characters: an escape
sequence could clear the screen, set the window title or rewrite what was printed. JSON
output keeps data as data: json.dumps escapes every control character."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolloutctl.cli import output
from rolloutctl.cli.terminal import clean
from rolloutctl.errors import ExitCode, InvalidInput, RolloutError, UsageError

if TYPE_CHECKING:
    from rolloutctl.controls import ControlList

# rolloutctl.playbook.load's MAX_PLAYBOOK_BYTES and MAX_DEPTH (it imports pydantic: too slow
# for the fast path); tests/playbook/test_hostile_input.py keeps them equal
PLAYBOOK_MAX_BYTES = 256 * 1024
PLAYBOOK_MAX_DEPTH = 32


@dataclass
class Globals:
    state: str  # a folder, or a postgresql:// URL (state/registry.py)
    reports_dir: Path
    actor: str
    json: bool
    verbose: bool
    now: datetime | None
    wait: float
    reports_dir_given: bool = False  # by --reports-dir or ROLLOUTCTL_REPORTS_DIR


GLOBALS: list[Globals] = []


def current() -> Globals:
    return GLOBALS[-1]


def default_actor() -> str:
    env = os.environ.get("ROLLOUTCTL_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def version() -> str:
    """The installed rolloutctl's version (`--version`)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rolloutctl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def parse_now(text: str | None, option: str = "--now") -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


DEFERRED: list[Any] = []  # reports queued by a gate command, drawn by run_deferred


def run_deferred() -> None:
    """Draw the reports a gate command queued (after its verdict was printed); a report that
    fails is a warning on stderr, as it would have been in the output."""
    while DEFERRED:
        for warning in DEFERRED.pop(0)():
            warn(warning)


def context(json_flag: bool = False, *, defer_reports: bool = False) -> Any:
    from rolloutctl.context import Context
    from rolloutctl.state.registry import open_store

    g = current()
    if json_flag:
        g.json = True
    now = g.now
    ctx = Context(
        store=open_store(g.state),
        actor=g.actor,
        reports_dir=g.reports_dir,
        clock=(lambda: now) if now else (lambda: datetime.now(UTC)),
        lock_wait=g.wait,
        deferred=DEFERRED if defer_reports else None,
    )
    _sync_spooled(ctx)
    return ctx


def _sync_spooled(ctx: Any) -> None:
    """Rollbacks this machine made while the store was down, recorded now that it is
    reachable (state/spool.py); a store still down leaves them for the next command."""
    from rolloutctl.state import spool

    if spool.pending(ctx.store.where):
        for line in spool.sync(ctx):
            warn(line)


def given_playbook(name_or_path: str) -> Path | None:
    """The playbook when ROLLOUT names one (rather than a rollout by name)."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        return path if path.is_file() else None
    return None


def resolve_rollout(name_or_path: str) -> str:
    """ROLLOUT is a rollout name or the path of its playbook."""
    path = given_playbook(name_or_path)
    if path is None:
        return name_or_path
    name = _rollout_name(path)
    if name is None:
        raise UsageError(f"{path}: cannot read a `rollout:` name from this playbook")
    return name


def _rollout_name(path: Path) -> str | None:
    """The playbook's top-level `rollout:`, read from YAML events without building the
    document (aliases are not expanded), within the loader's limits on size and nesting, and
    a second `rollout:` refused, as the loader refuses them."""
    import yaml

    try:
        with path.open("rb") as file:
            raw = file.read(PLAYBOOK_MAX_BYTES + 1)
        if len(raw) > PLAYBOOK_MAX_BYTES:
            raise InvalidInput(f"{path}: larger than {PLAYBOOK_MAX_BYTES // 1024} KiB")
        return _top_level_rollout(path, yaml.parse(raw.decode("utf-8"), Loader=yaml.SafeLoader))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None


def _top_level_rollout(path: Path, events: Any) -> str | None:
    import yaml

    name: str | None = None
    first_line = 0
    depth, is_key, wanted = 0, True, False
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            if depth == 0 and not isinstance(event, yaml.MappingStartEvent):
                return None  # a playbook is a mapping
            depth += 1
            if depth > PLAYBOOK_MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise InvalidInput(
                    f"{path}:{line}: nested more than {PLAYBOOK_MAX_DEPTH} levels deep"
                )
            if depth == 2:
                wanted = False  # `rollout: [...]` is no name
            continue
        if depth == 0 and isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            return None
        if isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            is_key = not is_key if depth == 1 else is_key
            continue
        if depth != 1 or not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            continue
        if is_key and isinstance(event, yaml.ScalarEvent) and event.value == "rollout":
            line = event.start_mark.line + 1 if event.start_mark else 0
            if first_line:
                raise InvalidInput(
                    f"{path}:{line}: key 'rollout' appears twice (first at line {first_line})"
                )
            first_line, wanted = line, True
        elif not is_key and wanted:
            name = event.value if isinstance(event, yaml.ScalarEvent) and _is_text(event) else None
            wanted = False
        is_key = not is_key
    return name


def _is_text(event: Any) -> bool:
    """A scalar the loader reads as a string (not `12`, `null`, `true`)."""
    import yaml

    tag = event.tag
    if tag in (None, "!"):
        tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, event.value, event.implicit)
    return bool(tag == "tag:yaml.org,2002:str")


_JSON_EMITTED: list[bool] = []


def emit_json(data: Any) -> None:
    output.finished()
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    _JSON_EMITTED.append(True)


def emit_error_json(message: str, hint: str | None, exit_code: int) -> None:
    """With --json, an error exit prints one object too, so a CI step that redirects stdout
    to a file never gets an empty one; not when the command already printed its object."""
    if not _JSON_EMITTED:
        emit_json({"error": message, "hint": hint, "exit_code": exit_code})


def say(text: str) -> None:
    output.finished()
    sys.stdout.write(clean(text) + "\n")


def warn(text: str) -> None:
    output.finished()
    if not output.CURRENT.quiet:
        sys.stderr.write(f"warning: {clean(text)}\n")


def render_outcome(outcome: Any, json_flag: bool) -> int:
    """Print an engine Outcome as text or JSON; return its exit code."""
    for w in outcome.warnings:  # on stderr in both modes; in the JSON object too
        warn(w)
    if json_flag or current().json:
        emit_json(outcome.to_dict())
    else:
        if outcome.gate is not None and not output.CURRENT.quiet:
            from rolloutctl.cli.render import print_gate

            print_gate(outcome.gate)
        say(outcome.message)
    return int(outcome.exit_code)


def finish(outcome: Any, json_flag: bool) -> None:
    """Render an engine Outcome and exit (through typer) with its code."""
    import typer

    raise typer.Exit(render_outcome(outcome, json_flag))


def validate_playbooks(playbooks: list[Path], json_flag: bool) -> int:
    """`validate`: each playbook's problems (file:line:column, key path, what was expected)
    or its rollout, and the exit code (3 when any playbook is invalid). Runs on the fast
    path too: CI runs it on every commit."""
    from rolloutctl.errors import PlaybookInvalid
    from rolloutctl.playbook.load import (
        PlaybookCheck,
        ValidateResult,
        env_references,
        load_playbook,
    )

    results: list[PlaybookCheck] = []
    worst = ExitCode.OK
    for path in playbooks:
        entry = PlaybookCheck(file=str(path), ok=True, problems=[])
        try:
            loaded = load_playbook(path)
            entry["rollout"] = loaded.playbook.rollout
            entry["unset_env"] = [v for v in env_references(path) if v not in os.environ]
        except PlaybookInvalid as exc:
            entry["ok"], entry["problems"] = False, list(exc.problems)
            worst = ExitCode.INVALID_INPUT
        except InvalidInput as exc:
            entry["ok"], entry["problems"] = False, [exc.message]
            worst = ExitCode.INVALID_INPUT
        results.append(entry)
    if json_flag:
        emit_json(ValidateResult(ok=worst == ExitCode.OK, playbooks=results))
        return int(worst)
    for entry in results:
        if entry["ok"]:
            say(f"{entry['file']}: ok (rollout {entry['rollout']})")
            for var in entry.get("unset_env") or []:
                warn(f"{entry['file']}: ${{{var}}} is not set in this environment")
        else:
            say(f"{entry['file']}: {len(entry['problems'])} problem(s)")
            for problem in entry["problems"]:
                say(f"  {problem}")
    return int(worst)


def render_status(rows: list[dict[str, Any]], json_flag: bool) -> None:
    if json_flag or current().json:
        emit_json({"rollouts": rows})
        return
    if not rows:
        from rolloutctl.state.store import shown

        say(f"no rollouts in {shown(current().state)}")
    for row in rows:
        say(
            f"{row['rollout']}: {row['status']} at {row['stage']} "
            f"({row['canary_percent']:g}% to {row['flag']['canary']}), since "
            f"{row['stage_started_at']}; last gate: {row['last_verdict'] or '—'}"
            f"{' → ' + row['last_decision'] if row['last_decision'] else ''}"
        )
        if row.get("paused_reason"):
            say(f"  reason: {row['paused_reason']}")
        pending = row.get("pending")
        if pending is not None:
            warn(
                f"an interrupted {pending.get('command', 'change')} toward stage "
                f"{pending.get('stage', '?')} may have changed the flag without recording it; "
                "the next advance, promote, retry, pause or resume reconciles it from the flag"
            )
        if row.get("flag_warning"):
            warn(row["flag_warning"])


def run_control(
    ctx: Any,
    operation: str,
    rollout: str,
    name: str | None,
    reason: str | None,
    force: bool,
    json_flag: bool,
) -> int:
    """`control list | apply | revert` (both the fast path and the typer command)."""
    from rolloutctl import controls

    if operation == "list":
        render_controls(controls.list_controls(ctx, rollout), json_flag)
        return 0
    assert name is not None
    why = require_reason(reason, f"control {operation}")
    if operation == "apply":
        return render_outcome(controls.apply(ctx, rollout, name, why), json_flag)
    return render_outcome(controls.revert(ctx, rollout, name, why, force=force), json_flag)


def render_controls(data: ControlList, json_flag: bool) -> None:
    if json_flag or current().json:
        emit_json(data)
        return
    if not data["controls"]:
        say(f"{data['rollout']} has no controls (the playbook's `controls:` at start)")
    for row in data["controls"]:
        mark = {"applied": "ON ", "not applied": "off", "partly applied": "~  "}[row["state"]]
        say(f"[{mark}] {row['name']:<16} {row['layer']:<12} {row['title']}")
        by = row["applied_by"]
        if by:
            say(f"        applied by {by['actor']} at {by['at']}: {by['reason']}")


def report_error(exc: RolloutError, verbose: bool, json_flag: bool = False) -> int:
    """Message, hint and exit code for an expected error (on stderr, and with --json as one
    object on stdout); the traceback only with -v."""
    output.finished()
    if verbose:
        _traceback()
    sys.stderr.write(f"error: {clean(exc.message)}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {clean(exc.hint)}\n")
    if json_flag:
        emit_error_json(exc.message, exc.hint, int(exc.exit_code))
    return int(exc.exit_code)


BUG_HINT = "this is a bug in rolloutctl; run again with -v for the traceback"


def report_bug(exc: BaseException, verbose: bool, json_flag: bool = False) -> int:
    """An unexpected exception: one line and a hint; the traceback only with -v."""
    output.finished()
    if verbose:
        _traceback()
    message = f"internal error: {type(exc).__name__}: {exc}"
    sys.stderr.write(f"{clean(message)}\nhint: {BUG_HINT}\n")
    if json_flag:
        emit_error_json(message, BUG_HINT, int(ExitCode.INTERNAL))
    return int(ExitCode.INTERNAL)


def _traceback() -> None:
    import traceback

    sys.stderr.write(clean(traceback.format_exc()))


def require_reason(reason: str | None, command: str) -> str:
    if not reason or not reason.strip():
        raise UsageError(
            f"{command} needs --reason TEXT: every manual action is audited with its reason",
            hint=f'rolloutctl {command} ROLLOUT --reason "why"',
        )
    return reason.strip()


OK = ExitCode.OK
