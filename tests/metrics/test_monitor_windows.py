"""Window-compared arms for the monitor: the control arm from the pre-rollout baseline window,
the canary arm from a recent window, each equal to pandas on that window's rows; and the
segment mix of the two windows that `stats.drift` reads."""

from __future__ import annotations

from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rolloutctl import simulate
from rolloutctl.metrics.base import MeasureRequest
from rolloutctl.metrics.requestlog import RequestLogSource
from rolloutctl.playbook import expr
from rolloutctl.playbook.model import Metric
from rolloutctl.stats import drift
from rolloutctl.stats.sufficient import Histogram, Moments, Proportion

START = datetime(2026, 1, 1, tzinfo=UTC)
BASELINE = (START, START + timedelta(hours=1))  # before the rollout
RECENT = (START + timedelta(hours=2), START + timedelta(hours=3))  # after it reached 100%
DIMS = ("category", "device")


def _metric(**kw: object) -> Metric:
    base = {"group": "technical", "source": "r", "worse": "higher", "margin": {"absolute": 0.01}}
    return Metric.model_validate({**base, **kw})


METRICS = (
    _metric(name="err", kind="proportion", event="status = 'error'"),
    _metric(name="cost", kind="mean", value="cost_usd"),
    _metric(name="p95", kind="quantile", q=0.95, value="latency_ms"),
)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, RequestLogSource]:
    """Three hours with both variants throughout (so window filtering is what separates the
    arms), a new category ("agentic") in the recent window, some rows with no category, and
    rows of an unknown variant in each window."""
    frame = simulate.generate(
        "healthy", START, RECENT[1], requests_per_hour=9_000, canary_percent=40, seed=21
    )
    frame["category"] = frame["category"].astype(object)
    rng = np.random.default_rng(4)
    recent = frame.ts >= pd.Timestamp(RECENT[0])
    frame.loc[recent & (rng.random(len(frame)) < 0.06), "category"] = "agentic"
    frame.loc[rng.random(len(frame)) < 0.01, "category"] = None
    frame.loc[frame.index[::997], "variant"] = "v9"
    path = simulate.write(frame, tmp_path_factory.mktemp("monitor") / "log.parquet")
    return frame, RequestLogSource("r", [str(path)])


def _rows(frame: pd.DataFrame, variant: str, window: tuple[datetime, datetime]) -> pd.DataFrame:
    lo, hi = (pd.Timestamp(t) for t in window)
    return frame[(frame.variant == variant) & (frame.ts >= lo) & (frame.ts < hi)]


def _request(**kw: object) -> MeasureRequest:
    base = MeasureRequest(METRICS, RECENT[0], RECENT[1], "v1", "v2", DIMS)
    return replace(base, **kw)  # type: ignore[arg-type]


def _check_arm(m_stats: dict, rows: pd.DataFrame, arm: str, segment: object) -> None:
    err = m_stats[("err", segment)][arm]
    assert isinstance(err, Proportion)
    assert (err.n, err.events) == (len(rows), int((rows.status == "error").sum()))
    cost = m_stats[("cost", segment)][arm]
    assert isinstance(cost, Moments)
    assert cost.n == len(rows)
    assert cost.sum == pytest.approx(rows.cost_usd.sum(), rel=1e-9)
    assert cost.sum_squares == pytest.approx((rows.cost_usd**2).sum(), rel=1e-9)
    p95 = m_stats[("p95", segment)][arm]
    assert isinstance(p95, Histogram)
    assert p95.n == len(rows)
    # the histogram's quantile is the ceil(q n)-th smallest value, to its bucket's 1%
    expected = np.quantile(rows.latency_ms, 0.95, method="inverted_cdf") if len(rows) else np.nan
    assert p95.quantile(0.95) == pytest.approx(expected, rel=0.011, nan_ok=True)


