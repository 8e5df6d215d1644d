"""Synthetic request logs for an AI search product, for demos and for testing gates.

Real canary logs are hard to share and never contain the regression you want to rehearse, so
this module fabricates them: one row per request, with segments, latency, cost and quality
signals whose shapes (heavy latency tails, segment-dependent hallucination, sticky per-user
assignment) resemble production. Each scenario breaks the canary arm in one known way from an
onset time on, so a gate can be checked against a known answer.

Everything is vectorised numpy and driven by one seeded generator: the same arguments give the
same frame, and different scenarios or canary percentages with the same seed share every random
draw, so they differ only where the scenario says they should.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from rolloutctl.errors import UsageError

__all__ = ["SCENARIOS", "generate", "write"]

SCENARIOS: dict[str, str] = {
    "healthy": "the canary is slightly better on quality, 3% slower and 5% dearer: every gate "
    "should pass",
    "latency_regression": "the canary is 35% slower with a fatter tail (p95 up about 50%) and a "
    "few more timeouts",
    "cost_blowup": "the canary writes 2.2x as many output tokens, so cost nearly doubles and "
    "latency rises about 15%",
    "safety_regression_segment": "the canary's safety violations rise twelvefold in the health "
    "category only; every other segment looks healthy",
    "hallucination_regression": "the canary hallucinates more (2.5% to 4.5%), cites sources "
    "less well (-4 pt) and completes fewer tasks (-2 pt)",
    "sample_ratio_mismatch": "the canary is healthy but loses every log line of about 12% of its "
    "users, so the observed split no longer matches the configured one",
}

_Array = npt.NDArray[Any]
_F64 = npt.NDArray[np.float64]

_LANGUAGES = ("en", "hinglish", "es", "de", "fr", "ja", "pt")
_LANGUAGE_P = (0.52, 0.12, 0.10, 0.07, 0.07, 0.05, 0.07)
_CATEGORIES = (
    "general",
    "shopping",
    "travel",
    "coding",
    "health",
    "finance",
    "legal",
    "politics",
    "entertainment",
)
_CATEGORY_P = (0.28, 0.13, 0.10, 0.12, 0.10, 0.09, 0.05, 0.04, 0.09)
_DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_P = (0.58, 0.37, 0.05)
_REGIONS = ("na", "eu", "apac", "latam", "mea")
# Region given language, rows in _LANGUAGES order: hinglish users are mostly in India, etc.
_REGION_GIVEN_LANGUAGE = (
    (0.55, 0.20, 0.15, 0.03, 0.07),
    (0.05, 0.03, 0.85, 0.00, 0.07),
    (0.10, 0.30, 0.00, 0.60, 0.00),
    (0.05, 0.95, 0.00, 0.00, 0.00),
    (0.05, 0.80, 0.00, 0.00, 0.15),
    (0.02, 0.00, 0.98, 0.00, 0.00),
    (0.00, 0.25, 0.00, 0.75, 0.00),
)
_TIERS = ("free", "pro", "internal")
_TIER_P = (0.80, 0.18, 0.02)
_HEALTH = _CATEGORIES.index("health")
_POLITICS = _CATEGORIES.index("politics")
_DESKTOP = _DEVICES.index("desktop")

# Per-category multipliers, in _CATEGORIES order.
_CAT_INPUT = np.array([1.0, 0.9, 1.0, 1.6, 1.2, 1.1, 1.5, 1.0, 0.8])
_CAT_OUTPUT = np.array([0.9, 0.9, 1.1, 1.5, 1.1, 1.1, 1.4, 1.0, 0.8])
_CAT_LATENCY = np.array([1.0, 0.95, 1.05, 1.45, 1.1, 1.05, 1.4, 1.0, 0.9])
_CAT_HALLUCINATION = np.array([0.8, 0.7, 0.8, 1.1, 1.8, 1.3, 2.0, 1.2, 0.7])
_CAT_REFUSAL = np.array([0.6, 0.4, 0.5, 0.6, 2.2, 1.4, 2.2, 3.0, 0.6])
_LANG_HALLUCINATION = np.array([0.95, 1.35, 1.0, 1.0, 1.0, 1.15, 1.0])
_DEV_LATENCY = np.array([1.08, 0.92, 1.0])

_TIMEOUT_MS = 10_000.0
_LATENCY_MEDIAN_MS = 820.0  # before category/device/length factors; overall median lands ~900
_TAIL_SCALE_MS = 1_100.0
_PRICE_IN = 1.10e-6  # USD per input token, control
_PRICE_OUT = 5.50e-6  # USD per output token, control
_ACTIVITY_SKEW = 1.6  # >1: a few users send many requests
_DIURNAL_AMPLITUDE = 0.3
_DIURNAL_PEAK_HOUR = 15.0
_SESSION_MS = 30 * 60 * 1000


@dataclass(frozen=True)
class _Effects:
    """How one arm behaves; the canary's numbers are relative to control."""

    latency: float = 1.0
    tail_prob: float = 0.02
    tail_scale: float = 1.0
    output_tokens: float = 1.0
    price: float = 1.0
    hallucination: float = 1.0
    grounded_delta: float = 0.0
    completed_delta: float = 0.0
    health_safety: float = 1.0
    drop: float = 0.0


