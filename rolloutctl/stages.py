"""Gates of the stage kinds that do not compare two arms of live traffic in one window: smoke,
offline_eval, shadow and monitor.

Each judge returns the same GateResult a canary gate does: a verdict, plain-language reasons
and one row per check, so the engine acts, records, reports, notifies and writes JSON,
Markdown and JUnit the same way for every stage. The analyses themselves live with their
data: `smoke.py` (the endpoint), `metrics/evalfile.py` (eval runs), `shadow.py` (paired
requests) and the request-log source with `stats/drift.py` (monitor)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rolloutctl import formatting as fmt
from rolloutctl.durations import format_duration, parse_duration
from rolloutctl.envvars import resolve_env
from rolloutctl.errors import InvalidInput
from rolloutctl.gate import (
    FALLBACK_SAMPLES_PER_ARM,
    GateResult,
    GateVerdict,
    MetricResult,
    stage_metrics,
)
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Stage

if TYPE_CHECKING:
    from rolloutctl.metrics.evalfile import EvalFileSource
    from rolloutctl.metrics.evalformats import EvalRun
    from rolloutctl.stats.compare import Comparison


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
    loaded: LoadedPlaybook,
    stage_index: int,
    *,
    started: datetime,
    now: datetime,
    verdict: GateVerdict,
    reasons: list[str],
    rows: list[MetricResult],
    notes: Sequence[str] = (),
    window: dict[str, str] | None = None,
    no_data: bool = False,
    errors: int = 0,
) -> GateResult:
    stage = loaded.playbook.stages[stage_index]
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


def judge(
    loaded: LoadedPlaybook,
    stage_index: int,
    *,
    started: datetime,
    now: datetime,
    control: str,
    canary: str,
    rollout_started: datetime,
) -> GateResult:
    """The gate of a smoke, offline_eval, shadow or monitor stage at `now`."""
    stage = loaded.playbook.stages[stage_index]
    common: dict[str, Any] = {"started": started, "now": now}
    if stage.kind == "smoke":
        return judge_smoke(loaded, stage_index, **common)
    if stage.kind == "offline_eval":
        return judge_offline_eval(loaded, stage_index, **common)
    if stage.kind == "shadow":
        return judge_shadow(loaded, stage_index, control=control, canary=canary, **common)
    if stage.kind == "monitor":
        return judge_monitor(
            loaded,
            stage_index,
            control=control,
            canary=canary,
            rollout_started=rollout_started,
            **common,
        )
    raise AssertionError(stage.kind)


# ---------------------------------------------------------------- smoke


def smoke_settings(loaded: LoadedPlaybook, stage: Stage) -> dict[str, Any]:
    """The smoke stage's call settings with ${ENV} resolved (InvalidInput names a missing
    variable; the key's value is never part of a message)."""
    where = f"{loaded.path}: stage {stage.name}"
    assert stage.endpoint and stage.model
    timeout = parse_duration(stage.timeout).total_seconds() if stage.timeout else 20.0
    limit = parse_duration(stage.max_latency).total_seconds() * 1000 if stage.max_latency else None
    return {
        "endpoint": resolve_env(stage.endpoint, where=where),
        "model": resolve_env(stage.model, where=where),
        "api_key": resolve_env(stage.api_key, where=where) if stage.api_key else None,
        "timeout_s": timeout,
        "route": stage.route,
        "calls": stage.calls,
        "max_latency_ms": limit,
    }


def judge_smoke(
    loaded: LoadedPlaybook, stage_index: int, *, started: datetime, now: datetime
) -> GateResult:
    from rolloutctl.smoke import run_smoke

    stage = loaded.playbook.stages[stage_index]
    settings = smoke_settings(loaded, stage)
    endpoint, model = settings.pop("endpoint"), settings.pop("model")
    try:
        outcome = run_smoke(endpoint, model, **settings)
    except ValueError as exc:
        raise InvalidInput(f"{loaded.path}: stage {stage.name}: {exc}") from None
    rows = [
        row(c.name, c.title, "smoke", "pass" if c.passed else "fail", c.reason, canary=(1, c.value))
        for c in outcome.checks
    ]
    failed = [c for c in outcome.checks if not c.passed]
    if failed:
        reasons = [
            f"smoke test of {outcome.endpoint} ({model}) failed: {c.title}: {c.reason}"
            for c in failed
            if not c.reason.startswith("skipped")
        ]
        return result(
            loaded,
            stage_index,
            started=started,
            now=now,
            verdict="fail",
            reasons=reasons or [failed[0].reason],
            rows=rows,
        )
    return result(
        loaded,
        stage_index,
        started=started,
        now=now,
        verdict="pass",
        rows=rows,
        reasons=[f"all {len(rows)} smoke checks of {outcome.endpoint} ({model}) passed"],
    )


