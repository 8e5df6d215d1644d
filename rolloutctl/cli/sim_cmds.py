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
from rolloutctl.results import DemoResult, SimulatedEvals, SimulatedLog


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command()(demo)


_STAGES = ("canary", "shadow", "eval", "post-launch", "baseline")
_DEFAULT_SCENARIO = {
    "canary": "healthy",
    "shadow": "healthy",
    "eval": "healthy",
    "post-launch": "stable",
}


def simulate(
    out: Annotated[
        Path, typer.Option(help="output file: .jsonl, .csv or .parquet; for --stage eval, a folder")
    ],
    scenario: Annotated[
        str | None,
        typer.Option(
            help="what goes wrong; per stage -- canary: healthy, latency_regression, cost_blowup, safety_regression_segment, hallucination_regression, sample_ratio_mismatch; shadow: healthy, latency_regression, safety_regression_segment, shadow_errors; eval: healthy, new_failure_in_health, lower_pass_rate; post-launch: stable, drift [healthy; post-launch: stable]"
        ),
    ] = None,
    stage: Annotated[
        str, typer.Option(help="canary, shadow, eval, post-launch or baseline (see above)")
    ] = "canary",
    hours: Annotated[float, typer.Option(help="how many hours of traffic")] = 6.0,
    start: Annotated[str | None, typer.Option(help="ISO start time [now - hours]")] = None,
    rate: Annotated[float, typer.Option(help="requests per hour")] = 20_000,
    canary_percent: Annotated[
        float | None, typer.Option(help="percent served by the canary (canary stage) [10]")
    ] = None,
    control: Annotated[
        str, typer.Option(help="the old variant: control, shadow's server, baseline")
    ] = "v1",
    canary: Annotated[
        str,
        typer.Option(help="the candidate: canary, shadow candidate, launched variant, eval model"),
    ] = "v2",
    onset: Annotated[
        float | None,
        typer.Option(
            help="hours after start when the regression (canary) or the drift (post-launch) begins [canary: at start; post-launch: mid-window]"
        ),
    ] = None,
    coverage: Annotated[
        float | None,
        typer.Option(help="share of requests the shadow candidate also answers (shadow) [0.97]"),
    ] = None,
    eval_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="eval file format: promptfoo, inspect, lm_eval or jsonl (eval) [promptfoo]",
        ),
    ] = None,
    samples: Annotated[int | None, typer.Option(help="eval set size (eval) [400]")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed writes the same rows")] = 0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write realistic synthetic data for one stage kind of an AI rollout, with a known defect.

    \b
    --stage canary       request log split between control and canary (canary, ramp, A/B)
    --stage shadow       the control serves every request; the candidate answers about 97%
                         again in the background: rows with the same request_id, variant
                         shadow:<canary>, user signals left empty
    --stage eval         a baseline and a candidate run of one offline eval set, written to
                         the --out folder in the --format promptfoo, inspect, lm_eval or jsonl
    --stage post-launch  all traffic on the candidate; "drift" adds a new query category
                         (tax_filing) and a creeping cost from --onset on
    --stage baseline     all traffic on the control: the pre-rollout baseline for monitoring
    """
    from rolloutctl import simulate as sim

    if stage not in _STAGES:
        raise UsageError(f"unknown stage {stage!r}; valid stages: {', '.join(_STAGES)}")
    only = [
        ("--canary-percent", canary_percent, ("canary",)),
        ("--onset", onset, ("canary", "post-launch")),
        ("--coverage", coverage, ("shadow",)),
        ("--format", eval_format, ("eval",)),
        ("--samples", samples, ("eval",)),
    ]
    for flag, value, owners in only:
        if value is not None and stage not in owners:
            raise UsageError(f"{flag} applies to --stage {' and '.join(owners)}, not {stage}")
    valid: dict[str, dict[str, str]] = {
        "canary": sim.SCENARIOS,
        "shadow": sim.SHADOW_SCENARIOS,
        "eval": sim.EVAL_SCENARIOS,
        "post-launch": sim.POST_LAUNCH_SCENARIOS,
        "baseline": {},
    }
    if stage == "baseline" and scenario is not None:
        raise UsageError("--stage baseline takes no --scenario: it is the control alone")
    scenario = scenario or _DEFAULT_SCENARIO.get(stage, "")
    if stage != "baseline" and scenario not in valid[stage]:
        raise UsageError(
            f"unknown {stage} scenario {scenario!r}",
            hint=f"{stage} scenarios: " + ", ".join(valid[stage]),
        )
    g = common.current()
    g.json = g.json or json_out

    if stage == "eval":
        base_path, cand_path = sim.write_eval_runs(
            out,
            scenario=scenario,
            n=400 if samples is None else samples,
            fmt=eval_format or "promptfoo",
            baseline=control,
            candidate=canary,
            seed=seed,
        )
        if g.json:
            evals: SimulatedEvals = {
                "stage": stage,
                "scenario": scenario,
                "baseline": str(base_path),
                "candidate": str(cand_path),
                "format": eval_format or "promptfoo",
                "samples": 400 if samples is None else samples,
            }
            common.emit_json(evals)
        else:
            common.say(f"wrote eval runs ({scenario}): baseline {base_path}, candidate {cand_path}")
        return

    begin = common.parse_now(start, "--start") or (
        datetime.now(UTC) - timedelta(hours=hours)
    ).replace(microsecond=0)
    end = begin + timedelta(hours=hours)
    at = begin + timedelta(hours=onset) if onset is not None else None
    shadow_counts: dict[str, int] = {}
    if stage == "canary":
        frame = sim.generate(
            scenario,
            begin,
            end,
            requests_per_hour=rate,
            canary_percent=10.0 if canary_percent is None else canary_percent,
            control=control,
            canary=canary,
            onset=at,
            seed=seed,
        )
    elif stage == "shadow":
        frame = sim.generate_shadow(
            scenario,
            begin,
            end,
            requests_per_hour=rate,
            control=control,
            candidate=canary,
            coverage=0.97 if coverage is None else coverage,
            seed=seed,
        )
        shadow_calls = int(frame["variant"].str.startswith("shadow:").sum())
        shadow_counts = {"requests": len(frame) - shadow_calls, "shadow_calls": shadow_calls}
    elif stage == "post-launch":
        frame = sim.generate_post_launch(
            scenario,
            begin,
            end,
            variant=canary,
            requests_per_hour=rate,
            drift_start=at,
            seed=seed,
        )
    else:
        frame = sim.generate_baseline(
            begin, end, requests_per_hour=rate, variant=control, seed=seed
        )
    path = sim.write(frame, out)
    label = scenario or "control only"
    if g.json:
        written: SimulatedLog = {
            "out": str(path),
            "rows": len(frame),
            "scenario": scenario or None,
            "stage": stage,
        }
        if shadow_counts:
            written["requests"] = shadow_counts["requests"]
            written["shadow_calls"] = shadow_counts["shadow_calls"]
        common.emit_json(written)
    elif shadow_counts:
        common.say(
            f"wrote {shadow_counts['requests']:,} requests and "
            f"{shadow_counts['shadow_calls']:,} shadow calls "
            f"({stage}, {label}) to {path}"
        )
    elif stage == "canary":
        common.say(f"wrote {len(frame):,} requests ({scenario}) to {path}")
    else:
        common.say(f"wrote {len(frame):,} requests ({stage}, {label}) to {path}")


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="where logs, flags, state and (unless --reports-dir) reports go [a temp dir]"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run two full rollouts on the embedded defaults: a healthy candidate reaches 100%; one
    with a safety regression in health questions is rolled back."""
    from rolloutctl.demo import run_demo

    g = common.current()
    g.json = g.json or json_out
    base = workdir or Path(tempfile.mkdtemp(prefix="rolloutctl-demo-"))
    if workdir is not None and not g.reports_dir_given:
        g.reports_dir = workdir / "reports"

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")

    runs = run_demo(base, g.reports_dir, progress=progress)
    if g.json:
        ran: DemoResult = {"workdir": str(base), "rollouts": [r.to_json() for r in runs]}
        common.emit_json(ran)
        return
    common.say("")
    for r in runs:
        common.say(
            f"{r.rollout} ({r.scenario}): {r.status} at {r.stage} after {r.hours} simulated "
            f"hours, {r.rows:,} requests; last gate report: {r.report}"
        )
    common.say(f"reports: {g.reports_dir / 'index.html'}; logs, flags and state: {base}")
