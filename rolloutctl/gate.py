"""The gate: turn measurements into a verdict for one stage at one moment.

Pure: it takes the playbook, the stage, the measurements and the clock readings, and
returns a GateResult. It never touches flags or state; the engine acts on the verdict.

Rules (DESIGN.md §5):
- each deciding metric is compared overall; critical metrics also in every critical segment,
  and in every segment when `per_segment: true` (safety vetoes from one segment);
- alpha is split over all vetoing comparisons (Bonferroni), so the chance of any false
  rollback over the stage stays under the playbook's alpha;
- FAIL as soon as any vetoing comparison fails, an absolute limit is exceeded, or a
  rollback trigger fires; PASS only when every deciding metric has shown non-inferiority
  overall, no vetoing comparison fails, the sample split is as configured, and the stage's
  minimum duration and samples are met; INCONCLUSIVE otherwise;
- missing data never passes; a measurement error holds, and becomes ERROR after the
  consecutive-error limit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from rolloutctl import formatting
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.metrics.base import Measurement, SegmentKey
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric, Playbook, Stage
from rolloutctl.stats import compare, multiple, rank, sequential
from rolloutctl.stats.compare import Comparison, MarginSpec
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat

GateVerdict = Literal["pass", "fail", "inconclusive", "error"]


@dataclass
class MetricResult:
    name: str
    title: str
    group: str
    kind: str
    segment: dict[str, str] | None
    critical: bool
    advisory: bool
    vetoes: bool  # does a failure here fail the gate?
    control: dict[str, Any]  # {n, value}
    canary: dict[str, Any]
    estimate: float | None
    ci: list[float | None]
    margin: float
    margin_kind: str  # absolute | relative
    worse: str
    verdict: str  # pass | fail | inconclusive | error
    note: str = ""
    limit: float | None = None
    alpha: float | None = None  # of the harmful side: fail (split over the vetoing comparisons)
    alpha_pass: float | None = None  # of the safe side: pass (an intersection-union test)
    query: str | None = None
    p_value: float | None = None  # always-valid one-sided p of "not worse than the margin"
    p_adjusted: float | None = None  # Holm for vetoing comparisons, BH for diagnostic ones
    test: str = ""
    # Kayenta's view, reported beside the decision and never deciding: Mann-Whitney and the
    # Hodges-Lehmann shift (quantile metrics, whose histograms carry the distributions).
    rank: dict[str, float] | None = None


@dataclass
class GateResult:
    rollout: str
    stage: str
    stage_index: int
    verdict: GateVerdict
    reasons: list[str]
    srm: dict[str, Any]
    metrics: list[MetricResult]
    triggers: list[dict[str, Any]]
    window: dict[str, str]
    evaluated_at: str
    elapsed: str
    min_duration_met: bool
    max_duration_passed: bool
    no_data: bool
    errors: int  # deciding metrics without a measurement this time
    trigger_action: str | None = None  # rollback | pause when a trigger fired
    tuned_at: int = 0  # total requests at which the sequential mixture is tightest
    bad_rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decision: str | None = None  # filled by the engine
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return json_safe(data)


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def stage_metrics(playbook: Playbook, stage: Stage) -> list[Metric]:
    """The metrics a stage measures. An A/B stage measures them all: its `metrics:` names the
    product metrics compared at the end, and every other metric keeps guarding."""
    if stage.metrics is None or stage.kind == "ab":
        return list(playbook.metrics)
    return [playbook.metric(name) for name in stage.metrics]


def ab_metrics(playbook: Playbook, stage: Stage) -> set[str]:
    """An A/B stage's product metrics (its `metrics:`, else the product group); empty for
    other stages. With `method: fixed` they are compared once, at the planned end, with
    fixed-horizon tests; the other metrics keep their sequential guard throughout."""
    if stage.kind != "ab":
        return set()
    if stage.metrics is not None:
        return set(stage.metrics)
    return {m.name for m in playbook.metrics if m.group == "product"}


def _value_and_n(metric: Metric, stat: Stat) -> tuple[int, float]:
    if isinstance(stat, Proportion):
        return stat.n, stat.rate
    if isinstance(stat, Moments):
        return stat.n, stat.mean
    if isinstance(stat, RatioMoments):
        return stat.n, stat.ratio
    assert isinstance(stat, Histogram)
    return stat.n, stat.quantile(metric.q or 0.5) if stat.n else math.nan


def compare_metric(
    metric: Metric,
    control: Stat,
    canary: Stat,
    alpha: float,
    method: compare.Method,
    rho2: sequential.Rho2,
    alpha_pass: float | None = None,
) -> Comparison:
    margin = MarginSpec(
        metric.margin.relative
        if metric.margin.relative is not None
        else metric.margin.absolute or 0.0,
        metric.margin.relative is not None,
    )
    args = (margin, metric.worse, alpha, method, rho2, alpha_pass)
    if isinstance(control, Proportion) and isinstance(canary, Proportion):
        if metric.exact:
            return compare.compare_rare_events(control, canary, *args)
        return compare.compare_proportions(control, canary, *args)
    if isinstance(control, Moments) and isinstance(canary, Moments):
        return compare.compare_means(control, canary, *args)
    if isinstance(control, RatioMoments) and isinstance(canary, RatioMoments):
        return compare.compare_ratios(control, canary, *args)
    assert isinstance(control, Histogram) and isinstance(canary, Histogram)
    return compare.compare_quantiles(control, canary, metric.q or 0.5, *args)


FALLBACK_SAMPLES_PER_ARM = 20_000  # tuning before any traffic, or for a stage with no duration


def _share(stage: Stage) -> float:
    traffic = stage.traffic if stage.traffic is not None else 0.0
    return min(traffic, 100 - traffic) / 100 if 0 < traffic < 100 else 0.5


def stage_horizon(stage: Stage) -> timedelta | None:
    """When the stage can first end: its minimum duration, else its maximum, else an A/B
    stage's planned duration."""
    for text in (stage.min_duration, stage.max_duration, stage.duration):
        if text:
            return parse_duration(text)
    return None