def test_arms_come_from_their_own_windows(log: tuple[pd.DataFrame, RequestLogSource]) -> None:
    frame, source = log
    m = source.measure(_request(control_window=BASELINE))
    control = _rows(frame, "v1", BASELINE)
    canary = _rows(frame, "v2", RECENT)
    assert len(control) > 3000 and len(canary) > 2000
    for arm, rows in (("control", control), ("canary", canary)):
        assert m.arm_counts[None][arm] == len(rows)
        assert m.unit_counts[None][arm] == rows.unit_id.nunique()
        _check_arm(m.stats, rows, arm, None)
        for category in ("health", "coding", "agentic", "(missing)"):
            seg = rows[rows.category.fillna("(missing)") == category]
            _check_arm(m.stats, seg, arm, ("category", category))
            assert m.arm_counts[("category", category)][arm] == len(seg)
        mobile = rows[rows.device == "mobile"]
        _check_arm(m.stats, mobile, arm, ("device", "mobile"))
    # the new category has no baseline rows: an explicit empty control arm
    assert m.stats[("err", ("category", "agentic"))]["control"] == Proportion(0, 0)
    # unknown variants are counted in both windows; freshness is the recent window's
    v9 = (frame.variant == "v9") & (
        ((frame.ts >= pd.Timestamp(BASELINE[0])) & (frame.ts < pd.Timestamp(BASELINE[1])))
        | ((frame.ts >= pd.Timestamp(RECENT[0])) & (frame.ts < pd.Timestamp(RECENT[1])))
    )
    assert m.bad_rows == {"unknown variant": int(v9.sum())}
    recent_ts = frame.ts[
        (frame.ts >= pd.Timestamp(RECENT[0])) & (frame.ts < pd.Timestamp(RECENT[1]))
    ]
    assert m.latest is not None
    assert abs(m.latest - recent_ts.max().to_pydatetime()) < timedelta(milliseconds=1)


def test_queries_show_both_windows(log: tuple[pd.DataFrame, RequestLogSource]) -> None:
    _, source = log
    m = source.measure(_request(control_window=BASELINE))
    assert set(m.queries) == {"err", "cost", "p95"}
    for query in m.queries.values():
        for t in (*BASELINE, *RECENT):
            assert f"/* {t.isoformat()} */" in query
        assert "variant = 'v1' AND __t >=" in query and "variant = 'v2' AND __t >=" in query
    plain = source.measure(_request())
    assert f"/* {BASELINE[0].isoformat()} */" not in plain.queries["err"]


def test_without_control_window_nothing_changes(
    log: tuple[pd.DataFrame, RequestLogSource],
) -> None:
    """control_window=None is the same-window comparison; a control window equal to the
    stage's window gives the same numbers by the other query."""
    frame, source = log
    plain = source.measure(_request())
    same = source.measure(_request(control_window=RECENT))
    assert plain.arm_counts == same.arm_counts and plain.unit_counts == same.unit_counts
    assert plain.bad_rows == same.bad_rows and plain.latest == same.latest
    for key, arms in plain.stats.items():
        for arm, stat in arms.items():
            got = same.stats[key][arm]
            if isinstance(stat, Histogram):
                assert got == stat, (key, arm)
            else:
                assert astuple(got) == pytest.approx(astuple(stat), rel=1e-12), (key, arm)
    control = _rows(frame, "v1", RECENT)
    _check_arm(plain.stats, control, "control", None)


def test_series_looks_follow_the_canary_window(
    log: tuple[pd.DataFrame, RequestLogSource],
) -> None:
    _, source = log
    request = _request(control_window=BASELINE)
    series = source.measure_series(request, timedelta(minutes=20))
    assert [t for t, _ in series] == [RECENT[0] + timedelta(minutes=k) for k in (20, 40, 60)]
    whole = source.measure(request)
    for look_end, look in series:
        direct = source.measure(replace(request, end=look_end))
        assert look.arm_counts == direct.arm_counts
        assert look.unit_counts == direct.unit_counts
        # the control arm is the whole baseline at every look
        assert look.arm_counts[None]["control"] == whole.arm_counts[None]["control"]
        for key, arms in direct.stats.items():
            for arm, stat in arms.items():
                got = look.stats[key][arm]
                if isinstance(stat, Histogram):
                    assert got == stat, (key, arm)
                else:
                    assert astuple(got) == pytest.approx(astuple(stat), rel=1e-12), (key, arm)
    last = source.measure_series(request, timedelta(minutes=20), segments_per_look=False)
    assert last[-1][1].arm_counts == whole.arm_counts
    assert last[-1][1].unit_counts == whole.unit_counts
    assert last[0][1].arm_counts[None] == series[0][1].arm_counts[None]


