"""`plan`: how many samples, and how much time, each gate needs to show its margins.

The sample size solves "one-sided bound width = margin" for the stage's method, alpha split
and mixture tuning — exactly what the gate uses — at a true difference of zero: the samples a
healthy canary needs to pass, which are also the samples at which a canary worse by twice the
margin fails. Baseline rates and variances come from the request log when one is readable,
and the log's recent volume turns samples into hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rolloutctl.durations import parse_duration
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.gate import ab_metrics, planned_vetoes, stage_metrics, tuned_total
from rolloutctl.playbook.load import LoadedPlaybook
from rolloutctl.playbook.model import Metric
from rolloutctl.stats import sequential
from rolloutctl.stats.compare import one_sided_width
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, RatioMoments, Stat


def _baseline(
    loaded: LoadedPlaybook, log: Path | None
) -> tuple[dict[str, Stat], float | None, str]:
    """Control-arm statistics per metric over the whole log, and requests per hour."""
    import duckdb

    from rolloutctl.metrics.base import MeasureRequest
    from rolloutctl.metrics.requestlog import RequestLogSource

    pb = loaded.playbook
    sources = [n for n, s in pb.sources.items() if s.kind == "requestlog"]
    if log is not None:
        source = RequestLogSource("log", [str(log)])
    elif sources:
        from rolloutctl.metrics.registry import build_source

        built = build_source(sources[0], loaded)
        assert isinstance(built, RequestLogSource)
        source = built
    else:
        return {}, None, "no request log"
    try:
        con = source.connect()
        source.open(con)
        row = con.execute(
            "SELECT epoch_ms(min(__ts)), epoch_ms(max(__ts)), count(*) FROM log"
        ).fetchone()
    except (InvalidInput, duckdb.Error) as exc:
        if log is not None:  # asked for by name: say why it cannot be read
            raise InvalidInput(
                exc.message if isinstance(exc, InvalidInput) else f"{log}: {exc}",
                hint="--log takes a JSONL, CSV or Parquet path or glob",
            ) from None
        return {}, None, "no readable request log"
    if not row or not row[2]:
        return {}, None, "empty request log"
    first, last, _ = row

    start = datetime.fromtimestamp(first / 1000, UTC)
    end = datetime.fromtimestamp(last / 1000, UTC) + timedelta(milliseconds=1)
    recent = max(start, end - timedelta(days=1))
    recent_rows = con.execute(
        f"SELECT count(*) FROM log WHERE __ts >= TIMESTAMPTZ '{recent.isoformat()}'"
    ).fetchone()
    hours = max((end - recent).total_seconds() / 3600, 1 / 60)
    volume = (recent_rows[0] if recent_rows else 0) / hours
    variants = [r[0] for r in con.execute(
        "SELECT variant, count(*) c FROM log GROUP BY variant ORDER BY c DESC"
    ).fetchall()]  # fmt: skip
    control = pb.flag.control if pb.flag.control in variants else (variants[0] if variants else "")
    metrics = tuple(m for m in pb.metrics if pb.sources[m.source].kind == "requestlog")
    request = MeasureRequest(metrics, start, end, control, "\x00none")
    con.close()
    measured = source.measure(request)
    stats = {name: arms["control"] for (name, seg), arms in measured.stats.items() if seg is None}
    return stats, volume, f"{source.paths[0]}, last {hours:.1f} h"


def _sigma2_and_margin(metric: Metric, stat: Stat | None) -> tuple[float, float] | None:
    """Per-observation variance and the margin in absolute units, from the baseline."""
    rel = metric.margin.relative
    if isinstance(stat, Proportion) and stat.n:
        p = min(max(stat.rate, 1 / (stat.n + 2)), 1 - 1 / (stat.n + 2))
        return p * (1 - p), rel * p if rel is not None else metric.margin.absolute or 0.0
    if isinstance(stat, Moments) and stat.n > 1:
        mean = stat.mean
        return stat.variance, rel * abs(mean) if rel is not None else metric.margin.absolute or 0.0
    if isinstance(stat, RatioMoments) and stat.n > 1 and stat.sum_y:
        n = stat.n
        mx, my = stat.sum_x / n, stat.sum_y / n
        r = mx / my
        vx, vy = stat.sum_x2 / n - mx * mx, stat.sum_y2 / n - my * my
        cxy = stat.sum_xy / n - mx * my
        var = max((vx - 2 * r * cxy + r * r * vy) / (my * my), 1e-18)
        return var, rel * r if rel is not None else metric.margin.absolute or 0.0
    if isinstance(stat, Histogram) and stat.n > 10 and metric.q:
        qc = stat.quantile(metric.q)
        shifted = qc / (1 + rel) if rel is not None else qc - (metric.margin.absolute or 0.0)
        above = stat.count_above(qc) / stat.n
        implied = stat.count_above(shifted) / stat.n - above
        return above * (1 - above), max(implied, 1e-9)
    if stat is None and metric.kind == "proportion" and metric.margin.absolute:
        return 0.25, metric.margin.absolute  # worst case p = 0.5 without a baseline
    return None


def samples_needed(sigma2: float, margin: float, share: float, alpha: float, method: Any,
                   rho2: sequential.Rho2) -> int | None:  # fmt: skip
    """Smallest canary sample whose bound half-width is within the margin (doubling + bisect)."""
    if margin <= 0 or sigma2 <= 0:
        return None

    def width(n_canary: int) -> float:
        n_control = n_canary * (1 - share) / share
        variance = sigma2 / n_canary + sigma2 / n_control
        return one_sided_width(variance, int(n_canary + n_control), alpha, method, rho2)

    lo, hi = 1, 2
    while width(hi) > margin:
        lo, hi = hi, hi * 2
        if hi > 10**10:
            return None
    while hi - lo > max(1, lo // 200):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if width(mid) > margin else (lo, mid)
    return hi


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
                    metrics=(metric,), start=now - window, end=now, control=pb.flag.control,
                    canary=pb.flag.canary, dimensions=tuple(pb.segments.dimensions),
                    scope=expr.parse(scope) if scope else None,
                )  # fmt: skip
                queries = explain(request).get(metric.name, [])
        out.append(queries)
    return out


_NOTES = {
    "smoke": "no traffic: judged on a few calls to the candidate's endpoint",
    "offline_eval": "no traffic: judged on the baseline and candidate eval runs",
    "shadow": "the flag stays at 0%; samples are request pairs (an upper bound: pairing only "
    "removes noise)",
    "monitor": "recent traffic against the pre-rollout baseline; samples per window",
}


def plan_rollout(
    loaded: LoadedPlaybook, log: Path | None, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC).replace(microsecond=0)
    pb = loaded.playbook
    baseline, volume, volume_source = _baseline(loaded, log)
    stages = []
    for stage in pb.stages:
        traffic = stage.traffic or 0.0
        share = traffic / 100
        note = _NOTES.get(stage.kind)
        if stage.kind in ("smoke", "offline_eval"):
            stages.append({"name": stage.name, "kind": stage.kind, "traffic": traffic, "ab": None,
                           "scope": None, "approval": stage.approval, "note": note,
                           "min_duration": stage.min_duration, "max_duration": stage.max_duration,
                           "duration": stage.duration, "metrics": []})  # fmt: skip
            continue
        # Shadow pairs and monitor windows are sized like an even split: for pairs an upper
        # bound (pairing only removes noise), and every request counts, not a share of them.
        per_request = stage.kind in ("shadow", "monitor")
        if per_request:
            share = 0.5
        metrics = [m for m in stage_metrics(pb, stage) if not m.advisory]
        if stage.kind == "shadow":  # nobody sees a shadow answer: no product metric, no ratio
            metrics = [m for m in metrics if m.group != "product" and m.kind != "ratio"]
        alpha = pb.analysis.alpha / planned_vetoes(pb, metrics)
        method = stage.method or pb.analysis.method
        # Tuned as the gate will tune it: at the traffic the stage sees by its horizon.
        rho2 = sequential.tune_grid(alpha, tuned_total(pb, pb.stages.index(stage), volume))
        at_end = ab_metrics(pb, stage) if method == "fixed" else set()
        rows = []
        for m in metrics:
            own = method if not at_end or m.name in at_end else "sequential"
            entry: dict[str, Any] = {"name": m.name, "samples_per_arm": None, "hours": None,
                                     "method": own}  # fmt: skip
            entry["margin"] = (
                f"{m.margin.relative:.0%} relative" if m.margin.relative is not None
                else f"{m.margin.absolute:g} absolute"
            )  # fmt: skip
            found = _sigma2_and_margin(m, baseline.get(m.name))
            if found and 0 < share < 1:
                n = samples_needed(found[0], found[1], share, alpha, own, rho2)
                entry["samples_per_arm"] = n
                if n and volume:
                    entry["hours"] = n / (volume if per_request else volume * share)
            rows.append(entry)
        for entry, queries in zip(rows, _explained(loaded, stage, metrics, now), strict=True):
            if queries:
                entry["queries"] = queries
        ab: dict[str, Any] | None = None
        if at_end:  # how long the A/B metrics need, against the planned duration
            hours = [r["hours"] for r in rows if r["name"] in at_end]
            needed = max(hours) if hours and None not in hours else None
            planned = parse_duration(stage.duration).total_seconds() / 3600 if stage.duration \
                else None  # fmt: skip
            ab = {"metrics": sorted(at_end), "hours_needed": needed, "planned_hours": planned,
                  "enough": None if needed is None or planned is None else needed <= planned}  # fmt: skip
        stages.append({
            "name": stage.name, "kind": stage.kind, "traffic": traffic, "ab": ab, "note": note,
            "scope": stage.scope, "approval": stage.approval,
            "min_duration": stage.min_duration, "max_duration": stage.max_duration,
            "duration": stage.duration,
            "min_samples_per_arm": stage.min_samples_per_arm or pb.analysis.min_samples_per_arm,
            "alpha_per_metric": alpha, "method": method,
            "metrics": rows,
        })  # fmt: skip
    return {
        "rollout": pb.rollout,
        "segments": pb.segments.model_dump(),
        "volume_per_hour": volume,
        "volume_source": volume_source,
        "stages": stages,
        "triggers": [t.model_dump() for t in pb.triggers],
        "method_note": "canary samples at which the gate's one-sided bound is as wide as the "
        "margin: a healthy canary passes there, one worse by twice the margin fails there",
    }
