"""`max_segments` pools the small values of a high-cardinality dimension into '(other)', but
never a critical segment (`segments.critical`): its safety check must always be judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rolloutctl import simulate
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
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


def test_segment_mix_counts_every_value_of_each_arm_and_window(tmp_path: Path) -> None:
    """The drift check's input, against pandas on the same rows: per dimension, each value's
    control rows in the baseline window and canary rows in the recent one, within the scope,
    NULL as '(missing)', largest recent count first; dimensions that are not columns are
    left out."""
    end = START + timedelta(hours=2)
    frame = simulate.generate("healthy", START, end, requests_per_hour=4_000, canary_percent=40)
    frame.loc[frame.index[::17], "device"] = None
    path = simulate.write(frame, tmp_path / "log.parquet")
    middle = START + timedelta(hours=1)
    request = MeasureRequest(
        (UNSAFE,),
        middle,
        end,
        "v1",
        "v2",
        ("category", "device", "no_such_column"),
        scope=expr.parse("category != 'health'"),
        control_window=(START, middle),
    )
    mix = RequestLogSource("r", [str(path)]).segment_mix(request)
    assert list(mix) == ["category", "device"]
    scoped = frame[frame.category != "health"]
    baseline = scoped[(scoped.variant == "v1") & (scoped.ts < middle)]
    recent = scoped[(scoped.variant == "v2") & (scoped.ts >= middle)]
    for dim in ("category", "device"):
        before = baseline[dim].fillna("(missing)").value_counts()
        after = recent[dim].fillna("(missing)").value_counts()
        want = [
            (str(v), int(before.get(v, 0)), int(after.get(v, 0)))
            for v in set(before.index) | set(after.index)
        ]
        want.sort(key=lambda r: (-r[2], -r[1], r[0]))
        assert mix[dim] == want, dim
    assert ("(missing)", int(baseline.device.isna().sum()), int(recent.device.isna().sum())) in mix[
        "device"
    ]


def test_segment_mix_of_a_glob_matching_nothing_yet_is_empty(tmp_path: Path) -> None:
    request = MeasureRequest(
        (UNSAFE,), START, START + timedelta(hours=1), "v1", "v2", ("category",)
    )
    assert RequestLogSource("r", [str(tmp_path / "*.parquet")]).segment_mix(request) == {}
