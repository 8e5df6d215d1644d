"""The offline eval stage: the candidate's eval run against the baseline's on the same samples
(`metrics/evalfile.py` reads the runs)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rolloutctl import formatting as fmt
from rolloutctl.gate import stage_metrics
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Playbook, Stage
from rolloutctl.results import GateResult, MetricResult
from rolloutctl.stages.base import Judged, StageLook, result, row

if TYPE_CHECKING:
    from rolloutctl.metrics.evalfile import (
        EvalFileSource,
        NewFailures,
        OfflineEvalResult,
        PassRate,
    )
    from rolloutctl.metrics.evalformats import EvalRun
    from rolloutctl.stats.compare import Comparison


def _gate(look: StageLook) -> GateResult:
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

    loaded, pb, stage = look.loaded, look.playbook, look.stage
    assert stage.source is not None
    source = build_source(stage.source, loaded)
    assert isinstance(source, EvalFileSource)
    baseline, candidate = source.load()
    notes = [*baseline.notes, *candidate.notes]
    failed = run_errors(baseline, candidate)
    if failed:
        return _incomplete_run(look, baseline, candidate, failed, notes)
    alpha = pb.analysis.alpha
    checks = offline_eval(
        baseline,
        candidate,
        min_pass_rate=stage.min_pass_rate,
        no_new_failures_in=stage.no_new_failures_in,
        alpha=alpha,
    )
    reasons: list[str] = []
    rows = [_pass_rate_row(checks, reasons)]
    categories = [r.category for r in checks.rates[1:] if r.category is not None]
    per_category = (
        check_new_failures(baseline, candidate, categories, alpha=alpha, tolerate_noise=True)
        if baseline.has_samples
        else []
    )
    metric_rows, vetoing, errors = _eval_metric_rows(
        loaded, stage, source, baseline, candidate, tests=len(per_category), started=look.started
    )
    rejected, adjusted = multiple.holm(
        [f.test.p_worse for f in per_category] + [c.p_fail for _, c in vetoing],
        alpha,
        [1.0] * len(per_category) + [pb.metric(r.name).weight for r, _ in vetoing],
    )
    family = len(rejected)
    rates = {r.category: r for r in checks.rates[1:]}
    rows += _category_rows(per_category, rejected, adjusted, rates, reasons)
    rows += _new_failure_rows(checks.new_failures, reasons)
    for (r, _), reject, adj in zip(
        vetoing, rejected[len(per_category) :], adjusted[len(per_category) :], strict=True
    ):
        r.p_adjusted = adj
        if reject:
            r.verdict = "fail"
            reasons.append(_eval_metric_failure(r, family, alpha))
        elif r.verdict == "fail":
            r.verdict = "inconclusive"
    reasons += _limit_breaches(pb, metric_rows)
    rows += metric_rows
    return _verdict(look, reasons, errors, metric_rows, rows, notes, checks.rates[0])


def _incomplete_run(
    look: StageLook, baseline: EvalRun, candidate: EvalRun, failed: list[str], notes: list[str]
) -> GateResult:
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
        look,
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


def _pass_rate_row(checks: OfflineEvalResult, reasons: list[str]) -> MetricResult:
    """The overall pass rate against `min_pass_rate` (a reason added when below)."""
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
    return row(
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


def _category_rows(
    per_category: list[NewFailures],
    rejected: list[bool],
    adjusted: list[float],
    rates: dict[str | None, PassRate],
    reasons: list[str],
) -> list[MetricResult]:
    """Per category, more new failures than fixes (McNemar, in the Holm family)."""
    rows: list[MetricResult] = []
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
    return rows


def _new_failure_rows(new_failures: list[NewFailures], reasons: list[str]) -> list[MetricResult]:
    """In the `no_new_failures_in` categories, no sample that passed may fail."""
    rows: list[MetricResult] = []
    for f in new_failures:
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
    return rows


def _limit_breaches(pb: Playbook, metric_rows: list[MetricResult]) -> list[str]:
    """Absolute limits on the candidate's own value."""
    reasons: list[str] = []
    for r in metric_rows:
        metric, value = pb.metric(r.name), r.canary["value"]
        if r.segment is not None or metric.limit is None or metric.advisory or value is None:
            continue
        if value > metric.limit if metric.worse == "higher" else value < metric.limit:
            reasons.append(
                f"{r.title}: candidate {fmt.value(value, r.kind)} is beyond the limit "
                f"{fmt.value(metric.limit, r.kind)}"
            )
    return reasons


def _verdict(
    look: StageLook,
    reasons: list[str],
    errors: dict[str, str],
    metric_rows: list[MetricResult],
    rows: list[MetricResult],
    notes: list[str],
    overall: PassRate,
) -> GateResult:
    """Fail on any reason; else an error for an unmeasured metric; else hold while a deciding
    metric has no data (or, with non_inferiority, is undecided); else pass."""
    pb, stage = look.playbook, look.stage
    common: dict[str, Any] = {"rows": rows, "notes": notes}
    if reasons:
        return result(look, verdict="fail", reasons=reasons, **common)
    if errors:
        reasons = [f"no measurement for {name}: {why}" for name, why in errors.items()]
        return result(look, verdict="error", reasons=reasons, errors=len(errors), **common)
    deciding = [r for r in metric_rows if r.segment is None and not r.advisory]
    empty = [r for r in deciding if min(r.control["n"], r.canary["n"]) == 0]
    if empty:  # missing data never passes, whatever pass_requires says
        reasons = [
            f"no values of {r.name} in these runs (baseline {r.control['n']}, candidate "
            f"{r.canary['n']}): missing data never passes"
            for r in empty
        ]
        return result(look, verdict="inconclusive", reasons=reasons, **common)
    undecided = [r.name for r in deciding if r.verdict != "pass"]
    if undecided and (stage.pass_requires or pb.analysis.pass_requires) == "non_inferiority":
        reasons = [
            f"non-inferiority not shown for {', '.join(undecided)}: these runs cannot tell "
            "whether the candidate is within the margin (a larger eval set narrows the "
            "interval; `pass_requires: no_failure` passes unless something failed)"
        ]
        return result(look, verdict="inconclusive", reasons=reasons, **common)
    summary = (
        f"offline eval passed: {overall.candidate.rate:.1%} of "
        f"{overall.candidate.n} samples pass (baseline {overall.baseline.rate:.1%})"
    )
    if stage.no_new_failures_in:
        summary += f"; no new failures in {', '.join(stage.no_new_failures_in)}"
    judged = sorted({r.name for r in metric_rows if r.segment is None and r.vetoes})
    if judged:
        summary += f"; {', '.join(judged)} within {'its' if len(judged) == 1 else 'their'} margin"
    return result(look, verdict="pass", reasons=[summary], **common)


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


def judge(look: StageLook) -> Judged:
    return Judged(_gate(look))
