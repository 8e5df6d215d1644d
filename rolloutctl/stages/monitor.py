"""The post-launch monitor: recent traffic, all on the candidate, against the pre-rollout
baseline; drift alerts, and only a rollback trigger moves the flag."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from rolloutctl import formatting as fmt
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.gate import stage_metrics
from rolloutctl.results import GateResult, GateVerdict
from rolloutctl.stages.base import Judged, StageLook, request_log, result, row

if TYPE_CHECKING:
    pass


def _gate(look: StageLook) -> GateResult:
    """Recent traffic (all on the candidate) against the pre-rollout baseline: the control's
    traffic in a window of the same length just before users first got the candidate. Every
    metric and segment is compared with the gate's own test (the baseline as the control
    arm, no sample-ratio check: the arms are windows, not a split), and each segment
    dimension is checked for values the baseline never saw (new query patterns) and for a
    shifted mix (chi-square, Cramér's V; shown, never deciding). Drift fails the look; the
    engine alerts and leaves the flag alone unless a rollback trigger fires."""
    from rolloutctl import gate
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.stats import drift

    pb, stage, now = look.playbook, look.stage, look.now
    name, source = request_log(look)
    length = parse_duration(stage.window or "24h")
    recent_start = max(look.started, now - length)
    if now - recent_start < timedelta(minutes=1):
        return result(
            look,
            verdict="inconclusive",
            reasons=["the monitor stage has just started: no recent traffic yet"],
            rows=[],
            no_data=True,
        )
    exposed = look.exposure_started()
    baseline = (exposed - (now - recent_start), exposed)
    metrics = tuple(m for m in stage_metrics(pb, stage) if m.source == name)
    request = MeasureRequest(
        metrics=metrics,
        start=recent_start,
        end=now,
        control=look.control,
        canary=look.canary,
        dimensions=tuple(pb.segments.dimensions),
        max_segments=pb.analysis.max_segments,
        never_pooled=pb.segments.never_pooled(),
        control_window=baseline,
    )
    measurement = source.measure(request)
    judged = gate.evaluate(
        pb,
        look.stage_index,
        {name: measurement},
        {},
        stage_started=recent_start,
        now=now,
        consecutive_errors=0,
        check_ratio=False,
    )
    rows = judged.metrics
    reasons: list[str] = []
    for r in rows:
        if r.verdict == "fail" and r.vetoes:
            metric = pb.metric(r.name)
            where = (
                ""
                if r.segment is None
                else " in " + ", ".join(f"{k}={v}" for k, v in r.segment.items())
            )
            rel = metric.margin.relative is not None
            reasons.append(
                f"{r.title}{where} drifted: {fmt.value(r.control['value'], r.kind)} before the "
                f"rollout → {fmt.value(r.canary['value'], r.kind)} now "
                f"({fmt.delta(r.estimate, r.kind, rel)} against a "
                f"{fmt.delta(r.margin, r.kind, rel)} margin; adjusted p "
                f"{fmt.p_is(r.p_adjusted)})"
            )
    for dimension, mix in sorted(source.segment_mix(request).items()):
        baseline_rows = sum(b for _, b, _ in mix)
        fresh = drift.new_values(mix) if baseline_rows else []
        for v in fresh:
            reasons.append(
                f"new {dimension} value {v.value!r}: {v.recent_share:.1%} of recent traffic "
                f"({v.recent_count:,} requests), {v.baseline_count} before the rollout — "
                "traffic the change was never judged on"
            )
            rows.append(
                row(
                    "new_segment_value",
                    f"new {dimension} values",
                    "drift",
                    "fail",
                    f"{v.recent_share:.1%} of recent traffic; {v.baseline_count} rows before",
                    kind="count",
                    segment={dimension: v.value},
                    control=(baseline_rows, float(v.baseline_count)),
                    canary=(v.recent_count, float(v.recent_count)),
                )
            )
        shift = drift.mix_shift(mix)
        movers = "; ".join(
            f"{m.value} {m.baseline_share:.1%} → {m.recent_share:.1%}" for m in shift.top_movers[:3]
        )
        rows.append(
            row(
                "segment_mix",
                f"{dimension} mix",
                "drift",
                "inconclusive" if shift.n_baseline == 0 else "pass",
                f"Cramér's V {shift.cramers_v:.3f} ({shift.effect}); largest moves: {movers}",
                kind="mix",
                vetoes=False,
                estimate=shift.cramers_v,
                p_value=shift.p_value,
                control=(shift.n_baseline, None),
                canary=(shift.n_recent, None),
                test="chi-square test of homogeneity, Cramér's V (shown, never deciding)",
            )
        )
    counts = measurement.arm_counts.get(None, {"control": 0, "canary": 0})
    min_samples = stage.min_samples_per_arm or pb.analysis.min_samples_per_arm
    verdict: GateVerdict
    if reasons or judged.trigger_action == "rollback":
        verdict = "fail"
        reasons += [t for t in judged.reasons if t.startswith("trigger ")]
    elif judged.no_data or min(counts.values()) < min_samples:
        verdict = "inconclusive"
        reasons.append(
            f"too little data to watch for drift: {counts['control']:,} requests before the "
            f"rollout, {counts['canary']:,} recent (need {min_samples:,} each)"
        )
    else:
        verdict = "pass"
        reasons.append(
            f"no drift: {len(metrics)} metrics and their segments within their margins of "
            f"the pre-rollout baseline ({counts['control']:,} requests before, "
            f"{counts['canary']:,} in the last {format_duration(now - recent_start)}); no new "
            "segment values"
        )
    out = result(
        look,
        verdict=verdict,
        reasons=reasons,
        rows=rows,
        notes=judged.notes,
        no_data=judged.no_data,
        window={
            "start": recent_start.isoformat(),
            "end": now.isoformat(),
            "baseline_start": baseline[0].isoformat(),
            "baseline_end": baseline[1].isoformat(),
        },
    )
    out.triggers, out.trigger_action, out.bad_rows = (
        judged.triggers,
        judged.trigger_action,
        judged.bad_rows,
    )
    out.max_duration_passed = bool(stage.duration) and now - look.started >= parse_duration(
        stage.duration or "0s"
    )
    return out


def judge(look: StageLook) -> Judged:
    return Judged(_gate(look))
