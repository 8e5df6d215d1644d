"""What every stage kind shares: the look it judges (`StageLook`), what it gives back
(`Judged`), the interface a kind's module implements (`StageJudge`), and the helpers that
build a gate report's rows and result the same way for every kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.errors import InvalidInput
from rolloutctl.gate import stage_metrics
from rolloutctl.playbook.model import LOG_KINDS
from rolloutctl.results import GateResult, GateVerdict, MetricResult, Window

if TYPE_CHECKING:
    from rolloutctl.metrics.base import Measurement
    from rolloutctl.metrics.requestlog import RequestLogSource
    from rolloutctl.playbook.load import LoadedPlaybook
    from rolloutctl.playbook.model import Playbook, Stage


@dataclass(frozen=True)
class StageLook:
    """One look at a stage's gate: what every kind's `judge` gets."""

    loaded: LoadedPlaybook
    stage_index: int
    started: datetime  # when the rollout entered this stage
    now: datetime
    control: str  # the flag's variants
    canary: str
    # When users first got the canary (from the audit log; read only by the kinds that need it)
    exposure_started: Callable[[], datetime]
    consecutive_errors: int = 0  # looks in a row whose measurement failed

    @property
    def playbook(self) -> Playbook:
        return self.loaded.playbook

    @property
    def stage(self) -> Stage:
        return self.loaded.playbook.stages[self.stage_index]


@dataclass
class Judged:
    """A kind's verdict on one look, with what the report charts: per source, the
    measurement the gate used and the cumulative looks over the stage (traffic stages only)."""

    result: GateResult
    measurements: dict[str, Measurement] = field(default_factory=dict)
    looks: dict[str, Any] = field(default_factory=dict)


class StageJudge(Protocol):
    """A stage kind: a module with a `judge` function (see registry.py)."""

    def judge(self, look: StageLook) -> Judged: ...


def row(
    name: str,
    title: str,
    group: str,
    verdict: str,
    note: str,
    *,
    kind: str = "check",
    segment: dict[str, str] | None = None,
    control: tuple[int, float | None] = (0, None),
    canary: tuple[int, float | None] = (0, None),
    estimate: float | None = None,
    ci: Sequence[float | None] = (None, None),
    margin: float = 0.0,
    margin_kind: str = "absolute",
    worse: str = "higher",
    vetoes: bool = True,
    p_value: float | None = None,
    p_adjusted: float | None = None,
    test: str = "",
) -> MetricResult:
    """One line of a gate report for a check (not a metric comparison of two live arms)."""
    return MetricResult(
        name=name,
        title=title,
        group=group,
        kind=kind,
        segment=segment,
        critical=vetoes,
        advisory=not vetoes,
        vetoes=vetoes,
        control={"n": control[0], "value": control[1]},
        canary={"n": canary[0], "value": canary[1]},
        estimate=estimate,
        ci=list(ci),
        margin=margin,
        margin_kind=margin_kind,
        worse=worse,
        verdict=verdict,
        note=note,
        p_value=p_value,
        p_adjusted=p_adjusted,
        test=test,
    )


def result(
    look: StageLook,
    *,
    verdict: GateVerdict,
    reasons: list[str],
    rows: list[MetricResult],
    notes: Sequence[str] = (),
    window: Window | None = None,
    no_data: bool = False,
    errors: int = 0,
) -> GateResult:
    loaded, stage_index, started, now = look.loaded, look.stage_index, look.started, look.now
    stage = look.stage
    elapsed = now - started
    min_duration = parse_duration(stage.min_duration) if stage.min_duration else timedelta(0)
    max_duration = parse_duration(stage.max_duration) if stage.max_duration else None
    return GateResult(
        rollout=loaded.playbook.rollout,
        stage=stage.name,
        stage_index=stage_index,
        verdict=verdict,
        reasons=reasons,
        srm={},
        metrics=rows,
        triggers=[],
        window=window or {"start": started.isoformat(), "end": now.isoformat()},
        evaluated_at=now.isoformat(),
        elapsed=format_duration(elapsed),
        min_duration_met=elapsed >= min_duration,
        max_duration_passed=max_duration is not None and elapsed >= max_duration,
        no_data=no_data,
        errors=errors,
        notes=list(notes),
    )


def request_log(
    look: StageLook, kinds: tuple[str, ...] = LOG_KINDS
) -> tuple[str, RequestLogSource]:
    """The request log a shadow or monitor stage reads, by name and built: its `source`,
    else the one its metrics use; of one of `kinds`."""
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.metrics.requestlog import RequestLogSource

    loaded, stage, pb = look.loaded, look.stage, look.playbook
    name = stage.source or next(
        (m.source for m in stage_metrics(pb, stage) if pb.sources[m.source].kind in kinds),
        None,
    )
    if name is None:
        raise InvalidInput(
            f"{loaded.path}: stage {stage.name} ({stage.kind}) needs a request-log source",
            hint="set the stage's `source:` to a requestlog source",
        )
    source = build_source(name, loaded)
    if not isinstance(source, RequestLogSource) or pb.sources[name].kind not in kinds:
        raise InvalidInput(
            f"{loaded.path}: stage {stage.name}: {stage.kind} reads a request log; "
            f"source {name!r} is a {pb.sources[name].kind} source"
        )
    return name, source
