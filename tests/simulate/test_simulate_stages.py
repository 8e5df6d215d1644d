"""Synthetic data for the stage kinds beyond the canary: shadow pairs, offline eval runs,
post-launch drift and the pre-rollout baseline, through the library and the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from rolloutctl.errors import UsageError
from rolloutctl.metrics.evalfile import check_new_failures
from rolloutctl.metrics.evalformats import EvalRun, read_run
from rolloutctl.simulate import (
    EVAL_FORMATS,
    EVAL_SCENARIOS,
    NEW_CATEGORY,
    POST_LAUNCH_SCENARIOS,
    SHADOW_SCENARIOS,
    USER_SIGNALS,
    generate,
    generate_baseline,
    generate_post_launch,
    generate_shadow,
    write_eval_runs,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
SEGMENTS = ["language", "category", "device", "region", "user_tier"]
SHARED = ["request_id", "session_id", "unit_id", *SEGMENTS]


@pytest.fixture(scope="module")
def shadow() -> dict[str, pd.DataFrame]:
    """About 80k requests per scenario, same seed, so every scenario shares every draw."""
    return {
        name: generate_shadow(name, START, START + timedelta(hours=4), seed=11)
        for name in SHADOW_SCENARIOS
    }


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per shadowed request: the control's columns, and the shadow's suffixed _s."""
    served = frame[frame["variant"] == "v1"]
    calls = frame[frame["variant"] == "shadow:v2"]
    return served.merge(calls, on="request_id", suffixes=("", "_s"), validate="one_to_one")


# ------------------------------------------------------------------ shadow


def test_shadow_rows_pair_with_their_control_rows(shadow: dict[str, pd.DataFrame]) -> None:
    frame = shadow["healthy"]
    assert list(frame.columns) == list(generate("healthy", START, START + timedelta(minutes=5)))
    assert set(frame["variant"]) == {"v1", "shadow:v2"}
    served = frame[frame["variant"] == "v1"]
    assert served["request_id"].is_unique
    pairs = _pairs(frame)
    assert len(pairs) == (frame["variant"] == "shadow:v2").sum()
    for column in SHARED[1:]:  # and request_id, which they were merged on
        assert (pairs[column] == pairs[column + "_s"]).all(), column
    delay = (pairs["ts_s"] - pairs["ts"]).dt.total_seconds() * 1000
    assert delay.between(100, 500).mean() > 0.999 and (delay >= 0).all()
    assert frame["ts"].is_monotonic_increasing
    assert frame["ts"].min() >= pd.Timestamp(START)
    assert frame["ts"].max() < pd.Timestamp(START + timedelta(hours=4))
    # Nobody saw a shadow answer: the user's reactions are empty there, and only there.
    shadow_rows = frame[frame["variant"] == "shadow:v2"]
    for column in USER_SIGNALS:
        assert shadow_rows[column].isna().all() and served[column].notna().all(), column


def test_shadow_coverage(shadow: dict[str, pd.DataFrame]) -> None:
    for frame in shadow.values():
        served = (frame["variant"] == "v1").sum()
        assert (frame["variant"] == "shadow:v2").sum() / served == pytest.approx(0.97, abs=0.005)
    end = START + timedelta(hours=2)
    half = generate_shadow("healthy", START, end, coverage=0.5, seed=3, requests_per_hour=5000)
    most = generate_shadow("healthy", START, end, coverage=0.9, seed=3, requests_per_hour=5000)
    ids = {c: set(f.loc[f["variant"] != "v1", "request_id"]) for c, f in ((0.5, half), (0.9, most))}
    assert len(ids[0.5]) / (half["variant"] == "v1").sum() == pytest.approx(0.5, abs=0.02)
    assert ids[0.5] < ids[0.9]  # more coverage only adds shadow calls


