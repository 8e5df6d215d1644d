"""Who asks what, and when: arrival times and a pool of users with sticky segments.

Every generator starts here, with the same draws in the same order, so different scenarios
and canary percentages with one seed see the same requests from the same users. Segment
values are integer codes into the tuples below; rolloutctl.simulate._rows turns them into
text only when the frame is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rolloutctl.simulate._hashing import _U64, _Array, _lowbias32, _splitmix64
from rolloutctl.simulate._rows import _labels

NEW_CATEGORY = "tax_filing"

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

_ACTIVITY_SKEW = 1.6  # >1: a few users send many requests
_DIURNAL_AMPLITUDE = 0.3
_DIURNAL_PEAK_HOUR = 15.0


def _categorical(rng: np.random.Generator, n: int, probs: Sequence[float]) -> _Array:
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(cum) - 1)


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
