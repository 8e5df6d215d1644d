"""Post-launch traffic: every request on the launched candidate, optionally drifting, and the
pre-rollout baseline a drift monitor compares it with."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pandas as pd

from rolloutctl.simulate._answers import _CONTROL, _HEALTHY, _answers, _Draws, _row_effects
from rolloutctl.simulate._checks import _check_rate_and_seed, _scenario, _utc_ns, _window
from rolloutctl.simulate._hashing import _hash_uniform
from rolloutctl.simulate._population import _NEW, NEW_CATEGORY, _traffic
from rolloutctl.simulate._rows import _frame, _labels
from rolloutctl.simulate.traffic import generate

__all__ = ["NEW_CATEGORY", "POST_LAUNCH_SCENARIOS", "generate_baseline", "generate_post_launch"]

POST_LAUNCH_SCENARIOS: dict[str, str] = {
    "stable": "all traffic on the candidate, behaving exactly as the healthy canary did: a "
    "drift monitor should stay quiet",
    "drift": f"from drift_start a new query pattern appears (category {NEW_CATEGORY!r}, about 6% "
    "of traffic) where answers hallucinate about 3x as often and take about 50% longer; cost "
    "per request creeps up, reaching about +15% six hours after drift_start",
}

# Post-launch drift.
_NEW_SHARE = 0.06  # of traffic after drift_start
_COST_CREEP = 0.13  # longer prompts and answers; with the new pattern's, cost per request +15%
_CREEP_HOURS = 6.0


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
