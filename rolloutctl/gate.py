"""The gate: turn measurements into a verdict for one stage at one moment.

Pure: it takes the playbook, the stage, the measurements and the clock readings, and
returns a GateResult. It never touches flags or state; the engine acts on the verdict.

Rules (the README's "How the gate decides"):
- each deciding metric is compared overall; critical metrics also in every critical segment,
  and in every segment when `per_segment: true` (safety vetoes from one segment);
- FAIL: alpha is split over all vetoing comparisons (Holm, weighted by each metric's
  `weight`), so the chance of any false rollback over the stage stays under the playbook's
  alpha; PASS: every deciding metric is shown non-inferior at the full alpha (an
  intersection-union test, so the chance of passing a canary worse on any one metric stays
  under alpha too);
- FAIL as soon as any vetoing comparison fails, an absolute limit is exceeded, or a
  rollback trigger fires; PASS only when every deciding metric has shown non-inferiority
  overall, no vetoing comparison fails, the sample split is as configured, and the stage's
  minimum duration and samples are met; INCONCLUSIVE otherwise;
- missing data never passes; a measurement error holds, and becomes ERROR after the
  consecutive-error limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rolloutctl import formatting
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.metrics.base import Measurement, MetricError, SegmentKey
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric, Playbook, Stage
from rolloutctl.results import (
    ErrorDetail,
    GateResult,
    GateVerdict,
    MetricResult,
    RankView,
    SampleRatio,
    TriggerResult,
)
from rolloutctl.stats import compare, multiple, sequential
from rolloutctl.stats.compare import Comparison, MarginSpec
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat


def stage_metrics(playbook: Playbook, stage: Stage) -> list[Metric]:
    """The metrics a stage measures. An A/B stage measures them all: its `metrics:` names the
    product metrics compared at the end, and every other metric keeps guarding.

    Offline eval results are never live traffic: a metric on an `evalfile` source is judged
    by the offline_eval stage that reads its source and by no other stage (no traffic stage
    compares it, counts its samples for the sample-ratio check, or waits for it), and an
    offline_eval stage judges only its source's metrics (validate flags the rest)."""
    if stage.metrics is None or stage.kind == "ab":
        chosen = list(playbook.metrics)
    else:
        chosen = [playbook.metric(name) for name in stage.metrics]
    if stage.kind == "offline_eval":
        return [m for m in chosen if m.source == stage.source]
    return [m for m in chosen if playbook.sources[m.source].kind != "evalfile"]


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


def _rank_view(control: Histogram, canary: Histogram) -> RankView:
    from rolloutctl.stats import rank  # numpy: loaded by the quantile metrics that show it

    view = rank.mann_whitney(rank.from_histogram(control), rank.from_histogram(canary))
    return {
        "shift": view.shift,
        "ci_low": view.ci[0],
        "ci_high": view.ci[1],
        "p_greater": view.p_greater,
        "p_less": view.p_less,
    }


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


Planned = tuple[Metric, SegmentKey, dict[str, Stat], str | None]