def tuned_total(
    playbook: Playbook, stage_index: int, requests_per_hour: float | None = None
) -> int:
    """Total requests (both arms) at which the stage's sequential mixture is tightest.

    Written in the playbook (`expected_samples_per_arm`, per arm), or else the traffic the
    stage sees by its horizon at the request rate observed so far, rounded to a power of two
    so that the mixture stays the same from look to look while traffic is steady. It depends
    on how many requests arrive, never on their outcomes."""
    stage = playbook.stages[stage_index]
    share = _share(stage)
    written = stage.expected_samples_per_arm or playbook.analysis.expected_samples_per_arm
    if written:
        return int(written / share)
    horizon = stage_horizon(stage)
    if horizon is None or not requests_per_hour or requests_per_hour <= 0:
        return int(FALLBACK_SAMPLES_PER_ARM / share)
    projected = requests_per_hour * horizon.total_seconds() / 3600
    return max(int(2 ** round(math.log2(max(projected, 2.0)))), 100)


def stage_rho2(playbook: Playbook, stage_index: int, tuned_at: int) -> sequential.Rho2:
    """The stage's mixture tuning for a total of `tuned_at` requests (`tuned_total`), for the
    alpha a comparison gets when split over the planned vetoing comparisons."""
    stage = playbook.stages[stage_index]
    planned = planned_vetoes(playbook, stage_metrics(playbook, stage))
    return sequential.tune_grid(playbook.analysis.alpha / planned, tuned_at)


def planned_vetoes(playbook: Playbook, metrics: list[Metric]) -> int:
    """How many vetoing comparisons the playbook plans (overall deciding metrics, plus
    critical metrics in declared critical segments); tunes the sequential mixture."""
    return max(1, round(sum(_planned_comparisons(playbook, m) for m in metrics)))


def planned_alpha(playbook: Playbook, metrics: list[Metric], metric: Metric) -> float:
    """The alpha a vetoing comparison of `metric` starts with in Holm's weighted procedure,
    over the comparisons the playbook plans."""
    total = sum(m.weight * _planned_comparisons(playbook, m) for m in metrics)
    share = metric.weight / total if total else 1.0
    return min(playbook.analysis.alpha, playbook.analysis.alpha * share)


def _planned_comparisons(playbook: Playbook, metric: Metric) -> int:
    if metric.advisory:
        return 0
    critical_values = sum(len(v) for v in playbook.segments.critical.values())
    return 1 + (critical_values if metric.critical else 0)


