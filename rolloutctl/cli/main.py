"""The `rolloutctl` command: global options, the commands, and the one place that turns
exceptions into messages and exit codes (the README's exit-code table)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from rolloutctl.cli import common
from rolloutctl.cli.common import context, finish, require_reason, resolve_rollout
from rolloutctl.errors import MEANING, InvalidInput, UsageError
from rolloutctl.results import ReportResult
from rolloutctl.state.registry import choose

app = typer.Typer(
    name="rolloutctl",
    help="Roll out AI changes (models, prompts, tools, routes) on evidence: statistical "
    "canary gates per metric and segment, flag flips, reports.",
    epilog="\b\nExit codes:\n" + "\n".join(f"  {c:>3}  {t}" for c, t in MEANING.items()),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why (required, audited)")]
MarkdownOpt = Annotated[
    Path | None,
    typer.Option(
        "--markdown", metavar="FILE", help="also write a Markdown summary (GitHub) to FILE"
    ),
]
JunitOpt = Annotated[
    Path | None,
    typer.Option(
        "--junit", metavar="FILE", help="also write the gate's checks as JUnit XML to FILE"
    ),
]


def _print_version(asked: bool) -> None:
    """`--version` among other options (alone, cli/entry.py answers it before typer loads)."""
    if asked:
        common.say(f"rolloutctl {common.version()}")
        raise typer.Exit(0)


@app.callback()
def main(
    state: Annotated[
        str | None,
        typer.Option(
            metavar="FOLDER|URL",
            help="state store: a folder, or postgresql://USER@HOST/DB to share it "
            "[env ROLLOUTCTL_STATE; .rolloutctl]",
        ),
    ] = None,
    state_dir: Annotated[
        str | None, typer.Option(help="state folder (same as --state FOLDER)", hidden=True)
    ] = None,
    reports_dir: Annotated[
        Path | None, typer.Option(help="report folder [env ROLLOUTCTL_REPORTS_DIR; reports]")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="who acts [env ROLLOUTCTL_ACTOR; login name]")
    ] = None,
    json_out: JsonOpt = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            help="say what is queried and how long it took, and tracebacks; -vv: debug",
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="only the verdict line and errors")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="no colour or styles [env NO_COLOR]")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="print the version and exit",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
    now: Annotated[
        str | None, typer.Option(help="evaluate as of this ISO time [env ROLLOUTCTL_NOW]")
    ] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for a rollout's lock")] = 0.0,
) -> None:
    common.GLOBALS.append(
        common.Globals(
            state=choose(state, state_dir),
            reports_dir=reports_dir or Path(os.environ.get("ROLLOUTCTL_REPORTS_DIR", "reports")),
            actor=actor or common.default_actor(),
            json=json_out,
            verbose=verbose > 0,
            now=common.parse_now(now or os.environ.get("ROLLOUTCTL_NOW")),
            wait=wait,
            reports_dir_given=reports_dir is not None or "ROLLOUTCTL_REPORTS_DIR" in os.environ,
        )
    )


# ---------------------------------------------------------------- fast path: no analysis


@app.command()
def rollback(rollout: str, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Send all traffic back to the control now. No analysis; works with every metrics
    backend down; idempotent. Given the playbook (not the name), it also works on a machine
    whose state store has no record of the rollout, and while the store is down."""
    from rolloutctl import engine

    why = require_reason(reason, "rollback")
    playbook = common.given_playbook(rollout)
    finish(engine.rollback(context(), resolve_rollout(rollout), why, playbook), json_out)