@dataclass(frozen=True)
class _Look:
    """What one evaluation of a stage's gate knows before comparing anything."""

    playbook: Playbook
    stage: Stage
    stage_index: int
    method: compare.Method
    at_end_only: set[str]  # A/B metrics compared once, at the planned end
    horizon: timedelta | None  # the A/B stage's planned duration
    at_end: bool
    has_control: bool
    min_samples: int
    min_segment: int
    stage_started: datetime
    now: datetime
    tuned_at: int  # total requests the mixture is tuned for (`tuned_total`)
    rho2: sequential.Rho2
    critical_segments: set[tuple[str, str]]

    @property
    def elapsed(self) -> timedelta:
        return self.now - self.stage_started

    def vetoes(self, metric: Metric, segment: SegmentKey) -> bool:
        """Does a failure of this comparison fail the gate?"""
        if metric.advisory or (metric.name in self.at_end_only and not self.at_end):
            return False
        if segment is None:
            return True
        return metric.critical and (metric.per_segment or segment in self.critical_segments)

    def judged(self, arms: dict[str, Stat]) -> bool:
        """Enough samples in both arms to compare."""
        control = arms["control"].n if self.has_control else self.min_segment
        return min(control, arms["canary"].n) >= self.min_segment


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
    recent traffic with a baseline window).

    The steps: measure (what each metric has, per segment), compare (each comparison at its
    alpha), adjust (Holm over the vetoing comparisons, BH over the diagnostic ones), veto
    (absolute limits and triggers), check the sample ratio, decide (the verdict and its
    reasons)."""
    counts, ratio_counts, ratio_unit = _arm_counts(measurements)
    look = _look(playbook, stage_index, stage_started, now, sum(counts.values()))
    planned, errors, error_rows = _planned(look, measurements, source_errors)
    results, judged = _compare_all(look, planned)
    results[:0] = error_rows
    failing, n_vetoing, holm_name = _adjust(look, judged)
    limit_breaches = _limit_breaches(look, results)
    triggers, trigger_action, reasons = _triggers(look, results)
    srm = _sample_ratio(look, ratio_counts, ratio_unit, check_ratio)
    for trig in triggers:  # a trigger that cannot be evaluated is a measurement error
        if "error" in trig:
            errors[f"trigger {trig['name']}"] = f"cannot evaluate {trig['when']!r}: {trig['error']}"
    deciding_errors = [
        name for name in errors if name.startswith("trigger ") or not playbook.metric(name).advisory
    ]
    no_data = counts["canary"] == 0 or (look.has_control and counts["control"] == 0)
    verdict: GateVerdict
    if failing or limit_breaches or trigger_action == "rollback":
        verdict = "fail"
        reasons[:0] = [_failure_reason(look, r, n_vetoing, holm_name) for r in reversed(failing)]
        reasons.extend(limit_breaches)
    elif deciding_errors and consecutive_errors + 1 >= playbook.analysis.consecutive_error_limit:
        verdict = "error"
        reasons.append(
            f"no measurement {consecutive_errors + 1} times in a row for "
            + _each_error(deciding_errors, errors)
        )
    else:
        overall_pass = {
            r.name: r.verdict == "pass" for r, _ in judged if r.segment is None and not r.advisory
        }
        unmeasured = [] if no_data else _unmeasured(look, results, errors)
        waiting = _waiting(
            look,
            counts,
            srm,
            errors,
            deciding_errors,
            consecutive_errors,
            no_data,
            overall_pass,
            trigger_action,
        )
        waiting[len(deciding_errors) > 0 : len(deciding_errors) > 0] = unmeasured
        reasons.extend(waiting)
        verdict = "inconclusive" if waiting else "pass"
        if not waiting:
            reasons.append(
                "every deciding metric is within its margin"
                + ("" if look.has_control else " (100%: judged on limits and triggers)")
                + f" after {format_duration(look.elapsed)} with {counts['canary']} canary requests"
            )
    notes = [note for m in measurements.values() for note in m.notes]
    bad_rows: dict[str, int] = {}
    for m in measurements.values():
        for k, v in m.bad_rows.items():
            bad_rows[k] = bad_rows.get(k, 0) + v
    stage = look.stage
    max_duration = parse_duration(stage.max_duration) if stage.max_duration else None
    min_duration = parse_duration(stage.min_duration) if stage.min_duration else timedelta(0)
    return GateResult(
        rollout=playbook.rollout,
        stage=stage.name,
        stage_index=stage_index,
        verdict=verdict,
        reasons=reasons,
        srm=srm,
        metrics=results,
        triggers=triggers,
        window={"start": stage_started.isoformat(), "end": now.isoformat()},
        evaluated_at=now.isoformat(),
        elapsed=format_duration(look.elapsed),
        min_duration_met=look.elapsed >= min_duration,
        max_duration_passed=max_duration is not None and look.elapsed >= max_duration,
        no_data=no_data,
        errors=len(deciding_errors),
        trigger_action=trigger_action,
        bad_rows=bad_rows,
        notes=notes,
        tuned_at=look.tuned_at,
    )


def _look(
    playbook: Playbook, stage_index: int, stage_started: datetime, now: datetime, requests: int
) -> _Look:
    stage = playbook.stages[stage_index]
    analysis = playbook.analysis
    method = stage.method or analysis.method
    # An A/B stage with a fixed horizon: its product metrics wait for the planned end and
    # are then tested once (fixed); every other metric guards sequentially meanwhile.
    at_end_only = ab_metrics(playbook, stage) if method == "fixed" else set()
    horizon = parse_duration(stage.duration) if at_end_only and stage.duration else None
    traffic = stage.traffic if stage.traffic is not None else 0.0
    hours = (now - stage_started).total_seconds() / 3600
    tuned_at = tuned_total(playbook, stage_index, requests / hours if hours else None)
    return _Look(
        playbook=playbook,
        stage=stage,
        stage_index=stage_index,
        method=method,
        at_end_only=at_end_only,
        horizon=horizon,
        at_end=horizon is None or now - stage_started >= horizon,
        has_control=traffic < 100,
        min_samples=stage.min_samples_per_arm or analysis.min_samples_per_arm,
        min_segment=analysis.min_samples_per_segment,
        stage_started=stage_started,
        now=now,
        tuned_at=tuned_at,
        rho2=stage_rho2(playbook, stage_index, tuned_at),
        critical_segments={
            (dim, value) for dim, values in playbook.segments.critical.items() for value in values
        },
    )


def _planned(
    look: _Look, measurements: dict[str, Measurement], source_errors: dict[str, str]
) -> tuple[list[Planned], dict[str, str], list[MetricResult]]:
    """Measure: every (metric, segment) with its arms' statistics; and each metric that has
    none, with its own error (what went wrong, and the query whose answer it was)."""
    planned: list[Planned] = []
    errors: dict[str, str] = {}
    rows: list[MetricResult] = []
    for metric in stage_metrics(look.playbook, look.stage):
        found = measurements.get(metric.source)
        error = None if found is None else found.error_for(metric.name)
        if found is None or error is not None:
            if error is None:
                error = MetricError(source_errors.get(metric.source) or "no data")
            query = error.query or (found.queries.get(metric.name) if found else None)
            errors[metric.name] = error.message
            rows.append(_error_row(look, metric, error, query))
            continue
        query = found.queries.get(metric.name)
        mine = [
            (segment, arms) for (name, segment), arms in found.stats.items() if name == metric.name
        ]
        order = _segment_order(look.playbook.segments.dimensions)
        for segment, arms in sorted(mine, key=lambda item: order(item[0])):
            planned.append((metric, segment, arms, query))  # every segment is shown
    return planned, errors, rows


def _segment_order(dimensions: list[str]) -> Callable[[SegmentKey], tuple[int, int, str]]:
    """Rows in a stable order, whatever order a source answered in: overall first, then the
    playbook's dimensions in its order, each by value."""

    def key(segment: SegmentKey) -> tuple[int, int, str]:
        if segment is None:
            return (0, 0, "")
        dim, value = segment
        return (1, dimensions.index(dim) if dim in dimensions else len(dimensions), value)

    return key