_CONTROL = _Effects()
_HEALTHY = _Effects(
    latency=1.03, price=1.05, hallucination=0.9, grounded_delta=0.01, completed_delta=0.008
)
_REGRESSED: dict[str, _Effects] = {
    "healthy": _HEALTHY,
    "latency_regression": _Effects(
        latency=1.35,
        tail_prob=0.05,
        tail_scale=1.6,
        price=1.05,
        hallucination=0.9,
        grounded_delta=0.01,
        completed_delta=0.008,
    ),
    "cost_blowup": _Effects(
        latency=1.15,
        output_tokens=2.2,
        price=1.05,
        hallucination=0.9,
        grounded_delta=0.01,
        completed_delta=0.008,
    ),
    "safety_regression_segment": _Effects(
        latency=1.03,
        price=1.05,
        hallucination=0.9,
        grounded_delta=0.01,
        completed_delta=0.008,
        health_safety=12.0,
    ),
    # Deltas are on top of what the extra hallucinations already cost (about -0.6 and -0.7 pt).
    "hallucination_regression": _Effects(
        latency=1.03, price=1.05, hallucination=1.8, grounded_delta=-0.034, completed_delta=-0.015
    ),
    "sample_ratio_mismatch": _Effects(
        latency=1.03,
        price=1.05,
        hallucination=0.9,
        grounded_delta=0.01,
        completed_delta=0.008,
        drop=0.12,
    ),
}
assert set(_REGRESSED) == set(SCENARIOS)

_U64 = np.uint64


def _splitmix64(x: _Array) -> _Array:
    """A bijective 64-bit mixer: distinct inputs give distinct, well-spread outputs."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def _lowbias32(x: _Array) -> _Array:
    """A bijective 32-bit mixer, so unit ids drawn from distinct indices never collide."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint32)
        z = (z ^ (z >> np.uint32(16))) * np.uint32(0x7FEB352D)
        z = (z ^ (z >> np.uint32(15))) * np.uint32(0x846CA68B)
        return z ^ (z >> np.uint32(16))


def _unit_bucket(unit_values: _Array) -> _F64:
    """Map a unit's 32-bit id to [0, 100); depends on the id alone, so it is sticky."""
    mixed = _splitmix64(unit_values.astype(np.uint64) ^ _U64(0x5EED0F0CA2A4F00D))
    return (mixed >> _U64(11)).astype(np.float64) * (100.0 / 2.0**53)


@functools.cache
def _hex_table() -> _Array:
    """Each 16-bit value -> its four hex digits as UTF-32 code units, packed in two uint64."""
    digits = "0123456789abcdef"
    pairs = np.array([digits[i >> 4] + digits[i & 15] for i in range(256)], dtype="<U2")
    pair64 = pairs.view(np.uint64)
    idx = np.arange(65536)
    return np.stack([pair64[idx >> 8], pair64[idx & 255]], axis=1)


