"""Prometheus-compatible HTTP APIs (Prometheus, VictoriaMetrics, Thanos, Mimir) as a source.

Every query is an instant query pinned at the request's end (`time=`), over the stage window,
so both arms are measured over the same interval and a re-run gives the same numbers. Only
aggregates cross the wire: one query per metric returns every arm and every segment, grouped
`by` the arm label and the segment labels, and the sums per arm and segment happen here.

Templates (a metric's `query:` and `histogram:`) may use:

  {{variant}}  the arms: after `=~"` the regex `control|canary` (one query for both arms,
               told apart by that label); after `="` the arm's name (one query per arm)
  {{window}}   the stage window in seconds, e.g. `11700s`    {{start}} {{end}}  unix seconds
  {{by}}       the labels to group by: the arm label, the segment dimensions, the labels a
               proportion's `event` matches on, and `le` for histograms
  {{control}} {{canary}}  the arm names

What each metric kind reads:

  proportion  `query` gives request counts (counters through `increase()`), grouped `by
              ({{by}})`; `event` is a label matcher such as `status="error"` or
              `status=~"error|timeout"`: events are the series it matches, the total is all
              of them. Or, when events and totals are different counters: `query` gives the
              events and `total` the totals. Real counts either way (rounded to integers:
              `increase()` extrapolates to the window's edges).
  quantile    `histogram` (or `query`) gives `_bucket` increases grouped by `le`. Each
              Prometheus bucket's count is spread evenly, in log space, over the project's 1%
              log buckets between its lower and upper bound (what `histogram_quantile` does
              with linear interpolation, on a log scale); the lowest bucket starts one bucket
              width (geometric) below its bound; the `+Inf` bucket sits just above the highest
              finite bound. Resolution is therefore the Prometheus bucket layout's.
  mean        from a histogram (`histogram:`): n, sum and sum of squares at the log-bucket
              midpoints (the within-request variance, to bucket resolution). Or `query` gives
              the `_sum` increase and `total` the `_count` increase: the mean is exact, and the
              variance is estimated from per-interval means (range queries at the source's
              `step`): n_i (m_i - m)^2 summed over intervals, over k - 1. It is the
              per-request variance if requests are alike across intervals, larger when the
              mean drifts over time (conservative); with fewer than 3 intervals it is unknown
              and the metric is an error.
  ratio       not supported: the delta method needs per-unit sums of squares, which counters
              do not keep. Use a request-log source.

A query that fails for one metric (HTTP error, PromQL error, empty result, NaN, series that
differ only in labels the source does not group by, a histogram without `le`) becomes an
error entry for that metric with the rendered query and the answer; a server that cannot be
reached at all raises BackendError. The gate's consecutive-error limit decides what
repeated errors mean."""

from __future__ import annotations

import contextlib
import math
import os
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import httpx

from rolloutctl.durations import parse_duration
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics import retry
from rolloutctl.metrics.base import Measurement, MeasureRequest, SegmentKey
from rolloutctl.metrics.retry import short
from rolloutctl.playbook import expr
from rolloutctl.playbook.load import LoadedPlaybook, resolve_env
from rolloutctl.playbook.model import Metric
from rolloutctl.playbook.model import PrometheusSource as PrometheusSpec
from rolloutctl.stats.sufficient import GAMMA, ZERO_BUCKET, Histogram, Moments, Proportion, Stat

ARMS = ("control", "canary")
OTHER = "(other)"
MISSING = "(missing)"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_ARM_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|=)\s*"\{\{\s*variant\s*\}\}"')
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_RE2_SPECIAL = set(r"\.+*?()|[]{}^$")


class QueryError(Exception):
    """One metric's query failed; the message names the query and the answer."""


@dataclass(frozen=True)
class Series:
    arm: str  # control | canary
    labels: dict[str, str]
    value: float
    at: float = 0.0  # evaluation time (range queries)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.label, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None  # PromQL regexes are anchored
        return hit if self.op == "=~" else not hit


def parse_matchers(text: str) -> list[Matcher]:
    """`status="error", kind=~"a|b"` -> matchers; ValueError when it is not that shape."""
    out: list[Matcher] = []
    for part in _split_top(text.strip().strip("{}")):
        m = _MATCHER.fullmatch(part)
        if m is None:
            raise ValueError(
                f'not a label matcher: {part.strip()!r} (expected e.g. status="error")'
            )
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        if m.group(2) in ("=~", "!~"):
            re.compile(value)
        out.append(Matcher(m.group(1), m.group(2), value))
    if not out:
        raise ValueError("empty label matcher")
    return out