# ---------------------------------------------------------------- offline eval


def judge_offline_eval(
    loaded: LoadedPlaybook, stage_index: int, *, started: datetime, now: datetime
) -> GateResult:
    """Pass rate against `min_pass_rate`; per category, a regression is more new failures
    than fixes on the same samples (exact one-sided McNemar); in the `no_new_failures_in`
    categories any sample that passed on the baseline must still pass; and the metrics on
    the stage's evalfile source, each compared once with its margin (`_eval_metric_rows`).
    One Holm family over the category tests and the metrics' vetoing comparisons keeps the
    chance of a false rollback under alpha. A run that did not complete is a measurement
    error: the stage holds with verdict error, never passes and never rolls back."""
    from rolloutctl.metrics.evalfile import (
        EvalFileSource,
        check_new_failures,
        offline_eval,
        run_errors,
    )
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.stats import multiple

    pb = loaded.playbook
    stage = pb.stages[stage_index]
    assert stage.source is not None
    source = build_source(stage.source, loaded)
    assert isinstance(source, EvalFileSource)
    baseline, candidate = source.load()
    notes = [*baseline.notes, *candidate.notes]
    failed = run_errors(baseline, candidate)
    if failed:
        run_rows = [
            row(
                "eval_run",
                "eval run completed",
                "offline eval",
                "error" if run.error else "pass",
                run.error or f"{run.format} run of {run.overall.n} samples",
                segment={"run": arm},
            )
            for arm, run in (("baseline", baseline), ("candidate", candidate))
        ]
        return result(
            loaded,
            stage_index,
            started=started,
            now=now,
            verdict="error",
            reasons=[
                *failed,
                "a run that did not complete is a measurement error, never a pass: rerun "
                "the eval and look again",
            ],
            rows=run_rows,
            notes=notes,
            errors=len(failed),
        )
    alpha = pb.analysis.alpha
    checks = offline_eval(
        baseline,
        candidate,
        min_pass_rate=stage.min_pass_rate,
        no_new_failures_in=stage.no_new_failures_in,
        alpha=alpha,
    )
    rows: list[MetricResult] = []
    reasons: list[str] = []
    overall = checks.rates[0]
    if checks.pass_rate is not None:
        ok = checks.pass_rate.ok
        need = f"{checks.pass_rate.threshold:.1%}"
        note = f"candidate {overall.candidate.rate:.1%} {'≥' if ok else '<'} {need} required"
        if not ok:
            reasons.append(
                f"offline eval pass rate {overall.candidate.rate:.1%} is below the "
                f"required {need} ({overall.candidate.n} samples)"
            )
    else:
        ok, note = True, "no minimum pass rate set; shown for the record"
    rows.append(
        row(
            "pass_rate",
            "eval pass rate",
            "offline eval",
            "pass" if ok else "fail",
            note,
            kind="proportion",
            worse="lower",
            margin=0.0,
            control=(overall.baseline.n, overall.baseline.rate),
            canary=(overall.candidate.n, overall.candidate.rate),
            estimate=overall.candidate.rate - overall.baseline.rate,
            ci=[
                overall.candidate_ci[0] - overall.baseline.rate,
                overall.candidate_ci[1] - overall.baseline.rate,
            ],
            test="observed pass rate against the threshold (Wilson interval shown)",
        )
    )

    categories = [r.category for r in checks.rates[1:] if r.category is not None]
    per_category = (
        check_new_failures(baseline, candidate, categories, alpha=alpha, tolerate_noise=True)
        if baseline.has_samples
        else []
    )
    metric_rows, vetoing, errors = _eval_metric_rows(
        loaded, stage, source, baseline, candidate, tests=len(per_category), started=started
    )
    rejected, adjusted = multiple.holm(
        [f.test.p_worse for f in per_category] + [c.p_fail for _, c in vetoing],
        alpha,
        [1.0] * len(per_category) + [pb.metric(r.name).weight for r, _ in vetoing],
    )
    family = len(rejected)
    rates = {r.category: r for r in checks.rates[1:]}
    for f, reject, adj in zip(per_category, rejected, adjusted, strict=False):
        rate = rates[f.category]
        verdict = "fail" if reject else "pass"
        note = (
            f"{len(f.new_failures)} new failures, {len(f.fixed)} fixed on {f.pairs} "
            f"samples (exact McNemar, one-sided)"
        )
        if reject:
            reasons.append(
                f"category {f.category} regressed: {len(f.new_failures)} samples "
                f"that passed now fail, {len(f.fixed)} fixed (adjusted p = "
                f"{adj:.2g})"
            )
        rows.append(
            row(
                "pass_rate",
                "eval pass rate",
                "offline eval",
                verdict,
                note,
                kind="proportion",
                segment={"category": f.category},
                worse="lower",
                control=(rate.baseline.n, rate.baseline.rate),
                canary=(rate.candidate.n, rate.candidate.rate),
                estimate=rate.candidate.rate - rate.baseline.rate,
                p_value=f.test.p_worse,
                p_adjusted=adj,
                test="exact McNemar on paired samples, Holm across categories and metrics",
            )
        )
    for f in checks.new_failures:
        ids = ", ".join(f.new_failures[:10]) + (" …" if len(f.new_failures) > 10 else "")
        note = f.note or (
            f"new failures: {ids}"
            if f.new_failures
            else f"no sample that passed now fails ({f.pairs} samples)"
        )
        if not f.ok:
            reasons.append(
                f"new failures in {f.category}: {ids}"
                if f.new_failures
                else f"no new failures in {f.category} cannot be shown: {f.note}"
            )
        rows.append(
            row(
                "new_failures",
                "new failures (must be none)",
                "offline eval",
                "pass" if f.ok else "fail",
                note,
                kind="count",
                segment={"category": f.category},
                canary=(f.pairs, float(len(f.new_failures))),
                p_value=f.test.p_worse,
                test="any sample that passed on the baseline and fails on the candidate",
            )
        )
    for (r, _), reject, adj in zip(
        vetoing, rejected[len(per_category) :], adjusted[len(per_category) :], strict=True
    ):
        r.p_adjusted = adj
        if reject:
            r.verdict = "fail"
            reasons.append(_eval_metric_failure(r, family, alpha))
        elif r.verdict == "fail":
            r.verdict = "inconclusive"
    for r in metric_rows:  # absolute limits on the candidate's own value
        metric, value = pb.metric(r.name), r.canary["value"]
        if r.segment is not None or metric.limit is None or metric.advisory or value is None:
            continue
        if value > metric.limit if metric.worse == "higher" else value < metric.limit:
            reasons.append(
                f"{r.title}: candidate {fmt.value(value, r.kind)} is beyond the limit "
                f"{fmt.value(metric.limit, r.kind)}"
            )
    rows += metric_rows
    common: dict[str, Any] = {"started": started, "now": now, "rows": rows, "notes": notes}
    if reasons:
        return result(loaded, stage_index, verdict="fail", reasons=reasons, **common)
    if errors:
        reasons = [f"no measurement for {name}: {why}" for name, why in errors.items()]
        return result(
            loaded, stage_index, verdict="error", reasons=reasons, errors=len(errors), **common
        )
    deciding = [r for r in metric_rows if r.segment is None and not r.advisory]
    empty = [r for r in deciding if min(r.control["n"], r.canary["n"]) == 0]
    if empty:  # missing data never passes, whatever pass_requires says
        reasons = [
            f"no values of {r.name} in these runs (baseline {r.control['n']}, candidate "
            f"{r.canary['n']}): missing data never passes"
            for r in empty
        ]
        return result(loaded, stage_index, verdict="inconclusive", reasons=reasons, **common)
    undecided = [r.name for r in deciding if r.verdict != "pass"]
    if undecided and (stage.pass_requires or pb.analysis.pass_requires) == "non_inferiority":
        reasons = [
            f"non-inferiority not shown for {', '.join(undecided)}: these runs cannot tell "
            "whether the candidate is within the margin (a larger eval set narrows the "
            "interval; `pass_requires: no_failure` passes unless something failed)"
        ]
        return result(loaded, stage_index, verdict="inconclusive", reasons=reasons, **common)
    summary = (
        f"offline eval passed: {overall.candidate.rate:.1%} of "
        f"{overall.candidate.n} samples pass (baseline {overall.baseline.rate:.1%})"
    )
    if stage.no_new_failures_in:
        summary += f"; no new failures in {', '.join(stage.no_new_failures_in)}"
    judged = sorted({r.name for r in metric_rows if r.segment is None and r.vetoes})
    if judged:
        summary += f"; {', '.join(judged)} within {'its' if len(judged) == 1 else 'their'} margin"
    return result(loaded, stage_index, verdict="pass", reasons=[summary], **common)


