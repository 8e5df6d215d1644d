"""What each metric kind reads from Prometheus: series in, sufficient statistics out, per arm
and segment (the package docstring says what each kind's templates must give).

The computation reads through a Reader, so the gate's look, the earlier looks of a time
series and `plan` run the same code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rolloutctl.metrics.base import Measurement, MeasureRequest, SegmentKey
from rolloutctl.metrics.prometheus.buckets import bound, moments_of, to_histogram
from rolloutctl.metrics.prometheus.promql import parse_matchers
from rolloutctl.metrics.prometheus.reading import ARMS, QueryError, Series
from rolloutctl.metrics.retry import short
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion, Stat

OTHER = "(other)"
MISSING = "(missing)"
MIN_INTERVALS = 3  # a variance from fewer per-interval means is not an estimate


class Reader(Protocol):
    start: datetime
    window: float  # seconds from the stage's start to this look
    step: float  # the source's range-query interval (a mean's variance)

    def rows(self, template: str, by: list[str]) -> list[Series]: ...

    def intervals(self, template: str, by: list[str]) -> list[Series]: ...

    def last_query(self) -> str | None: ...


@dataclass
class Look:
    """What the metrics of one look share: the request, the labels grouped by, the result."""

    request: MeasureRequest
    dims: list[str]  # segment dimensions judged at this look
    scope_names: list[str]  # labels the stage scope reads
    out: Measurement

    @property
    def by(self) -> list[str]:
        return [*self.dims, *self.scope_names]


def measure_metric(reader: Reader, metric: Metric, look: Look) -> None:
    """Fill look.out.stats for one metric; QueryError when it cannot be measured,
    NotEnoughData when the stage is too young for any number."""
    total_template = getattr(metric, "total", None)
    if metric.kind == "ratio":
        raise QueryError(
            "ratio metrics are not supported from prometheus: the delta method needs "
            "per-unit sums of squares, which counters do not keep; use a requestlog source"
        )
    if metric.kind == "proportion":
        _proportion(reader, metric, total_template, look)
    elif metric.histogram or metric.kind == "quantile":
        _histogram(reader, metric, look)
    else:
        _mean_of_counters(reader, metric, total_template, look)


def hold(out: Measurement, metric: Metric, why: str) -> None:
    """A metric with nothing to measure yet: no samples on either arm, and why (the gate
    holds on too few samples; no error is counted)."""
    empty: Stat
    if metric.kind == "proportion":
        empty = Proportion(0, 0)
    elif metric.kind == "quantile":
        empty = Histogram({})
    else:
        empty = Moments(0, 0.0, 0.0)
    out.stats[(metric.name, None)] = {arm: empty for arm in ARMS}
    out.notes.append(f"{metric.name}: not enough data yet: {why}")


# ---------------------------------------------------------------- the kinds


def _proportion(reader: Reader, metric: Metric, total_template: str | None, look: Look) -> None:
    out, by = look.out, look.by
    if metric.query is None:
        raise QueryError("a proportion from prometheus needs `query`")
    if total_template is None:
        if metric.event is None:
            raise QueryError(
                "a proportion from prometheus needs `event` (a label matcher such as "
                'status="error") or a `total` query'
            )
        try:
            matchers = parse_matchers(metric.event)
        except (ValueError, re.error) as exc:
            raise QueryError(f"event {metric.event!r}: {exc}") from None
        event_labels = [m.label for m in matchers]
        rows = reader.rows(metric.query, [*by, *event_labels])
        _check_labels(rows, [*by, *event_labels], event_labels, reader.last_query())
        rows = _in_scope(rows, look)
        events = [r for r in rows if all(m.matches(r.labels) for m in matchers)]
        totals = rows
    else:
        events = _scoped_rows(reader, metric.query, look)
        totals = _scoped_rows(reader, total_template, look)
    keep = _kept_values(totals, look, metric)
    n = _sums(totals, look.dims, keep)
    k = _sums(events, look.dims, keep)
    for key, arms in n.items():
        out.stats[(metric.name, key)] = {
            arm: Proportion(round(arms.get(arm, 0.0)), round(k.get(key, {}).get(arm, 0.0)))
            for arm in ARMS
        }
    _arm_counts(out, n)


def _scoped_rows(reader: Reader, template: str, look: Look) -> list[Any]:
    """One query's rows grouped by the look's labels, checked, then limited to the scope."""
    rows = reader.rows(template, look.by)
    _check_labels(rows, look.by, [], reader.last_query())
    return _in_scope(rows, look)


def _histogram(reader: Reader, metric: Metric, look: Look) -> None:
    out, by = look.out, look.by
    template = metric.histogram or metric.query
    if template is None:
        raise QueryError(f"a {metric.kind} from prometheus needs `histogram` (a _bucket query)")
    rows = reader.rows(template, [*by, "le"])
    if any("le" not in r.labels for r in rows):
        raise QueryError(
            "histogram series without an `le` label: group the _bucket increases by (le, ...) "
            f"(labels: {short(str(next(r.labels for r in rows if 'le' not in r.labels)))})",
            reader.last_query(),
        )
    _check_labels(rows, [*by, "le"], [], reader.last_query())
    rows = _in_scope(rows, look)
    keep = _kept_values(rows, look, metric)
    buckets: dict[SegmentKey, dict[str, dict[float, float]]] = {}
    for r in rows:
        try:
            le = bound(r.labels["le"])
        except ValueError:
            raise QueryError(
                f"le={r.labels['le']!r} is not a number", reader.last_query()
            ) from None
        for key in _keys(r, look.dims, keep):
            per = buckets.setdefault(key, {}).setdefault(r.arm, {})
            per[le] = per.get(le, 0.0) + r.value
    counts: dict[SegmentKey, dict[str, float]] = {}
    for key, per_arm in buckets.items():
        stats: dict[str, Stat] = {}
        for arm in ARMS:
            hist = to_histogram(per_arm.get(arm, {}))
            stats[arm] = hist if metric.kind == "quantile" else moments_of(hist)
            counts.setdefault(key, {})[arm] = hist.n
        out.stats[(metric.name, key)] = stats
    _arm_counts(out, counts)


def _mean_of_counters(
    reader: Reader, metric: Metric, total_template: str | None, look: Look
) -> None:
    """The mean from a _sum / _count pair; its variance from per-interval means."""
    out = look.out
    if metric.query is None or total_template is None:
        raise QueryError(
            f"a {metric.kind} from prometheus needs `histogram` (a _bucket query), or for a "
            "mean `query` (the _sum increase) and `total` (the _count increase)"
        )
    sums = _scoped_rows(reader, metric.query, look)
    totals = _scoped_rows(reader, total_template, look)
    keep = _kept_values(totals, look, metric)
    n = _sums(totals, look.dims, keep)
    s = _sums(sums, look.dims, keep)
    _arm_counts(out, n)  # the _count increase counts requests, as a proportion's total
    intervals = int(reader.window // reader.step)
    variance: dict[SegmentKey, dict[str, float]] = {}
    if intervals >= MIN_INTERVALS:  # else no range query: it could not give enough
        variance = _interval_variance(reader, metric.query, total_template, look, keep)
    short_of: list[str] = []
    for key, arms in n.items():
        moments: dict[str, Stat] = {}
        for arm in ARMS:
            count, total = round(arms.get(arm, 0.0)), s.get(key, {}).get(arm, 0.0)
            var = variance.get(key, {}).get(arm)
            if var is None and count:
                # No variance yet: no samples yet, as far as the gate can judge.
                short_of.append(arm if key is None else f"{arm} in {key[0]}={key[1]}")
                moments[arm] = Moments(0, 0.0, 0.0)
                continue
            sq = (var or 0.0) * max(count - 1, 0) + (total * total / count if count else 0.0)
            moments[arm] = Moments(count, total, sq)
        out.stats[(metric.name, key)] = moments
    if short_of:
        step = int(reader.step)
        if intervals < MIN_INTERVALS:
            why = (
                f"the variance needs {MIN_INTERVALS} intervals of {step}s (the source's `step`); "
                f"the stage is {int(reader.window)}s old, so it holds until "
                f"{MIN_INTERVALS * step}s"
            )
        else:
            why = (
                f"fewer than {MIN_INTERVALS} of the {intervals} intervals of {step}s have "
                f"requests for {', '.join(short_of[:5])}"
                + (f" and {len(short_of) - 5} more" if len(short_of) > 5 else "")
                + ", so their variance is unknown"
            )
        out.notes.append(f"{metric.name}: not enough data yet: {why}")


def _interval_variance(
    reader: Reader,
    sum_template: str,
    count_template: str,
    look: Look,
    keep: dict[str, set[str] | None],
) -> dict[SegmentKey, dict[str, float]]:
    """Per segment and arm, sum n_i (m_i - m)^2 / (k - 1) over the step intervals with
    requests (see the package docstring); missing where fewer than MIN_INTERVALS have any."""
    sums = _in_scope(reader.intervals(sum_template, look.by), look)
    counts = _in_scope(reader.intervals(count_template, look.by), look)
    per: dict[tuple[SegmentKey, str], dict[float, list[float]]] = {}
    for rows, slot in ((sums, 0), (counts, 1)):
        for r in rows:
            for key in _keys(r, look.dims, keep):
                cell = per.setdefault((key, r.arm), {}).setdefault(r.at, [0.0, 0.0])
                cell[slot] += r.value
    result: dict[SegmentKey, dict[str, float]] = {}
    for (key, arm), intervals in per.items():
        cells = [(s, c) for s, c in intervals.values() if c > 0]
        if len(cells) < MIN_INTERVALS:
            continue
        n = sum(c for _, c in cells)
        mean = sum(s for s, _ in cells) / n
        spread = sum(c * (s / c - mean) ** 2 for s, c in cells)
        result.setdefault(key, {})[arm] = spread / (len(cells) - 1)
    return result


# ---------------------------------------------------------------- grouping


def _check_labels(
    rows: list[Series], known: list[str], needed: list[str], query: str | None = None
) -> None:
    """Series that differ only in labels the source does not group by would be summed
    blindly: refuse them (more series than expected). Labels an event needs must exist."""
    for label in needed:
        if rows and not any(label in r.labels for r in rows):
            raise QueryError(
                f"no series has the label {label!r} the event matches on: group by "
                "({{by}}) so it is kept",
                query,
            )
    keyed = set(known) | {"le"}
    seen: dict[tuple[Any, ...], dict[str, str]] = {}
    for r in rows:
        key = (r.arm, tuple(sorted((k, v) for k, v in r.labels.items() if k in keyed)))
        if key in seen:
            extra = sorted(
                k for k in set(r.labels) | set(seen[key]) if r.labels.get(k) != seen[key].get(k)
            )
            raise QueryError(
                f"multiple series where one was expected ({r.arm}, differing in "
                f"{', '.join(extra) or 'nothing'}): aggregate with sum by ({{{{by}}}})",
                query,
            )
        seen[key] = r.labels


def _in_scope(rows: list[Series], look: Look) -> list[Series]:
    """The stage scope, applied to the series' labels (both arms filtered alike)."""
    scope, names, out = look.request.scope, look.scope_names, look.out
    if scope is None:
        return rows
    if rows and not all(any(n in r.labels for r in rows) for n in names):
        note = "stage scope not applied to prometheus series (labels missing): " + ", ".join(
            n for n in names if not any(n in r.labels for r in rows)
        )
        if note not in out.notes:
            out.notes.append(note)
        return rows
    return [r for r in rows if expr.evaluate(scope, r.labels.get) is True]


