"""What a gate report shows beyond the verdict: each deciding metric over the stage (both
arms, and the estimate with the interval the gate used, narrowing as data came in) and the
distributions of quantile metrics.

Collected once, when the gate is evaluated, and stored with the report's record, so
`rolloutctl report` re-renders the same page without querying anything. Failing to collect
it never affects the gate: the report then says the charts are unavailable and why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rolloutctl import formatting, gate
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.results import GateResult
from rolloutctl.stats.sufficient import Histogram

MAX_POINTS = 24
_STEPS = [timedelta(minutes=m) for m in (1, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440)]


def interval_for(window: timedelta) -> timedelta:
    """A round interval giving at most MAX_POINTS looks over the window."""
    for step in _STEPS:
        if window / step <= MAX_POINTS:
            return step
    return _STEPS[-1] * max(1, int(window / (_STEPS[-1] * MAX_POINTS)) + 1)


def collect(
    loaded: LoadedPlaybook,
    stage_index: int,
    result: GateResult,
    measurements: dict[str, Measurement],
    looks: dict[str, list[tuple[datetime, Measurement]]] | None,
) -> dict[str, Any]:
    """The report's evidence from what the gate measured: `looks` are, per source, the
    cumulative measurements over the stage (None: no time series for this report)."""
    pb = loaded.playbook
    stage = pb.stages[stage_index]
    method = stage.method or pb.analysis.method
    rho2 = gate.stage_rho2(pb, stage_index, result.tuned_at or gate.tuned_total(pb, stage_index))
    overall = {r.name: r for r in result.metrics if r.segment is None and r.alpha is not None}
    evidence: dict[str, Any] = {"series": {}, "distributions": {}, "notes": []}

    for m in measurements.values():  # quantile metrics: both arms' histograms
        for (metric_name, segment), arms in m.stats.items():
            control_h, canary_h = arms.get("control"), arms.get("canary")
            if (
                segment is None
                and isinstance(control_h, Histogram)
                and isinstance(canary_h, Histogram)
            ):
                evidence["distributions"][metric_name] = {
                    "control": {str(b): c for b, c in sorted(control_h.counts.items())},
                    "canary": {str(b): c for b, c in sorted(canary_h.counts.items())},
                }

    if looks is None:
        evidence["notes"].append("time series are drawn for gates that act; this one held")
        return evidence
    if not looks:
        evidence["notes"].append("the stage is too young for a time series")
        return evidence
    for metric in gate.stage_metrics(pb, stage):
        final = overall.get(metric.name)
        series = looks.get(metric.source)
        if final is None or not series:
            continue
        points = []
        for moment, look in series:
            arms = look.stats.get((metric.name, None), {})
            c, t = arms.get("control"), arms.get("canary")
            if c is None or t is None or min(c.n, t.n) < 2:
                continue
            alpha = final.alpha or pb.analysis.alpha
            comp = gate.compare_metric(metric, c, t, alpha, method, rho2, final.alpha_pass)
            points.append(
                {
                    "time": moment.isoformat(),
                    "control": comp.control_value,
                    "canary": comp.canary_value,
                    "estimate": comp.estimate,
                    "ci_low": comp.ci[0],
                    "ci_high": comp.ci[1],
                    "margin": comp.margin,
                }
            )
        evidence["series"][metric.name] = formatting.json_safe(points)
    return evidence