def test_shadow_control_rows_are_the_control_only_log() -> None:
    """Same seed: the control rows are generate()'s at 0%, whatever the shadow scenario."""
    end = START + timedelta(hours=1)
    alone = generate("healthy", START, end, requests_per_hour=4000, canary_percent=0, seed=2)
    for name in SHADOW_SCENARIOS:
        frame = generate_shadow(name, START, end, requests_per_hour=4000, seed=2)
        served = frame[frame["variant"] == "v1"].reset_index(drop=True)
        pd.testing.assert_frame_equal(served, alone, check_dtype=False)


def test_paired_differences_are_much_less_noisy_than_unpaired(
    shadow: dict[str, pd.DataFrame],
) -> None:
    pairs = _pairs(shadow["healthy"])
    paired = (pairs["latency_ms_s"] - pairs["latency_ms"]).var()
    shuffled = np.random.default_rng(0).permutation(pairs["latency_ms"].to_numpy())
    unpaired = (pairs["latency_ms_s"].to_numpy() - shuffled).var()
    assert paired < 0.35 * unpaired
    assert pairs["output_tokens"].corr(pairs["output_tokens_s"]) > 0.7
    assert pairs["hallucination"].astype(float).corr(pairs["hallucination_s"].astype(float)) > 0.5
    # ...while each side keeps its own marginal: healthy is about as good as the control.
    assert pairs["latency_ms_s"].mean() / pairs["latency_ms"].mean() == pytest.approx(
        1.03, abs=0.02
    )
    assert pairs["cost_usd_s"].mean() / pairs["cost_usd"].mean() == pytest.approx(1.05, abs=0.02)
    assert pairs["hallucination_s"].mean() <= pairs["hallucination"].mean()


def test_shadow_latency_regression(shadow: dict[str, pd.DataFrame]) -> None:
    pairs = _pairs(shadow["latency_regression"])
    assert pairs["latency_ms_s"].mean() / pairs["latency_ms"].mean() == pytest.approx(
        1.30, abs=0.03
    )
    timeouts = (pairs["status_s"] == "timeout").mean(), (pairs["status"] == "timeout").mean()
    assert 1.5 * timeouts[1] < timeouts[0] < 0.02
    same = _pairs(shadow["healthy"])
    assert (same["status_s"] == "timeout").mean() < 1.3 * (same["status"] == "timeout").mean()


def test_shadow_safety_regression_is_confined_to_health(shadow: dict[str, pd.DataFrame]) -> None:
    pairs = _pairs(shadow["safety_regression_segment"])
    health = pairs[pairs["category"] == "health"]
    rest = pairs[pairs["category"] != "health"]
    assert health["safety_violation_s"].mean() > 5 * health["safety_violation"].mean()
    assert health["safety_violation_s"].mean() > 0.003
    assert rest["safety_violation_s"].sum() < 1.4 * rest["safety_violation"].sum()
    healthy = _pairs(shadow["healthy"])
    assert (rest["safety_violation_s"] == healthy.loc[rest.index, "safety_violation_s"]).all()


def test_shadow_errors(shadow: dict[str, pd.DataFrame]) -> None:
    pairs = _pairs(shadow["shadow_errors"])
    assert (pairs["status_s"] == "error").mean() == pytest.approx(0.08, abs=0.005)
    assert (pairs["status"] == "error").mean() < 0.01


def test_shadow_is_deterministic_and_checks_its_arguments() -> None:
    end = START + timedelta(hours=1)
    one = generate_shadow("shadow_errors", START, end, requests_per_hour=3000, seed=5)
    again = generate_shadow("shadow_errors", START, end, requests_per_hour=3000, seed=5)
    pd.testing.assert_frame_equal(one, again)
    with pytest.raises(UsageError, match="shadow_errors") as info:
        generate_shadow("cost_blowup", START, end)
    assert "unknown shadow scenario 'cost_blowup'" in info.value.message
    for kwargs in ({"coverage": 1.5}, {"candidate": "v1"}, {"seed": -1}):
        with pytest.raises(UsageError):
            generate_shadow("healthy", START, end, **kwargs)  # type: ignore[arg-type]
    custom = generate_shadow(
        "healthy", START, end, control="m1", candidate="m2", seed=1, requests_per_hour=500
    )
    assert set(custom["variant"]) == {"m1", "shadow:m2"}


