"""`plan`: how many samples, and how much time, each gate needs to pass a healthy canary.

A healthy canary (true difference zero) passes a metric once the safe-side bound — at the full
alpha, with the stage's method and mixture tuning, exactly what the gate uses — is within the
margin. Its estimate is noisy, so the plan asks for the samples at which that happens in 9 of
10 healthy canaries (`PASS_POWER`), per metric; the stage needs every deciding metric at once,
so its time is where the product of those chances reaches 9 of 10. Each chance is that of a
single look at that sample (the gate looks many times, so it does at least as well). Baseline
rates and variances come from the request log when one is readable, and the log's recent
volume turns samples into hours. A stage whose time is beyond its `max_duration` can never
pass at that traffic, and the plan says so."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, NotRequired

from typing_extensions import TypedDict

from rolloutctl.durations import parse_duration
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.gate import ab_metrics, planned_alpha, planned_vetoes, stage_metrics, tuned_total
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import LOG_KINDS, Metric, Playbook, Stage
from rolloutctl.stats import sequential
from rolloutctl.stats.compare import one_sided_width
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat

# The plan measures the control arm only: a canary name no request log uses (printable, as
# every SQL engine takes it in a string literal).
NO_CANARY = "(no canary: the plan reads the control only)"


def _log_source(loaded: LoadedPlaybook, log: Path | None) -> Any:
    """The request log the plan reads: --log, else the playbook's first request-log source
    (files or a SQL engine)."""
    from rolloutctl.metrics.requestlog import RequestLogSource

    sources = [n for n, s in loaded.playbook.sources.items() if s.kind in LOG_KINDS]
    if log is not None:
        return RequestLogSource("log", [str(log)])
    if not sources:
        return None
    from rolloutctl.metrics.registry import build_source

    built = build_source(sources[0], loaded)
    assert isinstance(built, RequestLogSource)
    return built


def _no_log_files_yet(loaded: LoadedPlaybook) -> bool:
    """The playbook's request log is local files and none exists yet (a playbook written
    before its traffic): nothing to read, and no DuckDB to load for finding that out."""
    import glob

    from rolloutctl.metrics.remote import is_remote
    from rolloutctl.playbook.model import RequestLogSpec

    specs = [s for s in loaded.playbook.sources.values() if s.kind in LOG_KINDS]
    if not specs or not isinstance(specs[0], RequestLogSpec):
        return False
    paths = specs[0].path if isinstance(specs[0].path, list) else [specs[0].path]
    resolved = [loaded.resolve_path(p) for p in paths]
    return not any(is_remote(p) or glob.glob(p) for p in resolved)


@dataclass
class LogBaseline:
    """What the request log says before the rollout: the control's statistics per metric,
    requests per hour, the share of rows inside each stage scope, and where it came from."""

    stats: dict[str, Stat] = field(default_factory=dict)
    volume: float | None = None
    where: str = "no request log"
    read: bool = False  # a log was read (else `where` says why not)
    shares: dict[str, float] = field(default_factory=dict)


def _scope_shares(con: Any, columns: set[str], total: int, scopes: set[str]) -> dict[str, float]:
    """The share of the log's rows inside each scope: a scoped stage's canary only ever sees
    that part of the traffic, so its hours are counted on it. A scope the log cannot evaluate
    (a column it lacks) is left out."""
    import duckdb

    from rolloutctl.playbook import expr

    shares: dict[str, float] = {}
    for scope in sorted(scopes) if total else []:
        try:
            sql = expr.to_sql(expr.parse(scope), columns)
            inside = con.execute(f"SELECT count(*) FROM log WHERE ({sql})").fetchone()
        except (expr.ExprError, duckdb.Error, InvalidInput):  # InvalidInput: a SQL engine's
            continue
        shares[scope] = (int(inside[0]) if inside else 0) / total
    return shares


def _baseline(loaded: LoadedPlaybook, log: Path | None, scopes: set[str]) -> LogBaseline:
    """Control-arm statistics per metric over the whole log, requests per hour over its
    last day, and the scopes' shares of its rows: one opening of the log."""
    if log is None and _no_log_files_yet(loaded):
        return LogBaseline(where="no readable request log")
    import duckdb

    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.metrics.requestlog import EPOCH, epoch_us

    pb = loaded.playbook
    source = _log_source(loaded, log)
    if source is None:
        return LogBaseline()
    try:
        con = source.connect()
        columns = set(source.open(con))
        row = con.execute("SELECT min(__t), max(__t), count(*) FROM log").fetchone()
    except (InvalidInput, duckdb.Error) as exc:
        if log is not None:  # asked for by name: say why it cannot be read
            raise InvalidInput(
                exc.message if isinstance(exc, InvalidInput) else f"{log}: {exc}",
                hint="--log takes a JSONL, CSV or Parquet path or glob",
            ) from None
        return LogBaseline(where="no readable request log")
    if not row or not row[2]:
        return LogBaseline(where="empty request log")
    first, last, total = row

    start = EPOCH + timedelta(microseconds=int(first))
    end = EPOCH + timedelta(microseconds=int(last) + 1)
    recent = max(start, end - timedelta(days=1))
    recent_rows = con.execute(
        f"SELECT count(*) FROM log WHERE __t >= {epoch_us(recent)}"
    ).fetchone()
    hours = max((end - recent).total_seconds() / 3600, 1 / 60)
    volume = (recent_rows[0] if recent_rows else 0) / hours
    variants = [
        r[0]
        for r in con.execute(
            "SELECT variant, count(*) AS c FROM log GROUP BY variant ORDER BY c DESC"
        ).fetchall()
    ]
    shares = _scope_shares(con, columns, int(total), scopes)
    control = pb.flag.control if pb.flag.control in variants else (variants[0] if variants else "")
    metrics = tuple(m for m in pb.metrics if pb.sources[m.source].kind in LOG_KINDS)
    request = MeasureRequest(metrics, start, end, control, NO_CANARY)
    con.close()
    measured = source.measure(request)
    stats = {name: arms["control"] for (name, seg), arms in measured.stats.items() if seg is None}
    return LogBaseline(stats, volume, f"{source.label}, last {hours:.1f} h", True, shares)


