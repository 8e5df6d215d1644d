"""`backtest`: replay a playbook's gates over a historical request log, look by look.

How a team tunes a playbook before trusting it, and asks "would this playbook have caught
last month's incident?". Starting at the log's first interval, the current stage's gate is
evaluated every `every` on the data as it had accumulated since the stage began — the same
gate, statistics and decisions as `advance`. A pass moves to the next stage at that moment
(approvals are assumed given, and said so); a failure ends the replay with the rollback it
would have made; a hold waits for the next look.

Each look is judged against the split the playbook configures for the stage, with the
sample-ratio check on, exactly as the live gate would: a broken assignment (the canary got
more or fewer units than configured) is what the check exists to catch, and a replay that
skipped it would call such a log clean. A log whose split was set by history rather than by
this playbook would hold on a mismatch only the replay created; `at_log_split` judges each
look at the log's own split without the check instead, and the result says so.

A log ends at its last row, just short of a round time, so the looks every `every` never
reach a stage that ends with the log (a 24 h stage on a 24 h log). When the log runs to
within one look of a stage's min/max duration (or an A/B stage's planned duration), the last
look is judged at exactly that end, on the data the log has — as the live gate would judge
it then — so passing at the minimum or `on_inconclusive_at_max` can happen.

Nothing is written: no flag, no state, no report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from rolloutctl import formatting, gate
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import Measurement, MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Playbook, Stage
from rolloutctl.playbook.scope import scope_text
from rolloutctl.results import GateResult, MetricResult
from rolloutctl.stats.compare import srm_p_value

log = logging.getLogger(__name__)

REPLAYED_KINDS = ("canary", "ab")
Split = Literal["configured", "log"]
# A stage's result by the decision that ended it; a stage no decision ended is "held".
STAGE_RESULTS = {"rollback": "failed", "pause": "paused", "advance": "passed", "complete": "passed"}


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
    # "configured": each look judged at the stage's configured split, sample-ratio check on
    # (as the live gate judges); "log": at the log's observed split, without that check.
    split: Split
    start: str
    end: str
    outcome: str
    stages: list[StageOutcome]
    looks: list[Look]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = formatting.json_safe(asdict(self))
        return cleaned


@dataclass
class _Replay:
    """What the replay of every stage shares."""

    loaded: LoadedPlaybook
    sources: dict[str, RequestLogSource]
    every: timedelta
    finish: datetime
    to_log_end: bool  # the replay runs to the log's last row, not to an earlier --end
    split: Split
    notes: list[str]

    def note(self, text: str, once_per: str) -> None:
        """Add `text` unless a note starting with `once_per` was already made."""
        if not any(n.startswith(once_per) for n in self.notes):
            self.notes.append(text)


@dataclass
class _StageReplay:
    looks: list[Look]
    decision: str  # the stage's last decision; a pass awaiting approval counts as advance
    ended: datetime | None  # when a decision ended the stage; None while it holds


def _sources(loaded: LoadedPlaybook, log: list[str] | None) -> dict[str, RequestLogSource]:
    """Every request-log source of the playbook (files or a SQL engine), read from `log`
    when given."""
    from rolloutctl.metrics.registry import build_source

    out: dict[str, RequestLogSource] = {}
    for name in loaded.playbook.sources:
        spec = loaded.playbook.sources[name]
        if spec.kind not in ("requestlog", "sql"):
            continue
        source = build_source(name, loaded)
        assert isinstance(source, RequestLogSource)
        if log:
            source = RequestLogSource(name, list(log), "auto")
        out[name] = source
    if not out:
        raise InvalidInput(
            f"{loaded.path}: no requestlog or sql source to replay",
            hint="backtest replays request logs; add a `kind: requestlog` or `kind: sql` source",
        )
    return out


def _with_traffic(pb: Playbook, index: int, traffic: float) -> Playbook:
    stages = list(pb.stages)
    stages[index] = stages[index].model_copy(update={"traffic": traffic})
    return pb.model_copy(update={"stages": stages})


def _arm_counts(measurements: dict[str, Measurement]) -> dict[str, int]:
    """Requests per arm in the look's window, from the first source."""
    if not measurements:
        return {}
    return next(iter(measurements.values())).arm_counts.get(None, {})


