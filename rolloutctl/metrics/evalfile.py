"""Offline eval results as a metric source, and the offline-eval stage's checks.

A baseline run and a candidate run of the same eval set (read by `evalformats`) are the two
arms: "control" is the baseline run and "canary" the candidate. A proportion metric's
`event` (a condition on `passed`, `score`, `category`, `id`, e.g. `not passed`) gives pass or
failure counts per arm, overall and per category (segments `("category", value)`), so the
offline-eval stage compares pass rates with margins as a canary gate does for traffic (an eval
set is never live traffic: these metrics are judged by the offline_eval stage that reads
their source, and by no other stage). A run that did not complete (`EvalRun.error`) gives
every metric that error, never a statistic. The stage checks are the pure functions at the
end: pass rate against a threshold, pass rates per category, and new failures in named
categories, matched by id and judged with the exact McNemar test (`rolloutctl.stats.paired`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import Measurement, MeasureRequest, SegmentKey
from rolloutctl.metrics.evalformats import (
    FIELDS,
    EvalRecord,
    EvalRun,
    ReadOptions,
    as_number,
    read_run,
    sample_ids,
)
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import EvalFileSpec, Metric
from rolloutctl.stats import fixed, paired
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat

# ------------------------------------------------------------------ the metric source


@dataclass
class EvalFileSource:
    KIND: ClassVar[str] = "evalfile"
    name: str
    baseline: str
    candidate: str
    format: str = "auto"
    options: ReadOptions = field(default_factory=ReadOptions)
    candidate_options: ReadOptions | None = None  # None: the same as the baseline's

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> EvalFileSource:
        assert isinstance(spec, EvalFileSpec)
        opts = ReadOptions(spec.scorer, spec.pass_threshold, spec.category_field)

        def pick(arm: str) -> ReadOptions:
            chosen = [
                value if isinstance(value, str) or value is None else getattr(value, arm)
                for value in (spec.prompt, spec.provider)
            ]
            return replace(opts, prompt=chosen[0], provider=chosen[1])

        return cls(
            name,
            loaded.resolve_path(spec.baseline),
            loaded.resolve_path(spec.candidate),
            spec.format,
            pick("baseline"),
            pick("candidate"),
        )

    def load(self) -> tuple[EvalRun, EvalRun]:
        """Both runs; per-sample runs must hold the same sample ids (unless one did not
        complete: then its error is what there is to say)."""
        baseline = read_run(self.baseline, self.format, self.options)
        candidate = read_run(self.candidate, self.format, self.candidate_options or self.options)
        complete = baseline.error is None and candidate.error is None
        if complete and baseline.has_samples and candidate.has_samples:
            pair_records(baseline, candidate)  # raises on mismatched ids
        return baseline, candidate

    def measure(self, request: MeasureRequest) -> Measurement:
        return self.measure_runs(request, *self.load())

    def measure_runs(
        self, request: MeasureRequest, baseline: EvalRun, candidate: EvalRun
    ) -> Measurement:
        """Statistics of runs already read: control = baseline, canary = candidate."""
        out = Measurement()
        out.notes.extend([*baseline.notes, *candidate.notes])
        out.notes.append("offline eval: the stage window does not apply; whole runs compared")
        failed = run_errors(baseline, candidate)
        if failed:  # a measurement error for every metric: never a statistic, never a pass
            out.arm_counts[None] = {"control": 0, "canary": 0}
            for metric in request.metrics:
                out.errors[metric.name] = "; ".join(failed)
            return out
        runs = {"control": baseline, "canary": candidate}
        categories = sorted(set(baseline.totals) | set(candidate.totals))
        if len(categories) > request.max_segments:
            out.notes.append(
                f"{len(categories)} categories; judging the {request.max_segments} largest"
            )
            size = Counter({c: baseline.totals.get(c, Proportion(0, 0)).n for c in categories})
            categories = sorted(c for c, _ in size.most_common(request.max_segments))
        segments: list[SegmentKey] = [None, *(("category", c) for c in categories)]
        for segment in segments:
            out.arm_counts[segment] = {
                arm: (
                    run.overall if segment is None else run.totals.get(segment[1], Proportion(0, 0))
                ).n
                for arm, run in runs.items()
            }
        for metric in request.metrics:
            out.queries[metric.name] = (
                f"evalfile {self.name}: baseline {baseline.path} ({baseline.format}) vs "
                f"candidate {candidate.path} ({candidate.format}); {_describe(metric)}"
            )
            try:
                for segment in segments:
                    cat = None if segment is None else segment[1]
                    out.stats[(metric.name, segment)] = {
                        arm: _statistic(metric, run, cat) for arm, run in runs.items()
                    }
            except (expr.ExprError, _Unsupported, TypeError) as exc:
                out.errors[metric.name] = f"{_describe(metric)}: {exc}"
                for segment in segments:
                    out.stats.pop((metric.name, segment), None)
        return out


class _Unsupported(ValueError):
    pass


def run_errors(baseline: EvalRun, candidate: EvalRun) -> list[str]:
    """Why the runs cannot be compared: each run that did not complete, with its error."""
    runs = (("baseline", baseline), ("candidate", candidate))
    return [f"the {arm} run did not complete: {run.error}" for arm, run in runs if run.error]


def _describe(metric: Metric) -> str:
    if metric.kind == "proportion":
        return f"event: {metric.event or 'passed'}"
    if metric.kind == "ratio":
        return f"ratio: {metric.numerator} / {metric.denominator}"
    return f"{metric.kind}: {metric.value}"


def _lookup(record: EvalRecord) -> Any:
    def get(name: str) -> Any:
        if name not in FIELDS:
            raise expr.ExprError(f"unknown eval field {name!r} (fields: {', '.join(FIELDS)})")
        return getattr(record, name)

    return get


def _statistic(metric: Metric, run: EvalRun, category: str | None) -> Stat:
    if run.records is None:
        return _aggregate_statistic(metric, run, category)
    records = [r for r in run.records if category is None or r.category == category]
    if metric.kind == "proportion":
        node = expr.parse(metric.event or "passed")
        values = [expr.evaluate(node, _lookup(r)) for r in records]
        known = [v for v in values if v is not None]
        return Proportion(len(known), sum(1 for v in known if v))

    def numbers(text: str | None) -> list[float | None]:
        node = expr.parse(text or "score")
        return [as_number(expr.evaluate(node, _lookup(r))) for r in records]

    if metric.kind == "mean":
        xs = [x for x in numbers(metric.value) if x is not None]
        return Moments(len(xs), sum(xs), sum(x * x for x in xs))
    if metric.kind == "quantile":
        counts: Counter[int] = Counter(
            Histogram.bucket_of(x) for x in numbers(metric.value) if x is not None
        )
        return Histogram(dict(counts))
    pairs = [
        (x, y)
        for x, y in zip(numbers(metric.numerator), numbers(metric.denominator), strict=True)
        if x is not None and y is not None
    ]
    return RatioMoments(
        len(pairs),
        sum(x for x, _ in pairs),
        sum(y for _, y in pairs),
        sum(x * x for x, _ in pairs),
        sum(y * y for _, y in pairs),
        sum(x * y for x, y in pairs),
    )


def _aggregate_statistic(metric: Metric, run: EvalRun, category: str | None) -> Stat:
    """Pass counts only: a proportion metric whose event depends on `passed` and `category`."""
    if metric.kind != "proportion":
        raise _Unsupported(
            f"{run.path} has pass counts only (no per-sample results): a {metric.kind} metric "
            "needs per-sample scores"
        )
    node = expr.parse(metric.event or "passed")
    used = expr.names(node)
    if not used <= {"passed", "category"}:
        raise _Unsupported(
            f"{run.path} has pass counts only: event {metric.event!r} uses "
            f"{', '.join(sorted(used - {'passed', 'category'}))}"
        )
    total = Proportion(0, 0)
    for cat, counts in run.totals.items():
        if category is not None and cat != category:
            continue
        for passed, n in ((True, counts.events), (False, counts.n - counts.events)):
            fields = {"passed": passed, "category": cat}
            value = expr.evaluate(node, fields.__getitem__)
            if value is not None:
                total = total + Proportion(n, n if value else 0)
    return total


# ------------------------------------------------------------------ the offline-eval stage checks


def pair_records(baseline: EvalRun, candidate: EvalRun) -> list[tuple[EvalRecord, EvalRecord]]:
    """(baseline, candidate) records matched by id; the two runs must hold the same ids."""
    for run in (baseline, candidate):
        if run.records is None:
            raise InvalidInput(
                f"eval file {run.path}: pass counts only, no per-sample results to match by id",
                hint="for lm-eval, run with --log_samples and give the samples_*.jsonl files",
            )
    assert baseline.records is not None and candidate.records is not None
    by_id = {r.id: r for r in candidate.records}
    base_ids = {r.id for r in baseline.records}
    missing = sorted(base_ids - set(by_id))
    extra = sorted(set(by_id) - base_ids)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} baseline id(s) ({sample_ids(missing)})")
        if extra:
            parts.append(f"has {len(extra)} id(s) not in the baseline ({sample_ids(extra)})")
        raise InvalidInput(
            f"eval file {candidate.path} {' and '.join(parts)}; expected the same samples as "
            f"{baseline.path}",
            hint="run the baseline and the candidate on the same eval set",
        )
    return [(r, by_id[r.id]) for r in baseline.records]


@dataclass(frozen=True)
class PassRate:
    category: str | None  # None: all samples
    baseline: Proportion
    candidate: Proportion
    candidate_ci: tuple[float, float]  # Wilson 95%


@dataclass(frozen=True)
class PassRateCheck:
    threshold: float
    rate: PassRate
    ok: bool


def pass_rates(baseline: EvalRun, candidate: EvalRun) -> list[PassRate]:
    """Pass rates overall (first) and per category, in category order."""
    categories = sorted(set(baseline.totals) | set(candidate.totals))
    out = [
        PassRate(
            None, baseline.overall, candidate.overall, fixed.wilson_interval(candidate.overall)
        )
    ]
    for c in categories:
        b = baseline.totals.get(c, Proportion(0, 0))
        k = candidate.totals.get(c, Proportion(0, 0))
        out.append(PassRate(c, b, k, fixed.wilson_interval(k)))
    return out


def check_pass_rate(baseline: EvalRun, candidate: EvalRun, threshold: float) -> PassRateCheck:
    """`min_pass_rate`: the candidate's observed pass rate over all samples, at least the
    threshold (the eval set is the population here; the interval is shown, not judged)."""
    rate = pass_rates(baseline, candidate)[0]
    ok = rate.candidate.n > 0 and rate.candidate.rate >= threshold
    return PassRateCheck(threshold, rate, ok)


@dataclass(frozen=True)
class NewFailures:
    category: str
    pairs: int
    new_failures: tuple[str, ...]  # ids passed on the baseline, failing on the candidate
    fixed: tuple[str, ...]  # ids failed on the baseline, passing on the candidate
    test: paired.McNemar
    ok: bool
    note: str = ""


def check_new_failures(
    baseline: EvalRun,
    candidate: EvalRun,
    categories: Iterable[str],
    *,
    alpha: float = 0.05,
    tolerate_noise: bool = False,
) -> list[NewFailures]:
    """`no_new_failures_in`: per named category, the samples that passed on the baseline and
    fail on the candidate, with the one-sided exact McNemar test on the discordant pairs.

    By default any new failure fails the check (what the name promises, for critical
    categories); with `tolerate_noise` only a significant excess of new failures over fixes
    (p < alpha) does. A category with no samples fails: nothing shows it is safe."""
    pairs = pair_records(baseline, candidate)
    out = []
    for category in categories:
        inside = [(b, c) for b, c in pairs if b.category == category]
        new = tuple(b.id for b, c in inside if b.passed and not c.passed)
        fixes = tuple(b.id for b, c in inside if c.passed and not b.passed)
        test = paired.mcnemar(len(new), len(fixes))
        if not inside:
            out.append(NewFailures(category, 0, (), (), test, False, "no samples in this category"))
            continue
        ok = test.p_worse >= alpha if tolerate_noise else not new
        out.append(NewFailures(category, len(inside), new, fixes, test, ok))
    return out


@dataclass(frozen=True)
class OfflineEvalResult:
    pass_rate: PassRateCheck | None
    rates: list[PassRate]
    new_failures: list[NewFailures]

    @property
    def ok(self) -> bool:
        return (self.pass_rate is None or self.pass_rate.ok) and all(
            f.ok for f in self.new_failures
        )


def offline_eval(
    baseline: EvalRun,
    candidate: EvalRun,
    *,
    min_pass_rate: float | None,
    no_new_failures_in: Iterable[str] | None,
    alpha: float = 0.05,
) -> OfflineEvalResult:
    """Every check an offline-eval stage names, on one pair of runs."""
    return OfflineEvalResult(
        None if min_pass_rate is None else check_pass_rate(baseline, candidate, min_pass_rate),
        pass_rates(baseline, candidate),
        check_new_failures(baseline, candidate, no_new_failures_in or (), alpha=alpha),
    )
