"""How one model's answers come out: per-arm effects, the random numbers behind them, and the
status, latency, tokens, cost and quality signals they produce for each request.

The draws and the answers live together because their order is the contract: every generator
draws in exactly this sequence, so scenarios sharing a seed share every random number and a
paired (shadow) set lines up with its parent position by position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from rolloutctl.simulate._hashing import _F64, _Array
from rolloutctl.simulate._population import _DESKTOP, _HEALTH, _POLITICS, _Traffic

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

# Shadow: how closely the candidate's answer to a request follows the control's. Request
# difficulty (prompt and answer length, latency body) correlates at _PAIR_RHO in log space;
# every other random number is the control's own with probability _PAIR_SHARE.
_PAIR_RHO = 0.9
_PAIR_SHARE = 0.8


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