def _ratio_counts(measurements: dict[str, Measurement]) -> dict[str, int]:
    """Per arm what the gate's sample-ratio check counts: distinct units when the log has
    them (requests cluster by user, so their split strays further), else requests."""
    for m in measurements.values():
        if any((m.arm_counts.get(None) or {}).values()):
            return m.unit_counts.get(None) or m.arm_counts[None]
    return {}


def _judged_at_log_split(
    pb: Playbook, index: int, measurements: dict[str, Measurement], replay: _Replay
) -> Playbook:
    """The playbook to judge this look with under `at_log_split`: as written when the log's
    split so far agrees with the stage's traffic, else with the stage's traffic set to the
    log's split."""
    stage = pb.stages[index]
    if not measurements or stage.traffic is None or not 0 < stage.traffic < 100:
        return pb
    counts = _ratio_counts(measurements)
    control_n, canary_n = counts.get("control", 0), counts.get("canary", 0)
    if not control_n or not canary_n:
        return pb
    if srm_p_value(control_n, canary_n, stage.traffic) >= pb.analysis.srm_p:
        return pb
    observed = round(100 * canary_n / (control_n + canary_n), 2)
    replay.note(
        f"{stage.name}: the log's split differs from the configured {stage.traffic:g}% "
        f"(e.g. {observed:g}% to {pb.flag.canary}); such looks are judged at the log's split, "
        "without a sample-ratio check",
        once_per=f"{stage.name}: the log's split",
    )
    return _with_traffic(pb, index, observed)


def _note_ratio_mismatch(stage: Stage, result: GateResult, replay: _Replay) -> None:
    """Point at --at-log-split once per stage whose looks hold on a sample-ratio mismatch:
    right when the log's split was set by history, wrong when the assignment was broken."""
    if result.srm.get("ok", True):
        return
    replay.note(
        f"{stage.name}: sample ratio mismatch against the configured "
        f"{result.srm['expected_canary_percent']:g}% "
        f"(canary has {result.srm['observed_canary_percent']:.2f}% of "
        f"{result.srm['counted']}); the live gate would hold too. If this log's split was "
        "set by history rather than this playbook, --at-log-split judges at the log's split",
        once_per=f"{stage.name}: sample ratio mismatch",
    )


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


def _requests(
    replay: _Replay, index: int, stage_start: datetime
) -> tuple[dict[str, MeasureRequest], dict[str, str]]:
    """What to measure per request-log source for the stage, and an error for each metric
    whose source is not a request log."""
    pb = replay.loaded.playbook
    metrics = gate.stage_metrics(pb, pb.stages[index])
    scope = scope_text(replay.loaded, index)
    requests = {
        name: MeasureRequest(
            metrics=tuple(m for m in metrics if m.source == name),
            start=stage_start,
            end=replay.finish,
            control=pb.flag.control,
            canary=pb.flag.canary,
            dimensions=tuple(pb.segments.dimensions),
            scope=expr.parse(scope) if scope else None,
            max_segments=pb.analysis.max_segments,
            never_pooled=pb.segments.never_pooled(),
        )
        for name in sorted({m.source for m in metrics if m.source in replay.sources})
    }
    source_errors = {
        m.source: f"source {m.source!r} is not a request log; backtest cannot replay it"
        for m in metrics
        if m.source not in replay.sources
    }
    return requests, source_errors


def _stage_ends(stage: Stage) -> list[timedelta]:
    """The elapsed times at which the gate's decision can change without new data: the
    minimum and maximum duration, and an A/B stage's planned duration."""
    configured = [stage.min_duration, stage.max_duration]
    if stage.kind == "ab":
        configured.append(stage.duration)
    return [parse_duration(d) for d in configured if d]


