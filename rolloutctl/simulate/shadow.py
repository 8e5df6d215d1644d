"""Shadow traffic: the control serves every request and the candidate answers most of them
again in the background, paired with the control's row by request_id."""

from __future__ import annotations

from dataclasses import replace
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
from rolloutctl.simulate._checks import _check_rate_and_seed, _scenario, _window
from rolloutctl.simulate._population import _traffic
from rolloutctl.simulate._rows import _frame, _labels

__all__ = ["SHADOW_SCENARIOS", "USER_SIGNALS", "generate_shadow"]

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


# Reactions of the user to the answer they saw. Nobody sees a shadow answer, so shadow rows
# leave these empty (null) instead of inventing them.
USER_SIGNALS = ("escalated", "reformulated", "task_completed", "source_clicked", "feedback")

_SHADOW_DELAY_MS = (100, 500)  # the shadow row is logged this much after the control's

_SHADOW: dict[str, _Effects] = {
    "healthy": _HEALTHY,
    "latency_regression": replace(
        _HEALTHY, latency=1.28, tail_prob=0.025, tail_scale=1.2, extra_timeout=0.003
    ),
    "safety_regression_segment": replace(_HEALTHY, health_safety=12.0),
    "shadow_errors": replace(_HEALTHY, extra_error=0.072),
}
assert set(_SHADOW) == set(SHADOW_SCENARIOS)


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
    difficulty (see _answers._Draws), so paired differences are much less noisy than unpaired
    ones. The user signals (USER_SIGNALS) are null on shadow rows: nobody saw those answers.

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
