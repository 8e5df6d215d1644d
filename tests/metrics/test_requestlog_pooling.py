"""`max_segments` pools the small values of a high-cardinality dimension into '(other)', but
never a critical segment (`segments.critical`): its safety check must always be judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rolloutctl import simulate
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook.model import Metric

START = datetime(2026, 1, 1, tzinfo=UTC)
UNSAFE = Metric.model_validate(
    {
        "name": "unsafe",
        "group": "safety",
        "source": "r",
        "kind": "proportion",
        "event": "safety_violation",
        "worse": "higher",
        "margin": {"absolute": 0.002},
        "critical": True,
    }
)


def test_critical_segments_are_never_pooled(tmp_path: Path) -> None:
    frame = simulate.generate(
        "healthy", START, START + timedelta(hours=1), requests_per_hour=8_000, canary_percent=30
    )
    path = simulate.write(frame, tmp_path / "log.parquet")
    counts = frame.category.value_counts()
    small = [str(v) for v in counts.index[2:4]]  # not among the two largest
    assert len(small) == 2
    request = MeasureRequest(
        (UNSAFE,),
        START,
        START + timedelta(hours=1),
        "v1",
        "v2",
        ("category",),
        max_segments=2,
        never_pooled=(("category", tuple(small)),),
    )
    m = RequestLogSource("r", [str(path)]).measure(request)
    for value in small:
        stat = m.stats[("unsafe", ("category", value))]
        rows = frame[(frame.category == value) & (frame.variant == "v1")]
        assert stat["control"].n == len(rows)
    other = m.stats[("unsafe", ("category", "(other)"))]["control"].n
    pooled = frame[~frame.category.isin([*counts.index[:2], *small]) & (frame.variant == "v1")]
    assert other == len(pooled)
    assert any("critical" in note for note in m.notes)