def _ends_at_log_end(stage: Stage, stage_start: datetime, replay: _Replay) -> list[datetime]:
    """The stage's ends that the log falls short of by at most one look. The log's last
    row is where its history stops, not a round time, so no regular look reaches such an
    end; the live gate would have judged there on the data the log has. An explicit --end
    is a deliberate cut, so nothing is judged past it."""
    if not replay.to_log_end:
        return []
    ends = {stage_start + d for d in _stage_ends(stage)}
    return sorted(t for t in ends if replay.finish < t <= replay.finish + replay.every)


def _look_schedule(
    replay: _Replay, index: int, stage_start: datetime, ends: list[datetime]
) -> list[tuple[datetime, int]]:
    """(when, index of the measurement to judge then) for each look of the stage: one per
    measured end, the last one moved to the stage's end(s) the log just falls short of."""
    schedule = [(t, k) for k, t in enumerate(ends)]
    stage = replay.loaded.playbook.stages[index]
    at_end = _ends_at_log_end(stage, stage_start, replay) if ends else []
    if not at_end:
        return schedule
    last = len(ends) - 1
    elapsed = ", ".join("+" + format_duration(t - stage_start) for t in at_end)
    replay.note(
        f"{stage.name}: the log ends at {replay.finish.isoformat()}, within one look "
        f"({format_duration(replay.every)}) of the stage's end at {elapsed}; its last look is "
        "judged there, on the log's data up to its end",
        once_per=f"{stage.name}: the log ends",
    )
    return schedule[:last] + [(t, last) for t in at_end]


def _judge_look(
    replay: _Replay,
    index: int,
    stage_start: datetime,
    when: datetime,
    measurements: dict[str, Measurement],
    source_errors: dict[str, str],
) -> Look:
    """One look of the stage's gate, judged as `replay.split` says."""
    pb = replay.loaded.playbook
    stage = pb.stages[index]
    at_log_split = replay.split == "log"
    judged = _judged_at_log_split(pb, index, measurements, replay) if at_log_split else pb
    result = gate.evaluate(
        judged,
        index,
        measurements,
        source_errors,
        stage_started=stage_start,
        now=when,
        consecutive_errors=0,
        check_ratio=not at_log_split,
    )
    _note_ratio_mismatch(stage, result, replay)
    counts = _arm_counts(measurements)
    return Look(
        time=when.isoformat(),
        stage=stage.name,
        traffic=judged.stages[index].traffic or 0.0,
        elapsed=format_duration(when - stage_start),
        verdict=result.verdict,
        decision=gate.decide(judged, index, result),
        reasons=result.reasons[:3],
        control_n=counts.get("control", 0),
        canary_n=counts.get("canary", 0),
        failing=[_cell(r) for r in result.metrics if r.verdict == "fail" and r.vetoes],
    )


def _replay_stage(replay: _Replay, index: int, stage_start: datetime) -> _StageReplay:
    """Look at the stage every `every` until a decision ends it or the log does."""
    pb = replay.loaded.playbook
    requests, source_errors = _requests(replay, index, stage_start)
    log.info("replaying %s from %s: measuring", pb.stages[index].name, stage_start.isoformat())
    ends, by_source = _series(replay.sources, requests, replay.every)
    looks: list[Look] = []
    schedule = list(_look_schedule(replay, index, stage_start, ends))
    for number, (when, k) in enumerate(schedule, 1):
        log.info(
            "replaying %s: look %d of %d (%s)",
            pb.stages[index].name,
            number,
            len(schedule),
            when.isoformat(),
        )
        measurements = {name: series[k] for name, series in by_source.items()}
        look = _judge_look(replay, index, stage_start, when, measurements, source_errors)
        looks.append(look)
        if look.decision == "pause" and look.verdict == "pass":
            stage, nxt = pb.stages[index].name, pb.stages[index + 1].name
            replay.notes.append(f"{stage} → {nxt}: approval required; assumed given")
            return _StageReplay(looks, "advance", when)
        if look.decision in ("rollback", "advance", "complete", "pause"):
            return _StageReplay(looks, look.decision, when)
    return _StageReplay(looks, "hold", None)