def _error_row(look: _Look, metric: Metric, error: MetricError, query: str | None) -> MetricResult:
    margin = (
        metric.margin.relative if metric.margin.relative is not None else metric.margin.absolute
    )
    return MetricResult(
        name=metric.name,
        title=metric.title or metric.name.replace("_", " "),
        group=metric.group,
        kind=metric.kind,
        segment=None,
        critical=metric.critical,
        advisory=metric.advisory,
        vetoes=look.vetoes(metric, None),
        control={"n": 0, "value": None},
        canary={"n": 0, "value": None},
        estimate=None,
        ci=[None, None],
        margin=margin or 0.0,
        margin_kind="relative" if metric.margin.relative is not None else "absolute",
        worse=metric.worse,
        verdict="error",
        note=f"no measurement: {error.message}",
        limit=metric.limit,
        query=query,
        error=ErrorDetail(message=error.message, query=query, error_type=error.error_type),
    )


def _compare_all(
    look: _Look, planned: list[Planned]
) -> tuple[list[MetricResult], list[tuple[MetricResult, Comparison]]]:
    """Compare: each comparison at its own alpha. FAIL: alpha split over the vetoing
    comparisons by their metrics' weights (the bounds shown; Holm decides in `_adjust`).
    PASS: every deciding metric shown non-inferior at the full alpha, an intersection-union
    test that needs no split (stats.compare explains why)."""
    alpha = look.playbook.analysis.alpha
    veto_weight = sum(
        metric.weight
        for metric, segment, arms, _ in planned
        if look.vetoes(metric, segment) and look.judged(arms)
    )
    alpha_unit = alpha / veto_weight if veto_weight else alpha
    results: list[MetricResult] = []
    judged: list[tuple[MetricResult, Comparison]] = []
    for metric, segment, arms, query in planned:
        veto = look.vetoes(metric, segment)
        own_alpha = min(alpha_unit * metric.weight, alpha) if veto else alpha
        result, comp = _compare_one(look, metric, segment, arms, query, veto, own_alpha)
        results.append(result)
        if comp is not None:
            judged.append((result, comp))
    return results, judged


