"""Tests for rolloutctl.simulate: shape, determinism, sticky assignment, scenario effects, files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from rolloutctl.errors import UsageError
from rolloutctl.simulate import SCENARIOS, generate, write

START = datetime(2026, 1, 1, tzinfo=UTC)

COLUMNS = [
    "ts",
    "request_id",
    "session_id",
    "unit_id",
    "variant",
    "language",
    "category",
    "device",
    "region",
    "user_tier",
    "status",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "fallback_used",
    "json_valid",
    "citation_grounded",
    "hallucination",
    "safety_violation",
    "refusal",
    "escalated",
    "reformulated",
    "task_completed",
    "source_clicked",
    "feedback",
    "eval.relevance",
]
STRINGS = COLUMNS[1:11]
FLOATS = ["latency_ms", "ttft_ms", "cost_usd", "eval.relevance"]
INTS = ["input_tokens", "output_tokens", "feedback"]
BOOLS = COLUMNS[16:26]
SEGMENTS = ["language", "category", "device", "region", "user_tier"]


def _frame(
    scenario: str = "healthy", hours: float = 2, rate: float = 5_000, **kw: Any
) -> pd.DataFrame:
    return generate(scenario, START, START + timedelta(hours=hours), requests_per_hour=rate, **kw)


@pytest.fixture(scope="module")
def big() -> dict[str, pd.DataFrame]:
    """~400k rows per scenario at a 50% split, same seed, so effects are measured sharply."""
    return {name: generate(name, START, START + timedelta(hours=20), seed=7) for name in SCENARIOS}


def _one(query: str) -> tuple[Any, ...]:
    """The single row a duckdb query answers."""
    rel = duckdb.sql(query)
    assert rel is not None
    rows = rel.fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def _arms(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[frame["variant"] == "v1"], frame[frame["variant"] == "v2"]


# --- determinism and shape ------------------------------------------------------------------


def test_same_seed_gives_identical_frame_and_other_seed_differs() -> None:
    a = _frame(seed=11)
    b = _frame(seed=11)
    c = _frame(seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["request_id"]).isdisjoint(set(c["request_id"]))
    assert not a["unit_id"].head(1000).equals(c["unit_id"].head(1000))


def test_columns_and_dtypes() -> None:
    frame = _frame()
    assert list(frame.columns) == COLUMNS
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    for col in STRINGS:
        assert pd.api.types.is_string_dtype(frame[col]), col
        assert isinstance(frame[col].iloc[0], str), col
    for col in FLOATS:
        assert frame[col].dtype == np.float64, col
    for col in INTS:
        assert frame[col].dtype == np.int64, col
    for col in BOOLS:
        assert frame[col].dtype == np.bool_, col


def test_value_domains() -> None:
    frame = _frame(rate=20_000)
    assert frame["request_id"].is_unique
    assert frame["unit_id"].str.fullmatch(r"u-[0-9a-f]{8}").all()
    assert set(frame["variant"]) == {"v1", "v2"}
    assert set(frame["status"]) == {"ok", "error", "timeout"}
    assert set(frame["language"]) == {"en", "hinglish", "es", "de", "fr", "ja", "pt"}
    assert set(frame["user_tier"]) == {"free", "pro", "internal"}
    assert set(frame["device"]) == {"mobile", "desktop", "tablet"}
    assert set(frame["region"]) == {"na", "eu", "apac", "latam", "mea"}
    assert len(set(frame["category"])) == 9
    assert set(frame["feedback"]) == {-1, 0, 1}
    assert frame["eval.relevance"].between(0, 1).all()
    assert (frame["ttft_ms"] < frame["latency_ms"]).all()
    assert (frame["latency_ms"] > 0).all() and (frame["cost_usd"] > 0).all()
    failed = frame[frame["status"] != "ok"]
    assert len(failed) > 0
    assert (failed["output_tokens"] < 16).all()
    assert not failed["task_completed"].any() and not failed["json_valid"].any()
    assert (frame.loc[frame["status"] == "timeout", "latency_ms"] == 10_000).all()


def test_control_baseline_levels() -> None:
    control, _ = _arms(_frame(hours=10, rate=20_000, seed=3))
    status = control["status"].value_counts(normalize=True)
    assert 0.006 < status["error"] < 0.010
    assert 0.003 < status["timeout"] < 0.006
    assert 750 < control["latency_ms"].median() < 1_050
    assert 0.002 < control["cost_usd"].mean() < 0.003
    assert 0.02 < control["hallucination"].mean() < 0.03
    assert 0.86 < control["citation_grounded"].mean() < 0.90
    assert 0.62 < control["task_completed"].mean() < 0.66
    assert (control["feedback"] == 0).mean() > 0.8
    health = control[control["category"] == "health"]["hallucination"].mean()
    shopping = control[control["category"] == "shopping"]["hallucination"].mean()
    assert health > 1.5 * shopping


def test_zero_rate_gives_empty_frame_with_schema() -> None:
    frame = _frame(rate=0)
    assert len(frame) == 0
    assert list(frame.columns) == COLUMNS
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["hallucination"].dtype == np.bool_


# --- arrivals ----------------------------------------------------------------------------------


def test_ts_within_window_sorted_and_rate() -> None:
    end = START + timedelta(hours=1)
    frame = generate("healthy", START, end, requests_per_hour=50_000, seed=5)
    assert abs(len(frame) - 50_000) < 0.05 * 50_000
    assert frame["ts"].is_monotonic_increasing
    assert frame["ts"].min() >= pd.Timestamp(START)
    assert frame["ts"].max() < pd.Timestamp(end)


def test_ts_respects_non_utc_aware_bounds() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    frame = generate("healthy", start, start + timedelta(minutes=30), requests_per_hour=4_000)
    assert frame["ts"].min() >= pd.Timestamp(start)
    assert frame["ts"].max() < pd.Timestamp(start + timedelta(minutes=30))


# --- assignment --------------------------------------------------------------------------------


def test_canary_share_matches_percent() -> None:
    frame = _frame(hours=10, rate=20_000, canary_percent=10, seed=2)
    assert len(frame) > 190_000
    share = (frame["variant"] == "v2").mean()
    assert abs(share - 0.10) < 0.01
    tiny = _frame(hours=10, rate=20_000, canary_percent=0.5, seed=2)
    assert abs((tiny["variant"] == "v2").mean() - 0.005) < 0.003


def test_zero_and_hundred_percent() -> None:
    assert (_frame(canary_percent=0)["variant"] == "v1").all()
    assert (_frame(canary_percent=100)["variant"] == "v2").all()


def test_custom_variant_names() -> None:
    frame = _frame(control="gpt-a", canary="gpt-b")
    assert set(frame["variant"]) == {"gpt-a", "gpt-b"}


def test_eligible_mask_is_respected_and_sees_segments() -> None:
    seen: list[list[str]] = []

    def english_pro(seg: pd.DataFrame) -> np.ndarray:
        seen.append(list(seg.columns))
        return ((seg["language"] == "en") & (seg["user_tier"] != "free")).to_numpy()

    frame = _frame(rate=20_000, eligible=english_pro)
    assert seen == [SEGMENTS]
    canary = frame[frame["variant"] == "v2"]
    assert len(canary) > 0
    assert (canary["language"] == "en").all()
    assert (canary["user_tier"] != "free").all()
    scoped = frame[(frame["language"] == "en") & (frame["user_tier"] != "free")]
    assert 0.4 < (scoped["variant"] == "v2").mean() < 0.6


def test_eligible_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        _frame(eligible=lambda seg: np.ones(3, dtype=bool))


@pytest.mark.parametrize(
    "eligible",
    [None, lambda seg: (seg["region"] == "eu").to_numpy()],
    ids=["all", "eu-only"],
)
def test_unit_never_in_both_arms(eligible: Callable[[pd.DataFrame], np.ndarray] | None) -> None:
    frame = _frame(rate=20_000, eligible=eligible)
    arms_per_unit = frame.groupby("unit_id")["variant"].nunique()
    assert (arms_per_unit == 1).all()
    assert (frame["variant"] == "v2").any()


def test_raising_percent_keeps_canary_units() -> None:
    low = _frame(rate=20_000, canary_percent=5, seed=4)
    high = _frame(rate=20_000, canary_percent=25, seed=4)
    low_units = set(low.loc[low["variant"] == "v2", "unit_id"])
    high_units = set(high.loc[high["variant"] == "v2", "unit_id"])
    assert low_units and low_units <= high_units
    assert len(high_units) > 3 * len(low_units)
    # Same seed, same pool: the same requests, only the split moved.
    pd.testing.assert_series_equal(low["request_id"], high["request_id"])


def test_unit_id_keeps_its_arm_across_windows() -> None:
    first = generate("healthy", START, START + timedelta(hours=1), canary_percent=30, seed=9)
    later_start = START + timedelta(days=3)
    later = generate(
        "healthy", later_start, later_start + timedelta(hours=1), canary_percent=30, seed=9
    )
    shared = set(first["unit_id"]) & set(later["unit_id"])
    assert len(shared) > 100
    assign = pd.concat([first, later]).groupby("unit_id")["variant"].nunique()
    assert (assign == 1).all()


# --- scenarios ---------------------------------------------------------------------------------


def _rate_se(a: pd.Series, b: pd.Series) -> float:
    p = (a.sum() + b.sum()) / (len(a) + len(b))
    return float(np.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b))))


def test_healthy_stays_within_margins(big: dict[str, pd.DataFrame]) -> None:
    control, canary = _arms(big["healthy"])
    for status in ("error", "timeout"):
        a, b = control["status"] == status, canary["status"] == status
        assert abs(b.mean() - a.mean()) < 4 * _rate_se(a, b), status
    lat = canary["latency_ms"].median() / control["latency_ms"].median()
    assert 1.0 < lat < 1.07
    cost = canary["cost_usd"].mean() / control["cost_usd"].mean()
    assert 1.02 < cost < 1.08
    assert canary["hallucination"].mean() < control["hallucination"].mean()
    grounded = canary["citation_grounded"].mean() - control["citation_grounded"].mean()
    assert 0.0 < grounded < 0.02
    done = canary["task_completed"].mean() - control["task_completed"].mean()
    assert 0.0 < done < 0.02
    assert abs(canary["safety_violation"].mean() - control["safety_violation"].mean()) < 0.0005


def test_latency_regression(big: dict[str, pd.DataFrame]) -> None:
    control, canary = _arms(big["latency_regression"])
    p95 = canary["latency_ms"].quantile(0.95) / control["latency_ms"].quantile(0.95)
    assert 1.3 < p95 < 1.7
    p50 = canary["latency_ms"].median() / control["latency_ms"].median()
    assert 1.25 < p50 < 1.45
    ttft = canary["ttft_ms"].quantile(0.95) / control["ttft_ms"].quantile(0.95)
    assert ttft > 1.3
    assert (canary["status"] == "timeout").mean() > (control["status"] == "timeout").mean()
    assert (canary["status"] == "timeout").mean() < 0.02


def test_cost_blowup(big: dict[str, pd.DataFrame]) -> None:
    control, canary = _arms(big["cost_blowup"])
    ok_c, ok_v = control[control["status"] == "ok"], canary[canary["status"] == "ok"]
    tokens = ok_v["output_tokens"].mean() / ok_c["output_tokens"].mean()
    assert 2.0 < tokens < 2.4
    assert canary["cost_usd"].mean() / control["cost_usd"].mean() > 1.7
    lat = canary["latency_ms"].median() / control["latency_ms"].median()
    assert 1.08 < lat < 1.25


def test_safety_regression_is_confined_to_health(big: dict[str, pd.DataFrame]) -> None:
    control, canary = _arms(big["safety_regression_segment"])
    health = canary["category"] == "health"
    assert canary.loc[health, "safety_violation"].mean() > 0.003
    assert canary.loc[~health, "safety_violation"].mean() < 0.0015
    assert control.loc[control["category"] == "health", "safety_violation"].mean() < 0.0015
    # Everything else is as in healthy.
    pd.testing.assert_series_equal(
        big["safety_regression_segment"]["latency_ms"], big["healthy"]["latency_ms"]
    )


def test_hallucination_regression(big: dict[str, pd.DataFrame]) -> None:
    control, canary = _arms(big["hallucination_regression"])
    assert 0.02 < control["hallucination"].mean() < 0.03
    assert 0.038 < canary["hallucination"].mean() < 0.052
    grounded = canary["citation_grounded"].mean() - control["citation_grounded"].mean()
    assert -0.05 < grounded < -0.03
    done = canary["task_completed"].mean() - control["task_completed"].mean()
    assert -0.03 < done < -0.01


def _canary_units(frame: pd.DataFrame) -> int:
    return int(frame.loc[frame["variant"] == "v2", "unit_id"].nunique())


def test_sample_ratio_mismatch(big: dict[str, pd.DataFrame]) -> None:
    srm, healthy = big["sample_ratio_mismatch"], big["healthy"]
    lost = 1 - (srm["variant"] == "v2").sum() / (healthy["variant"] == "v2").sum()
    assert 0.10 < lost < 0.14
    assert (srm["variant"] == "v1").sum() == (healthy["variant"] == "v1").sum()
    assert srm["request_id"].is_unique
    # Whole users vanish, so a unit-level sample ratio check sees the loss too.
    units_lost = 1 - _canary_units(srm) / _canary_units(healthy)
    assert 0.08 < units_lost < 0.16
    # Nominal 50/50: the observed canary:control ratio falls well below 1.
    counts = srm["variant"].value_counts()
    assert counts["v2"] / counts["v1"] < 0.92


def test_sample_ratio_mismatch_at_small_percent() -> None:
    kw: dict[str, Any] = {"hours": 20, "rate": 20_000, "canary_percent": 10, "seed": 7}
    srm_share = (_frame("sample_ratio_mismatch", **kw)["variant"] == "v2").mean()
    healthy_share = (_frame("healthy", **kw)["variant"] == "v2").mean()
    assert abs(healthy_share - 0.10) < 0.01
    assert srm_share < 0.92 * healthy_share
    assert srm_share < 0.92 * 0.10


def test_scenarios_share_every_draw_for_control(big: dict[str, pd.DataFrame]) -> None:
    base = _arms(big["healthy"])[0].reset_index(drop=True)
    for name in ("latency_regression", "cost_blowup", "hallucination_regression"):
        control = _arms(big[name])[0].reset_index(drop=True)
        pd.testing.assert_frame_equal(control, base)


def test_unknown_scenario_names_valid_ones() -> None:
    with pytest.raises(UsageError) as info:
        _frame(scenario="meltdown")
    for name in SCENARIOS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": datetime(2026, 1, 1)},
        {"end": START},
        {"canary_percent": 150.0},
        {"requests_per_hour": -1.0},
        {"canary": "v1"},
    ],
)
def test_bad_arguments_raise_usage_error(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"start": START, "end": START + timedelta(hours=1)}
    args.update(kwargs)
    with pytest.raises(UsageError):
        generate("healthy", **args)


def test_onset_switches_regression_on() -> None:
    onset = START + timedelta(hours=10)
    frame = generate(
        "hallucination_regression", START, START + timedelta(hours=20), onset=onset, seed=8
    )
    before = frame[frame["ts"] < pd.Timestamp(onset)]
    after = frame[frame["ts"] >= pd.Timestamp(onset)]
    c0, v0 = _arms(before)
    c1, v1 = _arms(after)
    # Before onset the canary is merely "healthy": within noise of control (-10% relative).
    assert abs(v0["hallucination"].mean() - c0["hallucination"].mean()) < 0.006
    assert v1["hallucination"].mean() - c1["hallucination"].mean() > 0.012
    assert v1["hallucination"].mean() > 1.5 * v0["hallucination"].mean()


# --- write ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return _frame(hours=1, rate=3_000, seed=1)


def test_write_jsonl_round_trip(tmp_path: Path, small: pd.DataFrame) -> None:
    target = tmp_path / "nested" / "dir" / "log.jsonl"
    assert write(small, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["log.jsonl"]
    lines = target.read_text().splitlines()
    assert len(lines) == len(small)
    first = json.loads(lines[0])
    assert set(first) == set(COLUMNS)
    assert re.fullmatch(r"2026-01-01T\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first["hallucination"] in (True, False)
    count = _one(f"select count(*) from read_json_auto('{target}')")
    assert count == (len(small),)
    back = [json.loads(line) for line in lines]
    assert [r["request_id"] for r in back] == small["request_id"].tolist()
    stamps = pd.to_datetime(pd.Series([r["ts"] for r in back]), utc=True)
    assert (stamps == small["ts"]).all()


def test_write_csv_round_trip(tmp_path: Path, small: pd.DataFrame) -> None:
    target = tmp_path / "log.csv"
    write(small, str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]
    row = _one(
        f"""select count(*), sum(hallucination::int), count(distinct request_id)
            from read_csv('{target}', header = true)"""
    )
    assert row == (len(small), int(small["hallucination"].sum()), len(small))
    back = pd.read_csv(target)
    assert list(back.columns) == COLUMNS
    assert (back["request_id"] == small["request_id"]).all()
    assert (pd.to_datetime(back["ts"], utc=True) == small["ts"]).all()
    assert back["hallucination"].dtype == np.bool_


def test_write_parquet_round_trip(tmp_path: Path, small: pd.DataFrame) -> None:
    target = tmp_path / "log.parquet"
    write(small, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet"]
    rel = duckdb.sql(f"select * from read_parquet('{target}')")
    assert rel is not None
    assert rel.columns == COLUMNS
    row = _one(
        f"""select count(*), sum(output_tokens), epoch_ms(min(ts)), max("eval.relevance") <= 1
            from read_parquet('{target}')"""
    )
    assert row[0] == len(small)
    assert row[1] == int(small["output_tokens"].sum())
    assert row[2] == small["ts"].min().value // 1_000_000
    assert str(rel.types[0]) == "TIMESTAMP WITH TIME ZONE"
    assert row[3] is True


def test_write_overwrites_existing_file(tmp_path: Path, small: pd.DataFrame) -> None:
    target = tmp_path / "log.parquet"
    target.write_text("old")
    write(small.head(10), target)
    assert _one(f"select count(*) from read_parquet('{target}')") == (10,)


def test_write_unknown_suffix(tmp_path: Path, small: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="suffix"):
        write(small, tmp_path / "log.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, small: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolloutctl.simulate import files

    target = tmp_path / "log.csv"
    target.write_text("old\n")

    def broken(frame: pd.DataFrame, path: Path, fmt: str) -> None:
        path.write_text("half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(files, "_copy_with_duckdb", broken)
    with pytest.raises(OSError, match="disk full"):
        write(small, target)
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]
