"""`backtest`: replay a playbook's gates over a historical request log, look by look.

How a team tunes a playbook before trusting it, and asks "would this playbook have caught
last month's incident?". Starting at the log's first interval, the current stage's gate is
evaluated every `every` on the data as it had accumulated since the stage began — the same
gate, statistics and decisions as `advance`. A pass moves to the next stage at that moment
(approvals are assumed given, and said so); a failure ends the replay with the rollback it
would have made; a hold waits for the next look.

Nothing is written: no flag, no state, no report. The log's traffic split was set by
history, not by this playbook, so when a stage's window shows a different split than the
stage configures, the gate is replayed at the log's split (and the timeline says so) instead
of holding on a sample-ratio mismatch that only the replay created.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rolloutctl import gate
from rolloutctl.durations import format_duration
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Playbook
from rolloutctl.playbook.scope import scope_text
from rolloutctl.stats.compare import srm_p_value

REPLAYED_KINDS = ("canary", "ab")


@dataclass
class Look:
    time: str
    stage: str
    traffic: float
    elapsed: str
    verdict: str
    decision: str
    reasons: list[str]
    control_n: int
    canary_n: int
    failing: list[str] = field(default_factory=list)


@dataclass
class StageOutcome:
    name: str
    started: str
    ended: str | None
    result: str  # passed | failed | held | skipped | paused | not reached
    note: str = ""


@dataclass
class BacktestResult:
    rollout: str
    log: list[str]
    every: str
    start: str
    end: str
    outcome: str
    stages: list[StageOutcome]
    looks: list[Look]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = gate.json_safe(asdict(self))
        return cleaned


def _sources(loaded: LoadedPlaybook, log: list[str] | None) -> dict[str, RequestLogSource]:
    """Every requestlog source of the playbook, read from `log` when given."""
    out: dict[str, RequestLogSource] = {}
    for name in loaded.playbook.sources:
        spec = loaded.playbook.sources[name]
        if spec.kind != "requestlog":
            continue
        source = RequestLogSource.from_spec(name, spec, loaded)
        if log:
            source = RequestLogSource(name, list(log), "auto")
        out[name] = source
    if not out:
        raise InvalidInput(
            f"{loaded.path}: no requestlog source to replay",
            hint="backtest replays request logs; add a `kind: requestlog` source",
        )
    return out


def _with_traffic(pb: Playbook, index: int, traffic: float) -> Playbook:
    stages = list(pb.stages)
    stages[index] = stages[index].model_copy(update={"traffic": traffic})
    return pb.model_copy(update={"stages": stages})


def _judged_at_log_split(
    pb: Playbook, index: int, measurements: dict[str, Measurement], notes: list[str]
) -> Playbook:
    """The playbook to judge this look with: as written when the log's split so far agrees
    with the stage's traffic, else with the stage's traffic set to the log's split."""
    stage = pb.stages[index]
    if not measurements or stage.traffic is None or not 0 < stage.traffic < 100:
        return pb
    counts = next(iter(measurements.values())).arm_counts.get(None, {})
    control_n, canary_n = counts.get("control", 0), counts.get("canary", 0)
    if not control_n or not canary_n:
        return pb
    if srm_p_value(control_n, canary_n, stage.traffic) >= pb.analysis.srm_p:
        return pb
    observed = round(100 * canary_n / (control_n + canary_n), 2)
    note = (
        f"{stage.name}: the log's split differs from the configured {stage.traffic:g}% "
        f"(e.g. {observed:g}% to {pb.flag.canary}); such looks are judged at the log's split, "
        "without a sample-ratio check"
    )
    if not any(n.startswith(f"{stage.name}: the log's split") for n in notes):
        notes.append(note)
    return _with_traffic(pb, index, observed)


def _series(
    sources: dict[str, RequestLogSource], request_for: dict[str, MeasureRequest], every: timedelta
) -> tuple[list[datetime], dict[str, list[Measurement]]]:
    ends: list[datetime] = []
    by_source: dict[str, list[Measurement]] = {}
    for name, request in request_for.items():
        series = sources[name].measure_series(request, every)
        ends = [t for t, _ in series]
        by_source[name] = [m for _, m in series]
    return ends, by_source