def _eval_metric_rows(
    loaded: LoadedPlaybook,
    stage: Stage,
    source: EvalFileSource,
    baseline: EvalRun,
    candidate: EvalRun,
    *,
    tests: int,
    started: datetime,
) -> tuple[list[MetricResult], list[tuple[MetricResult, Comparison]], dict[str, str]]:
    """The metrics on the stage's evalfile source (`gate.stage_metrics`), the baseline run as
    the control arm and the candidate run as the canary, overall and per category: one
    fixed-horizon comparison each with the gate's tests, since the runs are whole and there
    is one look (no sequential penalty, no minimum duration, no sample-ratio check: nothing
    was split). Overall every deciding metric vetoes; a category only for a critical metric
    in a critical segment (or with `per_segment`) and with `min_samples_per_segment`
    samples per run. Returns the rows, the vetoing (row, comparison) pairs for Holm (the
    alpha shown is their share among `tests` other tests of the family), and the metrics
    without a measurement."""
    from rolloutctl.gate import compare_metric
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.stats import multiple
    from rolloutctl.stats.compare import DEFAULT_RHO2

    pb = loaded.playbook
    metrics = stage_metrics(pb, stage)
    if not metrics:
        return [], [], {}
    request = MeasureRequest(
        metrics=tuple(metrics),
        start=started,
        end=started,
        control="baseline",
        canary="candidate",
        dimensions=("category",),
        max_segments=pb.analysis.max_segments,
    )
    measured = source.measure_runs(request, baseline, candidate)
    critical = {(d, v) for d, values in pb.segments.critical.items() for v in values}
    planned = []
    for metric in metrics:
        for (name, segment), arms in measured.stats.items():
            if name != metric.name:
                continue
            need = 1 if segment is None else pb.analysis.min_samples_per_segment
            enough = min(arms["control"].n, arms["canary"].n) >= need
            deciding = segment is None or (
                metric.critical and (metric.per_segment or segment in critical)
            )
            planned.append(
                (metric, segment, arms, need, enough and not metric.advisory and deciding)
            )
    alpha = pb.analysis.alpha
    weight = tests + sum(m.weight for m, *_, veto in planned if veto)
    rows: list[MetricResult] = []
    vetoing = []
    diagnostic = []
    for metric, segment, arms, need, veto in planned:
        control, canary = arms["control"], arms["canary"]
        own = min(alpha, alpha * metric.weight / weight) if veto else alpha
        comp = (
            compare_metric(metric, control, canary, own, "fixed", DEFAULT_RHO2, alpha)
            if min(control.n, canary.n) > 0
            else None
        )
        relative = metric.margin.relative is not None
        margin = (metric.margin.relative if relative else metric.margin.absolute) or 0.0
        small = min(control.n, canary.n) < need
        note = (
            f"too few samples to judge ({min(control.n, canary.n)} < {need} per run)"
            if small
            else (comp.note if comp else "")
        )
        r = MetricResult(
            name=metric.name,
            title=metric.title or metric.name.replace("_", " "),
            group=metric.group,
            kind=metric.kind,
            segment=None if segment is None else {segment[0]: segment[1]},
            critical=metric.critical,
            advisory=metric.advisory,
            vetoes=veto,
            control={"n": control.n, "value": comp.control_value if comp else None},
            canary={"n": canary.n, "value": comp.canary_value if comp else None},
            estimate=comp.estimate if comp else None,
            ci=list(comp.ci) if comp else [None, None],
            margin=comp.margin if comp else margin,
            margin_kind="relative" if relative else "absolute",
            worse=metric.worse,
            verdict="inconclusive" if small or comp is None else comp.verdict,
            note=note,
            limit=metric.limit,
            alpha=own if comp else None,
            alpha_pass=alpha if comp else None,
            query=measured.queries.get(metric.name),
            p_value=comp.p_fail if comp else None,
            test="baseline run against candidate run, one fixed-horizon comparison",
        )
        rows.append(r)
        if comp is not None and not small:
            if veto:
                vetoing.append((r, comp))
            elif segment is not None:
                diagnostic.append((r, comp))
    q_values = multiple.benjamini_hochberg([c.p_fail for _, c in diagnostic])
    for (r, _), q in zip(diagnostic, q_values, strict=True):
        r.p_adjusted = q  # flagged for the report; a diagnostic row never decides
        r.verdict = (
            "fail" if q <= pb.analysis.diagnostic_fdr else r.verdict.replace("fail", "inconclusive")
        )
    errors = {
        m.name: measured.errors[m.name]
        for m in metrics
        if m.name in measured.errors and not m.advisory
    }
    return rows, vetoing, errors