def _string_dtype() -> Any:
    """The dtype pandas itself gives text (str on pandas 3, object before), so frames match
    what read_csv/read_json return."""
    return pd.Series([""]).dtype


def _hex_ids(values: _Array, prefix: str, digits: int) -> pd.Series:
    """Format uint64 values as prefix + lowest `digits` hex digits, without a Python loop."""
    assert len(prefix) == 2 and digits % 4 == 0 and 0 < digits <= 16
    n = len(values)
    quads = digits // 4
    packed = np.empty((n, 1 + 2 * quads), dtype=np.uint64)
    packed[:, 0] = np.array([prefix], dtype="<U2").view(np.uint64)[0]
    table = _hex_table()
    for q in range(quads):
        shift = _U64(16 * (quads - 1 - q))
        word = ((values >> shift) & _U64(0xFFFF)).astype(np.intp)
        packed[:, 1 + 2 * q : 3 + 2 * q] = table[word]
    text = packed.view(f"<U{2 + digits}").reshape(n)
    return pd.Series(text, dtype=_string_dtype())


def _labels(codes: _Array, names: Sequence[str]) -> pd.Series:
    """Integer codes -> a string column, by a vectorised take from the few distinct labels."""
    return pd.Series(pd.Series(list(names), dtype=_string_dtype()).array.take(codes))


def _categorical(rng: np.random.Generator, n: int, probs: Sequence[float]) -> _Array:
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(cum) - 1)