def _split_top(text: str) -> list[str]:
    """Split on commas outside double quotes."""
    parts, current, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
            continue
        if ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current)
    return parts


def _regex_literal(value: str) -> str:
    """A name as an RE2 regex inside a PromQL double-quoted string."""
    escaped = "".join("\\" + c if c in _RE2_SPECIAL else c for c in value)
    return _string_literal(escaped)


def _string_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


# ---------------------------------------------------------------- histograms


def _bound(le: str) -> float:
    return math.inf if le.strip() in ("+Inf", "Inf", "+inf", "inf") else float(le)


def to_histogram(cumulative: dict[float, float]) -> Histogram:
    """Cumulative Prometheus bucket counts (upper bound -> count) as a log-bucket Histogram.

    Each bucket's count is spread evenly over the log buckets between its lower and upper
    bound (integers, largest remainder first); see the module docstring."""
    bounds = sorted(cumulative)
    counts: dict[int, int] = {}
    finite = [b for b in bounds if math.isfinite(b)]
    previous_total = 0.0
    previous_bound: float | None = None
    for i, upper in enumerate(bounds):
        total = max(cumulative[upper], previous_total)  # extrapolation can break monotonicity
        count = round(total) - round(previous_total)
        previous_total = total
        lower = previous_bound
        previous_bound = upper
        if count <= 0:
            continue
        if not math.isfinite(upper):
            top = finite[-1] if finite else 1.0
            b = Histogram.bucket_of(top) + 1
            counts[b] = counts.get(b, 0) + count
            continue
        if upper <= 0:
            counts[ZERO_BUCKET] = counts.get(ZERO_BUCKET, 0) + count
            continue
        if lower is None or lower <= 0:
            following = [b for b in finite[i + 1 :] if b > upper]
            lower = upper * upper / following[0] if following else upper / GAMMA
        first = Histogram.bucket_of(lower) + 1 if lower > 0 else Histogram.bucket_of(upper)
        last = Histogram.bucket_of(upper)
        # a value equal to the bound `upper` counts in its bucket: bucket_of(upper) holds it
        first = min(first, last)
        span = last - first + 1
        base, extra = divmod(count, span)
        for k in range(span):
            # the remainder goes to evenly spaced sub-buckets
            add = base + (1 if extra and (k * extra) // span != ((k + 1) * extra) // span else 0)
            if add:
                counts[first + k] = counts.get(first + k, 0) + add
    return Histogram(counts)


def moments_of(hist: Histogram) -> Moments:
    s = ss = 0.0
    for b, c in hist.counts.items():
        x = Histogram.midpoint(b)
        s += c * x
        ss += c * x * x
    return Moments(hist.n, s, ss)


# ---------------------------------------------------------------- the source


@dataclass
class PrometheusSource:
    KIND: ClassVar[str] = "prometheus"
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    verify: bool | str = True
    retries: int = 2  # after the first try
    step: timedelta = timedelta(minutes=5)
    auth: tuple[str, str] | None = None
    backoff: float = 0.2  # seconds before the second try; doubles each time
    transport: httpx.BaseTransport | None = None  # tests inject faults here
    calls: int = 0  # HTTP requests made (benchmarks count them)

    @classmethod
    def from_spec(cls, name: str, spec: Any, loaded: LoadedPlaybook) -> PrometheusSource:
        assert isinstance(spec, PrometheusSpec)
        where = f"{loaded.path}: sources.{name}"
        headers = {k: resolve_env(v, where=f"{where}.headers.{k}") for k, v in spec.headers.items()}
        auth = None
        if spec.bearer_token_env:
            headers["Authorization"] = "Bearer " + _secret(spec.bearer_token_env, where)
        if spec.basic_auth_env:
            user, sep, password = _secret(spec.basic_auth_env, where).partition(":")
            if not sep:
                raise InvalidInput(
                    f"{where}: {spec.basic_auth_env} must hold user:password",
                    hint=f"export {spec.basic_auth_env}=user:password",
                )
            auth = (user, password)
        verify: bool | str = spec.tls_verify
        if isinstance(verify, str):
            verify = loaded.resolve_path(verify)
            if not os.path.isfile(verify):
                raise InvalidInput(
                    f"{where}.tls_verify: no CA bundle at {verify}",
                    hint="give a PEM file of the CA that signed the server's certificate",
                )
        return cls(
            name=name,
            url=resolve_env(spec.url, where=f"{where}.url").rstrip("/"),
            headers=headers,
            timeout=parse_duration(spec.timeout).total_seconds(),
            verify=verify,
            retries=spec.retries,
            step=parse_duration(spec.step),
            auth=auth,
        )

    # ------------------------------------------------------------ HTTP

    def client(self) -> httpx.Client:
        # a CA bundle path becomes an SSL context (httpx no longer takes the path itself)
        verify = (
            ssl.create_default_context(cafile=self.verify)
            if isinstance(self.verify, str)
            else self.verify
        )
        return httpx.Client(
            base_url=self.url,
            headers=self.headers,
            timeout=self.timeout,
            verify=verify,
            auth=self.auth,
            transport=self.transport,
        )

    def api(self, client: httpx.Client, path: str, params: dict[str, str]) -> list[Any]:
        """POST one query; the `data.result` list, or QueryError / BackendError."""
        query = params.get("query", "")
        try:
            response = retry.send(
                lambda: client.post(path, data=params),
                retries=self.retries,
                backoff=self.backoff,
                on_try=self._count,
            )
        except retry.SlowAnswer:
            raise QueryError(f"timed out after {self.timeout:g}s: {query}") from None
        except retry.GaveUp as exc:
            if exc.status is not None:
                raise QueryError(f"{exc.failure} after {exc.tries} tries: {query}") from None
            raise BackendError(
                f"prometheus source {self.name!r}: cannot reach {self.url} after {exc.tries} "
                f"tries ({exc.failure})",
                hint="check the URL and that the server is up; rollback does not need it",
            ) from None
        return self._result(response, query)

    def _count(self) -> None:
        self.calls += 1

    @staticmethod
    def _result(response: httpx.Response, query: str) -> list[Any]:
        try:
            body = response.json()
        except ValueError:
            raise QueryError(
                f"HTTP {response.status_code}, not JSON: {short(response.text)} (query: {query})"
            ) from None
        if not isinstance(body, dict):
            raise QueryError(f"unexpected answer {short(response.text)} (query: {query})")
        if body.get("status") != "success" or response.status_code >= 400:
            kind = body.get("errorType") or f"HTTP {response.status_code}"
            raise QueryError(
                f"{kind}: {short(str(body.get('error') or response.text))} (query: {query})"
            )
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            if isinstance(data, dict) and data.get("resultType") == "scalar":
                return [{"metric": {}, "value": data.get("result")}]
            raise QueryError(f"unexpected answer {short(response.text)} (query: {query})")
        result: list[Any] = data["result"]
        return result

    # ------------------------------------------------------------ templates

    def render(
        self,
        template: str,
        request: MeasureRequest,
        by: Iterable[str],
        arm: str | None,
        window_seconds: float | None = None,
    ) -> str:
        window = window_seconds or max(1, math.ceil((request.end - request.start).total_seconds()))
        names = {"control": request.control, "canary": request.canary}

        def variant(match: re.Match[str]) -> str:
            if arm is None:
                arms = "|".join(_regex_literal(names[a]) for a in ARMS)
                return f'{match.group(1)}{match.group(2)}"{arms}"'
            return f'{match.group(1)}="{_string_literal(names[arm])}"'

        text = _ARM_LABEL.sub(variant, template)
        values = {
            "window": f"{int(window)}s",
            "start": _seconds(request.start.timestamp()),
            "end": _seconds(request.end.timestamp()),
            "by": ", ".join(dict.fromkeys(by)),
            "control": request.control,
            "canary": request.canary,
        }

        def other(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise QueryError(
                    f"unknown placeholder {{{{{key}}}}} in {template!r} (known: variant, "
                    f"{', '.join(values)})"
                )
            return values[key]

        return _PLACEHOLDER.sub(other, text)

    def run_template(
        self,
        client: httpx.Client | None,
        template: str,
        request: MeasureRequest,
        by: list[str],
        rendered: list[str],
    ) -> list[Series]:
        """Every series of one template's answer, each assigned to an arm."""
        found = _ARM_LABEL.search(template)
        if found is None:
            raise QueryError(
                f'{template!r} has no {{{{variant}}}} matcher such as variant=~"{{{{variant}}}}": '
                "the arms cannot be told apart"
            )
        label = found.group(1)
        per_arm = found.group(2) == "="
        names = {request.control: "control", request.canary: "canary"}
        out: list[Series] = []
        for arm in ARMS if per_arm else (None,):
            query = self.render(template, request, [label, *by], arm)
            rendered.append(query)
            if client is None:  # explaining: render, send nothing
                continue
            params = {"query": query, "time": _seconds(request.end.timestamp())}
            for item in self.api(client, "/api/v1/query", params):
                labels, value = self._sample(item, query)
                which = arm or names.get(labels.get(label, ""))
                if which is not None:
                    out.append(Series(which, labels, value))
        if not out and client is not None:
            raise QueryError(f"empty result: no series for either arm (query: {rendered[-1]})")
        return out

    def run_range(
        self,
        client: httpx.Client | None,
        template: str,
        request: MeasureRequest,
        by: list[str],
        rendered: list[str],
    ) -> list[Series]:
        """Per-interval values at the source's step over the window (range query)."""
        found = _ARM_LABEL.search(template)
        if found is None:
            raise QueryError(f"{template!r} has no {{{{variant}}}} matcher")
        label, per_arm = found.group(1), found.group(2) == "="
        names = {request.control: "control", request.canary: "canary"}
        step = self.step.total_seconds()
        out: list[Series] = []
        for arm in ARMS if per_arm else (None,):
            query = self.render(template, request, [label, *by], arm, window_seconds=step)
            rendered.append(f"{query} [range, step {int(step)}s]")
            if client is None:
                continue
            params = {
                "query": query,
                "step": _seconds(step),
                "start": _seconds(request.start.timestamp() + step),
                "end": _seconds(request.end.timestamp()),
            }
            for item in self.api(client, "/api/v1/query_range", params):
                labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
                which = arm or names.get(labels.get(label, ""))
                for at, raw in item.get("values") or []:
                    value = float(raw)
                    if which is not None and math.isfinite(value):
                        out.append(Series(which, labels, value, float(at)))
        return out

    @staticmethod
    def _sample(item: Any, query: str) -> tuple[dict[str, str], float]:
        try:
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            value = float(item["value"][1])
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            raise QueryError(f"unexpected series {short(str(item))} (query: {query})") from None
        if not math.isfinite(value):
            raise QueryError(f"value {value} for {labels or 'the series'} (query: {query})")
        return labels, value

    # ------------------------------------------------------------ measuring

    def measure(self, request: MeasureRequest) -> Measurement:
        out = Measurement()
        dims = list(request.dimensions)
        scope_names: list[str] = []
        if request.scope is not None:
            scope_names = sorted(expr.names(request.scope))
        with self.client() as client:
            for metric in request.metrics:
                rendered: list[str] = []
                try:
                    self._measure_metric(client, metric, request, dims, scope_names, out, rendered)
                except QueryError as exc:
                    out.errors[metric.name] = str(exc)
                    out.stats = {k: v for k, v in out.stats.items() if k[0] != metric.name}
                finally:
                    if rendered:
                        out.queries[metric.name] = "\n".join(rendered)
        out.arm_counts.setdefault(None, {"control": 0, "canary": 0})
        return out

    def explain(self, request: MeasureRequest) -> dict[str, list[str]]:
        """The exact queries `measure` would send for this request, sending none (`plan`)."""
        dims = list(request.dimensions)
        scope_names = sorted(expr.names(request.scope)) if request.scope is not None else []
        queries: dict[str, list[str]] = {}
        for metric in request.metrics:
            rendered: list[str] = []
            # What was rendered before the (empty) answers ran out is the plan.
            with contextlib.suppress(QueryError, ValueError, ZeroDivisionError):
                self._measure_metric(
                    None, metric, request, dims, scope_names, Measurement(), rendered
                )
            queries[metric.name] = rendered
        return queries

    def _measure_metric(
        self,
        client: httpx.Client | None,
        metric: Metric,
        request: MeasureRequest,
        dims: list[str],
        scope_names: list[str],
        out: Measurement,
        rendered: list[str],
    ) -> None:
        total_template = getattr(metric, "total", None)
        by = [*dims, *scope_names]
        if metric.kind == "ratio":
            raise QueryError(
                "ratio metrics are not supported from prometheus: the delta method needs "
                "per-unit sums of squares, which counters do not keep; use a requestlog source"
            )
        if metric.kind == "proportion":
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
                rows = self.run_template(
                    client, metric.query, request, [*by, *event_labels], rendered
                )
                self._check_labels(rows, [*by, *event_labels], event_labels, rendered)
                rows = self._in_scope(rows, request, scope_names, out)
                events = [r for r in rows if all(m.matches(r.labels) for m in matchers)]
                totals = rows
            else:
                events = self.run_template(client, metric.query, request, by, rendered)
                totals = self.run_template(client, total_template, request, by, rendered)
                for rows in (events, totals):
                    self._check_labels(rows, by, [], rendered)
                events = self._in_scope(events, request, scope_names, out)
                totals = self._in_scope(totals, request, scope_names, out)
            keep = self._kept_values(totals, dims, request, out, metric)
            n = self._sums(totals, dims, keep)
            k = self._sums(events, dims, keep)
            for key, arms in n.items():
                out.stats[(metric.name, key)] = {
                    arm: Proportion(round(arms.get(arm, 0.0)), round(k.get(key, {}).get(arm, 0.0)))
                    for arm in ARMS
                }
            self._arm_counts(out, n)
            return

        template = metric.histogram or (metric.query if metric.kind == "quantile" else None)
        if template is not None:
            rows = self.run_template(client, template, request, [*by, "le"], rendered)
            if any("le" not in r.labels for r in rows):
                raise QueryError(
                    "histogram series without an `le` label: group the _bucket increases "
                    f"by (le, ...) (query: {rendered[-1]}; labels: "
                    f"{short(str(next(r.labels for r in rows if 'le' not in r.labels)))})"
                )
            self._check_labels(rows, [*by, "le"], [], rendered)
            rows = self._in_scope(rows, request, scope_names, out)
            keep = self._kept_values(rows, dims, request, out, metric)
            buckets: dict[SegmentKey, dict[str, dict[float, float]]] = {}
            for r in rows:
                try:
                    le = _bound(r.labels["le"])
                except ValueError:
                    raise QueryError(f"le={r.labels['le']!r} is not a number") from None
                for key in self._keys(r, dims, keep):
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
            self._arm_counts(out, counts)
            return

        # mean from a _sum / _count pair
        if metric.query is None or total_template is None:
            raise QueryError(
                f"a {metric.kind} from prometheus needs `histogram` (a _bucket query), or for a "
                "mean `query` (the _sum increase) and `total` (the _count increase)"
            )
        sums = self.run_template(client, metric.query, request, by, rendered)
        totals = self.run_template(client, total_template, request, by, rendered)
        for rows in (sums, totals):
            self._check_labels(rows, by, [], rendered)
        sums = self._in_scope(sums, request, scope_names, out)
        totals = self._in_scope(totals, request, scope_names, out)
        keep = self._kept_values(totals, dims, request, out, metric)
        n = self._sums(totals, dims, keep)
        s = self._sums(sums, dims, keep)
        self._arm_counts(out, n)  # the _count increase counts requests, as a proportion's total
        variance = self._interval_variance(
            client, metric, total_template, request, by, dims, keep, scope_names, out, rendered
        )
        for key, arms in n.items():
            moments: dict[str, Stat] = {}
            for arm in ARMS:
                count, total = round(arms.get(arm, 0.0)), s.get(key, {}).get(arm, 0.0)
                var = variance.get(key, {}).get(arm)
                if var is None and count:
                    raise QueryError(
                        f"too few {int(self.step.total_seconds())}s intervals to estimate the "
                        f"variance of {metric.name} for the {arm} (segment {key}); shorten the "
                        "source's `step`"
                    )
                sq = (var or 0.0) * max(count - 1, 0) + (total * total / count if count else 0.0)
                moments[arm] = Moments(count, total, sq)
            out.stats[(metric.name, key)] = moments

    def _interval_variance(
        self,
        client: httpx.Client | None,
        metric: Metric,
        total_template: str,
        request: MeasureRequest,
        by: list[str],
        dims: list[str],
        keep: dict[str, set[str] | None],
        scope_names: list[str],
        out: Measurement,
        rendered: list[str],
    ) -> dict[SegmentKey, dict[str, float]]:
        assert metric.query is not None
        sums = self._in_scope(
            self.run_range(client, metric.query, request, by, rendered), request, scope_names, out
        )
        counts = self._in_scope(
            self.run_range(client, total_template, request, by, rendered), request, scope_names, out
        )
        per: dict[tuple[SegmentKey, str], dict[float, list[float]]] = {}
        for rows, slot in ((sums, 0), (counts, 1)):
            for r in rows:
                for key in self._keys(r, dims, keep):
                    cell = per.setdefault((key, r.arm), {}).setdefault(r.at, [0.0, 0.0])
                    cell[slot] += r.value
        result: dict[SegmentKey, dict[str, float]] = {}
        for (key, arm), intervals in per.items():
            cells = [(s, c) for s, c in intervals.values() if c > 0]
            if len(cells) < 3:
                continue
            n = sum(c for _, c in cells)
            mean = sum(s for s, _ in cells) / n
            spread = sum(c * (s / c - mean) ** 2 for s, c in cells)
            result.setdefault(key, {})[arm] = spread / (len(cells) - 1)
        return result

    # ------------------------------------------------------------ grouping

    @staticmethod
    def _check_labels(
        rows: list[Series], known: list[str], needed: list[str], rendered: list[str]
    ) -> None:
        """Series that differ only in labels the source does not group by would be summed
        blindly: refuse them (more series than expected). Labels an event needs must exist."""
        for label in needed:
            if not any(label in r.labels for r in rows):
                raise QueryError(
                    f"no series has the label {label!r} the event matches on: group by "
                    f"({{{{by}}}}) so it is kept (query: {rendered[-1]})"
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
                    f"{', '.join(extra) or 'nothing'}): aggregate with sum by ({{{{by}}}}) "
                    f"(query: {rendered[-1]})"
                )
            seen[key] = r.labels

    @staticmethod
    def _in_scope(
        rows: list[Series], request: MeasureRequest, names: list[str], out: Measurement
    ) -> list[Series]:
        """The stage scope, applied to the series' labels (both arms filtered alike)."""
        if request.scope is None:
            return rows
        if rows and not all(any(n in r.labels for r in rows) for n in names):
            note = "stage scope not applied to prometheus series (labels missing): " + ", ".join(
                n for n in names if not any(n in r.labels for r in rows)
            )
            if note not in out.notes:
                out.notes.append(note)
            return rows
        scope = request.scope
        return [r for r in rows if expr.evaluate(scope, r.labels.get) is True]

    @staticmethod
    def _kept_values(
        rows: list[Series],
        dims: list[str],
        request: MeasureRequest,
        out: Measurement,
        metric: Metric,
    ) -> dict[str, set[str] | None]:
        """Per dimension, the segment values judged (the largest, when there are too many);
        a dimension no series carries is left out with a note."""
        keep: dict[str, set[str] | None] = {}
        for d in dims:
            if not any(d in r.labels for r in rows):
                out.notes.append(
                    f"segment dimension {d!r} is not a label of {metric.name}'s series"
                )
                continue
            totals: dict[str, float] = {}
            for r in rows:
                v = r.labels.get(d, MISSING)
                totals[v] = totals.get(v, 0.0) + r.value
            if len(totals) > request.max_segments:
                ranked = sorted(totals, key=lambda v: (-totals[v], v))
                keep[d] = set(ranked[: request.max_segments])
                out.notes.append(
                    f"segment {d!r} has {len(totals)} values in {metric.name}; judging the "
                    f"{request.max_segments} largest, the rest pooled as {OTHER!r}"
                )
            else:
                keep[d] = None
        return keep

    @staticmethod
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
        self, rows: list[Series], dims: list[str], keep: dict[str, set[str] | None]
    ) -> dict[SegmentKey, dict[str, float]]:
        out: dict[SegmentKey, dict[str, float]] = {None: {}}
        for r in rows:
            for key in self._keys(r, dims, keep):
                arms = out.setdefault(key, {})
                arms[r.arm] = arms.get(r.arm, 0.0) + r.value
        return out

    @staticmethod
    def _arm_counts(out: Measurement, counts: dict[SegmentKey, dict[str, float]]) -> None:
        """Requests per arm and segment for the sample-ratio check, from the first metric
        that counts requests (a proportion's totals, else a histogram's counts)."""
        if out.arm_counts:
            return
        for key, arms in counts.items():
            out.arm_counts[key] = {arm: round(arms.get(arm, 0.0)) for arm in ARMS}


def _secret(variable: str, where: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise InvalidInput(
            f"{where}: environment variable {variable} is not set (it holds the credential)",
            hint=f"export {variable}=...",
        )
    return value