def _eval_metric_failure(r: MetricResult, family: int, alpha: float) -> str:
    rel = r.margin_kind == "relative"
    where = "" if r.segment is None else f" in category {r.segment['category']}"
    return (
        f"{r.title}{where} is worse than allowed: baseline {fmt.value(r.control['value'], r.kind)}"
        f" → candidate {fmt.value(r.canary['value'], r.kind)} "
        f"({fmt.delta(r.estimate, r.kind, rel)} against a {fmt.delta(r.margin, r.kind, rel)} "
        f"margin; p {fmt.p_is(r.p_value)}, {fmt.p_value(r.p_adjusted)} after Holm over "
        f"{family} tests ≤ α = {alpha:g})"
    )


# ---------------------------------------------------------------- shadow, monitor


_SHADOW_KINDS = {
    "paired_mean": "mean",
    "paired_proportion": "proportion",
    "paired_quantile": "quantile",
    "ratio": "ratio",
    "rate": "proportion",
}


def judge_shadow(
    loaded: LoadedPlaybook,
    stage_index: int,
    *,
    started: datetime,
    now: datetime,
    control: str,
    canary: str,
) -> GateResult:
    """The candidate answered the same requests in the background (`shadow:<canary>` rows):
    paired comparisons per request (`shadow.analyze_shadow`), with the stage's minimum
    duration and pairs. The flag stays at 0% throughout."""
    from rolloutctl.gate import planned_vetoes
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.metrics.requestlog import RequestLogSource
    from rolloutctl.shadow import analyze_shadow
    from rolloutctl.stats import sequential

    pb = loaded.playbook
    stage = pb.stages[stage_index]
    name = _requestlog_source(loaded, stage)
    source = build_source(name, loaded)
    if not isinstance(source, RequestLogSource):
        raise InvalidInput(
            f"{loaded.path}: stage {stage.name}: shadow reads a request log; "
            f"source {name!r} is a {pb.sources[name].kind} source"
        )
    metrics = [m for m in stage_metrics(loaded.playbook, stage) if m.source == name]
    # Pairs are per request; without a written size, tune at the fallback (pairing only
    # removes noise, so the normal sequence's tuning is not critical here).
    expected = (
        stage.expected_samples_per_arm
        or pb.analysis.expected_samples_per_arm
        or FALLBACK_SAMPLES_PER_ARM
    )
    alpha = pb.analysis.alpha
    outcome = analyze_shadow(
        source,
        start=started,
        end=now,
        control=control,
        candidate=canary,
        metrics=metrics,
        dimensions=pb.segments.dimensions,
        alpha=alpha,
        rho2=sequential.tune_rho2(alpha / planned_vetoes(pb, metrics), expected),
        min_pairs=stage.min_samples_per_arm or pb.analysis.min_samples_per_arm,
        min_segment_pairs=pb.analysis.min_samples_per_segment,
        critical_segments={(d, v) for d, values in pb.segments.critical.items() for v in values},
    )
    worse = {m.name: m.worse for m in metrics}
    rows = []
    for c in outcome.comparisons:
        note = c.note
        if c.mcnemar_p is not None:
            note = (note + "; " if note else "") + f"exact McNemar p {fmt.p_is(c.mcnemar_p)}"
        rows.append(
            row(
                c.name,
                c.title,
                c.group,
                c.verdict,
                note,
                kind=_SHADOW_KINDS.get(c.kind, c.kind),
                segment=c.segment,
                control=(c.n_pairs, c.control_value),
                canary=(c.n_pairs, c.shadow_value),
                estimate=c.estimate,
                ci=c.ci,
                margin=c.margin or 0.0,
                margin_kind="relative" if c.relative else "absolute",
                worse=worse.get(c.name, "higher"),
                vetoes=c.vetoes,
                p_value=c.p_value,
                p_adjusted=c.p_adjusted,
                test=f"{c.kind.replace('_', ' ')}, paired by request_id",
            )
        )
    if rows:
        rows[0].query = outcome.query
    verdict: GateVerdict = outcome.verdict  # type: ignore[assignment]
    reasons = list(outcome.reasons)
    elapsed = now - started
    if verdict == "pass" and stage.min_duration and elapsed < parse_duration(stage.min_duration):
        verdict = "inconclusive"
        reasons = [
            f"minimum duration not reached ({format_duration(elapsed)} of "
            f"{stage.min_duration}); the shadow comparison passes so far"
        ]
    notes = [
        *outcome.notes,
        f"{outcome.pairs:,} requests answered by both {control} and "
        f"shadow:{canary}; the flag stays at 0% in this stage",
    ]
    return result(
        loaded,
        stage_index,
        started=started,
        now=now,
        verdict=verdict,
        reasons=reasons,
        rows=rows,
        notes=notes,
        no_data=outcome.pairs == 0,
    )


