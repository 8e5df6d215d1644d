"""Decision quality of the gate under repeated looks, beside the naive ways. Prints figures.

Many simulated rollouts: a 5% canary, a look every 15 minutes for 24 hours (96 looks), 8
metrics plus the unsafe-answer rate in 10 category segments (18 vetoing tests per look),
at least 300 requests per arm before anything is judged. Per scenario and method: the share
of rollouts ever rolled back, and the median time to the rollback.

Methods:
- rolloutctl: the real `gate.evaluate` on the benchmark playbook (always-valid one-sided
  bounds, the exact rare-event test, Holm across the 18 vetoing comparisons);
- naive: a one-sided fixed-horizon z test at alpha = 0.05 per metric, at every look (how
  hand-written thresholds and Kayenta-style judges behave), margins included;
- naive + Bonferroni: the same at alpha / 18;
- fixed, last look: one z test per metric at alpha / 18, only at the end of the 24 hours;
- GrowthBook-style sequence: GrowthBook's two-sided asymptotic confidence sequence at
  alpha / 18, used one-sided, at every look.

    python benchmarks/decision_quality.py [--aa 1000] [--runs 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats as sps

from rolloutctl import gate
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.model import Playbook
from rolloutctl.stats.compare import half_width
from rolloutctl.stats.sufficient import GAMMA, Histogram, Moments, Proportion

LOOKS, LOOK_MINUTES, SHARE, ALPHA, TESTS = 96, 15, 0.05, 0.05, 18
SEGMENTS = 10  # categories; c0 is "health"
TUNE_HOURS = 6  # the mixture is tightest at the canary sample of the first 6 hours
START = datetime(2026, 1, 5, tzinfo=UTC)

# name -> (kind, base value, worse, margin kind, margin)
PROPORTIONS = {
    "error_rate": (0.010, "higher", "absolute", 0.001),
    "timeout_rate": (0.005, "higher", "absolute", 0.002),
    "hallucination_rate": (0.030, "higher", "absolute", 0.005),
    "citation_grounding": (0.880, "lower", "absolute", 0.010),
    "task_completion": (0.600, "lower", "relative", 0.020),
}
UNSAFE_BASE, UNSAFE_MARGIN = 0.0005, 0.5  # relative: at most 1.5 times the control's rate
LATENCY_MU, LATENCY_SIGMA, LATENCY_MARGIN = math.log(900), 0.45, 0.05  # relative, p95
COST_MU, COST_SIGMA, COST_MARGIN = math.log(0.002), 0.8, 0.10  # relative, mean
# The latency histogram's buckets (1% wide, as the request-log source makes them).
B_LO = math.floor(math.log(50) / math.log(GAMMA))
B_HI = math.ceil(math.log(60_000) / math.log(GAMMA))
EDGES = GAMMA ** np.arange(B_LO, B_HI + 1, dtype=float)


@dataclass(frozen=True)
class Scenario:
    name: str
    volume: float  # requests per hour, both arms
    error: float = 0.010  # the canary's error rate
    latency_scale: float = 1.0
    cost_scale: float = 1.0
    health_unsafe: float = UNSAFE_BASE  # the canary's unsafe rate in the health category


SCENARIOS = [
    Scenario("A/A (no difference) at 40,000/h", 40_000),
    Scenario("error rate 1.0% -> 1.5% at 40,000/h", 40_000, error=0.015),
    Scenario("p95 latency +15% at 5,000/h", 5_000, latency_scale=1.15),
    Scenario("cost +25% at 5,000/h", 5_000, cost_scale=1.25),
    Scenario("unsafe 0.05% -> 0.5% in health only at 40,000/h", 40_000, health_unsafe=0.005),
]
METHODS = ["rolloutctl", "naive", "naive + Bonferroni", "fixed, last look", "GrowthBook-style"]


def playbook(expected_per_arm: int) -> Playbook:
    metrics: list[dict[str, Any]] = []
    for name, (_, worse, kind, margin) in PROPORTIONS.items():
        metrics.append({"name": name, "group": "technical", "source": "s", "kind": "proportion",
                        "event": "x", "worse": worse, "margin": {kind: margin},
                        "critical": name == "error_rate"})  # fmt: skip
    metrics += [
        {"name": "p95_latency_ms", "group": "technical", "source": "s", "kind": "quantile",
         "q": 0.95, "value": "latency_ms", "worse": "higher",
         "margin": {"relative": LATENCY_MARGIN}},
        {"name": "cost_per_request", "group": "technical", "source": "s", "kind": "mean",
         "value": "cost_usd", "worse": "higher", "margin": {"relative": COST_MARGIN}},
        {"name": "unsafe_answer_rate", "group": "safety", "source": "s", "kind": "proportion",
         "event": "safety_violation", "worse": "higher", "margin": {"relative": UNSAFE_MARGIN},
         "critical": True, "per_segment": True},
    ]  # fmt: skip
    return Playbook.model_validate({
        "rollout": "bench", "flag": {"backend": "file", "path": "f.json", "key": "k",
                                     "control": "v1", "canary": "v2"},
        "sources": {"s": {"kind": "requestlog", "path": "x.parquet"}},
        "segments": {"dimensions": ["category"]},
        "analysis": {"alpha": ALPHA, "min_samples_per_arm": 300, "min_samples_per_segment": 300,
                     "expected_samples_per_arm": expected_per_arm, "pass_requires": "no_failure"},
        "metrics": metrics,
        "stages": [{"name": "canary", "traffic": SHARE * 100, "min_duration": "24h"}],
    })  # fmt: skip


# ---------------------------------------------------------------- simulated data


@dataclass
class Arm:
    n: np.ndarray  # cumulative requests per look
    props: dict[str, np.ndarray]  # cumulative events per look
    unsafe: np.ndarray  # (SEGMENTS, LOOKS) cumulative events
    latency: np.ndarray  # (LOOKS, buckets) cumulative counts
    cost: np.ndarray  # (3, LOOKS): n, sum, sum of squares, cumulative


def _bucket_probs(scale: float) -> np.ndarray:
    cdf = sps.norm.cdf((np.log(EDGES) - LATENCY_MU - math.log(scale)) / LATENCY_SIGMA)
    probs = np.diff(cdf)
    probs[0] += cdf[0]
    probs[-1] += 1 - cdf[-1]
    return probs / probs.sum()


def simulate_arm(rng: np.random.Generator, s: Scenario, canary: bool) -> Arm:
    per_look = s.volume * LOOK_MINUTES / 60 * (SHARE if canary else 1 - SHARE)
    n_look = np.full(LOOKS, round(per_look))
    props = {}
    for name, (base, _, _, _) in PROPORTIONS.items():
        rate = s.error if canary and name == "error_rate" else base
        props[name] = rng.binomial(n_look, rate).cumsum()
    seg_n = n_look // SEGMENTS
    unsafe = np.stack([
        rng.binomial(seg_n, s.health_unsafe if canary and i == 0 else UNSAFE_BASE).cumsum()
        for i in range(SEGMENTS)
    ])  # fmt: skip
    probs = _bucket_probs(s.latency_scale if canary else 1.0)
    latency = rng.multinomial(n_look[0], probs, size=LOOKS).cumsum(axis=0)
    scale = s.cost_scale if canary else 1.0
    costs = rng.lognormal(COST_MU + math.log(scale), COST_SIGMA, size=(LOOKS, n_look[0]))
    cost = np.stack([n_look.cumsum(), costs.sum(axis=1).cumsum(), (costs**2).sum(axis=1).cumsum()])
    return Arm(n_look.cumsum(), props, unsafe, latency, cost)


def measurement(c: Arm, t: Arm, k: int) -> Measurement:
    m = Measurement()
    for name in PROPORTIONS:
        m.stats[(name, None)] = {"control": Proportion(int(c.n[k]), int(c.props[name][k])),
                                 "canary": Proportion(int(t.n[k]), int(t.props[name][k]))}  # fmt: skip

    def hist(arm: Arm) -> Histogram:
        row = arm.latency[k]
        return Histogram({B_LO + int(i): int(row[i]) for i in np.nonzero(row)[0]})

    m.stats[("p95_latency_ms", None)] = {"control": hist(c), "canary": hist(t)}
    m.stats[("cost_per_request", None)] = {
        arm: Moments(int(a.cost[0, k]), float(a.cost[1, k]), float(a.cost[2, k]))
        for arm, a in (("control", c), ("canary", t))
    }
    seg_n = {arm: int(a.n[k]) // SEGMENTS for arm, a in (("control", c), ("canary", t))}
    m.stats[("unsafe_answer_rate", None)] = {
        arm: Proportion(seg_n[arm] * SEGMENTS, int(a.unsafe[:, k].sum()))
        for arm, a in (("control", c), ("canary", t))
    }
    for i in range(SEGMENTS):
        m.stats[("unsafe_answer_rate", ("category", f"c{i}"))] = {
            arm: Proportion(seg_n[arm], int(a.unsafe[i, k]))
            for arm, a in (("control", c), ("canary", t))
        }
        m.arm_counts[("category", f"c{i}")] = dict(seg_n)
    m.arm_counts[None] = {"control": int(c.n[k]), "canary": int(t.n[k])}
    return m


# ---------------------------------------------------------------- the naive tests (vectorized)


def _z_prop(ec: np.ndarray, nc: np.ndarray, et: np.ndarray, nt: np.ndarray, worse: str,
            kind: str, margin: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """z of 'worse than the margin' and the estimator variance, plain Wald (control taken as
    a constant under a relative margin, as naive implementations do)."""
    pc, pt = (ec + 0.5) / (nc + 1), (et + 0.5) / (nt + 1)
    var = pc * (1 - pc) / nc + pt * (1 - pt) / nt
    allowed = margin * pc if kind == "relative" else margin
    harm = (pt - pc) if worse == "higher" else (pc - pt)
    return (harm - allowed) / np.sqrt(var), var


def naive_z(c: Arm, t: Arm, s: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(TESTS, LOOKS) z statistics and variances of the 18 vetoing tests."""
    zs, vs = [], []
    for name, (_, worse, kind, margin) in PROPORTIONS.items():
        z, v = _z_prop(c.props[name], c.n, t.props[name], t.n, worse, kind, margin)
        zs.append(z), vs.append(v)
    # p95 through exceedance of the control's p95 (the same idea, fixed-horizon).
    cum_c = c.latency.cumsum(axis=1)
    q_bucket = (cum_c < 0.95 * c.n[:, None]).sum(axis=1)
    above_c = c.n - cum_c[np.arange(LOOKS), q_bucket]
    above_t = t.n - t.latency.cumsum(axis=1)[np.arange(LOOKS), q_bucket]
    shifted = np.clip(q_bucket - round(math.log1p(LATENCY_MARGIN) / math.log(GAMMA)), 0, None)
    implied = (c.n - cum_c[np.arange(LOOKS), shifted] - above_c) / c.n
    z, v = _z_prop(above_c, c.n, above_t, t.n, "higher", "absolute", 0.0)
    zs.append(z - implied / np.sqrt(v)), vs.append(v)
    mc, mt = c.cost[1] / c.cost[0], t.cost[1] / t.cost[0]
    var_c = (c.cost[2] - c.cost[0] * mc**2) / (c.cost[0] - 1) / c.cost[0]
    var_t = (t.cost[2] - t.cost[0] * mt**2) / (t.cost[0] - 1) / t.cost[0]
    zs.append((mt - mc * (1 + COST_MARGIN)) / np.sqrt(var_c + var_t)), vs.append(var_c + var_t)
    seg_c, seg_t = c.n // SEGMENTS, t.n // SEGMENTS
    z, v = _z_prop(c.unsafe.sum(axis=0), seg_c * SEGMENTS, t.unsafe.sum(axis=0),
                   seg_t * SEGMENTS, "higher", "relative", UNSAFE_MARGIN)  # fmt: skip
    zs.append(z), vs.append(v)
    for i in range(SEGMENTS):
        z, v = _z_prop(c.unsafe[i], seg_c, t.unsafe[i], seg_t, "higher", "relative", UNSAFE_MARGIN)
        zs.append(z), vs.append(v)
    return np.array(zs), np.array(vs)