def _compare_one(
    look: _Look,
    metric: Metric,
    segment: SegmentKey,
    arms: dict[str, Stat],
    query: str | None,
    veto: bool,
    alpha: float,
) -> tuple[MetricResult, Comparison | None]:
    control, canary = arms["control"], arms["canary"]
    cn, cv = _value_and_n(metric, control)
    tn, tv = _value_and_n(metric, canary)
    margin_value = (
        metric.margin.relative if metric.margin.relative is not None else metric.margin.absolute
    ) or 0.0
    base: dict[str, Any] = {
        "name": metric.name,
        "title": metric.title or metric.name.replace("_", " "),
        "group": metric.group,
        "kind": metric.kind,
        "segment": None if segment is None else {segment[0]: segment[1]},
        "critical": metric.critical,
        "advisory": metric.advisory,
        "vetoes": veto,
        "control": {"n": cn, "value": cv},
        "canary": {"n": tn, "value": tv},
        "margin_kind": "relative" if metric.margin.relative is not None else "absolute",
        "worse": metric.worse,
        "limit": metric.limit,
        "query": query,
    }
    if not look.has_control:
        return MetricResult(
            **base,
            estimate=None,
            ci=[None, None],
            margin=margin_value,
            verdict="inconclusive",
            note="no control arm at 100% traffic",
        ), None
    if min(cn, tn) < look.min_segment:
        return MetricResult(
            **base,
            estimate=None,
            ci=[None, None],
            margin=margin_value if metric.worse == "higher" else -margin_value,
            verdict="inconclusive",
            note=f"too few samples to judge ({min(cn, tn)} < {look.min_segment} per arm)",
        ), None
    if metric.name in look.at_end_only and not look.at_end:
        assert look.horizon is not None
        return MetricResult(
            **base,
            estimate=None,
            ci=[None, None],
            margin=margin_value,
            verdict="inconclusive",
            test=_test_name(metric, "fixed"),
            note=f"A/B metric: compared once, at the end of the planned {look.stage.duration} "
            f"({format_duration(look.horizon - look.elapsed)} left)",
        ), None
    own_method = (
        look.method if not look.at_end_only or metric.name in look.at_end_only else "sequential"
    )
    alpha_pass = look.playbook.analysis.alpha
    comp = compare_metric(metric, control, canary, alpha, own_method, look.rho2, alpha_pass)
    note = comp.note
    if metric.name in look.at_end_only and comp.ci[0] is not None and comp.ci[1] is not None:
        lo, hi = comp.ci
        if hi < 0 if metric.worse == "higher" else lo > 0:
            note = (note + "; " if note else "") + "better than the control (the interval "
            note += "excludes no change)"
    result = MetricResult(
        **base,
        estimate=comp.estimate,
        ci=list(comp.ci),
        margin=comp.margin,
        verdict=comp.verdict,
        note=note,
        alpha=alpha,
        alpha_pass=alpha_pass,
        p_value=comp.p_fail,
        test=_test_name(metric, own_method),
    )
    if segment is None and isinstance(control, Histogram) and isinstance(canary, Histogram):
        result.rank = _rank_view(control, canary)
    return result, comp


