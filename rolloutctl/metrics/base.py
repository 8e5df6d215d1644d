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
    units: bool = True  # count distinct unit_id per arm (the sample-ratio check needs it)


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
    queries: dict[str, str] = field(default_factory=dict)  # metric (or "*") -> exact query
    bad_rows: dict[str, int] = field(default_factory=dict)  # reason -> rows
    notes: list[str] = field(default_factory=list)
    latest: datetime | None = None  # newest row seen in the window (data freshness)


class MetricSource(Protocol):
    KIND: ClassVar[str]

    def measure(self, request: MeasureRequest) -> Measurement: ...
