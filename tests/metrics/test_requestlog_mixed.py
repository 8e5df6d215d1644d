"""A request-log source given a list that mixes formats reads each and unions them by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rolloutctl import simulate
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook.model import Metric

START = datetime(2026, 1, 1, tzinfo=UTC)
ERR = Metric.model_validate(
    {
        "name": "err",
        "group": "technical",
        "source": "r",
        "kind": "proportion",
        "event": "status = 'error'",
        "worse": "higher",
        "margin": {"absolute": 0.01},
    }
)


def test_a_list_mixing_jsonl_csv_and_parquet_is_one_log(tmp_path: Path) -> None:
    hour = timedelta(hours=1)
    parts = []
    for i, suffix in enumerate((".jsonl", ".csv", ".parquet")):
        frame = simulate.generate(
            "healthy",
            START + i * hour,
            START + (i + 1) * hour,
            requests_per_hour=3_000,
            canary_percent=30,
            seed=i,
        )
        parts.append((frame, simulate.write(frame, tmp_path / f"part{i}{suffix}")))
    source = RequestLogSource("r", [str(path) for _, path in parts])
    m = source.measure(MeasureRequest((ERR,), START, START + 3 * hour, "v1", "v2", ("category",)))
    for arm, name in (("control", "v1"), ("canary", "v2")):
        rows = [f[f.variant == name] for f, _ in parts]
        assert m.arm_counts[None][arm] == sum(len(r) for r in rows)
        assert m.stats[("err", None)][arm].events == sum(
            int((r.status == "error").sum()) for r in rows
        )
    assert source.time_range() is not None


def test_an_unknown_suffix_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("ts,variant\n")
    (tmp_path / "b.csv").write_text("ts,variant\n")
    source = RequestLogSource("r", [str(tmp_path / "a.txt"), str(tmp_path / "b.csv")])
    with pytest.raises(InvalidInput, match=r"cannot tell the format of \['.txt'\]"):
        source.measure(MeasureRequest((ERR,), START, START + timedelta(hours=1), "v1", "v2"))