def _adjust(
    look: _Look, judged: list[tuple[MetricResult, Comparison]]
) -> tuple[list[MetricResult], int, str]:
    """Adjust: Holm (weighted by the metrics' weights) over the vetoing comparisons, which
    decides FAIL; Benjamini-Hochberg over the diagnostic segments, which only flags. Returns
    the failing comparisons, how many vetoed, and the procedure's name."""
    analysis = look.playbook.analysis
    vetoing = [(r, c) for r, c in judged if r.vetoes]
    weights = [look.playbook.metric(r.name).weight for r, _ in vetoing]
    rejected, adjusted = multiple.holm([c.p_fail for _, c in vetoing], analysis.alpha, weights)
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
    holm_name = "Holm" if len(set(weights)) <= 1 else "Holm (weighted)"
    return failing, len(vetoing), holm_name


def _limit_breaches(look: _Look, results: list[MetricResult]) -> list[str]:
    """Veto: absolute limits on the canary's own value."""
    breaches: list[str] = []
    for r in results:
        metric = look.playbook.metric(r.name)
        if r.segment is not None or metric.limit is None or metric.advisory:
            continue
        value = r.canary["value"]
        if r.canary["n"] < look.min_segment or value is None or not math.isfinite(value):
            continue
        beyond = value > metric.limit if metric.worse == "higher" else value < metric.limit
        if beyond:
            breaches.append(
                f"{r.title}: canary {_fmt(metric, value)} is beyond the limit "
                f"{_fmt(metric, metric.limit)}"
            )
    return breaches


def _triggers(
    look: _Look, results: list[MetricResult]
) -> tuple[list[TriggerResult], str | None, list[str]]:
    """Veto: the playbook's triggers on the overall values; the strongest action that fired
    (rollback over pause) and a reason per trigger that fired."""
    overall = {r.name: r for r in results if r.segment is None}

    def lookup(name: str) -> Any:
        arm, _, metric_name = name.partition(".")
        r = overall.get(metric_name)
        if r is None or arm not in ("canary", "control"):
            return None
        side = r.canary if arm == "canary" else r.control
        if side["n"] < look.min_segment:
            return None
        value = side["value"]
        return value if value is not None and math.isfinite(value) else None

    triggers: list[TriggerResult] = []
    action: str | None = None
    reasons: list[str] = []
    for trig in look.playbook.triggers:
        try:
            fired = expr.evaluate(expr.parse(trig.when), lookup)
            problem = None
        except (TypeError, ValueError, ArithmeticError, expr.ExprError) as exc:
            fired, problem = None, f"{type(exc).__name__}: {exc}"
        result = TriggerResult(
            name=trig.name,
            when=trig.when,
            action=trig.action,
            fired=bool(fired),
            evaluated=fired is not None,
        )
        if problem:
            result["error"] = problem
        triggers.append(result)
        if fired:
            reasons.append(f"trigger {trig.name!r} fired ({trig.when}): {trig.action}")
            if trig.action == "rollback" or action is None:
                action = trig.action
    return triggers, action, reasons


def _sample_ratio(
    look: _Look, ratio_counts: dict[str, int], ratio_unit: str, check_ratio: bool
) -> SampleRatio:
    """The sample-ratio check: chi-square of the counted units per arm against the split."""
    traffic = look.stage.traffic if look.stage.traffic is not None else 0.0
    srm_p = (
        compare.srm_p_value(ratio_counts["control"], ratio_counts["canary"], traffic)
        if look.has_control
        else 1.0
    )
    return {
        "p_value": srm_p,
        "ok": srm_p >= look.playbook.analysis.srm_p or not check_ratio,
        "counted": ratio_unit,
        "control_n": ratio_counts["control"],
        "canary_n": ratio_counts["canary"],
        "expected_canary_percent": traffic,
        "observed_canary_percent": 100
        * ratio_counts["canary"]
        / max(1, sum(ratio_counts.values())),
    }