def _kept_values(rows: list[Series], look: Look, metric: Metric) -> dict[str, set[str] | None]:
    """Per dimension, the segment values judged (the largest, when there are too many);
    a dimension no series carries is left out with a note."""
    keep: dict[str, set[str] | None] = {}
    most = look.request.max_segments
    for d in look.dims:
        if not any(d in r.labels for r in rows):
            look.out.notes.append(
                f"segment dimension {d!r} is not a label of {metric.name}'s series"
            )
            continue
        totals: dict[str, float] = {}
        for r in rows:
            v = r.labels.get(d, MISSING)
            totals[v] = totals.get(v, 0.0) + r.value
        if len(totals) > most:
            ranked = sorted(totals, key=lambda v: (-totals[v], v))
            keep[d] = set(ranked[:most])
            look.out.notes.append(
                f"segment {d!r} has {len(totals)} values in {metric.name}; judging the "
                f"{most} largest, the rest pooled as {OTHER!r}"
            )
        else:
            keep[d] = None
    return keep


def _keys(row: Series, dims: list[str], keep: dict[str, set[str] | None]) -> list[SegmentKey]:
    keys: list[SegmentKey] = [None]
    for d in dims:
        if d not in keep:
            continue
        v = row.labels.get(d, MISSING)
        allowed = keep[d]
        keys.append((d, v if allowed is None or v in allowed else OTHER))
    return keys


def _sums(
    rows: list[Series], dims: list[str], keep: dict[str, set[str] | None]
) -> dict[SegmentKey, dict[str, float]]:
    out: dict[SegmentKey, dict[str, float]] = {None: {}}
    for r in rows:
        for key in _keys(r, dims, keep):
            arms = out.setdefault(key, {})
            arms[r.arm] = arms.get(r.arm, 0.0) + r.value
    return out


def _arm_counts(out: Measurement, counts: dict[SegmentKey, dict[str, float]]) -> None:
    """Requests per arm and segment for the sample-ratio check, from the first metric
    that counts requests (a proportion's totals, else a histogram's counts)."""
    if out.arm_counts:
        return
    for key, arms in counts.items():
        out.arm_counts[key] = {arm: round(arms.get(arm, 0.0)) for arm in ARMS}