@app.command()
def pause(rollout: str, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Hold the rollout where it is (traffic unchanged) until `resume`."""
    from rolloutctl import engine

    why = require_reason(reason, "pause")
    finish(engine.pause(context(), resolve_rollout(rollout), why), json_out)


@app.command()
def resume(rollout: str, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Let a paused rollout's gates decide again."""
    from rolloutctl import engine

    why = require_reason(reason, "resume")
    finish(engine.resume(context(), resolve_rollout(rollout), why), json_out)


@app.command()
def status(
    rollout: Annotated[str | None, typer.Argument()] = None, json_out: JsonOpt = False
) -> None:
    """Where each rollout stands (all of them when no name is given)."""
    from rolloutctl import engine

    rows = engine.status(context(), resolve_rollout(rollout) if rollout else None)
    common.render_status(rows, json_out)


@app.command()
def history(rollout: str, json_out: JsonOpt = False) -> None:
    """The audit log: every action with time, actor, reason and verdict."""
    from rolloutctl.state.store import History

    ctx = context()
    events = ctx.store.history(resolve_rollout(rollout))
    if json_out or common.current().json:
        common.emit_json(History(rollout=resolve_rollout(rollout), events=events))
        return
    for e in events:
        after = e.get("after") or {}
        verdict = e.get("verdict") or {}
        detail = e.get("reason") or (
            f"{verdict.get('verdict')} → {verdict.get('decision')}" if verdict else ""
        )
        common.say(
            f"{e.get('time')}  {e.get('actor', '?'):<12} {e.get('command', '?'):<9} "
            f"{after.get('stage', '')} {after.get('status', '')} "
            f"{after.get('canary_percent', '')}%  {detail}"
        )


# ---------------------------------------------------------------- controls

control_app = typer.Typer(
    help="Layered kill switches and operator controls (the playbook's `controls:`).",
    no_args_is_help=True,
)
app.add_typer(control_app, name="control")
ForceOpt = Annotated[
    bool, typer.Option("--force", help="restore even if the flags changed since the apply")
]


@control_app.command("list")
def control_list(rollout: str, json_out: JsonOpt = False) -> None:
    """Each control: name, layer, title, and whether the flags hold it now."""
    code = common.run_control(
        context(), "list", resolve_rollout(rollout), None, None, False, json_out
    )
    raise typer.Exit(code)


@control_app.command("apply")
def control_apply(
    rollout: str, name: str, reason: ReasonOpt = None, json_out: JsonOpt = False
) -> None:
    """Turn a control on: write its flag values (the old ones are kept for `revert`)."""
    code = common.run_control(
        context(), "apply", resolve_rollout(rollout), name, reason, False, json_out
    )
    raise typer.Exit(code)


@control_app.command("revert")
def control_revert(
    rollout: str,
    name: str,
    reason: ReasonOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Turn a control off: restore the flag values from before it was applied."""
    code = common.run_control(
        context(), "revert", resolve_rollout(rollout), name, reason, force, json_out
    )
    raise typer.Exit(code)


# ---------------------------------------------------------------- gates


@app.command()
def start(
    playbook: Path,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="take over a flag that another rollout drives (it stops moving it)"
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create the rollout and apply the first stage's flag split. Exit 5 when another
    rollout drives the same flag (unless --force)."""
    from rolloutctl import engine
    from rolloutctl.playbook.load import load_playbook

    finish(engine.start(context(), load_playbook(playbook), force=force), json_out)


@app.command()
def check(
    rollout: str,
    markdown: MarkdownOpt = None,
    junit: JunitOpt = None,
    explain: Annotated[
        bool, typer.Option(help="also print each metric's exact query and window")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate the current gate now and write its report; never acts.
    Exit 0 pass, 10 would roll back, 11 inconclusive, 4 measurement error.
    With $GITHUB_STEP_SUMMARY set, the Markdown summary is appended to it."""
    from rolloutctl import engine
    from rolloutctl.cli.ci_output import CIOutputs, finish_gate
    from rolloutctl.results import queries_served

    outputs = CIOutputs(markdown, junit)
    outputs.check()
    with outputs.on_error("check"):
        outcome = engine.check(context(defer_reports=True), resolve_rollout(rollout))
    if explain and not (json_out or common.current().json) and outcome.gate is not None:
        gate = outcome.gate
        common.say(f"window: {gate.window['start']} → {gate.window['end']}")
        overall = ((m.name, m.query) for m in gate.metrics if m.segment is None)
        for query, names in queries_served(overall).items():
            common.say(f"-- {', '.join(names)}\n{query}")
    finish_gate(outcome, json_out, outputs)


@app.command()
def advance(
    rollout: str,
    watch: Annotated[bool, typer.Option(help="re-evaluate until the gate decides")] = False,
    interval: Annotated[float, typer.Option(help="seconds between looks with --watch")] = 300.0,
    timeout: Annotated[float | None, typer.Option(help="give up watching after seconds")] = None,
    force: Annotated[bool, typer.Option(help="act even if the flag was changed by hand")] = False,
    markdown: MarkdownOpt = None,
    junit: JunitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate the gate and act: advance, hold, pause or roll back.
    With $GITHUB_STEP_SUMMARY set, the Markdown summary is appended to it."""
    from rolloutctl import engine
    from rolloutctl.cli.ci_output import CIOutputs, finish_gate

    outputs = CIOutputs(markdown, junit)
    outputs.check()  # before the gate can act
    with outputs.on_error("advance"):
        name = resolve_rollout(rollout)
        if watch:
            from rolloutctl.cli.watch import watch_advance

            outcome = watch_advance(name, interval, timeout, force)
        else:
            outcome = engine.advance(context(defer_reports=True), name, force=force)
    finish_gate(outcome, json_out, outputs)


@app.command()
def promote(rollout: str, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Move to the next stage whatever the gate says (manual override or approval)."""
    from rolloutctl import engine

    why = require_reason(reason, "promote")
    finish(engine.promote(context(), resolve_rollout(rollout), why), json_out)


@app.command()
def retry(rollout: str, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Restart the current stage (after a rollback or a stuck gate): split re-applied, window reset."""
    from rolloutctl import engine

    finish(engine.retry(context(), resolve_rollout(rollout), reason), json_out)


@app.command()
def report(rollout: str, json_out: JsonOpt = False) -> None:
    """Re-render every gate page and the indexes from the stored records and the audit log
    (no query runs; the same records give the same pages apart from the rendered-at line)."""
    from rolloutctl.report import records

    ctx = context()
    name = resolve_rollout(rollout)
    path = records.rerender_reports(ctx, name)
    if json_out or common.current().json:
        common.emit_json(ReportResult(rollout=name, report=str(path)))
    else:
        common.say(f"wrote {path}")


# ---------------------------------------------------------------- the state store

state_app = typer.Typer(
    help="The state store: create its schema, move rollouts between stores.",
    no_args_is_help=True,
)
app.add_typer(state_app, name="state")


@state_app.command("migrate")
def state_migrate(json_out: JsonOpt = False) -> None:
    """Create or upgrade the PostgreSQL store's schema (`--state postgresql://...`); run
    once as the database owner when the tool's own role may not create tables."""
    from rolloutctl.state.registry import open_store
    from rolloutctl.state.store import StateCommandResult, is_postgres

    spec = common.current().state
    if not is_postgres(spec):
        raise UsageError(
            "a folder store needs no migration",
            hint="pass --state postgresql://USER@HOST/DB (or set ROLLOUTCTL_STATE)",
        )
    store = open_store(spec)
    version = store.migrate()  # type: ignore[attr-defined]
    if json_out or common.current().json:
        common.emit_json(StateCommandResult(store=store.where, schema_version=version))
    else:
        common.say(f"{store.where}: schema version {version}")


@state_app.command("export")
def state_export(
    rollouts: Annotated[list[str] | None, typer.Argument(help="rollouts [all]")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="write here [stdout]")
    ] = None,
) -> None:
    """Every rollout (or those named) with its state, audit log, controls and gate records,
    as one JSON bundle for `state import`."""
    import json

    from rolloutctl.atomic import atomic_write
    from rolloutctl.state.transfer import export_rollouts

    names = [resolve_rollout(r) for r in rollouts] if rollouts else None
    text = json.dumps(export_rollouts(context().store, names), indent=1) + "\n"
    if out is None:
        common.say(text.rstrip("\n"))
    else:
        atomic_write(out, text.encode())
        common.warn(f"wrote {out}")


@state_app.command("import")
def state_import(
    bundle: Annotated[Path, typer.Argument(help="a bundle `state export` wrote")],
    replace: Annotated[
        bool, typer.Option("--replace", help="overwrite rollouts the store already has")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write the bundle's rollouts into this store, with their history."""
    import json

    from rolloutctl.state.store import StateCommandResult
    from rolloutctl.state.transfer import import_rollouts

    try:
        data = json.loads(bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{bundle}: cannot read the bundle: {exc}") from None
    store = context().store
    names = import_rollouts(store, data, str(bundle), replace=replace)
    if json_out or common.current().json:
        common.emit_json(StateCommandResult(store=store.where, imported=names))
    else:
        common.say(f"imported {len(names)} rollout(s) into {store.where}: {', '.join(names)}")


# ---------------------------------------------------------------- playbooks, data, demo

from rolloutctl.cli import playbook_cmds, sim_cmds, stage_cmds  # noqa: E402

playbook_cmds.register(app)
sim_cmds.register(app)
stage_cmds.register(app)
