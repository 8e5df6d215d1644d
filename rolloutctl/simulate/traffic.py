"""Canary, ramp and A/B traffic: a request log split between control and canary, where each
scenario breaks the canary in one known way, so a gate can be checked against a known answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from rolloutctl.errors import UsageError
from rolloutctl.simulate._answers import (
    _CONTROL,
    _HEALTHY,
    _answers,
    _Draws,
    _Effects,
    _row_effects,
)
from rolloutctl.simulate._checks import _check_rate_and_seed, _scenario, _utc_ns, _window
from rolloutctl.simulate._hashing import _hash_uniform, _unit_bucket
from rolloutctl.simulate._population import _traffic
from rolloutctl.simulate._rows import _frame, _labels

__all__ = ["SCENARIOS", "generate"]

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