def _first_reason(look: Look) -> str:
    return look.reasons[0] if look.reasons else ""


def _decided_outcome(stage: Stage, replayed: _StageReplay) -> str:
    """The replay's outcome when the stage's decision ends it, else ""."""
    last = replayed.looks[-1] if replayed.looks else None
    if last is None or replayed.ended is None:
        return ""
    if replayed.decision == "rollback":
        return (
            f"rolled back at {stage.name} after {last.elapsed} ({last.time}): {_first_reason(last)}"
        )
    if replayed.decision == "pause":
        return f"paused at {stage.name} ({last.time}): {_first_reason(last)}"
    if replayed.decision == "complete":
        return f"completed at {last.time}"
    return ""


def _unfinished_outcome(pb: Playbook, stages: list[StageOutcome], finish: datetime) -> str:
    """The outcome when the log ends before a decision ends the rollout."""
    if not stages:
        return "no stage could be replayed"
    last = stages[-1]
    if last.result == "passed":  # advanced, so a stage follows it
        names = [s.name for s in pb.stages]
        following = names[names.index(last.name) + 1]
        return (
            f"{last.name} passed at {last.ended}; the log ends at {finish.isoformat()}, "
            f"before {following} begins"
        )
    return f"still at {last.name} ({last.result}) when the log ends at {finish.isoformat()}"


def backtest(
    loaded: LoadedPlaybook,
    *,
    log: list[str] | None,
    every: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
    first_stage: str | None = None,
    at_log_split: bool = False,
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

    replay = _Replay(
        loaded=loaded,
        sources=sources,
        every=every,
        finish=finish,
        to_log_end=finish == log_end,
        split="log" if at_log_split else "configured",
        notes=[],
    )
    if at_log_split:
        replay.notes.append(
            "judged at the log's split (--at-log-split): where a stage's split differs from "
            "the configured one, its looks use the log's, with no sample-ratio check, so a "
            "broken assignment cannot show"
        )
    looks: list[Look] = []
    stages: list[StageOutcome] = []
    outcome = ""
    stage_start = t0
    while index < len(pb.stages):
        stage = pb.stages[index]
        if stage.kind not in REPLAYED_KINDS:
            when = stage_start.isoformat()
            why = f"a {stage.kind} stage is not replayed from a request log"
            stages.append(StageOutcome(stage.name, when, when, "skipped", why))
            index += 1
            continue
        if stage_start >= finish:
            break
        replayed = _replay_stage(replay, index, stage_start)
        looks += replayed.looks
        result = STAGE_RESULTS.get(replayed.decision, "held") if replayed.ended else "held"
        ended = replayed.ended.isoformat() if replayed.ended else None
        stages.append(StageOutcome(stage.name, stage_start.isoformat(), ended, result))
        outcome = _decided_outcome(stage, replayed)
        if replayed.ended is None or replayed.decision != "advance":
            break
        stage_start = replayed.ended
        index += 1
    seen = {s.name for s in stages}
    return BacktestResult(
        rollout=pb.rollout,
        log=[p for s in sources.values() for p in s.paths],
        every=format_duration(every),
        split=replay.split,
        start=t0.isoformat(),
        end=finish.isoformat(),
        outcome=outcome or _unfinished_outcome(pb, stages, finish),
        stages=stages
        + [StageOutcome(s.name, "", None, "not reached") for s in pb.stages if s.name not in seen],
        looks=looks,
        notes=replay.notes,
    )


def _cell(r: MetricResult) -> str:
    where = (
        "" if r.segment is None else " in " + ", ".join(f"{k}={v}" for k, v in r.segment.items())
    )
    p = r.p_adjusted if r.p_adjusted is not None and math.isfinite(r.p_adjusted) else None
    return f"{r.name}{where}" + (f" (adjusted p = {p:.2g})" if p is not None else "")
