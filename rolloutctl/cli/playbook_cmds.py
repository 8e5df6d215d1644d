"""init, validate, schema, plan, backtest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rolloutctl.cli import common
from rolloutctl.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rolloutctl.planning import ToPass


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(validate)
    app.command()(schema)
    app.command()(plan)
    app.command()(backtest)


JsonOpt = Annotated[bool, typer.Option("--json")]


def init(
    directory: Annotated[Path, typer.Argument(help="where to write rollout.yaml")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a starter playbook (an AI model upgrade) to DIR/rollout.yaml."""
    from importlib.resources import files

    from rolloutctl.atomic import atomic_write

    target = directory / "rollout.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} exists", hint="pass --force to overwrite it")
    text = files("rolloutctl.playbook").joinpath("starter.yaml").read_text(encoding="utf-8")
    atomic_write(target, text.encode())
    if json_out or common.current().json:
        from rolloutctl.results import InitResult

        common.emit_json(InitResult(wrote=str(target), next=f"rolloutctl validate {target}"))
        return
    common.say(f"wrote {target}; next: rolloutctl validate {target}")


def validate(
    playbooks: Annotated[list[Path], typer.Argument(help="playbook files")],
    json_out: JsonOpt = False,
) -> None:
    """Check playbooks: every problem with file:line:column, key path and what was expected."""
    raise typer.Exit(common.validate_playbooks(playbooks, json_out or common.current().json))


def schema(
    output: Annotated[
        str,
        typer.Option(
            "--output",
            metavar="NAME",
            help="playbook, gate-result, command-result, status, history, controls, validate or error",
        ),
    ] = "playbook",
    json_out: Annotated[bool, typer.Option("--json", help="the schema is JSON already")] = False,
) -> None:
    """Print a JSON Schema: the playbook's (for editors and linters), or that of a JSON
    document rolloutctl prints (for CI jobs that validate what they parse)."""
    from rolloutctl import schemas

    if output not in schemas.NAMES:
        raise UsageError(
            f"--output {output!r} is not a schema rolloutctl publishes",
            hint=f"one of: {', '.join(schemas.NAMES)}",
        )
    common.say(json.dumps(schemas.json_schema(output), indent=2))