def _requestlog_source(loaded: LoadedPlaybook, stage: Stage) -> str:
    """The request log a shadow or monitor stage reads: its `source`, else the one its
    metrics use."""
    pb = loaded.playbook
    if stage.source:
        return stage.source
    for metric in stage_metrics(loaded.playbook, stage):
        if pb.sources[metric.source].kind == "requestlog":
            return metric.source
    raise InvalidInput(
        f"{loaded.path}: stage {stage.name} ({stage.kind}) needs a request-log source",
        hint="set the stage's `source:` to a requestlog source",
    )


def judge_monitor(
    loaded: LoadedPlaybook,
    stage_index: int,
    *,
    started: datetime,
    now: datetime,
    control: str,
    canary: str,
    rollout_started: datetime,
) -> GateResult:
    """Recent traffic (all on the candidate) against the pre-rollout baseline: the control's
    traffic in a window of the same length just before users first got the candidate. Every
    metric and segment is compared with the gate's own test (the baseline as the control
    arm, no sample-ratio check: the arms are windows, not a split), and each segment
    dimension is checked for values the baseline never saw (new query patterns) and for a
    shifted mix (chi-square, Cramér's V; shown, never deciding). Drift fails the look; the
    engine alerts and leaves the flag alone unless a rollback trigger fires."""
    from rolloutctl import gate
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.metrics.requestlog import RequestLogSource
    from rolloutctl.stats import drift

    pb = loaded.playbook
    stage = pb.stages[stage_index]
    name = _requestlog_source(loaded, stage)
    source = build_source(name, loaded)
    if not isinstance(source, RequestLogSource):
        raise InvalidInput(
            f"{loaded.path}: stage {stage.name}: monitor reads a request log; "
            f"source {name!r} is a {pb.sources[name].kind} source"
        )
    length = parse_duration(stage.window or "24h")
    recent_start = max(started, now - length)
    if now - recent_start < timedelta(minutes=1):
        return result(
            loaded,
            stage_index,
            started=started,
            now=now,
            verdict="inconclusive",
            reasons=["the monitor stage has just started: no recent traffic yet"],
            rows=[],
            no_data=True,
        )
    baseline = (rollout_started - (now - recent_start), rollout_started)
    metrics = tuple(m for m in stage_metrics(loaded.playbook, stage) if m.source == name)
    request = MeasureRequest(
        metrics=metrics,
        start=recent_start,
        end=now,
        control=control,
        canary=canary,
        dimensions=tuple(pb.segments.dimensions),
        max_segments=pb.analysis.max_segments,
        never_pooled=pb.segments.never_pooled(),
        control_window=baseline,
    )
    measurement = source.measure(request)
    judged = gate.evaluate(
        pb,
        stage_index,
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
        loaded,
        stage_index,
        started=started,
        now=now,
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
    out.max_duration_passed = bool(stage.duration) and now - started >= parse_duration(
        stage.duration or "0s"
    )
    return out
