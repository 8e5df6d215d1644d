"""The contract between the gate and every metrics source: a request for sufficient
statistics over one window, and the measurement that comes back.

A source never decides anything. A query that fails for one metric becomes an error entry
for that metric (the gate decides what repeated errors mean); a source that cannot run at
all raises BackendError (unreachable) or InvalidInput (the data is unusable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Stat

SegmentKey = tuple[str, str] | None  # None: all traffic; (dimension, value): one segment


@dataclass(frozen=True)
class MeasureRequest:
    metrics: tuple[Metric, ...]
    start: datetime  # the stage's start: the same window for both arms
    end: datetime  # the evaluation time, pinned (never "now" implicitly)
    control: str
    canary: str
    dimensions: tuple[str, ...] = ()
    scope: expr.Node | None = None  # who could get the canary; both arms filtered alike
    max_segments: int = 60
    # Segment values never pooled into '(other)' however many values a dimension has: the
    # playbook's `segments.critical`, whose checks must always be judged on their own.
    never_pooled: tuple[tuple[str, tuple[str, ...]], ...] = ()
    units: bool = True  # count distinct unit_id per arm (the sample-ratio check needs it)
    # Window-compared arms (post-launch monitoring): when set, the control arm is the control
    # variant's traffic in [control_window) (e.g. the pre-rollout baseline) and the canary arm
    # the canary variant's in [start, end). The arms then differ in time, not by a random
    # split: the sample-ratio check means nothing and must be skipped. None: both in
    # [start, end). Only the request-log source implements it.
    control_window: tuple[datetime, datetime] | None = None

    def __post_init__(self) -> None:
        if self.control_window is not None:
            lo, hi = self.control_window
            if not lo < hi:
                raise ValueError(
                    f"control_window must be [start, end) with start < end: {lo}, {hi}"
                )
            if self.control == self.canary:  # arms are told apart by variant
                raise ValueError(f"control_window needs two variants, both are {self.control!r}")


@dataclass(frozen=True)
class MetricError:
    """Why one metric has no value, in parts a report can lay out: what went wrong and the
    exact query whose answer it was (sources that send queries fill `query`)."""

    message: str  # the answer or the problem, e.g. "bad_data: 1:77: parse error: ..."
    query: str | None = None  # the exact query that failed; None when none was sent
    error_type: str | None = None  # the server's own error class (Prometheus' errorType)

    def __str__(self) -> str:
        return self.message if self.query is None else f"{self.message} (query: {self.query})"


@dataclass
class Measurement:
    # (metric name, segment) -> {"control": stat, "canary": stat}
    stats: dict[tuple[str, SegmentKey], dict[str, Stat]] = field(default_factory=dict)
    # segment -> {"control": rows, "canary": rows} for the sample-ratio check
    arm_counts: dict[SegmentKey, dict[str, int]] = field(default_factory=dict)
    # segment -> distinct randomization units per arm: the sample-ratio check counts what was
    # randomized (users), not requests, which cluster within users
    unit_counts: dict[SegmentKey, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    # metric -> the same, typed (sources that record one; see `error_for`)
    metric_errors: dict[str, MetricError] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)  # metric (or "*") -> exact query
    bad_rows: dict[str, int] = field(default_factory=dict)  # reason -> rows
    notes: list[str] = field(default_factory=list)
    latest: datetime | None = None  # newest row seen in the window (data freshness)

    def fail(self, metric: str, error: MetricError) -> None:
        """Record that `metric` has no value; `errors` keeps the one-line text."""
        self.errors[metric] = str(error)
        self.metric_errors[metric] = error

    def error_for(self, metric: str) -> MetricError | None:
        """The metric's error as a record, whichever way the source recorded it (a source
        that records only `errors` gives the text alone: its query is in `queries`)."""
        if metric in self.metric_errors:
            return self.metric_errors[metric]
        if metric in self.errors:
            return MetricError(self.errors[metric])
        return None


class MetricSource(Protocol):
    KIND: ClassVar[str]

    def measure(self, request: MeasureRequest) -> Measurement: ...
