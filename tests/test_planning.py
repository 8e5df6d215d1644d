"""`plan`'s sizing: the sample at which a healthy canary passes, checked by simulating the
gate's own comparison."""

from __future__ import annotations

import numpy as np
import pytest

from rolloutctl import planning
from rolloutctl.stats.compare import MarginSpec, compare_proportions
from rolloutctl.stats.sequential import tune_grid
from rolloutctl.stats.sufficient import Proportion

ALPHA = 0.05
RHO2 = tune_grid(ALPHA / 20, 400_000)


def _healthy_passes(rate: float, margin: float, share: float, n_canary: int, runs: int) -> float:
    """Share of simulated healthy canaries (same rate as the control) that pass one look at
    `n_canary` canary samples, judged as the gate judges (pass side at the full alpha)."""
    rng = np.random.default_rng(5)
    n_control = round(n_canary * (1 - share) / share)
    passed = 0
    controls, canaries = rng.binomial(n_control, rate, runs), rng.binomial(n_canary, rate, runs)
    for c, t in zip(controls, canaries, strict=True):
        comp = compare_proportions(
            Proportion(n_control, int(c)),
            Proportion(n_canary, int(t)),
            MarginSpec(margin, False),
            "higher",
            ALPHA / 20,
            "sequential",
            RHO2,
            alpha_pass=ALPHA,
        )
        passed += comp.verdict == "pass"
    return passed / runs


def test_nine_in_ten_healthy_canaries_pass_at_the_planned_sample() -> None:
    rate, margin, share = 0.01, 0.002, 0.05
    n = planning.samples_needed(
        planning.Sizing(rate * (1 - rate), margin, rate), share, ALPHA, "sequential", RHO2
    )
    assert n is not None
    assert _healthy_passes(rate, margin, share, n, 2000) == pytest.approx(0.9, abs=0.03)
    # Half of them pass where the bound's half-width equals the margin.
    half = planning.samples_needed(
        planning.Sizing(rate * (1 - rate), margin, rate), share, ALPHA, "sequential", RHO2, 0.5
    )
    assert half is not None and half < n
    assert _healthy_passes(rate, margin, share, half, 2000) == pytest.approx(0.5, abs=0.04)


def test_a_stage_needs_every_metric_at_once() -> None:
    rate, share = 0.01, 0.05
    hard, easy_one = (planning.Sizing(rate * (1 - rate), m, rate) for m in (0.002, 0.02))
    one = planning.samples_needed(hard, share, ALPHA, "sequential", RHO2)
    # Two equally hard metrics: each must pass with chance sqrt(0.9), so it takes longer.
    both = planning.stage_samples([hard, hard], share, ALPHA, "sequential", RHO2, 1000)
    assert one is not None and both is not None and both > one * 1.1
    p = planning.pass_chance(hard, share, ALPHA, "sequential", RHO2, both)
    assert p * p == pytest.approx(0.9, abs=0.01)
    # A far easier second metric hardly matters; the stage's minimum sample is a floor.
    easy = planning.stage_samples([hard, easy_one], share, ALPHA, "sequential", RHO2, 1000)
    assert easy == pytest.approx(one, rel=0.02)
    floor = planning.stage_samples([easy_one], share, ALPHA, "sequential", RHO2, 10**6)
    assert floor == 10**6


def test_no_margin_no_sample() -> None:
    assert (
        planning.samples_needed(planning.Sizing(0.01, 0.0), 0.05, ALPHA, "sequential", RHO2) is None
    )
    assert planning.stage_samples([], 0.05, ALPHA, "sequential", RHO2, 1000) is None