def _utc_ns(value: datetime, name: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(
            f"{name} must be timezone-aware, got {value.isoformat()}",
            hint="pass UTC times, e.g. datetime(2026, 1, 1, tzinfo=timezone.utc)",
        )
    return int(pd.Timestamp(value).tz_convert("UTC").value)


def _arrival_ms(rng: np.random.Generator, n: int, lo_ms: int, hi_ms: int) -> _Array:
    """Sorted arrival times in [lo_ms, hi_ms) with a mild daily cycle (peak mid-afternoon UTC)."""
    span = hi_ms - lo_ms
    cells = int(min(max(span // 60_000, 1), 20_000))
    edges = np.linspace(0.0, float(span), cells + 1)
    mids = lo_ms + (edges[:-1] + edges[1:]) / 2.0
    hour = (mids / 3_600_000.0) % 24.0
    density = 1.0 + _DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (hour - _DIURNAL_PEAK_HOUR) / 24.0)
    cum = np.concatenate([[0.0], np.cumsum(density * np.diff(edges))])
    offsets = np.interp(np.sort(rng.random(n)) * cum[-1], cum, edges)
    return np.minimum(lo_ms + np.floor(offsets).astype(np.int64), hi_ms - 1)


def _by_arm(arm: _Array, effects: Sequence[_Effects], field: str) -> _F64:
    """Per-row value of one effect field, arm 0 = control, 1 = healthy canary, 2 = regressed."""
    return np.array([getattr(e, field) for e in effects], dtype=np.float64)[arm]


def _normalised(weights: _F64) -> _F64:
    mean = float(weights.mean()) if len(weights) else 1.0
    return weights / mean


def generate(
    scenario: str,
    start: datetime,
    end: datetime,
    *,
    requests_per_hour: float = 20_000,
    canary_percent: float = 50.0,
    control: str = "v1",
    canary: str = "v2",
    eligible: Callable[[pd.DataFrame], np.ndarray] | None = None,
    onset: datetime | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Fabricate one row per request between start and end, with the scenario's canary defect.

    Users are assigned to the canary by a sticky hash of their unit id, so the same user stays
    on one arm and raising canary_percent only adds users. `eligible` limits which rows may get
    the canary (a stage's scope). Before `onset` the canary behaves as in "healthy".

    language, device, region and user_tier belong to the user (a scope on them keeps each user
    on one arm); category varies per request. A unit's bucket in [0, 100) is
    splitmix64(int(unit_id[2:], 16) ^ 0x5EED0F0CA2A4F00D) >> 11, scaled by 100 / 2**53.
    """
    if scenario not in SCENARIOS:
        valid = ", ".join(SCENARIOS)
        raise UsageError(
            f"unknown scenario {scenario!r}; valid scenarios: {valid}",
            hint="`rolloutctl simulate --help` describes each scenario",
        )
    start_ns = _utc_ns(start, "start")
    end_ns = _utc_ns(end, "end")
    onset_ns = start_ns if onset is None else _utc_ns(onset, "onset")
    if end_ns <= start_ns:
        raise UsageError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if not np.isfinite(requests_per_hour) or requests_per_hour < 0:
        raise UsageError(f"requests_per_hour must be >= 0, got {requests_per_hour}")
    if not 0.0 <= canary_percent <= 100.0:
        raise UsageError(f"canary_percent must be within 0..100, got {canary_percent}")
    if control == canary:
        raise UsageError(f"control and canary must differ, both are {control!r}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")

    rng = np.random.default_rng(seed)
    salt = int(_splitmix64(np.array([seed % 2**64], dtype=np.uint64))[0])
    lo_ms = -(-start_ns // 1_000_000)
    hi_ms = -(-end_ns // 1_000_000)
    hours = (end_ns - start_ns) / 3.6e12
    expected = requests_per_hour * hours
    n = int(rng.poisson(expected)) if hi_ms > lo_ms else 0
    ts_ms = _arrival_ms(rng, n, lo_ms, hi_ms)

    # --- users: a pool with sticky attributes and skewed activity -------------------------
    pool = max(1000, int(expected / 5))
    unit_vals = _lowbias32((np.arange(pool, dtype=np.uint64) + _U64(salt)) & _U64(0xFFFFFFFF))
    user_lang = _categorical(rng, pool, _LANGUAGE_P)
    region_cum = np.cumsum(np.array(_REGION_GIVEN_LANGUAGE), axis=1)[user_lang]
    user_region = np.minimum((rng.random(pool)[:, None] >= region_cum).sum(axis=1), 4)
    user_device = _categorical(rng, pool, _DEVICE_P)
    user_tier = _categorical(rng, pool, _TIER_P)
    user = np.minimum((pool * rng.random(n) ** _ACTIVITY_SKEW).astype(np.int64), pool - 1)
    category = _categorical(rng, n, _CATEGORY_P)
    language = user_lang[user]
    device = user_device[user]
    unit = unit_vals[user]

    segments = pd.DataFrame(
        {
            "language": _labels(language, _LANGUAGES),
            "category": _labels(category, _CATEGORIES),
            "device": _labels(device, _DEVICES),
            "region": _labels(user_region[user], _REGIONS),
            "user_tier": _labels(user_tier[user], _TIERS),
        }
    )

    # --- assignment: sticky hash bucket AND stage scope ------------------------------------
    in_canary = (_unit_bucket(unit_vals) < canary_percent)[user]
    if eligible is not None:
        mask = np.asarray(eligible(segments.copy(deep=False)), dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"eligible() returned shape {mask.shape}, expected ({n},)")
        in_canary &= mask
    regressed = in_canary & (ts_ms * 1_000_000 >= onset_ns)
    arm = in_canary.astype(np.intp) + regressed
    fx = (_CONTROL, _HEALTHY, _REGRESSED[scenario])

    # --- tokens and cost ---------------------------------------------------------------------
    input_tokens = np.clip(520.0 * _CAT_INPUT[category] * rng.lognormal(0.0, 0.45, n), 20, 16_000)
    output_base = np.clip(260.0 * _CAT_OUTPUT[category] * rng.lognormal(0.0, 0.65, n), 8, 4_096)
    length_risk = _normalised(np.sqrt(output_base))

    # --- latency: lognormal body x segment factors, plus a Pareto tail ------------------------
    body = (
        _LATENCY_MEDIAN_MS
        * rng.lognormal(0.0, 0.5, n)
        * _CAT_LATENCY[category]
        * _DEV_LATENCY[device]
        * (output_base / 260.0) ** 0.35
    )
    tail_u = rng.random(n)
    tail = _TAIL_SCALE_MS * rng.pareto(1.7, n)
    tail_hit = tail_u < _by_arm(arm, fx, "tail_prob")
    latency = (body + np.where(tail_hit, tail * _by_arm(arm, fx, "tail_scale"), 0.0)) * _by_arm(
        arm, fx, "latency"
    )

    # --- status -------------------------------------------------------------------------------
    timeout = (rng.random(n) < 0.0035 * length_risk) | (latency >= _TIMEOUT_MS)
    error = ~timeout & (rng.random(n) < 0.008 * length_risk)
    ok = ~(timeout | error)
    fail_fast = 0.1 + 0.5 * rng.random(n)
    latency = np.where(timeout, _TIMEOUT_MS, np.where(error, latency * fail_fast, latency))
    ttft = latency * (0.25 + 0.15 * rng.random(n))
    status = np.where(timeout, 2, np.where(error, 1, 0))

    output = output_base * _by_arm(arm, fx, "output_tokens")
    output = np.where(ok, output, np.minimum(output, rng.integers(0, 16, n)))
    input_i = np.rint(input_tokens).astype(np.int64)
    output_i = np.rint(output).astype(np.int64)
    cost = (input_i * _PRICE_IN + output_i * _PRICE_OUT) * _by_arm(arm, fx, "price")

    # --- quality -----------------------------------------------------------------------------
    hall_w = _normalised(_CAT_HALLUCINATION[category] * _LANG_HALLUCINATION[language])
    p_hall = 0.025 * hall_w * _by_arm(arm, fx, "hallucination")
    hallucination = ok & (rng.random(n) < p_hall)
    relevance = rng.beta(9.0, 2.5, n) * np.where(hallucination, 0.7, 1.0) * np.where(ok, 1.0, 0.3)
    p_grounded = 0.895 - 0.30 * hallucination + _by_arm(arm, fx, "grounded_delta")
    grounded = ok & (rng.random(n) < p_grounded)
    p_safety = np.where(category == _POLITICS, 0.00125, 0.0005)
    p_safety = np.where(category == _HEALTH, p_safety * _by_arm(arm, fx, "health_safety"), p_safety)
    safety = ok & (rng.random(n) < p_safety)
    refusal = ok & (rng.random(n) < 0.015 * _normalised(_CAT_REFUSAL[category]))
    p_reform = 0.105 + 0.25 * hallucination + 0.30 * ~ok + 0.25 * (0.78 - relevance)
    reformulated = rng.random(n) < p_reform
    p_done = (
        0.665
        - 0.35 * hallucination
        - 0.15 * refusal
        + 0.15 * (relevance - 0.78)
        + _by_arm(arm, fx, "completed_delta")
    )
    completed = ok & (rng.random(n) < p_done)
    p_click = 0.20 + 0.10 * grounded + 0.05 * (device == _DESKTOP)
    clicked = ok & (rng.random(n) < p_click)
    escalated = rng.random(n) < 0.0042 + 0.3 * safety + 0.05 * refusal + 0.01 * ~ok
    fallback = rng.random(n) < 0.009 + 0.15 * timeout
    json_valid = ok & (rng.random(n) >= 0.003)
    p_negative = 0.015 + 0.12 * hallucination + 0.06 * reformulated + 0.08 * ~ok
    p_positive = 0.04 + 0.06 * completed
    fb_u = rng.random(n)
    feedback = np.where(fb_u < p_negative, -1, np.where(fb_u >= 1.0 - p_positive, 1, 0))

    # --- identifiers -------------------------------------------------------------------------
    row_keys = _splitmix64(np.arange(n, dtype=np.uint64) ^ _U64(salt))
    unit_mix = _splitmix64(unit.astype(np.uint64))
    phase = (unit_mix % _U64(_SESSION_MS)).astype(np.int64)
    session_keys = _splitmix64(unit_mix ^ ((ts_ms + phase) // _SESSION_MS).astype(np.uint64))
    unit_ids = _hex_ids(unit_vals.astype(np.uint64), "u-", 8).array

    # A crashing canary loses every log line of the users it crashes for, so the loss shows in
    # unit counts as well as in request counts.
    crash_u = (_splitmix64(unit_vals.astype(np.uint64) ^ _U64(0xC4A5)) >> _U64(11)) * 2.0**-53
    keep = ~(crash_u[user] < _by_arm(arm, fx, "drop"))
    all_kept = bool(keep.all())
    if not all_kept:
        segments = segments[keep].reset_index(drop=True)

    def k(values: _Array) -> _Array:
        """Rows that made it into the log (sample_ratio_mismatch loses some canary lines)."""
        return values if all_kept else values[keep]

    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(k(ts_ms) * 1_000_000, unit="ns", utc=True),
            "request_id": _hex_ids(k(row_keys), "r-", 16),
            "session_id": _hex_ids(k(session_keys), "s-", 12),
            "unit_id": pd.Series(unit_ids.take(k(user))),
            "variant": _labels(k(in_canary).astype(np.intp), [control, canary]),
            **{c: segments[c] for c in segments.columns},
            "status": _labels(k(status), ["ok", "error", "timeout"]),
            "latency_ms": k(latency),
            "ttft_ms": k(ttft),
            "input_tokens": k(input_i),
            "output_tokens": k(output_i),
            "cost_usd": k(cost),
            "fallback_used": k(fallback),
            "json_valid": k(json_valid),
            "citation_grounded": k(grounded),
            "hallucination": k(hallucination),
            "safety_violation": k(safety),
            "refusal": k(refusal),
            "escalated": k(escalated),
            "reformulated": k(reformulated),
            "task_completed": k(completed),
            "source_clicked": k(clicked),
            "feedback": k(feedback).astype(np.int64),
            "eval.relevance": np.clip(k(relevance), 0.0, 1.0),
        }
    )
    return frame


def write(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a request log where the gates can read it, atomically so readers never see half.

    The format follows the suffix: .jsonl (one object per line), .csv or .parquet. In JSONL and
    CSV, timestamps are ISO 8601 UTC with milliseconds and a 'Z'; parquet keeps them typed.
    duckdb does the writing because it is an order of magnitude faster than pandas here.
    """
    target = Path(path)
    fmt = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(target.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot write {target}: unknown suffix {target.suffix or '(none)'!r}",
            hint="use a .jsonl, .csv or .parquet file name",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _copy_with_duckdb(frame, tmp, fmt)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _copy_with_duckdb(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """COPY the frame to path; for text formats, datetimes become ISO 8601 'Z' strings."""
    columns = []
    for name in frame.columns:
        ident = '"' + str(name).replace('"', '""') + '"'
        if fmt != "parquet" and pd.api.types.is_datetime64_any_dtype(frame[name]):
            ident = f"strftime({ident}, '%Y-%m-%dT%H:%M:%S.%gZ') AS {ident}"
        columns.append(ident)
    if fmt != "parquet":
        # Naive UTC wall time, so formatting does not depend on the session's time zone.
        frame = frame.assign(
            **{
                str(c): frame[c].dt.tz_convert(None)
                for c in frame.columns
                if isinstance(frame[c].dtype, pd.DatetimeTZDtype)
            }
        )
    options = {"json": "FORMAT json", "csv": "FORMAT csv, HEADER", "parquet": "FORMAT parquet"}
    literal = str(path).replace("'", "''")
    con = duckdb.connect()
    try:
        con.register("frame_to_write", frame)
        con.execute(
            f"COPY (SELECT {', '.join(columns)} FROM frame_to_write) "
            f"TO '{literal}' ({options[fmt]})"
        )
    finally:
        con.close()