def plan(
    playbook: Path,
    log: Annotated[
        Path | None, typer.Option(help="request log for baseline rates and volume")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Stages, gates and segments; samples and time each gate needs at its traffic."""
    from rolloutctl.planning import plan_rollout
    from rolloutctl.playbook.load import load_playbook

    result = plan_rollout(load_playbook(playbook), log, common.current().now)
    if json_out or common.current().json:
        common.emit_json(result)
        return
    common.say(f"rollout {result['rollout']}: {len(result['stages'])} stages")
    if result.get("volume_per_hour"):
        common.say(
            f"traffic: {result['volume_per_hour']:,.0f} requests/hour ({result['volume_source']})"
        )
    for stage in result["stages"]:
        common.say(
            f"- {stage['name']} ({stage['kind']}, {stage['traffic']}%"
            f"{', scope ' + stage['scope'] if stage['scope'] else ''}"
            f"{', approval required' if stage['approval'] == 'required' else ''}):"
            f" min {stage['min_duration'] or '0'}, max {stage['max_duration'] or '∞'}"
        )
        if stage.get("note"):
            common.say(f"    ({stage['note']})")
        if stage.get("scope_note"):
            common.say(f"    (scope {stage['effective_scope']}: {stage['scope_note']})")
        for m in stage["metrics"]:
            if m["samples_per_arm"] is None:
                common.say(f"    {m['name']}: {m.get('unsized') or 'no baseline to size it'}")
                continue
            eta = f", about {m['hours']:.1f} h" if m.get("hours") is not None else ""
            unit = {"shadow": "request pairs", "monitor": "recent requests"}.get(
                stage["kind"], "canary samples"
            )
            common.say(
                f"    {m['name']}: ~{m['samples_per_arm']:,} {unit} to show the "
                f"{m['margin']} margin{eta} ({m['method']})"
            )
        _say_time_to_pass(stage.get("to_pass"))
        ab = stage.get("ab")
        if ab and ab["hours_needed"] is not None:
            verdict = "enough" if ab["enough"] else "NOT enough"
            common.say(
                f"    A/B metrics ({', '.join(ab['metrics'])}) need about "
                f"{ab['hours_needed']:.1f} h at this traffic; the planned "
                f"{stage['duration'] or '?'} is {verdict}"
            )
        for m in stage["metrics"]:
            for query in m.get("queries", []):
                common.say(f"    {m['name']} query: {query}")


def _say_time_to_pass(to_pass: ToPass | None) -> None:
    if not to_pass:
        return
    if to_pass["can_pass"] is False:
        common.say(f"    CANNOT PASS within max_duration at this traffic: {to_pass['reason']}")
    elif to_pass["hours"] is not None and to_pass.get("requires") == "no_failure":
        common.say(
            f"    a healthy canary passes at its minimum duration and samples, in about "
            f"{to_pass['hours']:.1f} h (pass_requires: no_failure)"
        )
    elif to_pass["hours"] is not None:
        common.say(
            f"    a healthy canary passes the whole gate in about {to_pass['hours']:.1f} h "
            f"(~{to_pass['samples_per_arm']:,} canary samples; 9 in 10 by then)"
        )
    elif to_pass["reason"]:
        common.say(f"    time to pass: {to_pass['reason']}")


def backtest(
    playbook: Path,
    log: Annotated[
        list[str] | None,
        typer.Option(help="request log path or glob (repeatable); default: the playbook's sources"),
    ] = None,
    every: Annotated[str, typer.Option(help="time between looks, e.g. 15m")] = "15m",
    start: Annotated[
        str | None, typer.Option(help="replay from this ISO time (default: the log's first row)")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="replay until this ISO time (default: the log's last row)")
    ] = None,
    stage: Annotated[
        str | None, typer.Option(help="start at this stage instead of the first")
    ] = None,
    at_log_split: Annotated[
        bool,
        typer.Option(
            "--at-log-split",
            help="judge each look at the log's observed split, without the sample-ratio check "
            "(for a log whose split was set by history, not by this playbook)",
        ),
    ] = False,
    looks: Annotated[bool, typer.Option(help="print every look, not only changes")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Replay the playbook's gates over a historical log, look by look: when it would have
    failed, passed or held, and why. Each look is judged at the stage's configured split with
    the sample-ratio check on, as the live gate judges. Writes nothing. Exit 10 if it would
    have rolled back."""
    from rolloutctl.backtest import backtest as run_backtest
    from rolloutctl.durations import parse_duration
    from rolloutctl.playbook.load import load_playbook

    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise UsageError(f"--every {every!r}: {exc}") from None
    result = run_backtest(
        load_playbook(playbook),
        log=log,
        every=interval,
        start=common.parse_now(start, "--start"),
        end=common.parse_now(end, "--end"),
        first_stage=stage,
        at_log_split=at_log_split,
    )
    code = ExitCode.GATE_FAILED if result.outcome.startswith("rolled back") else ExitCode.OK
    if json_out or common.current().json:
        common.emit_json({**result.to_dict(), "exit_code": int(code)})
        raise typer.Exit(int(code))
    split = {
        "configured": "judged at each stage's configured split",
        "log": "judged at the log's split (--at-log-split, no sample-ratio check)",
    }[result.split]
    common.say(
        f"backtest of {result.rollout} over {result.start} → {result.end}, a look every "
        f"{result.every}, {split}"
    )
    previous: tuple[str, str, str] | None = None
    for look in result.looks:
        # Collapse runs of the same hold ("minimum duration not reached (15m of 2h)", "sample
        # ratio mismatch: canary has 6.75% ...", ...): its figures change at every look.
        why = look.reasons[0] if look.reasons else ""
        key = (look.stage, look.verdict, why.split("(")[0].split(":")[0])
        if looks or key != previous or look.decision != "hold":
            common.say(
                f"  {look.time}  {look.stage:<12} +{look.elapsed:<7} {look.verdict:<12} "
                f"{look.decision:<8} {why}"
            )
        previous = key
    for note in result.notes:
        common.say(f"note: {note}")
    common.say("stages: " + ", ".join(f"{s.name} {s.result}" for s in result.stages))
    common.say(f"outcome: {result.outcome}")
    raise typer.Exit(int(code))