LIVE_KINDS = ("prometheus", "http")  # sources that can be asked about the control's recent past
BASELINE_WINDOW = timedelta(days=1)  # the control's rates and variances
VOLUME_WINDOW = timedelta(hours=1)  # the traffic now


@dataclass
class LiveBaseline:
    stats: dict[str, Stat]
    volume: float | None  # requests per hour, both arms
    where: str  # which sources answered, or why none did


def _live_baseline(loaded: LoadedPlaybook, names: set[str], now: datetime) -> LiveBaseline:
    """For metrics on a live source (Prometheus, HTTP) that no request log sizes: the control
    arm's statistics over the last day and the requests of the last hour, asked of the
    metric's own source with the same queries the gate sends."""
    from rolloutctl.errors import RolloutError
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.metrics.registry import build_source

    pb = loaded.playbook
    found = LiveBaseline({}, None, "")
    answered, failed = [], []
    for name, spec in pb.sources.items():
        metrics = tuple(m for m in pb.metrics if m.source == name and m.name in names)
        if spec.kind not in LIVE_KINDS or not metrics:
            continue
        try:
            source = build_source(name, loaded)
            day, hour = (
                source.measure(
                    MeasureRequest(metrics, now - window, now, pb.flag.control, pb.flag.canary)
                )
                for window in (BASELINE_WINDOW, VOLUME_WINDOW)
            )
        except RolloutError as exc:
            failed.append(f"{spec.kind} source {name!r}: {exc.message.splitlines()[0]}")
            continue
        for (metric, segment), arms in day.stats.items():
            if segment is None and "control" in arms:
                found.stats[metric] = arms["control"]
        requests = sum((hour.arm_counts.get(None) or {}).values())
        if found.volume is None and requests:
            found.volume = requests / (VOLUME_WINDOW.total_seconds() / 3600)
        answered.append(f"{spec.kind} source {name!r}")
    parts = [f"{', '.join(answered)}, last {BASELINE_WINDOW.days * 24} h"] if answered else []
    found.where = "; ".join(parts + [f"no baseline from {why}" for why in failed])
    return found


