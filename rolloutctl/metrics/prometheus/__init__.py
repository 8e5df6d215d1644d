"""Prometheus-compatible HTTP APIs (Prometheus, VictoriaMetrics, Thanos, Mimir) as a source.

The gate's look is a set of instant queries pinned at the request's end (`time=`), over the
stage window, so both arms are measured over the same interval and a re-run gives the same
numbers. Only aggregates cross the wire: one query per metric returns every arm and every
segment, grouped `by` the arm label and the segment labels, and the sums per arm and segment
happen here. The report's time series over the stage comes from one range query per
template at the look interval (`measure_series`).

Templates (a metric's `query:`, `histogram:` and `total:`) may use:

  {{variant}}  the arms: after `=~"` the regex `control|canary` (one query for both arms,
               told apart by that label); after `="` the arm's value (one query per arm).
               The value is the flag variant's name, or what the source's `variants:` maps
               it to (`{v1: answer-model-v1}`: OpenTelemetry's `gen_ai.request.model`). A
               dotted label is written quoted, the Prometheus 3 way:
               `"gen_ai.request.model"=~"{{variant}}"` (a bare dotted name is quoted for you)
  {{window}}   the stage window in seconds, e.g. `11700s`    {{start}} {{end}}  unix seconds
  {{by}}       the labels to group by: the arm label, the segment dimensions, the labels a
               proportion's `event` matches on, and `le` for histograms (dotted names quoted)
  {{control}} {{canary}}  the arms' label values

What each metric kind reads:

  proportion  `query` gives request counts (counters through `increase()`), grouped `by
              ({{by}})`; `event` is a label matcher such as `status="error"` or
              `status=~"error|timeout"`: events are the series it matches, the total is all
              of them. Or, when events and totals are different counters: `query` gives the
              events and `total` the totals. Real counts either way (rounded to integers:
              `increase()` extrapolates to the window's edges).
  quantile    `histogram` (or `query`) gives `_bucket` increases grouped by `le` (see
              `buckets.py` for how Prometheus buckets become log buckets).
  mean        from a histogram (`histogram:`): n, sum and sum of squares at the log-bucket
              midpoints (the within-request variance, to bucket resolution). Or `query` gives
              the `_sum` increase and `total` the `_count` increase: the mean is exact, and the
              variance is estimated from per-interval means (range queries at the source's
              `step`): n_i (m_i - m)^2 summed over intervals, over k - 1. It is the
              per-request variance if requests are alike across intervals, larger when the
              mean drifts over time (conservative). With fewer than 3 intervals (a stage
              younger than 3 steps, or an arm with requests in fewer) there is no estimate
              yet: that arm has no samples and the gate holds on "not enough data".
  ratio       not supported: the delta method needs per-unit sums of squares, which counters
              do not keep. Use a request-log source.

A query that fails for one metric (HTTP error, PromQL error, empty result, NaN, series that
differ only in labels the source does not group by, series without the arm label, a histogram
without `le`) becomes that metric's own MetricError (`Measurement.metric_errors`): the
rendered query that failed and the answer; `Measurement.queries` holds every query the metric
sends, the failing one among them. A server that cannot be reached at all raises
BackendError. The gate's consecutive-error limit decides what repeated errors mean. A stage
too young for a number (no series yet within one `step` of its start, a mean's variance
before 3 steps) is not an error: the metric has no samples yet, with a note saying why.

`validate` refuses templates that cannot work (`promql.metric_problems`)."""

from __future__ import annotations

from rolloutctl.metrics.prometheus.buckets import moments_of, to_histogram
from rolloutctl.metrics.prometheus.promql import Matcher, metric_problems, parse_matchers
from rolloutctl.metrics.prometheus.reading import NotEnoughData, QueryError
from rolloutctl.metrics.prometheus.source import PrometheusSource

__all__ = [
    "Matcher",
    "NotEnoughData",
    "PrometheusSource",
    "QueryError",
    "metric_problems",
    "moments_of",
    "parse_matchers",
    "to_histogram",
]
