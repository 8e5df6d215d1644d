"""Synthetic request logs for an AI search product, for demos and for testing gates.

Real canary logs are hard to share and never contain the regression you want to rehearse, so
this module fabricates them: one row per request, with segments, latency, cost and quality
signals whose shapes (heavy latency tails, segment-dependent hallucination, sticky per-user
assignment) resemble production. Each scenario breaks the candidate in one known way, so a gate
can be checked against a known answer. There is data for every stage kind of a rollout:

- canary, ramp and A/B: `generate` (SCENARIOS), a sticky split between control and canary;
- shadow: `generate_shadow` (SHADOW_SCENARIOS), the control serves every request and the
  candidate answers most of them again in the background, paired by request_id;
- offline eval: `write_eval_runs` (EVAL_SCENARIOS, in rolloutctl.simulate_evals), a baseline
  and a candidate run of one eval set in a format rolloutctl.metrics.evalformats reads;
- post-launch monitoring: `generate_post_launch` (POST_LAUNCH_SCENARIOS), all traffic on the
  candidate, against the pre-rollout baseline from `generate_baseline`.

Everything is vectorised numpy and driven by one seeded generator: the same arguments give the
same frame, and different scenarios or canary percentages with the same seed share every random
draw, so they differ only where the scenario says they should.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from rolloutctl.errors import UsageError
from rolloutctl.simulate_evals import EVAL_FORMATS, EVAL_SCENARIOS, write_eval_runs

__all__ = [
    "EVAL_FORMATS",
    "EVAL_SCENARIOS",
    "NEW_CATEGORY",
    "POST_LAUNCH_SCENARIOS",
    "SCENARIOS",
    "SHADOW_SCENARIOS",
    "USER_SIGNALS",
    "generate",
    "generate_baseline",
    "generate_post_launch",
    "generate_shadow",
    "write",
    "write_eval_runs",
]

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

SHADOW_SCENARIOS: dict[str, str] = {
    "healthy": "the shadow candidate answers as well as the control or slightly better (10% "
    "fewer hallucinations), 3% slower and 5% dearer: the shadow comparison should pass",
    "latency_regression": "the shadow candidate is about 30% slower on average, with about "
    "twice as many timeouts",
    "safety_regression_segment": "the shadow candidate's safety violations rise twelvefold in "
    "the health category only; every other segment looks healthy",
    "shadow_errors": "about 8% of the shadow candidate's calls fail with status error (the "
    "control's error rate stays under 1%)",
}

NEW_CATEGORY = "tax_filing"
POST_LAUNCH_SCENARIOS: dict[str, str] = {
    "stable": "all traffic on the candidate, behaving exactly as the healthy canary did: a "
    "drift monitor should stay quiet",
    "drift": f"from drift_start a new query pattern appears (category {NEW_CATEGORY!r}, about 6% "
    "of traffic) where answers hallucinate about 3x as often and take about 50% longer; cost "
    "per request creeps up, reaching about +15% six hours after drift_start",
}

# Reactions of the user to the answer they saw. Nobody sees a shadow answer, so shadow rows
# leave these empty (null) instead of inventing them.
USER_SIGNALS = ("escalated", "reformulated", "task_completed", "source_clicked", "feedback")

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
# The post-launch drift's new query pattern gets the next code; it is never drawn otherwise.
_ALL_CATEGORIES = (*_CATEGORIES, NEW_CATEGORY)
_NEW = len(_CATEGORIES)
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

# Per-category multipliers, in _ALL_CATEGORIES order (the last one is NEW_CATEGORY).
_CAT_INPUT = np.array([1.0, 0.9, 1.0, 1.6, 1.2, 1.1, 1.5, 1.0, 0.8, 1.5])
_CAT_OUTPUT = np.array([0.9, 0.9, 1.1, 1.5, 1.1, 1.1, 1.4, 1.0, 0.8, 1.4])
_CAT_LATENCY = np.array([1.0, 0.95, 1.05, 1.45, 1.1, 1.05, 1.4, 1.0, 0.9, 1.45])
_CAT_HALLUCINATION = np.array([0.8, 0.7, 0.8, 1.1, 1.8, 1.3, 2.0, 1.2, 0.7, 3.0])
_CAT_REFUSAL = np.array([0.6, 0.4, 0.5, 0.6, 2.2, 1.4, 2.2, 3.0, 0.6, 1.4])
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

# Shadow: how closely the candidate's answer to a request follows the control's. Request
# difficulty (prompt and answer length, latency body) correlates at _PAIR_RHO in log space;
# every other random number is the control's own with probability _PAIR_SHARE.
_PAIR_RHO = 0.9
_PAIR_SHARE = 0.8
_SHADOW_DELAY_MS = (100, 500)  # the shadow row is logged this much after the control's

# Post-launch drift.
_NEW_SHARE = 0.06  # of traffic after drift_start
_COST_CREEP = 0.13  # longer prompts and answers; with the new pattern's, cost per request +15%
_CREEP_HOURS = 6.0


@dataclass(frozen=True)
class _Effects:
    """How one arm behaves; the candidate's numbers are relative to control."""

    latency: float = 1.0
    tail_prob: float = 0.02
    tail_scale: float = 1.0
    input_tokens: float = 1.0
    output_tokens: float = 1.0
    price: float = 1.0
    hallucination: float = 1.0
    grounded_delta: float = 0.0
    completed_delta: float = 0.0
    health_safety: float = 1.0
    extra_timeout: float = 0.0  # added to each request's chance of timing out
    extra_error: float = 0.0  # added to each request's chance of failing with an error
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
_SHADOW: dict[str, _Effects] = {
    "healthy": _HEALTHY,
    "latency_regression": replace(
        _HEALTHY, latency=1.28, tail_prob=0.025, tail_scale=1.2, extra_timeout=0.003
    ),
    "safety_regression_segment": replace(_HEALTHY, health_safety=12.0),
    "shadow_errors": replace(_HEALTHY, extra_error=0.072),
}
assert set(_SHADOW) == set(SHADOW_SCENARIOS)

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