@dataclass(frozen=True)
class Sizing:
    """What sizes one metric: the per-observation variance, the margin in absolute units and,
    for a rate judged on an absolute margin, the rate (its variance moves with it)."""

    variance: float
    margin: float
    rate: float | None = None


def _sizing(metric: Metric, stat: Stat | None) -> Sizing | None:
    """The metric's sizing from the control's baseline statistics."""
    rel = metric.margin.relative
    absolute = metric.margin.absolute or 0.0
    if isinstance(stat, Proportion) and stat.n:
        p = min(max(stat.rate, 1 / (stat.n + 2)), 1 - 1 / (stat.n + 2))
        if rel is not None:
            return Sizing(p * (1 - p), rel * p)
        return Sizing(p * (1 - p), absolute, rate=p)
    if isinstance(stat, Moments) and stat.n > 1:
        return Sizing(stat.variance, rel * abs(stat.mean) if rel is not None else absolute)
    if isinstance(stat, RatioMoments) and stat.n > 1 and stat.sum_y:
        n = stat.n
        mx, my = stat.sum_x / n, stat.sum_y / n
        r = mx / my
        vx, vy = stat.sum_x2 / n - mx * mx, stat.sum_y2 / n - my * my
        cxy = stat.sum_xy / n - mx * my
        var = max((vx - 2 * r * cxy + r * r * vy) / (my * my), 1e-18)
        return Sizing(var, rel * r if rel is not None else absolute)
    if isinstance(stat, Histogram) and stat.n > 10 and metric.q:
        qc = stat.quantile(metric.q)
        shifted = qc / (1 + rel) if rel is not None else qc - absolute
        above = stat.count_above(qc) / stat.n
        implied = stat.count_above(shifted) / stat.n - above
        return Sizing(above * (1 - above), max(implied, 1e-9))
    if stat is None and metric.kind == "proportion" and metric.margin.absolute:
        return Sizing(0.25, metric.margin.absolute)  # worst case p = 0.5 without a baseline
    return None


PASS_POWER = 0.9  # the plan sizes a stage so that 9 of 10 healthy canaries pass by its time


def pass_chance(
    sizing: Sizing, share: float, alpha: float, method: Any, rho2: sequential.Rho2, n_canary: float
) -> float:
    """Chance that a healthy canary's safe-side bound, estimate + z * sd, is within the margin
    at `n_canary` canary samples (one look; the control has `(1 - share) / share` times as
    many). For a rate, sd is estimated from the rates themselves and grows with the canary's,
    so the bound moves more than the estimate does (delta method on p(1 - p))."""
    if sizing.margin <= 0 or sizing.variance <= 0 or n_canary < 1:
        return 0.0
    n_control = n_canary * (1 - share) / share
    variance = sizing.variance / n_canary + sizing.variance / n_control
    sd = math.sqrt(variance)
    width = one_sided_width(variance, int(n_canary + n_control), alpha, method, rho2)
    spread = sd
    if sizing.rate is not None:  # d(bound)/d(rate) on each arm: 1 + z * d(sd)/d(rate)
        z, slope = width / sd, (1 - 2 * sizing.rate) / (2 * sd)
        canary_gain, control_gain = 1 + z * slope / n_canary, 1 - z * slope / n_control
        spread = math.sqrt(
            sizing.variance * (canary_gain**2 / n_canary + control_gain**2 / n_control)
        )
    return NormalDist().cdf((sizing.margin - width) / spread)