def _rank_view(control: Histogram, canary: Histogram) -> dict[str, float]:
    view = rank.mann_whitney(rank.from_histogram(control), rank.from_histogram(canary))
    return {"shift": view.shift, "ci_low": view.ci[0], "ci_high": view.ci[1],
            "p_greater": view.p_greater, "p_less": view.p_less}  # fmt: skip


def _test_name(metric: Metric, method: str) -> str:
    if metric.exact:
        return "exact conditional (rare events)"
    names = {
        "proportion": "difference of proportions",
        "mean": "difference of means",
        "ratio": "ratio of sums (delta method)",
        "quantile": "exceedance of the control's quantile",
    }
    return f"{names[metric.kind]}, {method}"


def _fmt(metric: Metric, value: float | None) -> str:
    return formatting.value(value, metric.kind)


def _fmt_theta(metric: Metric, value: float) -> str:
    return formatting.delta(value, metric.kind, metric.margin.relative is not None)


def _arm_counts(
    measurements: dict[str, Measurement],
) -> tuple[dict[str, int], dict[str, int], str]:
    """Requests per arm over the whole window, and what the sample-ratio check counts
    (distinct units when the source knows them, else requests) with its unit's name."""
    for m in measurements.values():
        if any((m.arm_counts.get(None) or {}).values()):  # a source's zero placeholder hides none
            counts = m.arm_counts[None]
            if m.unit_counts.get(None):
                return counts, m.unit_counts[None], "units"
            return counts, counts, "requests"
    empty = {"control": 0, "canary": 0}
    return empty, empty, "requests"