# ---------------------------------------------------------------- one rollout


@dataclass
class Outcome:
    first_fail: dict[str, int | None] = field(default_factory=dict)  # method -> look index
    gate_ms: list[float] = field(default_factory=list)


def run_one(args: tuple[Scenario, int]) -> Outcome:
    s, seed = args
    rng = np.random.default_rng(seed)
    c, t = simulate_arm(rng, s, False), simulate_arm(rng, s, True)
    pb = playbook(int(s.volume * SHARE * TUNE_HOURS))
    out = Outcome()
    judged = (np.minimum(t.n, c.n) // SEGMENTS >= 300)[None, :] | (np.arange(TESTS) < 8)[:, None]
    judged &= (t.n >= 300)[None, :]
    z, var = naive_z(c, t, s)
    z = np.where(judged, z, -np.inf)

    def first(mask: np.ndarray) -> int | None:
        hits = np.nonzero(mask.any(axis=0))[0]
        return int(hits[0]) if hits.size else None

    out.first_fail["naive"] = first(z > sps.norm.ppf(1 - ALPHA))
    out.first_fail["naive + Bonferroni"] = first(z > sps.norm.ppf(1 - ALPHA / TESTS))
    last = np.zeros_like(z, dtype=bool)
    last[:, -1] = z[:, -1] > sps.norm.ppf(1 - ALPHA / TESTS)
    out.first_fail["fixed, last look"] = first(last)
    n_total = (c.n + t.n).astype(int)
    tune = int(s.volume * SHARE * TUNE_HOURS / SHARE)
    gb = np.zeros_like(z, dtype=bool)
    for k in range(LOOKS):
        for i in range(TESTS):
            if z[i, k] > 0:
                width = half_width(
                    float(var[i, k]), int(n_total[k]), ALPHA / TESTS, "sequential", tune
                )
                gb[i, k] = z[i, k] * math.sqrt(var[i, k]) > width
    out.first_fail["GrowthBook-style"] = first(gb)

    out.first_fail["rolloutctl"] = None
    for k in range(LOOKS):
        m = measurement(c, t, k)
        started = time.perf_counter()
        result = gate.evaluate(
            pb, 0, {"s": m}, {}, stage_started=START,
            now=START + timedelta(minutes=LOOK_MINUTES * (k + 1)), consecutive_errors=0,
        )  # fmt: skip
        out.gate_ms.append((time.perf_counter() - started) * 1000)
        if result.verdict == "fail":
            out.first_fail["rolloutctl"] = k
            break
    return out


def gate_timing() -> float:
    """Median ms of gate.evaluate with 8 metrics, every one judged in 10 segments."""
    s = SCENARIOS[0]
    rng = np.random.default_rng(1)
    c, t = simulate_arm(rng, s, False), simulate_arm(rng, s, True)
    data = playbook(int(s.volume * SHARE * 12)).model_dump()
    for m in data["metrics"]:
        m["critical"], m["per_segment"] = True, True
    pb = Playbook.model_validate(data)
    m = measurement(c, t, LOOKS - 1)
    for (name, seg), arms in list(m.stats.items()):
        if seg is None and name != "unsafe_answer_rate":
            for i in range(SEGMENTS):  # a tenth of the traffic per segment, same shape
                m.stats[(name, ("category", f"c{i}"))] = arms
    times = []
    for _ in range(30):
        started = time.perf_counter()
        gate.evaluate(pb, 0, {"s": m}, {}, stage_started=START, now=START + timedelta(hours=24),
                      consecutive_errors=0)  # fmt: skip
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=1000, help="A/A rollouts")
    parser.add_argument("--runs", type=int, default=200, help="rollouts per regression")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{LOOKS} looks every {LOOK_MINUTES} min, {SHARE:.0%} canary, {TESTS} vetoing tests "
          f"per look, alpha {ALPHA}\n")  # fmt: skip
    began = time.perf_counter()
    gate_ms: list[float] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for index, s in enumerate(SCENARIOS):
            runs = args.aa if index == 0 else args.runs
            outcomes = list(pool.map(run_one, [(s, 1000 * index + i) for i in range(runs)],
                                     chunksize=8))  # fmt: skip
            print(f"{s.name} ({runs} rollouts)")
            for method in METHODS:
                looks = [o.first_fail[method] for o in outcomes if o.first_fail[method] is not None]
                share = len(looks) / runs
                median = (
                    f", median {statistics.median(looks) * LOOK_MINUTES / 60 + 0.25:.1f} h"
                    if looks
                    else ""
                )
                print(f"  {method:<20} rolled back {share:7.1%}{median}")
            gate_ms += [ms for o in outcomes for ms in o.gate_ms]
            print()
    print(f"gate.evaluate per look (18 comparisons): median {statistics.median(gate_ms):.2f} ms")
    print(f"gate.evaluate, 8 metrics x 10 segments: median {gate_timing():.1f} ms")
    print(f"(benchmark ran {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