def smallest_sample(chance: Callable[[int], float], target: float) -> int | None:
    """Smallest canary sample whose chance reaches the target (doubling, then bisection to
    half a percent); None beyond 10^10."""
    lo, hi = 1, 2
    while chance(hi) < target:
        lo, hi = hi, hi * 2
        if hi > 10**10:
            return None
    while hi - lo > max(1, lo // 200):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if chance(mid) < target else (lo, mid)
    return hi


def samples_needed(
    sizing: Sizing,
    share: float,
    alpha: float,
    method: Any,
    rho2: sequential.Rho2,
    power: float = PASS_POWER,
) -> int | None:
    """Smallest canary sample at which a healthy canary passes this one metric with chance
    `power` (0.5: about where the bound's half-width equals the margin)."""
    if sizing.margin <= 0 or sizing.variance <= 0:
        return None
    return smallest_sample(lambda n: pass_chance(sizing, share, alpha, method, rho2, n), power)


def stage_samples(
    sized: list[Sizing],
    share: float,
    alpha: float,
    method: Any,
    rho2: sequential.Rho2,
    minimum: int,
) -> int | None:
    """Canary samples at which a healthy canary passes every metric of `sized` at once with
    chance PASS_POWER, taking them as independent; at least the stage's minimum samples."""
    if not sized or any(s.margin <= 0 or s.variance <= 0 for s in sized):
        return None

    def all_pass(n: int) -> float:
        return math.prod(pass_chance(s, share, alpha, method, rho2, n) for s in sized)

    found = smallest_sample(all_pass, PASS_POWER)
    return None if found is None else max(found, minimum)


class MetricPlan(TypedDict):
    """One deciding metric's row: the samples per arm (and hours) a healthy canary needs."""

    name: str
    samples_per_arm: int | None
    hours: float | None
    method: str
    alpha_to_fail: float
    margin: str  # "5% relative" or "0.01 absolute"
    unsized: NotRequired[str]  # why there is no sample size
    queries: NotRequired[list[str]]  # the exact queries a prometheus source would send


class ToPass(TypedDict):
    """When a healthy canary passes the whole stage, against its durations."""

    samples_per_arm: int | None
    hours: float | None
    can_pass: bool | None  # False: beyond max_duration; None: not known
    reason: str
    requires: NotRequired[str]  # the stage's pass_requires


class ABPlan(TypedDict):
    """An A/B stage's metrics judged at its end: the hours they need against the planned
    duration."""

    metrics: list[str]
    hours_needed: float | None
    planned_hours: float | None
    enough: bool | None


class StagePlan(TypedDict):
    """One stage's plan. The sizing keys are absent for a stage that is not sized (smoke,
    offline eval, a 100% stage)."""

    name: str
    kind: str
    traffic: float
    ab: ABPlan | None
    note: str | None
    scope: str | None
    approval: str  # "none" or "required"
    min_duration: str | None
    max_duration: str | None
    duration: str | None
    metrics: list[MetricPlan]
    min_samples_per_arm: NotRequired[int]
    alpha_per_metric: NotRequired[float]
    alpha_to_pass: NotRequired[float]
    method: NotRequired[str]
    to_pass: NotRequired[ToPass | None]
    effective_scope: str | None
    scope_share: float | None
    scope_note: NotRequired[str]


class PlanResult(TypedDict):
    """What `plan` prints with --json."""

    rollout: str
    segments: dict[str, Any]  # the playbook's segments section
    volume_per_hour: float | None
    volume_source: str
    stages: list[StagePlan]
    triggers: list[dict[str, Any]]  # the playbook's triggers, as written
    method_note: str


def _explained(
    loaded: LoadedPlaybook, stage: Any, metrics: list[Metric], now: datetime
) -> list[list[str]]:
    """Per metric, the exact queries a source that can explain itself (prometheus) would send
    at the stage's minimum duration (or one hour) after it begins; [] for the others."""
    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.metrics.registry import build_source
    from rolloutctl.playbook import expr
    from rolloutctl.playbook.scope import scope_text

    pb = loaded.playbook
    window = parse_duration(stage.min_duration) if stage.min_duration else timedelta(hours=1)
    scope = scope_text(loaded, pb.stages.index(stage))
    built: dict[str, Any] = {}  # one source per name; None when it cannot be built here

    def source_of(name: str) -> Any:
        if name not in built:
            try:  # nothing is sent, so missing credentials only mean no query text
                built[name] = build_source(name, loaded)
            except (InvalidInput, BackendError):
                built[name] = None
        return built[name]

    out: list[list[str]] = []
    for metric in metrics:
        queries: list[str] = []
        if pb.sources[metric.source].kind == "prometheus":
            explain = getattr(source_of(metric.source), "explain", None)
            if explain is not None:
                request = MeasureRequest(
                    metrics=(metric,),
                    start=now - window,
                    end=now,
                    control=pb.flag.control,
                    canary=pb.flag.canary,
                    dimensions=tuple(pb.segments.dimensions),
                    scope=expr.parse(scope) if scope else None,
                )
                queries = explain(request).get(metric.name, [])
        out.append(queries)
    return out


def _hours(duration: str | None) -> float:
    return parse_duration(duration).total_seconds() / 3600 if duration else 0.0


def _time_to_pass(
    stage: Any,
    rows: list[MetricPlan],
    sized: dict[str, list[Sizing]],
    share: float,
    alpha_pass: float,
    rho2: sequential.Rho2,
    min_samples: int,
    per_hour: float | None,
    pass_requires: str,
    fixed_end: bool,
) -> ToPass | None:
    """When a healthy canary passes the whole stage (every deciding metric at once, for
    PASS_POWER of them; with `pass_requires: no_failure`, its minimum samples), against the
    stage's durations: `can_pass` is False when that is beyond `max_duration`, and `reason`
    says what to change."""
    if stage.kind in ("shadow", "monitor") or not rows or not 0 < share < 1:
        return None
    unsized = [r["name"] for r in rows if r["samples_per_arm"] is None]
    if pass_requires == "no_failure":
        n: int | None = min_samples
    elif unsized:
        return {
            "samples_per_arm": None,
            "hours": None,
            "can_pass": None,
            "reason": "no baseline to size " + ", ".join(unsized),
        }
    else:
        samples = [
            stage_samples(sized[own], share, alpha_pass, own, rho2, min_samples) for own in sized
        ]
        n = None if None in samples else max(s for s in samples if s is not None)
    if n is None:
        return {
            "samples_per_arm": None,
            "hours": None,
            "can_pass": False,
            "reason": "no sample is large enough for these margins",
        }
    hours = n / per_hour if per_hour else None
    # No pass before the minimum duration, nor before an A/B stage's planned end.
    floor = max(_hours(stage.min_duration), _hours(stage.duration) if fixed_end else 0.0)
    limit = (
        parse_duration(stage.max_duration).total_seconds() / 3600 if stage.max_duration else None
    )
    result: ToPass = {
        "samples_per_arm": n,
        "hours": hours,
        "can_pass": None,
        "reason": "",
        "requires": pass_requires,
    }
    if hours is None:
        result["reason"] = "no request volume to turn samples into hours (pass --log)"
        return result
    hours = max(hours, floor)
    result["hours"] = hours
    if limit is None or hours <= limit:
        result["can_pass"] = True
        return result
    traffic = 100 * share * hours / limit
    result["can_pass"] = False
    if pass_requires == "no_failure":
        why = f"its {min_samples:,} minimum samples per arm"
    else:
        slowest = max(rows, key=lambda r: r["hours"] or 0)
        why = f"non-inferiority on every metric; slowest {slowest['name']} ({slowest['margin']})"
    result["reason"] = (
        f"a healthy canary needs about {hours:.1f} h at this traffic for {why}: beyond "
        f"max_duration {stage.max_duration}, so the stage ends in on_inconclusive_at_max "
        f"({stage.on_inconclusive_at_max}). Give it about {min(traffic, 50):.2g}% of traffic, "
        "a longer max_duration or a wider margin"
    )
    return result


_NOTES = {
    "smoke": "no traffic: judged on a few calls to the candidate's endpoint",
    "offline_eval": "no traffic: judged on the baseline and candidate eval runs",
    "shadow": "the flag stays at 0%; samples are request pairs (an upper bound: pairing only "
    "removes noise)",
    "monitor": "recent traffic against the pre-rollout baseline; samples per window",
}


def plan_stage(
    pb: Playbook, stage_index: int, baseline: dict[str, Stat], volume: float | None
) -> StagePlan:
    """One stage's plan from the control's baseline statistics and the requests per hour."""
    stage = pb.stages[stage_index]
    traffic = stage.traffic or 0.0
    share = traffic / 100
    note = _NOTES.get(stage.kind)
    entry: StagePlan = {
        "name": stage.name,
        "kind": stage.kind,
        "traffic": traffic,
        "ab": None,
        "note": note,
        "scope": stage.scope,
        "approval": stage.approval,
        "min_duration": stage.min_duration,
        "max_duration": stage.max_duration,
        "duration": stage.duration,
        "metrics": [],
        "effective_scope": None,
        "scope_share": None,
    }
    if traffic >= 100 and stage.kind not in ("shadow", "monitor"):
        entry["note"] = (
            "100%: not sized, as there is no control arm left to compare; judged on limits "
            "and triggers"
        )
        return entry
    if stage.kind in ("smoke", "offline_eval"):
        return entry
    # Shadow pairs and monitor windows are sized like an even split: for pairs an upper
    # bound (pairing only removes noise), and every request counts, not a share of them.
    per_request = stage.kind in ("shadow", "monitor")
    if per_request:
        share = 0.5
    metrics = plan_metrics(pb, stage)
    alpha = pb.analysis.alpha / planned_vetoes(pb, metrics)  # to fail: split (Holm)
    alpha_pass = pb.analysis.alpha  # to pass: every metric at once (intersection-union)
    method = stage.method or pb.analysis.method
    # Tuned as the gate will tune it: at the traffic the stage sees by its horizon.
    rho2 = sequential.tune_grid(alpha, tuned_total(pb, stage_index, volume))
    at_end = ab_metrics(pb, stage) if method == "fixed" else set()
    min_samples = stage.min_samples_per_arm or pb.analysis.min_samples_per_arm
    rows: list[MetricPlan] = []
    sized: dict[str, list[Sizing]] = {}  # per method
    for m in metrics:
        own = method if not at_end or m.name in at_end else "sequential"
        row: MetricPlan = {
            "name": m.name,
            "samples_per_arm": None,
            "hours": None,
            "method": own,
            "alpha_to_fail": planned_alpha(pb, metrics, m),
            "margin": (
                f"{m.margin.relative:.0%} relative"
                if m.margin.relative is not None
                else f"{m.margin.absolute:g} absolute"
            ),
        }
        found = _sizing(m, baseline.get(m.name))
        if found and 0 < share < 1:
            n = samples_needed(found, share, alpha_pass, own, rho2)
            row["samples_per_arm"] = n
            if n and volume:
                row["hours"] = n / (volume if per_request else volume * share)
            sized.setdefault(own, []).append(found)
        rows.append(row)
    per_hour = None if not volume else volume if per_request else volume * share
    pass_requires = stage.pass_requires or pb.analysis.pass_requires
    to_pass = _time_to_pass(
        stage,
        rows,
        sized,
        share,
        alpha_pass,
        rho2,
        min_samples,
        per_hour,
        pass_requires,
        bool(at_end),
    )
    if at_end:  # how long the A/B metrics need, against the planned duration
        hours = [r["hours"] for r in rows if r["name"] in at_end]
        known = [h for h in hours if h is not None]
        needed = max(known) if known and len(known) == len(hours) else None
        planned = parse_duration(stage.duration).total_seconds() / 3600 if stage.duration else None
        entry["ab"] = {
            "metrics": sorted(at_end),
            "hours_needed": needed,
            "planned_hours": planned,
            "enough": None if needed is None or planned is None else needed <= planned,
        }
    entry["min_samples_per_arm"] = min_samples
    entry["alpha_per_metric"] = alpha
    entry["alpha_to_pass"] = alpha_pass
    entry["method"] = method
    entry["to_pass"] = to_pass
    entry["metrics"] = rows
    return entry


def plan_metrics(pb: Playbook, stage: Stage) -> list[Metric]:
    """The deciding metrics a stage is sized on (a shadow stage has no product metric and no
    ratio: nobody sees a shadow answer)."""
    metrics = [m for m in stage_metrics(pb, stage) if not m.advisory]
    if stage.kind == "shadow":
        metrics = [m for m in metrics if m.group != "product" and m.kind != "ratio"]
    return metrics


def _unsized_reason(pb: Playbook, name: str, log_read: bool, where: str) -> str:
    """Why a metric row has no sample size, truthfully: `pass --log` only when no log was
    read."""
    if not log_read:
        return "no baseline to size it (pass --log)"
    kind = next((pb.sources[m.source].kind for m in pb.metrics if m.name == name), "?")
    return f"no baseline for it from {where} (its source is {kind})"


def plan_rollout(
    loaded: LoadedPlaybook, log: Path | None, now: datetime | None = None
) -> PlanResult:
    now = now or datetime.now(UTC).replace(microsecond=0)
    pb = loaded.playbook
    from rolloutctl.playbook.scope import scope_text

    scopes = [scope_text(loaded, index) for index in range(len(pb.stages))]
    from_log = _baseline(loaded, log, {s for s in scopes if s})
    baseline, volume, volume_source = from_log.stats, from_log.volume, from_log.where
    unsized = {
        m.name
        for m in pb.metrics
        if m.name not in baseline and pb.sources[m.source].kind in LIVE_KINDS
    }
    if unsized:
        live = _live_baseline(loaded, unsized, now)
        baseline = {**live.stats, **baseline}
        if volume is None and live.volume is not None:
            volume, volume_source = live.volume, live.where
        elif live.where:
            volume_source = f"{volume_source}; {live.where}"
    stages = []
    for index, stage in enumerate(pb.stages):
        scope = scopes[index]
        inside = from_log.shares.get(scope) if scope else None
        scoped_volume = volume * inside if volume is not None and inside is not None else volume
        entry = plan_stage(pb, index, baseline, scoped_volume)
        for row in entry["metrics"]:
            if row["samples_per_arm"] is None:
                row["unsized"] = _unsized_reason(pb, row["name"], from_log.read, volume_source)
        entry["effective_scope"] = scope
        entry["scope_share"] = inside
        if scope and entry["metrics"]:
            entry["scope_note"] = (
                f"hours count only the scope's {inside:.1%} of the traffic"
                if inside is not None
                else "hours assume the whole traffic (no request log to measure the scope's share)"
            )
        if entry["metrics"]:
            explained = _explained(loaded, stage, plan_metrics(pb, stage), now)
            for row, queries in zip(entry["metrics"], explained, strict=True):
                if queries:
                    row["queries"] = queries
        stages.append(entry)
    return {
        "rollout": pb.rollout,
        "segments": pb.segments.model_dump(),
        "volume_per_hour": volume,
        "volume_source": volume_source,
        "stages": stages,
        "triggers": [t.model_dump() for t in pb.triggers],
        "method_note": f"canary samples (and hours) by which {PASS_POWER:.0%} of healthy "
        "canaries show the metric within its margin; a stage's to_pass needs every deciding "
        "metric at once",
    }
