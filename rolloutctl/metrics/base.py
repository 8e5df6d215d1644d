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