# ------------------------------------------------------------------ offline eval runs


def _read(fmt: str, scenario: str, tmp_path: Path, n: int = 400) -> tuple[EvalRun, EvalRun]:
    base, cand = write_eval_runs(tmp_path, scenario=scenario, n=n, fmt=fmt, seed=2)
    runs = read_run(str(base)), read_run(str(cand))
    assert runs[0].format == runs[1].format == fmt
    return runs


def _passes(run: EvalRun) -> dict[str, bool]:
    assert run.records is not None
    return {r.id: r.passed for r in run.records}


@pytest.mark.parametrize("fmt", EVAL_FORMATS)
def test_eval_runs_read_back_with_matching_ids(fmt: str, tmp_path: Path) -> None:
    base, cand = _read(fmt, "healthy", tmp_path)
    assert base.records is not None and cand.records is not None
    assert [(r.id, r.category) for r in base.records] == [(r.id, r.category) for r in cand.records]
    assert len(base.records) == 400
    assert set(base.totals) == {"general", "coding", "shopping", "health", "finance"}
    assert 0.85 < base.overall.rate < 0.93
    assert all(0.0 <= r.score <= 1.0 for r in base.records if r.score is not None)


@pytest.mark.parametrize("fmt", EVAL_FORMATS)
def test_every_format_carries_the_same_outcomes(fmt: str, tmp_path: Path) -> None:
    reference = [_passes(r) for r in _read("jsonl", "new_failure_in_health", tmp_path / "ref")]
    runs = [_passes(r) for r in _read(fmt, "new_failure_in_health", tmp_path / fmt)]
    prefix = "support_qa/" if fmt == "lm_eval" else "q"
    for got, want in zip(runs, reference, strict=True):
        assert list(got.values()) == list(want.values())
        assert all(i.startswith(prefix) for i in got)


def test_healthy_eval_has_no_new_failure_in_critical_categories(tmp_path: Path) -> None:
    base, cand = _read("promptfoo", "healthy", tmp_path)
    assert 0 < cand.overall.rate - base.overall.rate < 0.03
    for check in check_new_failures(base, cand, ["health", "finance"]):
        assert check.ok and not check.new_failures


def test_new_failure_in_health(tmp_path: Path) -> None:
    base, cand = _read("inspect", "new_failure_in_health", tmp_path)
    assert cand.overall.events == base.overall.events  # pass rate unchanged overall
    health, finance = check_new_failures(base, cand, ["health", "finance"])
    assert 3 <= len(health.new_failures) <= 8 and not health.fixed and not health.ok
    assert finance.ok
    (tolerant,) = check_new_failures(base, cand, ["health"], tolerate_noise=True)
    assert not tolerant.ok  # a systematic regression, not noise
    b, c = _passes(base), _passes(cand)
    assert base.records is not None
    in_health = {r.id for r in base.records if r.category == "health"}
    assert set(health.new_failures) == {i for i in in_health if b[i] and not c[i]}


def test_lower_pass_rate(tmp_path: Path) -> None:
    base, cand = _read("lm_eval", "lower_pass_rate", tmp_path)
    assert cand.overall.rate - base.overall.rate == pytest.approx(-0.06, abs=0.005)
    for check in check_new_failures(base, cand, ["health", "finance"]):
        assert check.ok


