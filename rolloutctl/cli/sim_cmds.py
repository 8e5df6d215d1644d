"""simulate, demo."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from rolloutctl.cli import common
from rolloutctl.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command()(demo)


def simulate(
    scenario: Annotated[str, typer.Option(help="healthy, latency_regression, cost_blowup, safety_regression_segment, hallucination_regression, sample_ratio_mismatch")],
    out: Annotated[Path, typer.Option(help="output file: .jsonl, .csv or .parquet")],
    hours: Annotated[float, typer.Option(help="how many hours of traffic")] = 6.0,
    start: Annotated[str | None, typer.Option(help="ISO start time [now - hours]")] = None,
    rate: Annotated[float, typer.Option(help="requests per hour")] = 20_000,
    canary_percent: Annotated[float, typer.Option(help="percent served by the canary")] = 10.0,
    control: Annotated[str, typer.Option()] = "v1",
    canary: Annotated[str, typer.Option()] = "v2",
    onset: Annotated[float | None, typer.Option(help="hours after start when the regression begins")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:  # fmt: skip
    """Write realistic synthetic request logs for an AI search product."""
    from rolloutctl import simulate as sim

    if scenario not in sim.SCENARIOS:
        raise UsageError(
            f"unknown scenario {scenario!r}", hint="one of: " + ", ".join(sorted(sim.SCENARIOS))
        )
    begin = common.parse_now(start) or (datetime.now(UTC) - timedelta(hours=hours)).replace(
        microsecond=0
    )
    frame = sim.generate(
        scenario, begin, begin + timedelta(hours=hours), requests_per_hour=rate,
        canary_percent=canary_percent, control=control, canary=canary,
        onset=begin + timedelta(hours=onset) if onset is not None else None, seed=seed,
    )  # fmt: skip
    path = sim.write(frame, out)
    if common.current().json:
        common.emit_json({"out": str(path), "rows": len(frame), "scenario": scenario})
    else:
        common.say(f"wrote {len(frame):,} requests ({scenario}) to {path}")


def demo(
    workdir: Annotated[Path | None, typer.Option(help="where logs, flags and state go [a temp dir]")] = None,
) -> None:  # fmt: skip
    """Run two full rollouts on the embedded defaults: a healthy candidate reaches 100%; one
    with a safety regression in health questions is rolled back."""
    from rolloutctl.demo import run_demo

    g = common.current()
    base = workdir or Path(tempfile.mkdtemp(prefix="rolloutctl-demo-"))

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")

    runs = run_demo(base, g.reports_dir, progress=progress)
    if g.json:
        common.emit_json({"workdir": str(base), "rollouts": [r.__dict__ for r in runs]})
        return
    common.say("")
    for r in runs:
        common.say(
            f"{r.rollout} ({r.scenario}): {r.status} at {r.stage} after {r.hours} simulated "
            f"hours, {r.rows:,} requests; last gate report: {r.report}"
        )
    common.say(f"reports: {g.reports_dir / 'index.html'}; logs, flags and state: {base}")