def _row_effects(arm: _Array, effects: Sequence[_Effects]) -> dict[str, _F64]:
    """Every effect field as a per-row array, so a scenario can also vary it continuously."""
    return {f.name: _by_arm(arm, effects, f.name) for f in fields(_Effects)}


def _normalised(weights: _F64, ref: _Array | None = None) -> _F64:
    """Weights scaled to mean 1 over the reference rows (all rows when ref is None)."""
    base = weights if ref is None else weights[ref]
    mean = float(base.mean()) if len(base) else 1.0
    return weights / mean


def _scenario(name: str, valid: Mapping[str, str], kind: str) -> None:
    if name not in valid:
        raise UsageError(
            f"unknown {kind}scenario {name!r}; valid scenarios: {', '.join(valid)}",
            hint="`rolloutctl simulate --help` describes each scenario",
        )


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    start_ns = _utc_ns(start, "start")
    end_ns = _utc_ns(end, "end")
    if end_ns <= start_ns:
        raise UsageError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    return start_ns, end_ns


def _check_rate_and_seed(requests_per_hour: float, seed: int) -> None:
    if not np.isfinite(requests_per_hour) or requests_per_hour < 0:
        raise UsageError(f"requests_per_hour must be >= 0, got {requests_per_hour}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")


@dataclass(frozen=True)
class _Traffic:
    """Who asked what, and when: one entry per request, codes into the segment tuples."""

    salt: int
    hi_ms: int
    ts_ms: _Array
    user: _Array  # index into the user pool
    unit_vals: _Array  # the pool's 32-bit unit ids
    user_region: _Array  # per user
    user_tier: _Array  # per user
    language: _Array
    category: _Array
    device: _Array

    def segments(self, rows: _Array | None = None) -> pd.DataFrame:
        def pick(values: _Array) -> _Array:
            return values if rows is None else values[rows]

        return pd.DataFrame(
            {
                "language": _labels(pick(self.language), _LANGUAGES),
                "category": _labels(pick(self.category), _ALL_CATEGORIES),
                "device": _labels(pick(self.device), _DEVICES),
                "region": _labels(pick(self.user_region[self.user]), _REGIONS),
                "user_tier": _labels(pick(self.user_tier[self.user]), _TIERS),
            }
        )