def test_eval_errors_count_as_failures_and_arguments_are_checked(tmp_path: Path) -> None:
    base, _ = write_eval_runs(tmp_path, fmt="promptfoo", seed=4)
    rows = json.loads(base.read_text())["results"]["results"]
    errored = [r for r in rows if r["error"]]
    assert errored and all(not r["success"] and r["failureReason"] == 2 for r in errored)
    with pytest.raises(UsageError, match="lower_pass_rate"):
        write_eval_runs(tmp_path, scenario="drift")
    with pytest.raises(UsageError, match="promptfoo, inspect, lm_eval, jsonl"):
        write_eval_runs(tmp_path, fmt="csv")
    with pytest.raises(UsageError, match="at least 20"):
        write_eval_runs(tmp_path, n=5)
    assert set(EVAL_SCENARIOS) == {"healthy", "new_failure_in_health", "lower_pass_rate"}


# ------------------------------------------------------------------ post-launch and baseline


def test_stable_post_launch_is_the_healthy_canary_at_full_traffic() -> None:
    end = START + timedelta(hours=2)
    stable = generate_post_launch("stable", START, end, requests_per_hour=4000, seed=6)
    full = generate("healthy", START, end, requests_per_hour=4000, canary_percent=100, seed=6)
    pd.testing.assert_frame_equal(stable, full, check_exact=True)
    assert set(stable["variant"]) == {"v2"}


def test_drift_brings_a_new_category_and_a_cost_creep() -> None:
    end, drift = START + timedelta(hours=20), START + timedelta(hours=8)
    frames = {
        name: generate_post_launch(
            name, START, end, requests_per_hour=12_000, drift_start=drift, seed=9
        )
        for name in POST_LAUNCH_SCENARIOS
    }
    frame = frames["drift"]
    at = pd.Timestamp(drift)
    before, after = frame[frame["ts"] < at], frame[frame["ts"] >= at]
    assert (before["category"] == NEW_CATEGORY).sum() == 0
    assert (after["category"] == NEW_CATEGORY).mean() == pytest.approx(0.06, abs=0.005)
    assert NEW_CATEGORY not in set(frames["stable"]["category"])
    new, old = after[after["category"] == NEW_CATEGORY], after[after["category"] != NEW_CATEGORY]
    assert new["hallucination"].mean() > 2 * old["hallucination"].mean()
    assert new["latency_ms"].median() > 1.3 * old["latency_ms"].median()
    # The rest of traffic keeps its hallucination rate; cost creeps to about +15%.
    assert old["hallucination"].mean() == pytest.approx(before["hallucination"].mean(), abs=0.003)
    late = frame[frame["ts"] >= at + pd.Timedelta(hours=6)]
    assert late["cost_usd"].mean() / before["cost_usd"].mean() == pytest.approx(1.15, abs=0.03)
    early = frame[(frame["ts"] >= at) & (frame["ts"] < at + pd.Timedelta(hours=1))]
    assert early["cost_usd"].mean() < late["cost_usd"].mean()  # a creep, not a step
    stable = frames["stable"]
    ratio = (
        stable.loc[stable["ts"] >= at, "cost_usd"].mean()
        / stable.loc[stable["ts"] < at, "cost_usd"].mean()
    )
    assert ratio == pytest.approx(1.0, abs=0.03)
    # The drift starts mid-window by default.
    mid = generate_post_launch(
        "drift", START, START + timedelta(hours=4), seed=1, requests_per_hour=3000
    )
    first_new = mid.loc[mid["category"] == NEW_CATEGORY, "ts"].min()
    assert (
        pd.Timestamp(START + timedelta(hours=2))
        <= first_new
        < pd.Timestamp(START + timedelta(hours=2, minutes=5))
    )


def test_baseline_is_the_control_alone() -> None:
    end = START + timedelta(hours=1)
    base = generate_baseline(START, end, requests_per_hour=3000, variant="m1", seed=2)
    alone = generate(
        "healthy", START, end, requests_per_hour=3000, canary_percent=0, control="m1", seed=2
    )
    pd.testing.assert_frame_equal(base, alone)
    with pytest.raises(UsageError, match="stable, drift"):
        generate_post_launch("healthy", START, end)