def backtest(
    loaded: LoadedPlaybook,
    *,
    log: list[str] | None,
    every: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
    first_stage: str | None = None,
) -> BacktestResult:
    pb = loaded.playbook
    sources = _sources(loaded, log)
    ranges = [r for r in (s.time_range() for s in sources.values()) if r is not None]
    if not ranges:
        raise InvalidInput(f"no dated rows in {', '.join(sources[n].paths[0] for n in sources)}")
    log_start = min(r[0] for r in ranges)
    log_end = max(r[1] for r in ranges) + timedelta(microseconds=1)
    # Looks fall on round times (a multiple of `every` since the epoch) unless --start says.
    step = every.total_seconds()
    t0 = start or datetime.fromtimestamp(
        math.floor(log_start.timestamp() / step) * step, log_start.tzinfo
    )
    finish = min(end or log_end, log_end)
    if t0 >= finish:
        raise InvalidInput(f"nothing to replay: the window {t0} → {finish} is empty")
    names = [s.name for s in pb.stages]
    index = 0
    if first_stage is not None:
        if first_stage not in names:
            raise InvalidInput(f"no stage {first_stage!r}; stages: {', '.join(names)}")
        index = names.index(first_stage)

    looks: list[Look] = []
    stages: list[StageOutcome] = []
    notes: list[str] = []
    outcome = ""
    stage_start = t0
    while index < len(pb.stages):
        stage = pb.stages[index]
        if stage.kind not in REPLAYED_KINDS:
            stages.append(StageOutcome(stage.name, stage_start.isoformat(), stage_start.isoformat(),
                                       "skipped", f"a {stage.kind} stage is not replayed from a "
                                       "request log"))  # fmt: skip
            index += 1
            continue
        if stage_start >= finish:
            break
        metrics = gate.stage_metrics(pb, stage)
        scope = scope_text(loaded, index)
        requests = {
            name: MeasureRequest(
                metrics=tuple(m for m in metrics if m.source == name),
                start=stage_start,
                end=finish,
                control=pb.flag.control,
                canary=pb.flag.canary,
                dimensions=tuple(pb.segments.dimensions),
                scope=expr.parse(scope) if scope else None,
                max_segments=pb.analysis.max_segments,
            )
            for name in sorted({m.source for m in metrics if m.source in sources})
        }
        source_errors = {
            m.source: f"source {m.source!r} is not a request log; backtest cannot replay it"
            for m in metrics
            if m.source not in sources
        }
        ends, by_source = _series(sources, requests, every)
        decision, result_text = "hold", "held"
        stage_end: datetime | None = None
        for k, look_end in enumerate(ends):
            measurements = {name: series[k] for name, series in by_source.items()}
            judged_pb = _judged_at_log_split(pb, index, measurements, notes)
            result = gate.evaluate(
                judged_pb, index, measurements, source_errors,
                stage_started=stage_start, now=look_end, consecutive_errors=0,
            )  # fmt: skip
            decision = gate.decide(judged_pb, index, result)
            counts = (
                next(iter(measurements.values())).arm_counts.get(None, {}) if measurements else {}
            )
            looks.append(Look(
                time=look_end.isoformat(), stage=stage.name,
                traffic=judged_pb.stages[index].traffic or 0.0,
                elapsed=format_duration(look_end - stage_start), verdict=result.verdict,
                decision=decision, reasons=result.reasons[:3],
                control_n=counts.get("control", 0), canary_n=counts.get("canary", 0),
                failing=[_cell(r) for r in result.metrics if r.verdict == "fail" and r.vetoes],
            ))  # fmt: skip
            if decision in ("rollback", "advance", "complete") or (
                decision == "pause" and result.verdict != "pass"
            ):
                stage_end = look_end
                break
            if decision == "pause" and result.verdict == "pass":
                nxt = pb.stages[index + 1].name
                notes.append(f"{stage.name} → {nxt}: approval required; assumed given")
                decision, stage_end = "advance", look_end
                break
        if decision == "rollback":
            result_text = "failed"
            outcome = (f"rolled back at {stage.name} after {looks[-1].elapsed}"
                       f" ({looks[-1].time}): {looks[-1].reasons[0] if looks[-1].reasons else ''}")  # fmt: skip
        elif decision == "pause":
            result_text = "paused"
            outcome = f"paused at {stage.name} ({looks[-1].time}): {looks[-1].reasons[0]}"
        elif decision in ("advance", "complete"):
            result_text = "passed"
        stages.append(StageOutcome(
            stage.name, stage_start.isoformat(), stage_end.isoformat() if stage_end else None,
            result_text,
        ))  # fmt: skip
        if decision == "complete":
            outcome = f"completed at {looks[-1].time}"
            index = len(pb.stages)
            break
        if stage_end is None or decision in ("rollback", "pause"):
            break
        stage_start = stage_end
        index += 1
    if not outcome:
        last = stages[-1] if stages else None
        outcome = (
            f"still at {last.name} ({last.result}) when the log ends at {finish.isoformat()}"
            if last
            else "no stage could be replayed"
        )
    seen = {s.name for s in stages}
    stages += [
        StageOutcome(s.name, "", None, "not reached") for s in pb.stages if s.name not in seen
    ]
    return BacktestResult(
        rollout=pb.rollout,
        log=[p for s in sources.values() for p in s.paths],
        every=format_duration(every),
        start=t0.isoformat(),
        end=finish.isoformat(),
        outcome=outcome,
        stages=stages,
        looks=looks,
        notes=notes,
    )


def _cell(r: gate.MetricResult) -> str:
    where = (
        "" if r.segment is None else " in " + ", ".join(f"{k}={v}" for k, v in r.segment.items())
    )
    p = r.p_adjusted if r.p_adjusted is not None and math.isfinite(r.p_adjusted) else None
    return f"{r.name}{where}" + (f" (adjusted p = {p:.2g})" if p is not None else "")