def _traffic(
    rng: np.random.Generator, start_ns: int, end_ns: int, requests_per_hour: float, seed: int
) -> _Traffic:
    """Arrival times and a pool of users with sticky attributes and skewed activity."""
    salt = int(_splitmix64(np.array([seed % 2**64], dtype=np.uint64))[0])
    lo_ms = -(-start_ns // 1_000_000)
    hi_ms = -(-end_ns // 1_000_000)
    hours = (end_ns - start_ns) / 3.6e12
    expected = requests_per_hour * hours
    n = int(rng.poisson(expected)) if hi_ms > lo_ms else 0
    ts_ms = _arrival_ms(rng, n, lo_ms, hi_ms)

    pool = max(1000, int(expected / 5))
    unit_vals = _lowbias32((np.arange(pool, dtype=np.uint64) + _U64(salt)) & _U64(0xFFFFFFFF))
    user_lang = _categorical(rng, pool, _LANGUAGE_P)
    region_cum = np.cumsum(np.array(_REGION_GIVEN_LANGUAGE), axis=1)[user_lang]
    user_region = np.minimum((rng.random(pool)[:, None] >= region_cum).sum(axis=1), 4)
    user_device = _categorical(rng, pool, _DEVICE_P)
    user_tier = _categorical(rng, pool, _TIER_P)
    user = np.minimum((pool * rng.random(n) ** _ACTIVITY_SKEW).astype(np.int64), pool - 1)
    category = _categorical(rng, n, _CATEGORY_P)
    return _Traffic(
        salt=salt,
        hi_ms=hi_ms,
        ts_ms=ts_ms,
        user=user,
        unit_vals=unit_vals,
        user_region=user_region,
        user_tier=user_tier,
        language=user_lang[user],
        category=category,
        device=user_device[user],
    )


def _hash_uniform(keys: _Array, salt: int) -> _F64:
    """A uniform in [0, 1) per key that uses no generator draw, so adding one to a scenario
    leaves every other draw where it was."""
    mixed = _splitmix64(keys.astype(np.uint64) ^ _U64(salt))
    return (mixed >> _U64(11)).astype(np.float64) * 2.0**-53


class _Draws:
    """The random numbers behind one set of answers, in the order the answers use them.

    A fresh set draws from the generator exactly as generate() always has. A paired set (the
    shadow candidate answering the same requests) follows its parent's numbers: lognormal
    request-difficulty draws correlate at `rho` in log space, every other number is the
    parent's own with probability `share`. The marginals stay the same, so one scenario's
    effects still read off directly, but the two answers to one request share its difficulty
    and paired differences are far less noisy than unpaired ones."""

    def __init__(
        self,
        rng: np.random.Generator,
        n: int,
        *,
        record: bool = False,
        parent: _Draws | None = None,
        rho: float = _PAIR_RHO,
        share: float = _PAIR_SHARE,
    ) -> None:
        self.rng, self.n, self.parent, self.rho, self.share = rng, n, parent, rho, share
        self.drawn: list[_Array] | None = [] if record else None
        self._count = 0

    def _take(self, fresh: _Array, lognormal: bool = False, mean: float | None = None) -> _Array:
        """fresh, or for a paired set its mix with the parent's draw at the same position."""
        if self.parent is not None:
            assert self.parent.drawn is not None, "a parent must record its draws"
            own = self.parent.drawn[self._count]
            keep = math.sqrt(1.0 - self.rho**2)
            if lognormal:
                fresh = np.exp(self.rho * np.log(own) + keep * np.log(fresh))
            elif mean is not None:  # a continuous score: same mean and spread, correlated
                fresh = np.clip(mean + self.rho * (own - mean) + keep * (fresh - mean), 0, 1)
            else:
                fresh = np.where(self.rng.random(self.n) < self.share, own, fresh)
        self._count += 1
        if self.drawn is not None:
            self.drawn.append(fresh)
        return fresh

    def random(self) -> _F64:
        return self._take(self.rng.random(self.n))

    def lognormal(self, sigma: float) -> _F64:
        return self._take(self.rng.lognormal(0.0, sigma, self.n), lognormal=True)

    def pareto(self, a: float) -> _F64:
        return self._take(self.rng.pareto(a, self.n))

    def beta(self, a: float, b: float) -> _F64:
        return self._take(self.rng.beta(a, b, self.n), mean=a / (a + b))

    def integers(self, low: int, high: int) -> _Array:
        return self._take(self.rng.integers(low, high, self.n))


def _answers(
    d: _Draws, t: _Traffic, fx: Mapping[str, _F64], ref: _Array | None = None
) -> dict[str, _Array]:
    """What one model's answers cost and how they went, per request of t. `ref` marks the
    rows whose mix defines "average" for segment-relative rates (all rows when None)."""
    category, language, device = t.category, t.language, t.device

    # --- tokens and cost ---------------------------------------------------------------------
    input_tokens = np.clip(520.0 * _CAT_INPUT[category] * d.lognormal(0.45), 20, 16_000)
    output_base = np.clip(260.0 * _CAT_OUTPUT[category] * d.lognormal(0.65), 8, 4_096)
    length_risk = _normalised(np.sqrt(output_base), ref)

    # --- latency: lognormal body x segment factors, plus a Pareto tail ------------------------
    body = (
        _LATENCY_MEDIAN_MS
        * d.lognormal(0.5)
        * _CAT_LATENCY[category]
        * _DEV_LATENCY[device]
        * (output_base / 260.0) ** 0.35
    )
    tail_u = d.random()
    tail = _TAIL_SCALE_MS * d.pareto(1.7)
    tail_hit = tail_u < fx["tail_prob"]
    latency = (body + np.where(tail_hit, tail * fx["tail_scale"], 0.0)) * fx["latency"]

    # --- status -------------------------------------------------------------------------------
    timeout = (d.random() < 0.0035 * length_risk + fx["extra_timeout"]) | (latency >= _TIMEOUT_MS)
    error = ~timeout & (d.random() < 0.008 * length_risk + fx["extra_error"])
    ok = ~(timeout | error)
    fail_fast = 0.1 + 0.5 * d.random()
    latency = np.where(timeout, _TIMEOUT_MS, np.where(error, latency * fail_fast, latency))
    ttft = latency * (0.25 + 0.15 * d.random())
    status = np.where(timeout, 2, np.where(error, 1, 0))

    output = output_base * fx["output_tokens"]
    output = np.where(ok, output, np.minimum(output, d.integers(0, 16)))
    input_i = np.rint(input_tokens * fx["input_tokens"]).astype(np.int64)
    output_i = np.rint(output).astype(np.int64)
    cost = (input_i * _PRICE_IN + output_i * _PRICE_OUT) * fx["price"]

    # --- quality -----------------------------------------------------------------------------
    hall_w = _normalised(_CAT_HALLUCINATION[category] * _LANG_HALLUCINATION[language], ref)
    p_hall = 0.025 * hall_w * fx["hallucination"]
    hallucination = ok & (d.random() < p_hall)
    relevance = d.beta(9.0, 2.5) * np.where(hallucination, 0.7, 1.0) * np.where(ok, 1.0, 0.3)
    p_grounded = 0.895 - 0.30 * hallucination + fx["grounded_delta"]
    grounded = ok & (d.random() < p_grounded)
    p_safety = np.where(category == _POLITICS, 0.00125, 0.0005)
    p_safety = np.where(category == _HEALTH, p_safety * fx["health_safety"], p_safety)
    safety = ok & (d.random() < p_safety)
    refusal = ok & (d.random() < 0.015 * _normalised(_CAT_REFUSAL[category], ref))
    p_reform = 0.105 + 0.25 * hallucination + 0.30 * ~ok + 0.25 * (0.78 - relevance)
    reformulated = d.random() < p_reform
    p_done = (
        0.665
        - 0.35 * hallucination
        - 0.15 * refusal
        + 0.15 * (relevance - 0.78)
        + fx["completed_delta"]
    )
    completed = ok & (d.random() < p_done)
    p_click = 0.20 + 0.10 * grounded + 0.05 * (device == _DESKTOP)
    clicked = ok & (d.random() < p_click)
    escalated = d.random() < 0.0042 + 0.3 * safety + 0.05 * refusal + 0.01 * ~ok
    fallback = d.random() < 0.009 + 0.15 * timeout
    json_valid = ok & (d.random() >= 0.003)
    p_negative = 0.015 + 0.12 * hallucination + 0.06 * reformulated + 0.08 * ~ok
    p_positive = 0.04 + 0.06 * completed
    fb_u = d.random()
    feedback = np.where(fb_u < p_negative, -1, np.where(fb_u >= 1.0 - p_positive, 1, 0))

    return {
        "status": status,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "input_tokens": input_i,
        "output_tokens": output_i,
        "cost_usd": cost,
        "fallback_used": fallback,
        "json_valid": json_valid,
        "citation_grounded": grounded,
        "hallucination": hallucination,
        "safety_violation": safety,
        "refusal": refusal,
        "escalated": escalated,
        "reformulated": reformulated,
        "task_completed": completed,
        "source_clicked": clicked,
        "feedback": feedback.astype(np.int64),
        "eval.relevance": np.clip(relevance, 0.0, 1.0),
    }


def _frame(
    t: _Traffic,
    answers: Mapping[str, _Array],
    variant: pd.Series,
    *,
    rows: _Array | None = None,
    ts_ms: _Array | None = None,
) -> pd.DataFrame:
    """The request-log rows of t picked by `rows` (all when None), in the documented columns.
    ts_ms overrides the logged time (a shadow call is logged after its control call); ids and
    sessions always follow the request itself."""

    def pick(values: _Array) -> _Array:
        return values if rows is None else values[rows]

    n = len(t.ts_ms)
    row_keys = _splitmix64(np.arange(n, dtype=np.uint64) ^ _U64(t.salt))
    unit = t.unit_vals[t.user]
    unit_mix = _splitmix64(unit.astype(np.uint64))
    phase = (unit_mix % _U64(_SESSION_MS)).astype(np.int64)
    session_keys = _splitmix64(unit_mix ^ ((t.ts_ms + phase) // _SESSION_MS).astype(np.uint64))
    unit_ids = _hex_ids(t.unit_vals.astype(np.uint64), "u-", 8).array
    segments = t.segments(rows)
    shown = t.ts_ms if ts_ms is None else ts_ms
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(pick(shown) * 1_000_000, unit="ns", utc=True),
            "request_id": _hex_ids(pick(row_keys), "r-", 16),
            "session_id": _hex_ids(pick(session_keys), "s-", 12),
            "unit_id": pd.Series(unit_ids.take(pick(t.user))),
            "variant": variant,
            **{c: segments[c] for c in segments.columns},
            "status": _labels(pick(answers["status"]), ["ok", "error", "timeout"]),
            **{name: pick(values) for name, values in answers.items() if name != "status"},
        }
    )


# ------------------------------------------------------------------ canary, ramp, A/B


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
    _scenario(scenario, SCENARIOS, "")
    start_ns, end_ns = _window(start, end)
    onset_ns = start_ns if onset is None else _utc_ns(onset, "onset")
    _check_rate_and_seed(requests_per_hour, seed)
    if not 0.0 <= canary_percent <= 100.0:
        raise UsageError(f"canary_percent must be within 0..100, got {canary_percent}")
    if control == canary:
        raise UsageError(f"control and canary must differ, both are {control!r}")

    rng = np.random.default_rng(seed)
    t = _traffic(rng, start_ns, end_ns, requests_per_hour, seed)
    n = len(t.ts_ms)

    # --- assignment: sticky hash bucket AND stage scope ------------------------------------
    in_canary = (_unit_bucket(t.unit_vals) < canary_percent)[t.user]
    if eligible is not None:
        mask = np.asarray(eligible(t.segments()), dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"eligible() returned shape {mask.shape}, expected ({n},)")
        in_canary &= mask
    regressed = in_canary & (t.ts_ms * 1_000_000 >= onset_ns)
    arm = in_canary.astype(np.intp) + regressed
    fx = _row_effects(arm, (_CONTROL, _HEALTHY, _REGRESSED[scenario]))
    answers = _answers(_Draws(rng, n), t, fx)

    # A crashing canary loses every log line of the users it crashes for, so the loss shows in
    # unit counts as well as in request counts.
    crash_u = _hash_uniform(t.unit_vals, 0xC4A5)
    keep = ~(crash_u[t.user] < fx["drop"])
    rows = None if bool(keep.all()) else np.flatnonzero(keep)
    codes = in_canary.astype(np.intp)
    variant = _labels(codes if rows is None else codes[rows], [control, canary])
    return _frame(t, answers, variant, rows=rows)


# ------------------------------------------------------------------ shadow


def generate_shadow(
    scenario: str,
    start: datetime,
    end: datetime,
    *,
    requests_per_hour: float = 20_000,
    control: str = "v1",
    candidate: str = "v2",
    coverage: float = 0.97,
    seed: int = 0,
) -> pd.DataFrame:
    """Fabricate a shadow stage: `control` serves every request (variant = control) and, for
    about `coverage` of them, the candidate answers the same request in the background.

    A shadow call is a second row with the same request_id, session_id, unit_id and segment
    values, variant "shadow:<candidate>", logged 100-500 ms after its control row, with its own
    status, latency, tokens, cost and quality columns. The two answers share the request's
    difficulty (see _Draws), so paired differences are much less noisy than unpaired ones. The
    user signals (USER_SIGNALS) are null on shadow rows: nobody saw those answers.

    With the same seed, the control rows equal generate(..., canary_percent=0)'s rows, and
    every scenario and coverage shares every random draw.
    """
    _scenario(scenario, SHADOW_SCENARIOS, "shadow ")
    start_ns, end_ns = _window(start, end)
    _check_rate_and_seed(requests_per_hour, seed)
    if not 0.0 <= coverage <= 1.0:
        raise UsageError(f"coverage must be within 0..1, got {coverage}")
    if control == candidate:
        raise UsageError(f"control and candidate must differ, both are {control!r}")

    rng = np.random.default_rng(seed)
    t = _traffic(rng, start_ns, end_ns, requests_per_hour, seed)
    n = len(t.ts_ms)
    zeros = np.zeros(n, dtype=np.intp)
    served = _Draws(rng, n, record=True)
    control_answers = _answers(served, t, _row_effects(zeros, (_CONTROL,)))
    shadow_answers = _answers(
        _Draws(rng, n, parent=served), t, _row_effects(zeros, (_SHADOW[scenario],))
    )
    covered = np.flatnonzero(rng.random(n) < coverage)
    delay = rng.integers(_SHADOW_DELAY_MS[0], _SHADOW_DELAY_MS[1] + 1, n)
    shadow_ts = np.minimum(t.ts_ms + delay, t.hi_ms - 1)

    served_rows = _frame(t, control_answers, _labels(zeros, [control]))
    shadow_rows = _frame(
        t,
        shadow_answers,
        _labels(zeros[covered], [f"shadow:{candidate}"]),
        rows=covered,
        ts_ms=shadow_ts,
    )
    nullable = {c: "Int64" if c == "feedback" else "boolean" for c in USER_SIGNALS}
    served_rows = served_rows.astype(nullable)
    shadow_rows = shadow_rows.astype(nullable)
    shadow_rows.loc[:, list(USER_SIGNALS)] = pd.NA
    # Stable sort: each control row stays ahead of its own shadow row when their ts tie.
    both = pd.concat([served_rows, shadow_rows], ignore_index=True)
    return both.sort_values("ts", kind="stable", ignore_index=True)


# ------------------------------------------------------------------ post-launch


def generate_post_launch(
    scenario: str,
    start: datetime,
    end: datetime,
    *,
    variant: str = "v2",
    requests_per_hour: float = 20_000,
    drift_start: datetime | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Fabricate traffic after launch: every request served by `variant` (100%).

    "stable" is exactly generate("healthy", ..., canary_percent=100, canary=variant) with the
    same seed. "drift" changes it from drift_start on (default: the middle of the window): about
    6% of requests become a new query pattern, category NEW_CATEGORY, with higher hallucination
    and latency, and prompts and answers grow longer, so cost per request creeps up over six
    hours to about +15%. Other categories keep their rates: the rest of traffic is unchanged.

    Compare it with the pre-rollout baseline from generate_baseline(), with a different seed
    (the same seed and window length would repeat every random draw).
    """
    _scenario(scenario, POST_LAUNCH_SCENARIOS, "post-launch ")
    start_ns, end_ns = _window(start, end)
    drift_ns = (
        (start_ns + end_ns) // 2 if drift_start is None else _utc_ns(drift_start, "drift_start")
    )
    _check_rate_and_seed(requests_per_hour, seed)

    rng = np.random.default_rng(seed)
    t = _traffic(rng, start_ns, end_ns, requests_per_hour, seed)
    n = len(t.ts_ms)
    fx = _row_effects(np.ones(n, dtype=np.intp), (_CONTROL, _HEALTHY))
    ref = None
    if scenario == "drift":
        since_ns = t.ts_ms * 1_000_000 - drift_ns
        new = (since_ns >= 0) & (_hash_uniform(np.arange(n), t.salt ^ 0xD41F7) < _NEW_SHARE)
        t = replace(t, category=np.where(new, _NEW, t.category))
        ref = ~new
        growth = 1.0 + _COST_CREEP * np.clip(since_ns / (_CREEP_HOURS * 3.6e12), 0.0, 1.0)
        fx["input_tokens"] = fx["input_tokens"] * growth
        fx["output_tokens"] = fx["output_tokens"] * growth
    answers = _answers(_Draws(rng, n), t, fx, ref)
    return _frame(t, answers, _labels(np.zeros(n, dtype=np.intp), [variant]))


def generate_baseline(
    start: datetime,
    end: datetime,
    *,
    requests_per_hour: float = 20_000,
    variant: str = "v1",
    seed: int = 0,
) -> pd.DataFrame:
    """The pre-rollout baseline: every request served by the old `variant`, i.e.
    generate("healthy", ..., canary_percent=0, control=variant)."""
    return generate(
        "healthy",
        start,
        end,
        requests_per_hour=requests_per_hour,
        canary_percent=0.0,
        control=variant,
        canary=f"{variant}+candidate",
        seed=seed,
    )


# ------------------------------------------------------------------ files


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