def _failure_reason(look: _Look, r: MetricResult, n_vetoing: int, holm_name: str) -> str:
    metric = look.playbook.metric(r.name)
    where = (
        "" if r.segment is None else " in " + ", ".join(f"{k}={v}" for k, v in r.segment.items())
    )
    return (
        f"{r.title}{where} is worse than allowed: control {_fmt(metric, r.control['value'])}"
        f" → canary {_fmt(metric, r.canary['value'])} ({_fmt_theta(metric, r.estimate or 0)}"
        f" against a {_fmt_theta(metric, r.margin)} margin; {formatting.p_name(r.test)} = "
        f"{r.p_value:.2g}, {r.p_adjusted:.2g} after {holm_name} over {n_vetoing} vetoing "
        f"comparisons ≤ α = {look.playbook.analysis.alpha:g})"
    )


def _each_error(names: list[str], errors: dict[str, str]) -> str:
    """Each metric with its own error: `a: bad_data: parse error ...; b: empty result ...`."""
    return "; ".join(f"{name}: {errors[name]}" for name in names)


def _unmeasured(look: _Look, results: list[MetricResult], errors: dict[str, str]) -> list[str]:
    """Missing data never passes, whatever `pass_requires` says: a deciding metric without
    enough values on either arm (every value NULL, non-numeric or non-finite, say) holds
    the gate, even when nothing fails."""
    overall = {r.name: r for r in results if r.segment is None}
    holding = []
    for metric in stage_metrics(look.playbook, look.stage):
        if metric.advisory or metric.name in errors:
            continue
        if metric.name in look.at_end_only and not look.at_end:
            continue
        r = overall.get(metric.name)
        control_n = r.control["n"] if r is not None else 0
        canary_n = r.canary["n"] if r is not None else 0
        arms = (control_n, canary_n) if look.has_control else (canary_n,)
        if min(arms) < look.min_segment:
            holding.append(
                f"too few values of {metric.name} to judge (control {control_n}, canary "
                f"{canary_n}; need {look.min_segment} per arm): missing data never passes"
            )
    return holding


def _waiting(
    look: _Look,
    counts: dict[str, int],
    srm: SampleRatio,
    errors: dict[str, str],
    deciding_errors: list[str],
    consecutive_errors: int,
    no_data: bool,
    overall_pass: dict[str, bool],
    trigger_action: str | None,
) -> list[str]:
    """Decide: why a gate with nothing failing cannot pass yet (none: it passes)."""
    analysis = look.playbook.analysis
    stage = look.stage
    waiting: list[str] = []
    if deciding_errors:
        waiting.append(
            f"no measurement ({consecutive_errors + 1} of {analysis.consecutive_error_limit} "
            "before error) for " + _each_error(deciding_errors, errors)
        )
    if no_data:
        waiting.append(
            "no requests from one of the arms in this window yet (missing data never passes)"
        )
    if not srm["ok"]:
        waiting.append(
            f"sample ratio mismatch: canary has {srm['observed_canary_percent']:.2f}% of "
            f"{srm['counted']}, configured {srm['expected_canary_percent']:g}% "
            f"(p = {srm['p_value']:.2g} < {analysis.srm_p:g}); "
            "assignment or logging is broken, so no comparison is trusted"
        )
    min_duration = parse_duration(stage.min_duration) if stage.min_duration else timedelta(0)
    if look.elapsed < min_duration:
        waiting.append(
            f"minimum duration not reached ({format_duration(look.elapsed)} of "
            f"{stage.min_duration})"
        )
    if not look.at_end:
        waiting.append(
            f"A/B test runs its planned {stage.duration} ({format_duration(look.elapsed)} so "
            f"far): {', '.join(sorted(look.at_end_only))} are compared once, at the end; the "
            "other metrics guard throughout"
        )
    if look.has_control and min(counts.values()) < look.min_samples:
        waiting.append(
            f"minimum samples not reached (control {counts['control']}, canary "
            f"{counts['canary']}, need {look.min_samples} per arm)"
        )
    pass_requires = stage.pass_requires or analysis.pass_requires
    undecided = [
        m.name
        for m in stage_metrics(look.playbook, stage)
        if not m.advisory
        and look.has_control
        and pass_requires == "non_inferiority"
        and not overall_pass.get(m.name)
        and (look.at_end or m.name not in look.at_end_only)
    ]
    if undecided and not no_data:
        waiting.append("non-inferiority not yet shown for " + ", ".join(undecided))
    if trigger_action == "pause":
        waiting.append("a pause trigger fired")
    return waiting


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