# ------------------------------------------------------------------ the CLI


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rolloutctl", "--json", "simulate", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _one(query: str) -> tuple[Any, ...]:
    rel = duckdb.sql(query)
    assert rel is not None
    rows = rel.fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def test_cli_writes_a_shadow_log_duckdb_can_read(tmp_path: Path) -> None:
    out = tmp_path / "shadow.jsonl"
    result = _cli(
        tmp_path,
        "--stage",
        "shadow",
        "--scenario",
        "shadow_errors",
        "--out",
        str(out),
        "--hours",
        "1",
        "--rate",
        "3000",
        "--start",
        "2026-01-01T00:00:00Z",
        "--coverage",
        "0.9",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["stage"] == "shadow" and data["scenario"] == "shadow_errors"
    assert data["rows"] == data["requests"] + data["shadow_calls"]
    assert data["shadow_calls"] / data["requests"] == pytest.approx(0.9, abs=0.03)
    row = _one(
        f"""select count(*), count(distinct request_id),
                   count(*) filter (where variant = 'shadow:v2' and task_completed is null),
                   avg((status = 'error')::int) filter (where variant = 'shadow:v2'),
                   count(*) filter (where ts >= '2026-01-01 01:00:00+00')
            from read_json_auto('{out}')"""
    )
    assert row[:3] == (data["rows"], data["requests"], data["shadow_calls"])
    assert row[3] == pytest.approx(0.08, abs=0.02) and row[4] == 0


def test_cli_writes_eval_runs_post_launch_and_baseline(tmp_path: Path) -> None:
    result = _cli(
        tmp_path,
        "--stage",
        "eval",
        "--scenario",
        "lower_pass_rate",
        "--format",
        "inspect",
        "--samples",
        "200",
        "--out",
        str(tmp_path / "evals"),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    base, cand = read_run(data["baseline"]), read_run(data["candidate"])
    assert base.format == "inspect" and base.overall.n == cand.overall.n == 200
    assert cand.overall.rate < base.overall.rate - 0.04

    out = tmp_path / "after.parquet"
    result = _cli(
        tmp_path,
        "--stage",
        "post-launch",
        "--scenario",
        "drift",
        "--onset",
        "1",
        "--hours",
        "2",
        "--rate",
        "3000",
        "--out",
        str(out),
        "--start",
        "2026-01-01T00:00:00Z",
    )
    assert result.returncode == 0, result.stderr
    first_new, variants = _one(
        f"select epoch_ms(min(ts) filter (where category = '{NEW_CATEGORY}')), "
        f"list(distinct variant) from read_parquet('{out}')"
    )
    assert first_new >= datetime(2026, 1, 1, 1, tzinfo=UTC).timestamp() * 1000
    assert variants == ["v2"]

    out = tmp_path / "before.csv"
    result = _cli(
        tmp_path, "--stage", "baseline", "--hours", "1", "--rate", "2000", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scenario"] is None
    assert _one(f"select list(distinct variant) from read_csv('{out}')") == (["v1"],)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stage", "shadow", "--scenario", "cost_blowup"], "shadow_errors"),
        (["--stage", "post-launch", "--scenario", "healthy"], "stable, drift"),
        (["--coverage", "0.5"], "--coverage applies to --stage shadow"),
    ],
)
def test_cli_usage_errors_name_the_valid_choices(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = _cli(tmp_path, *args, "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_help_describes_the_stages() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rolloutctl", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in [
        "--stage shadow",
        "--stage eval",
        "--stage post-launch",
        "--stage baseline",
        "--coverage",
        "--format",
        "--samples",
        *SHADOW_SCENARIOS,
        *EVAL_SCENARIOS,
        *POST_LAUNCH_SCENARIOS,
    ]:
        assert word in result.stdout, word