def evaluate(
    playbook: Playbook,
    stage_index: int,
    measurements: dict[str, Measurement],
    source_errors: dict[str, str],
    *,
    stage_started: datetime,
    now: datetime,
    consecutive_errors: int,
    check_ratio: bool = True,
) -> GateResult:
    """Judge the stage's gate from measurements already taken (pure). `check_ratio=False`
    skips the sample-ratio check, for arms that were not split by the flag (monitor compares
    recent traffic with a baseline window)."""
    stage = playbook.stages[stage_index]
    analysis = playbook.analysis
    method = stage.method or analysis.method
    metrics = stage_metrics(playbook, stage)
    # An A/B stage with a fixed horizon: its product metrics wait for the planned end and
    # are then tested once (fixed); every other metric guards sequentially meanwhile.
    at_end_only = ab_metrics(playbook, stage) if method == "fixed" else set()
    horizon = parse_duration(stage.duration) if at_end_only and stage.duration else None
    at_end = horizon is None or now - stage_started >= horizon
    traffic = stage.traffic if stage.traffic is not None else 0.0
    has_control = traffic < 100
    min_samples = stage.min_samples_per_arm or analysis.min_samples_per_arm
    min_segment = analysis.min_samples_per_segment
    counts, ratio_counts, ratio_unit = _arm_counts(measurements)
    hours = (now - stage_started).total_seconds() / 3600
    tuned_at = tuned_total(playbook, stage_index, sum(counts.values()) / hours if hours else None)
    rho2 = stage_rho2(playbook, stage_index, tuned_at)
    pass_requires = stage.pass_requires or analysis.pass_requires
    elapsed = now - stage_started
    min_duration = parse_duration(stage.min_duration) if stage.min_duration else timedelta(0)
    max_duration = parse_duration(stage.max_duration) if stage.max_duration else None
    critical_segments = {
        (dim, value) for dim, values in playbook.segments.critical.items() for value in values
    }

    reasons: list[str] = []
    notes: list[str] = []
    bad_rows: dict[str, int] = {}
    for m in measurements.values():
        notes.extend(m.notes)
        for k, v in m.bad_rows.items():
            bad_rows[k] = bad_rows.get(k, 0) + v

    # ---- which comparisons veto, so alpha can be split over them
    def vetoes(metric: Metric, segment: SegmentKey) -> bool:
        if metric.advisory or (metric.name in at_end_only and not at_end):
            return False
        if segment is None:
            return True
        return metric.critical and (metric.per_segment or segment in critical_segments)

    planned: list[tuple[Metric, SegmentKey, dict[str, Stat], str | None]] = []
    errors: dict[str, str] = {}
    for metric in metrics:
        found = measurements.get(metric.source)
        if found is None or metric.name in found.errors:
            why = source_errors.get(metric.source) or (
                found.errors[metric.name] if found else "no data"
            )
            errors[metric.name] = why
            continue
        query = found.queries.get(metric.name)
        for (name, segment), arms in found.stats.items():
            if name == metric.name:  # every segment is shown; vetoes() says which decide
                planned.append((metric, segment, arms, query))

    veto_weight = sum(
        metric.weight
        for metric, segment, arms, _ in planned
        if vetoes(metric, segment)
        and min(arms["control"].n if has_control else min_segment, arms["canary"].n) >= min_segment
    )
    # FAIL: alpha split over the vetoing comparisons by their metrics' weights (the bounds
    # shown; Holm decides below). PASS: every deciding metric shown non-inferior at the full
    # alpha, an intersection-union test that needs no split (stats.compare explains why).
    alpha_unit = analysis.alpha / veto_weight if veto_weight else analysis.alpha

    results: list[MetricResult] = []
    judged: list[tuple[MetricResult, Comparison]] = []
    for metric, segment, arms, query in planned:
        control, canary = arms["control"], arms["canary"]
        cn, cv = _value_and_n(metric, control)
        tn, tv = _value_and_n(metric, canary)
        veto = vetoes(metric, segment)
        seg_dict = None if segment is None else {segment[0]: segment[1]}
        margin_value = (
            metric.margin.relative
            if metric.margin.relative is not None
            else metric.margin.absolute or 0.0
        )
        base: dict[str, Any] = {
            "name": metric.name, "title": metric.title or metric.name.replace("_", " "),
            "group": metric.group, "kind": metric.kind, "segment": seg_dict,
            "critical": metric.critical, "advisory": metric.advisory, "vetoes": veto,
            "control": {"n": cn, "value": cv}, "canary": {"n": tn, "value": tv},
            "margin_kind": "relative" if metric.margin.relative is not None else "absolute",
            "worse": metric.worse, "limit": metric.limit, "query": query,
        }  # fmt: skip
        if not has_control:
            results.append(MetricResult(
                **base, estimate=None, ci=[None, None], margin=margin_value,
                verdict="inconclusive", note="no control arm at 100% traffic",
            ))  # fmt: skip
            continue
        if min(cn, tn) < min_segment:
            results.append(MetricResult(
                **base, estimate=None, ci=[None, None],
                margin=margin_value if metric.worse == "higher" else -margin_value,
                verdict="inconclusive",
                note=f"too few samples to judge ({min(cn, tn)} < {min_segment} per arm)",
            ))  # fmt: skip
            continue
        if metric.name in at_end_only and not at_end:
            assert horizon is not None
            results.append(MetricResult(
                **base, estimate=None, ci=[None, None], margin=margin_value,
                verdict="inconclusive", test=_test_name(metric, "fixed"),
                note=f"A/B metric: compared once, at the end of the planned {stage.duration} "
                f"({format_duration(horizon - (now - stage_started))} left)",
            ))  # fmt: skip
            continue
        own_method = method if not at_end_only or metric.name in at_end_only else "sequential"
        alpha = min(alpha_unit * metric.weight, analysis.alpha) if veto else analysis.alpha
        comp = compare_metric(metric, control, canary, alpha, own_method, rho2, analysis.alpha)
        note = comp.note
        if metric.name in at_end_only and comp.ci[0] is not None and comp.ci[1] is not None:
            lo, hi = comp.ci
            better = hi < 0 if metric.worse == "higher" else lo > 0
            if better:
                note = (note + "; " if note else "") + "better than the control (the interval "
                note += "excludes no change)"
        result = MetricResult(
            **base, estimate=comp.estimate, ci=list(comp.ci), margin=comp.margin,
            verdict=comp.verdict, note=note, alpha=alpha, alpha_pass=analysis.alpha,
            p_value=comp.p_fail,
            test=_test_name(metric, own_method),
        )  # fmt: skip
        if segment is None and isinstance(control, Histogram) and isinstance(canary, Histogram):
            result.rank = _rank_view(control, canary)
        results.append(result)
        judged.append((result, comp))

    # ---- across comparisons: Holm over the vetoing ones, BH over the diagnostic segments
    vetoing = [(r, c) for r, c in judged if r.vetoes]
    rejected, adjusted = multiple.holm(
        [c.p_fail for _, c in vetoing],
        analysis.alpha,
        [playbook.metric(r.name).weight for r, _ in vetoing],
    )
    weights = {playbook.metric(r.name).weight for r, _ in vetoing}
    holm_name = "Holm" if len(weights) <= 1 else "Holm (weighted)"
    failing: list[MetricResult] = []
    for (r, _), reject, adj in zip(vetoing, rejected, adjusted, strict=True):
        r.p_adjusted = adj
        if reject:
            r.verdict = "fail"
            failing.append(r)
        elif r.verdict == "fail":
            r.verdict = "inconclusive"
    diagnostic = [(r, c) for r, c in judged if not r.vetoes and r.segment is not None]
    q_values = multiple.benjamini_hochberg([c.p_fail for _, c in diagnostic])
    for (r, _), q in zip(diagnostic, q_values, strict=True):
        r.p_adjusted = q
        if q <= analysis.diagnostic_fdr:
            r.verdict = "fail"  # flagged for the report; vetoes is False, so it never decides
        elif r.verdict == "fail":
            r.verdict = "inconclusive"
    overall_pass = {
        r.name: r.verdict == "pass" for r, _ in judged if r.segment is None and not r.advisory
    }

    # ---- absolute limits on the canary's own value
    limit_breaches: list[str] = []
    for r in results:
        metric = playbook.metric(r.name)
        if r.segment is not None or metric.limit is None or metric.advisory:
            continue
        value = r.canary["value"]
        if r.canary["n"] < min_segment or value is None or not math.isfinite(value):
            continue
        beyond = value > metric.limit if metric.worse == "higher" else value < metric.limit
        if beyond:
            limit_breaches.append(
                f"{r.title}: canary {_fmt(metric, value)} is beyond the limit "
                f"{_fmt(metric, metric.limit)}"
            )

    # ---- triggers
    overall = {(r.name): r for r in results if r.segment is None}

    def lookup(name: str) -> Any:
        arm, _, metric_name = name.partition(".")
        r = overall.get(metric_name)
        if r is None or arm not in ("canary", "control"):
            return None
        side = r.canary if arm == "canary" else r.control
        if side["n"] < min_segment:
            return None
        value = side["value"]
        return value if value is not None and math.isfinite(value) else None

    triggers: list[dict[str, Any]] = []
    trigger_action: str | None = None
    for trig in playbook.triggers:
        fired = expr.evaluate(expr.parse(trig.when), lookup)
        triggers.append(
            {"name": trig.name, "when": trig.when, "action": trig.action,
             "fired": bool(fired), "evaluated": fired is not None}
        )  # fmt: skip
        if fired:
            reasons.append(f"trigger {trig.name!r} fired ({trig.when}): {trig.action}")
            if trig.action == "rollback" or trigger_action is None:
                trigger_action = trig.action

    # ---- sample ratio
    srm_p = (
        compare.srm_p_value(ratio_counts["control"], ratio_counts["canary"], traffic)
        if has_control
        else 1.0
    )
    srm_ok = srm_p >= analysis.srm_p or not check_ratio
    srm = {
        "p_value": srm_p, "ok": srm_ok, "counted": ratio_unit,
        "control_n": ratio_counts["control"], "canary_n": ratio_counts["canary"],
        "expected_canary_percent": traffic,
        "observed_canary_percent": 100 * ratio_counts["canary"] / max(1, sum(ratio_counts.values())),
    }  # fmt: skip

    # ---- the verdict
    no_data = counts["canary"] == 0 or (has_control and counts["control"] == 0)
    deciding = [m for m in metrics if not m.advisory]
    deciding_errors = [name for name in errors if not playbook.metric(name).advisory]
    verdict: GateVerdict
    if failing or limit_breaches or trigger_action == "rollback":
        verdict = "fail"
        for r in failing:
            metric = playbook.metric(r.name)
            where = (
                ""
                if r.segment is None
                else " in " + ", ".join(f"{k}={v}" for k, v in r.segment.items())
            )
            reasons.insert(0, (
                f"{r.title}{where} is worse than allowed: control {_fmt(metric, r.control['value'])}"
                f" → canary {_fmt(metric, r.canary['value'])} ({_fmt_theta(metric, r.estimate or 0)}"
                f" against a {_fmt_theta(metric, r.margin)} margin; always-valid p = "
                f"{r.p_value:.2g}, {r.p_adjusted:.2g} after {holm_name} over {len(vetoing)} vetoing "
                f"comparisons ≤ α = {analysis.alpha:g})"
            ))  # fmt: skip
        reasons.extend(limit_breaches)
    elif deciding_errors and consecutive_errors + 1 >= analysis.consecutive_error_limit:
        verdict = "error"
        reasons.append(
            f"no measurement for {', '.join(deciding_errors)} "
            f"{consecutive_errors + 1} times in a row: {errors[deciding_errors[0]]}"
        )
    else:
        verdict = "inconclusive"
        waiting: list[str] = []
        if deciding_errors:
            waiting.append(
                f"no measurement for {', '.join(deciding_errors)} "
                f"({consecutive_errors + 1} of {analysis.consecutive_error_limit} before error):"
                f" {errors[deciding_errors[0]]}"
            )
        if no_data:
            waiting.append(
                "no requests from one of the arms in this window yet (missing data never passes)"
            )
        if not srm_ok:
            waiting.append(
                f"sample ratio mismatch: canary has {srm['observed_canary_percent']:.2f}% of "
                f"{ratio_unit}, configured {traffic:g}% (p = {srm_p:.2g} < {analysis.srm_p:g}); "
                "assignment or logging is broken, so no comparison is trusted"
            )
        if elapsed < min_duration:
            waiting.append(
                f"minimum duration not reached ({format_duration(elapsed)} of {stage.min_duration})"
            )
        if not at_end:
            waiting.append(
                f"A/B test runs its planned {stage.duration} ({format_duration(elapsed)} so far): "
                f"{', '.join(sorted(at_end_only))} are compared once, at the end; the other "
                "metrics guard throughout"
            )
        if has_control and min(counts.values()) < min_samples:
            waiting.append(
                f"minimum samples not reached (control {counts['control']}, canary "
                f"{counts['canary']}, need {min_samples} per arm)"
            )
        undecided = [
            m.name
            for m in deciding
            if has_control
            and pass_requires == "non_inferiority"
            and not overall_pass.get(m.name)
            and (at_end or m.name not in at_end_only)
        ]
        if undecided and not no_data:
            waiting.append("non-inferiority not yet shown for " + ", ".join(undecided))
        if trigger_action == "pause":
            waiting.append("a pause trigger fired")
        if waiting:
            reasons.extend(waiting)
        else:
            verdict = "pass"
            reasons.append(
                "every deciding metric is within its margin"
                + ("" if has_control else " (100%: judged on limits and triggers)")
                + f" after {format_duration(elapsed)} with {counts['canary']} canary requests"
            )

    return GateResult(
        rollout=playbook.rollout, stage=stage.name, stage_index=stage_index, verdict=verdict,
        reasons=reasons, srm=srm, metrics=results, triggers=triggers,
        window={"start": stage_started.isoformat(), "end": now.isoformat()},
        evaluated_at=now.isoformat(), elapsed=format_duration(elapsed),
        min_duration_met=elapsed >= min_duration,
        max_duration_passed=max_duration is not None and elapsed >= max_duration,
        no_data=no_data, errors=len(deciding_errors), trigger_action=trigger_action,
        bad_rows=bad_rows, notes=notes, tuned_at=tuned_at,
    )  # fmt: skip


def decide(playbook: Playbook, stage_index: int, result: GateResult) -> str:
    """What a verdict means for the rollout: rollback, pause, advance, complete or hold."""
    stage = playbook.stages[stage_index]
    if stage.kind == "monitor":  # watches and alerts; only a rollback trigger moves the flag
        if result.trigger_action == "rollback":
            return "rollback"
        done = result.verdict == "pass" and result.max_duration_passed
        return "complete" if done and stage_index + 1 >= len(playbook.stages) else "hold"
    if result.verdict == "fail":
        return "rollback"
    if result.trigger_action == "pause":
        return "pause"
    if result.verdict == "pass":
        if stage_index + 1 >= len(playbook.stages):
            return "complete"
        if playbook.stages[stage_index + 1].approval == "required":
            return "pause"
        return "advance"
    if result.no_data and playbook.analysis.on_no_data != "hold" and result.min_duration_met:
        return playbook.analysis.on_no_data
    if result.max_duration_passed and result.verdict == "inconclusive":
        return stage.on_inconclusive_at_max
    return "hold"
