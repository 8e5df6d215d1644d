"""Shared CLI plumbing: global options, the engine context, and output.

Kept free of heavy imports: `rollback`, `pause` and `status` pass through here."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolloutctl.errors import ExitCode, RolloutError, UsageError


@dataclass
class Globals:
    state_dir: Path
    reports_dir: Path
    actor: str
    json: bool
    verbose: bool
    now: datetime | None
    wait: float


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


def parse_now(text: str | None, option: str = "--now") -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def context(json_flag: bool = False) -> Any:
    from rolloutctl.engine import Context
    from rolloutctl.state.store import StateStore

    g = current()
    if json_flag:
        g.json = True
    now = g.now
    return Context(
        store=StateStore(g.state_dir),
        actor=g.actor,
        reports_dir=g.reports_dir,
        clock=(lambda: now) if now else (lambda: datetime.now(UTC)),
        lock_wait=g.wait,
    )


def resolve_rollout(name_or_path: str) -> str:
    """ROLLOUT is a rollout name or the path of its playbook."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        if path.is_file():
            import yaml

            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, OSError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict) and isinstance(data.get("rollout"), str):
                return data["rollout"]
            raise UsageError(f"{path}: cannot read a `rollout:` name from this playbook")
    return name_or_path


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def render_outcome(outcome: Any, json_flag: bool) -> int:
    """Print an engine Outcome as text or JSON; return its exit code."""
    for w in outcome.warnings:  # on stderr in both modes; in the JSON object too
        warn(w)
    if json_flag or current().json:
        emit_json(outcome.to_dict())
    else:
        if outcome.gate is not None:
            from rolloutctl.cli.render import print_gate

            print_gate(outcome.gate)
        say(outcome.message)
    return int(outcome.exit_code)


def finish(outcome: Any, json_flag: bool) -> None:
    """Render an engine Outcome and exit (through typer) with its code."""
    import typer

    raise typer.Exit(render_outcome(outcome, json_flag))


def render_status(rows: list[dict[str, Any]], json_flag: bool) -> None:
    if json_flag or current().json:
        emit_json({"rollouts": rows})
        return
    if not rows:
        say(f"no rollouts in {current().state_dir}")
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


def render_controls(data: dict[str, Any], json_flag: bool) -> None:
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


def report_error(exc: RolloutError, verbose: bool) -> int:
    """Message, hint and exit code for an expected error; the traceback only with -v."""
    if verbose:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    return int(exc.exit_code)


def report_bug(exc: BaseException, verbose: bool) -> int:
    """An unexpected exception: one line and a hint; the traceback only with -v."""
    if verbose:
        import traceback

        traceback.print_exc()
    sys.stderr.write(
        f"internal error: {type(exc).__name__}: {exc}\n"
        "hint: this is a bug in rolloutctl; run again with -v for the traceback\n"
    )
    return int(ExitCode.INTERNAL)


def require_reason(reason: str | None, command: str) -> str:
    if not reason or not reason.strip():
        raise UsageError(
            f"{command} needs --reason TEXT: every manual action is audited with its reason",
            hint=f'rolloutctl {command} ROLLOUT --reason "why"',
        )
    return reason.strip()


OK = ExitCode.OK
