"""DuckDB request-log source: sufficient statistics equal a direct pandas computation."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from rolloutctl import simulate
from rolloutctl.errors import InvalidInput
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric
from rolloutctl.stats.sufficient import Histogram

START = datetime(2026, 1, 1, tzinfo=UTC)


def _metric(**kw: object) -> Metric:
    base = {"group": "technical", "source": "r", "worse": "higher", "margin": {"absolute": 0.01}}
    return Metric.model_validate({**base, **kw})


METRICS = (
    _metric(name="err", kind="proportion", event="status = 'error'"),
    _metric(name="cost", kind="mean", value="cost_usd"),
    _metric(name="cpt", kind="ratio", numerator="cost_usd", denominator="task_completed"),
    _metric(name="p95", kind="quantile", q=0.95, value="latency_ms"),
)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_statistics_match_pandas(tmp_path: Path, suffix: str) -> None:
    frame = simulate.generate(
        "healthy",
        START,
        START + timedelta(hours=1),
        requests_per_hour=8_000,
        canary_percent=30,
        seed=3,
    )
    path = simulate.write(frame, tmp_path / f"log{suffix}")
    source = RequestLogSource("r", [str(path)])
    end = START + timedelta(minutes=40)  # a window shorter than the log
    m = source.measure(MeasureRequest(METRICS, START, end, "v1", "v2", ("category",)))
    window = frame[(frame.ts >= pd.Timestamp(START)) & (frame.ts < pd.Timestamp(end))]
    for arm, name in (("control", "v1"), ("canary", "v2")):
        rows = window[window.variant == name]
        assert m.arm_counts[None][arm] == len(rows)
        err = m.stats[("err", None)][arm]
        assert (err.n, err.events) == (len(rows), int((rows.status == "error").sum()))
        cost = m.stats[("cost", None)][arm]
        assert cost.sum == pytest.approx(rows.cost_usd.sum(), rel=1e-9)
        assert cost.sum_squares == pytest.approx((rows.cost_usd**2).sum(), rel=1e-9)
        cpt = m.stats[("cpt", None)][arm]
        assert cpt.sum_y == rows.task_completed.sum()
        health = rows[rows.category == "health"]
        assert m.stats[("err", ("category", "health"))][arm].n == len(health)
        p95 = m.stats[("p95", None)][arm]
        assert p95.n == len(rows)
        assert p95.quantile(0.95) == pytest.approx(rows.latency_ms.quantile(0.95), rel=0.015)
        assert m.unit_counts[None][arm] == rows.unit_id.nunique()


def test_bad_rows_are_counted(tmp_path: Path) -> None:
    lines = [
        '{"ts": "2026-01-01T00:10:00Z", "variant": "v1", "status": "ok"}',
        '{"ts": 1767226200, "variant": "v2", "status": "error"}',
        '{"ts": 1767226260000, "variant": "v2", "status": "ok"}',
        '{"ts": "yesterday-ish", "variant": "v1", "status": "ok"}',
        '{"ts": "2026-01-01T00:20:00Z", "variant": "v9", "status": "ok"}',
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    m = RequestLogSource("r", [str(path)]).measure(
        MeasureRequest(METRICS[:1], START, START + timedelta(hours=1), "v1", "v2")
    )
    assert m.bad_rows == {"unparseable ts": 1, "unknown variant": 1}
    assert m.stats[("err", None)]["canary"].n == 2  # epoch seconds and milliseconds both read
    assert m.stats[("err", None)]["canary"].events == 1


def test_expressions_are_checked_not_spliced(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"ts": "2026-01-01T00:10:00Z", "variant": "v1", "status": "ok"}\n')
    with pytest.raises(expr.ExprError):
        expr.parse("status = 'x'; DROP TABLE log")
    bad = _metric(name="x", kind="proportion", event="statuz = 'error'")
    m = RequestLogSource("r", [str(path)]).measure(
        MeasureRequest((bad,), START, START + timedelta(hours=1), "v1", "v2")
    )
    assert "unknown name 'statuz'" in m.errors["x"] and "did you mean 'status'" in m.errors["x"]


def test_unreadable_and_missing_logs_are_invalid_input(tmp_path: Path) -> None:
    broken = tmp_path / "log.parquet"
    broken.write_bytes(b"not parquet at all")
    request = MeasureRequest(METRICS[:1], START, START + timedelta(hours=1), "v1", "v2")
    with pytest.raises(InvalidInput, match="cannot read"):
        RequestLogSource("r", [str(broken)]).measure(request)
    with pytest.raises(InvalidInput, match="no file matches"):
        RequestLogSource("r", [str(tmp_path / "missing.parquet")]).measure(request)
    no_variant = tmp_path / "nv.jsonl"
    no_variant.write_text('{"ts": "2026-01-01T00:10:00Z"}\n')
    with pytest.raises(InvalidInput, match="no variant column"):
        RequestLogSource("r", [str(no_variant)]).measure(request)


def test_series_looks_equal_separate_measurements(tmp_path: Path) -> None:
    """backtest's one-pass series: each cumulative look equals measuring up to that look."""
    frame = simulate.generate(
        "healthy",
        START,
        START + timedelta(hours=2),
        requests_per_hour=6_000,
        canary_percent=20,
        seed=5,
    )
    path = simulate.write(frame, tmp_path / "log.parquet")
    source = RequestLogSource("r", [str(path)])
    end = START + timedelta(minutes=100)
    request = MeasureRequest(METRICS, START, end, "v1", "v2", ("category", "device"))
    series = source.measure_series(request, timedelta(minutes=15))
    assert [t for t, _ in series][-2:] == [START + timedelta(minutes=90), end]
    assert len(series) == 7
    for look_end, look in (series[0], series[3], series[-1]):
        direct = source.measure(
            MeasureRequest(METRICS, START, look_end, "v1", "v2", ("category", "device"))
        )
        assert look.arm_counts == direct.arm_counts
        assert look.unit_counts == direct.unit_counts
        for key, arms in direct.stats.items():
            for arm, stat in arms.items():
                got = look.stats[key][arm]
                if isinstance(stat, Histogram):
                    assert got == stat, (key, arm)
                else:  # sums in a different order: equal up to rounding
                    assert astuple(got) == pytest.approx(astuple(stat), rel=1e-12), (key, arm)
