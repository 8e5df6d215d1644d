"""`rolloutctl demo`: two full rollouts on the embedded defaults, driven by a simulated clock.

Each rollout walks the starter playbook: a smoke test against a local OpenAI-compatible
endpoint, an offline eval on generated eval runs, a shadow stage, canary and ramp stages, an
A/B test, 100% and the post-launch monitor. Each simulated hour the "product" serves traffic
as the flag file says (percent and stage scope; every request also to the candidate in the
background during the shadow stage), the request log grows by one Parquet part, and the gate
is advanced. A healthy candidate (v2) goes all the way; a candidate whose safety violations
rise in health questions only (v3) is caught in the shadow stage, before any user sees it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from rolloutctl import engine, simulate
from rolloutctl.envvars import overridden
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import load_playbook
from rolloutctl.playbook.scope import scope_text
from rolloutctl.results import DemoRollout
from rolloutctl.state.file import FileStore
from rolloutctl.state.store import ACTIVE

DEMO_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass
class DemoRun:
    rollout: str
    scenario: str
    status: str
    stage: str
    hours: int
    rows: int
    report: str | None
    steps: list[str]

    def to_json(self) -> DemoRollout:
        return {
            "rollout": self.rollout,
            "scenario": self.scenario,
            "status": self.status,
            "stage": self.stage,
            "hours": self.hours,
            "rows": self.rows,
            "report": self.report,
            "steps": self.steps,
        }


def _eligible(scope: str | None) -> Callable[[Any], Any] | None:
    if scope is None:
        return None
    import duckdb

    sql = expr.to_sql(expr.parse(scope), ["language", "category", "device", "region", "user_tier"])

    def mask(frame: Any) -> Any:
        con = duckdb.connect()
        con.register("frame", frame)
        result = con.execute(f"SELECT coalesce({sql}, FALSE) FROM frame").fetchnumpy()
        con.close()
        return next(iter(result.values())).astype(bool)

    return mask


def write_playbook(folder: Path, rollout: str, canary: str) -> Path:
    text = files("rolloutctl.playbook").joinpath("starter.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["rollout"], data["flag"]["canary"] = rollout, canary
    for stage in data["stages"]:
        if stage.get("kind") == "smoke":
            stage["model"] = canary
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rollout.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _traffic(
    kind: str,
    scenario: str,
    start: datetime,
    state: Any,
    scope: str | None,
    requests_per_hour: float,
    seed: int,
) -> Any:
    """One simulated hour of requests as the product serves them at this stage."""
    end = start + timedelta(hours=1)
    control, canary = state.flag["control"], state.flag["canary"]
    if kind == "shadow":
        shadow = scenario if scenario in simulate.SHADOW_SCENARIOS else "healthy"
        return simulate.generate_shadow(
            shadow,
            start,
            end,
            requests_per_hour=requests_per_hour,
            control=control,
            candidate=canary,
            seed=seed,
        )
    if kind == "monitor":
        return simulate.generate_post_launch(
            "stable", start, end, variant=canary, requests_per_hour=requests_per_hour, seed=seed
        )
    return simulate.generate(
        scenario,
        start,
        end,
        requests_per_hour=requests_per_hour,
        canary_percent=state.canary_percent,
        control=control,
        canary=canary,
        eligible=_eligible(scope),
        seed=seed,
    )


def run_one(
    workdir: Path,
    reports_dir: Path,
    *,
    rollout: str,
    canary: str,
    scenario: str,
    seed: int,
    requests_per_hour: float = 200_000,
    max_hours: int = 60,
    progress: Callable[[str], None] = lambda _: None,
) -> DemoRun:
    folder = workdir / rollout
    playbook_path = write_playbook(folder, rollout, canary)
    simulate.write_eval_runs(folder / "evals", scenario="healthy", fmt="promptfoo", seed=seed)
    # Three hours of history before the rollout: the monitor's pre-rollout baseline.
    history = simulate.generate_baseline(
        DEMO_START - timedelta(hours=3),
        DEMO_START,
        requests_per_hour=requests_per_hour / 2,
        seed=seed * 1000 + 999,
    )
    simulate.write(history, folder / "data" / "requests" / "part-history.parquet")
    store = FileStore(workdir / "state")
    clock = [DEMO_START]
    ctx = engine.Context(
        store, actor="demo", reports_dir=reports_dir, clock=lambda: clock[0], charts="decisions"
    )
    loaded = load_playbook(playbook_path)
    engine.start(ctx, loaded)
    steps: list[str] = []
    rows = len(history)
    report = None
    for hour in range(max_hours):
        state = store.load(rollout)
        if state.status not in ACTIVE:
            break
        if state.status == "awaiting_approval":
            out = engine.promote(ctx, rollout, "demo: release manager approved the ramp")
            steps.append(f"h{hour:02d} {out.message}")
            progress(f"{rollout}: {out.message}")
            continue
        kind = loaded.playbook.stages[state.stage_index].kind
        if kind in ("smoke", "offline_eval"):  # no traffic: judged in minutes
            clock[0] += timedelta(minutes=10)
        else:
            frame = _traffic(
                kind,
                scenario,
                clock[0],
                state,
                scope_text(loaded, state.stage_index),
                requests_per_hour,
                seed * 1000 + hour,
            )
            simulate.write(frame, folder / "data" / "requests" / f"part-{hour:04d}.parquet")
            rows += len(frame)
            clock[0] += timedelta(hours=1)
        out = engine.advance(ctx, rollout)
        report = out.gate.report if out.gate else report
        line = f"{clock[0] - DEMO_START} {state.stage} {state.canary_percent:g}%: {out.message}"
        steps.append(line)
        progress(f"{rollout}: {line}")
    state = store.load(rollout)
    return DemoRun(rollout, scenario, state.status, state.stage, len(steps), rows, report, steps)


def run_demo(
    workdir: Path, reports_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> list[DemoRun]:
    from rolloutctl.demo_endpoint import DEMO_KEY, serving

    with serving() as url, overridden(CANDIDATE_BASE_URL=url, CANDIDATE_API_KEY=DEMO_KEY):
        return [
            run_one(
                workdir,
                reports_dir,
                rollout="ai-search-answer-v2",
                canary="v2",
                scenario="healthy",
                seed=1,
                progress=progress,
            ),
            run_one(
                workdir,
                reports_dir,
                rollout="ai-search-answer-v3",
                canary="v3",
                scenario="safety_regression_segment",
                seed=2,
                progress=progress,
            ),
        ]