def test_many_segment_values_pick_the_largest_over_both_arms(
    log: tuple[pd.DataFrame, RequestLogSource],
) -> None:
    frame, source = log
    m = source.measure(_request(control_window=BASELINE, max_segments=4))
    both = pd.concat([_rows(frame, "v1", BASELINE), _rows(frame, "v2", RECENT)])
    counts = both.category.fillna("(missing)").value_counts()
    top = sorted(counts.index, key=lambda v: (-counts[v], v))[:4]
    assert {k[1][1] for k in m.stats if k[0] == "err" and k[1] and k[1][0] == "category"} == {
        *top,
        "(other)",
    }


def test_segment_mix_counts_each_window(log: tuple[pd.DataFrame, RequestLogSource]) -> None:
    frame, source = log
    for window, control in (
        (BASELINE, _rows(frame, "v1", BASELINE)),
        (None, _rows(frame, "v1", RECENT)),
    ):
        mix = source.segment_mix(_request(control_window=window, dimensions=(*DIMS, "nope")))
        canary = _rows(frame, "v2", RECENT)
        assert set(mix) == set(DIMS)
        for dim in DIMS:
            b = control[dim].fillna("(missing)").value_counts()
            r = canary[dim].fillna("(missing)").value_counts()
            expected = {v: (int(b.get(v, 0)), int(r.get(v, 0))) for v in {*b.index, *r.index}}
            assert {v: (nb, nr) for v, nb, nr in mix[dim]} == expected
            recents = [nr for _, _, nr in mix[dim]]
            assert recents == sorted(recents, reverse=True)
    mix = source.segment_mix(_request(control_window=BASELINE))
    categories = {v: (nb, nr) for v, nb, nr in mix["category"]}
    assert categories["agentic"][0] == 0 and categories["agentic"][1] > 100
    assert categories["(missing)"][0] > 0
    found = drift.new_values(mix["category"])
    assert [v.value for v in found] == ["agentic"]
    shift = drift.mix_shift(mix["category"])
    assert shift.top_movers[0].value == "agentic"
    assert 0.1 < shift.cramers_v < 0.5  # about 6% of traffic moved to a new value
    device = drift.mix_shift(mix["device"])
    assert device.cramers_v < 0.05 and drift.new_values(mix["device"]) == []


def test_segment_mix_honours_the_scope(log: tuple[pd.DataFrame, RequestLogSource]) -> None:
    frame, source = log
    scope = expr.parse("device = 'mobile'")
    mix = source.segment_mix(_request(control_window=BASELINE, scope=scope))
    assert [v for v, _, _ in mix["device"]] == ["mobile"]
    _, nb, nr = mix["device"][0]
    control = _rows(frame, "v1", BASELINE)
    canary = _rows(frame, "v2", RECENT)
    assert (nb, nr) == ((control.device == "mobile").sum(), (canary.device == "mobile").sum())


def test_segment_mix_with_no_file_yet(tmp_path: Path) -> None:
    source = RequestLogSource("r", [str(tmp_path / "*.parquet")])
    assert source.segment_mix(_request(control_window=BASELINE)) == {}


def test_control_window_is_checked() -> None:
    with pytest.raises(ValueError, match="start < end"):
        _request(control_window=(BASELINE[1], BASELINE[0]))
    with pytest.raises(ValueError, match="two variants"):
        _request(control_window=BASELINE, canary="v1")
