"""smoke and monitor: the commands of the stages before and after the traffic ramp."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rolloutctl.cli import common
from rolloutctl.errors import ExitCode, UsageError
from rolloutctl.results import SmokeRun


def register(app: typer.Typer) -> None:
    app.command()(smoke)
    app.command()(monitor)


def smoke(
    playbook: Annotated[Path, typer.Argument(help="the rollout playbook")],
    stage: Annotated[str | None, typer.Option(help="run this smoke stage (default: all)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Smoke-test the candidate endpoint of the playbook's smoke stage(s) now: reachability,
    API key, response shape, model, JSON mode, token usage, a short timeout, latency.
    Changes nothing. Exit 0 when every check passes, 10 when one fails."""
    from rolloutctl.playbook.load import load_playbook
    from rolloutctl.stages.smoke import smoke_settings
    from rolloutctl.stages.smoke_calls import run_smoke

    loaded = load_playbook(playbook)
    stages = [s for s in loaded.playbook.stages if s.kind == "smoke"]
    if stage is not None:
        stages = [s for s in stages if s.name == stage]
    if not stages:
        names = [s.name for s in loaded.playbook.stages if s.kind == "smoke"]
        raise UsageError(
            f"{playbook}: no smoke stage{f' named {stage!r}' if stage else ''}"
            + (f" (smoke stages: {', '.join(names)})" if names else ""),
            hint="add a stage {name: smoke, kind: smoke, endpoint: ..., model: ...}",
        )
    results = []
    for s in stages:
        settings = smoke_settings(loaded, s)
        endpoint, model = settings.pop("endpoint"), settings.pop("model")
        try:
            outcome = run_smoke(endpoint, model, **settings)
        except ValueError as exc:
            raise UsageError(f"{playbook}: stage {s.name}: {exc}") from None
        results.append((s.name, outcome))
    passed = all(outcome.passed for _, outcome in results)
    if json_out or common.current().json:
        run: SmokeRun = {
            "playbook": str(playbook),
            "passed": passed,
            "stages": [{"stage": name, **outcome.to_json()} for name, outcome in results],
        }
        common.emit_json(run)
    else:
        for name, outcome in results:
            common.say(f"smoke {name}: {outcome.endpoint} ({outcome.model})")
            for check in outcome.checks:
                mark = "✓" if check.passed else "✗"
                common.say(f"  {mark} {check.title}: {check.reason}")
        common.say("smoke test passed" if passed else "smoke test FAILED")
    raise typer.Exit(int(ExitCode.OK if passed else ExitCode.GATE_FAILED))


def monitor(
    rollout: str,
    markdown: Annotated[Path | None, typer.Option(help="write a Markdown summary here")] = None,
    junit: Annotated[Path | None, typer.Option(help="write JUnit XML here")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One look of the post-launch monitor: recent traffic against the pre-rollout baseline,
    every metric and segment, and segment values never seen before (new query patterns).
    Drift is reported and notified; the flag moves only when a rollback trigger fires.
    Exit 0 no drift, 10 drift, 11 too little data yet."""
    from rolloutctl import engine
    from rolloutctl.cli.ci_output import CIOutputs, finish_gate

    outputs = CIOutputs(markdown, junit)
    outputs.check()
    with outputs.on_error("monitor"):
        outcome = engine.monitor(
            common.context(defer_reports=True), common.resolve_rollout(rollout)
        )
    finish_gate(outcome, json_out, outputs)
