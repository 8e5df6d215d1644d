"""`rolloutctl demo`: two full rollouts on the embedded defaults, driven by a simulated clock.

Each simulated hour the "product" serves traffic according to the flag file as rolloutctl
left it (percent and stage scope), the request log grows by one Parquet part, and the gate
is advanced. A healthy candidate (v2) reaches 100%; a candidate with a safety regression in
health questions only (v3) is rolled back at a canary stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from rolloutctl import engine, simulate
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import load_playbook
from rolloutctl.state.store import ACTIVE, StateStore

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
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rollout.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_one(
    workdir: Path,
    reports_dir: Path,
    *,
    rollout: str,
    canary: str,
    scenario: str,
    seed: int,
    requests_per_hour: float = 200_000,
    max_hours: int = 48,
    progress: Callable[[str], None] = lambda _: None,
) -> DemoRun:
    folder = workdir / rollout
    playbook_path = write_playbook(folder, rollout, canary)
    store = StateStore(workdir / "state")
    clock = [DEMO_START]
    ctx = engine.Context(store, actor="demo", reports_dir=reports_dir, clock=lambda: clock[0],
                         charts="decisions")  # fmt: skip
    loaded = load_playbook(playbook_path)
    engine.start(ctx, loaded)
    steps: list[str] = []
    rows = 0
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
        scope = engine.scope_text(loaded, state.stage_index)
        frame = simulate.generate(
            scenario, clock[0], clock[0] + timedelta(hours=1),
            requests_per_hour=requests_per_hour, canary_percent=state.canary_percent,
            control=state.flag["control"], canary=state.flag["canary"],
            eligible=_eligible(scope), seed=seed * 1000 + hour,
        )  # fmt: skip
        simulate.write(frame, folder / "data" / "requests" / f"part-{hour:04d}.parquet")
        rows += len(frame)
        clock[0] += timedelta(hours=1)
        out = engine.advance(ctx, rollout)
        report = out.gate.report if out.gate else report
        line = f"h{hour + 1:02d} {state.stage} {state.canary_percent:g}%: {out.message}"
        steps.append(line)
        progress(f"{rollout}: {line}")
    state = store.load(rollout)
    return DemoRun(rollout, scenario, state.status, state.stage, len(steps), rows, report, steps)


def run_demo(
    workdir: Path, reports_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> list[DemoRun]:
    return [
        run_one(workdir, reports_dir, rollout="ai-search-answer-v2", canary="v2",
                scenario="healthy", seed=1, progress=progress),
        run_one(workdir, reports_dir, rollout="ai-search-answer-v3", canary="v3",
                scenario="safety_regression_segment", seed=2, progress=progress),
    ]  # fmt: skip
