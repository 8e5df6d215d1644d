"""Decision quality of the gate under repeated looks, beside the naive ways. Prints figures.

Many simulated rollouts: a 5% canary, a look every 15 minutes for 24 hours (96 looks), 8
metrics plus the unsafe-answer rate in 10 category segments (18 vetoing tests per look),
at least 300 requests per arm before anything is judged. Traffic is random as a flag makes
it: Poisson arrivals per look, each request assigned to the canary with probability 5% and
to one of the 10 categories uniformly, so arm and segment sizes vary as they do in a real
split. Per scenario and method: the share of rollouts ever rolled back, and the median time
to the rollback.

Methods, each configured as its authors recommend and given the same multiplicity
correction as rolloutctl (Holm across the 18 vetoing comparisons; for "did any comparison
fail" Holm's first step is the whole decision, so it equals Bonferroni there):
- rolloutctl: the real `gate.evaluate` on the benchmark playbook, tuned as a user gets it
  (no `expected_samples_per_arm`: the gate tunes itself from the stage's duration and the
  observed request rate), always-valid one-sided bounds and the exact rare-event test;
- naive: a one-sided fixed-horizon z test at alpha = 0.05 per metric, at every look (how
  hand-written thresholds and Kayenta-style judges behave), margins included;
- naive + Holm: the same with Holm across the 18 at every look;
- fixed, last look: one z test per metric with Holm, only at the end of the 24 hours;
- GrowthBook safe rollout: GrowthBook's one-sided sequential test for guardrails (gbstats'
  one-sided asymptotic confidence sequence, Waudby-Smith et al.), at its default tuning
  (`sequentialTestingTuningParameter` 5000), with Holm, at every look.

Two configurations of the same scenarios:
- `benchmark`: the method's own setting (relative margin on the rare unsafe rate, 18
  vetoing comparisons, lighter latency tails), beside the other methods;
- `users`: a playbook as the README teaches: absolute margins on every proportion (error
  0.2 pt, unsafe 0.05 pt), `expected_samples_per_arm` not set (the gate tunes itself from the
  stage's duration and the observed request rate), four critical categories with critical
  error, hallucination and unsafe metrics, unsafe judged in every category (26 vetoing
  comparisons), lognormal latency with sigma 0.55 and 0.4% timeouts at 30 s. The naive
  comparators are computed for `benchmark` only.
Each configuration also runs a healthy canary under `pass_requires: non_inferiority` (stage
minimum 1 h, maximum 24 h) at a traffic `rolloutctl plan` says suffices (40,000/h, or more
when plan says that cannot pass within 24 h), and reports plan's time to pass (from a day of
the control's data), how often the canary passes by that time, and by 24 h.

    python benchmarks/decision_quality.py [--aa 500] [--runs 200] [--workers 2]
                                          [--config benchmark|users|both] [--healthy-only]
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

from rolloutctl import gate, planning
from rolloutctl.metrics.base import Measurement
from rolloutctl.playbook.model import Playbook
from rolloutctl.stats.sufficient import GAMMA, Histogram, Moments, Proportion

LOOKS, LOOK_MINUTES, SHARE, ALPHA, TESTS = 96, 15, 0.05, 0.05, 18
SEGMENTS = 10  # categories; c0 is "health"
GROWTHBOOK_TUNING = 5000  # GrowthBook's default sequentialTestingTuningParameter
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
class Config:
    name: str
    proportions: dict[str, tuple[float, str, str, float]]
    unsafe_margin: tuple[str, float]
    latency_sigma: float
    timeouts: float  # share of requests that hit the 30 s timeout
    critical_categories: int  # c0..c(k-1) are critical; c0 is "health"
    unsafe_everywhere: bool  # unsafe per_segment: true


BENCHMARK = Config(
    "benchmark", PROPORTIONS, ("relative", UNSAFE_MARGIN), LATENCY_SIGMA, 0.0, 0, True
)
USERS = Config(
    "users",
    {
        "error_rate": (0.010, "higher", "absolute", 0.002),
        "timeout_rate": (0.005, "higher", "absolute", 0.002),
        "hallucination_rate": (0.030, "higher", "absolute", 0.005),
        "citation_grounding": (0.880, "lower", "absolute", 0.010),
        "task_completion": (0.600, "lower", "absolute", 0.012),
    },
    ("absolute", 0.0005),
    0.55,
    0.004,
    4,
    True,
)
CONFIGS = {"benchmark": BENCHMARK, "users": USERS}
CRITICAL_IN_SEGMENTS = ("error_rate", "hallucination_rate")  # users: judged in critical cats


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
METHODS = ["rolloutctl", "naive", "naive + Holm", "fixed, last look", "GrowthBook safe rollout"]


def playbook(config: Config, pass_requires: str = "no_failure") -> Playbook:
    metrics: list[dict[str, Any]] = []
    for name, (_, worse, kind, margin) in config.proportions.items():
        critical = name == "error_rate" or (
            config.critical_categories > 0 and name in CRITICAL_IN_SEGMENTS
        )
        metrics.append(
            {
                "name": name,
                "group": "technical",
                "source": "s",
                "kind": "proportion",
                "event": "x",
                "worse": worse,
                "margin": {kind: margin},
                "critical": critical,
            }
        )
    metrics += [
        {
            "name": "p95_latency_ms",
            "group": "technical",
            "source": "s",
            "kind": "quantile",
            "q": 0.95,
            "value": "latency_ms",
            "worse": "higher",
            "margin": {"relative": LATENCY_MARGIN},
        },
        {
            "name": "cost_per_request",
            "group": "technical",
            "source": "s",
            "kind": "mean",
            "value": "cost_usd",
            "worse": "higher",
            "margin": {"relative": COST_MARGIN},
        },
        {
            "name": "unsafe_answer_rate",
            "group": "safety",
            "source": "s",
            "kind": "proportion",
            "event": "safety_violation",
            "worse": "higher",
            "margin": {config.unsafe_margin[0]: config.unsafe_margin[1]},
            "critical": True,
            "per_segment": config.unsafe_everywhere,
        },
    ]
    analysis: dict[str, Any] = {
        "alpha": ALPHA,
        "min_samples_per_arm": 300,
        "min_samples_per_segment": 300,
        "pass_requires": pass_requires,
    }
    stage: dict[str, Any] = {"name": "canary", "traffic": SHARE * 100, "min_duration": "24h"}
    if pass_requires == "non_inferiority":
        stage.update(min_duration="1h", max_duration="24h")
    critical = {"category": [f"c{i}" for i in range(config.critical_categories)]}
    return Playbook.model_validate(
        {
            "rollout": "bench",
            "flag": {
                "backend": "file",
                "path": "f.json",
                "key": "k",
                "control": "v1",
                "canary": "v2",
            },
            "sources": {"s": {"kind": "requestlog", "path": "x.parquet"}},
            "segments": {
                "dimensions": ["category"],
                **({"critical": critical} if config.critical_categories else {}),
            },
            "analysis": analysis,
            "metrics": metrics,
            "stages": [stage],
        }
    )


# ---------------------------------------------------------------- simulated data


@dataclass
class Arm:
    n: np.ndarray  # cumulative requests per look
    seg_n: np.ndarray  # (SEGMENTS, LOOKS) cumulative requests
    props: dict[str, np.ndarray]  # cumulative events per look
    seg_props: dict[str, np.ndarray]  # (SEGMENTS, LOOKS) cumulative events
    unsafe: np.ndarray  # (SEGMENTS, LOOKS) cumulative events
    latency: np.ndarray  # (LOOKS, buckets) cumulative counts
    cost: np.ndarray  # (3, LOOKS): n, sum, sum of squares, cumulative


def _bucket_probs(scale: float, sigma: float = LATENCY_SIGMA, timeouts: float = 0.0) -> np.ndarray:
    cdf = sps.norm.cdf((np.log(EDGES) - LATENCY_MU - math.log(scale)) / sigma)
    probs = np.diff(cdf)
    probs[0] += cdf[0]
    probs[-1] += 1 - cdf[-1]
    probs = probs / probs.sum() * (1 - timeouts)
    probs[int(np.searchsorted(EDGES, 30_000.0)) - 1] += timeouts  # requests cut at 30 s
    return probs


def split_traffic(rng: np.random.Generator, volume: float) -> tuple[np.ndarray, np.ndarray]:
    """Requests per look and category, (SEGMENTS, LOOKS) for the control and the canary:
    Poisson arrivals, each request to the canary with probability SHARE, to a category
    uniformly (what a hashing flag and real traffic give, not the configured split)."""
    total = rng.poisson(volume * LOOK_MINUTES / 60, size=LOOKS)
    canary = rng.binomial(total, SHARE)
    uniform = np.full(SEGMENTS, 1 / SEGMENTS)
    control_seg = rng.multinomial(total - canary, uniform).T
    canary_seg = rng.multinomial(canary, uniform).T
    return control_seg, canary_seg


def simulate_arm(
    rng: np.random.Generator, s: Scenario, canary: bool, config: Config, seg_n: np.ndarray
) -> Arm:
    """One arm's cumulative statistics; `seg_n` is its (SEGMENTS, LOOKS) requests per look."""
    n_look = seg_n.sum(axis=0)
    seg_props, props = {}, {}
    for name, (base, _, _, _) in config.proportions.items():
        rate = s.error if canary and name == "error_rate" else base
        seg_props[name] = rng.binomial(seg_n, rate, size=(SEGMENTS, LOOKS)).cumsum(axis=1)
        props[name] = seg_props[name].sum(axis=0)
    unsafe = np.stack(
        [
            rng.binomial(seg_n[i], s.health_unsafe if canary and i == 0 else UNSAFE_BASE).cumsum()
            for i in range(SEGMENTS)
        ]
    )
    probs = _bucket_probs(s.latency_scale if canary else 1.0, config.latency_sigma, config.timeouts)
    latency = rng.multinomial(n_look, probs).cumsum(axis=0)
    mu = COST_MU + math.log(s.cost_scale if canary else 1.0)
    costs = [rng.lognormal(mu, COST_SIGMA, size=int(n)) for n in n_look]
    sums = np.array([c.sum() for c in costs]).cumsum()
    squares = np.array([(c * c).sum() for c in costs]).cumsum()
    cost = np.stack([n_look.cumsum(), sums, squares])
    return Arm(n_look.cumsum(), seg_n.cumsum(axis=1), props, seg_props, unsafe, latency, cost)


def simulate(rng: np.random.Generator, s: Scenario, config: Config) -> tuple[Arm, Arm]:
    control_seg, canary_seg = split_traffic(rng, s.volume)
    control = simulate_arm(rng, s, False, config, control_seg)
    return control, simulate_arm(rng, s, True, config, canary_seg)


def measurement(c: Arm, t: Arm, k: int) -> Measurement:
    m = Measurement()
    arms = (("control", c), ("canary", t))
    for name in c.props:
        m.stats[(name, None)] = {
            "control": Proportion(int(c.n[k]), int(c.props[name][k])),
            "canary": Proportion(int(t.n[k]), int(t.props[name][k])),
        }
        for i in range(SEGMENTS):
            m.stats[(name, ("category", f"c{i}"))] = {
                arm: Proportion(int(a.seg_n[i, k]), int(a.seg_props[name][i, k])) for arm, a in arms
            }

    def hist(arm: Arm) -> Histogram:
        row = arm.latency[k]
        return Histogram({B_LO + int(i): int(row[i]) for i in np.nonzero(row)[0]})

    m.stats[("p95_latency_ms", None)] = {"control": hist(c), "canary": hist(t)}
    m.stats[("cost_per_request", None)] = {
        arm: Moments(int(a.cost[0, k]), float(a.cost[1, k]), float(a.cost[2, k])) for arm, a in arms
    }
    m.stats[("unsafe_answer_rate", None)] = {
        arm: Proportion(int(a.n[k]), int(a.unsafe[:, k].sum())) for arm, a in arms
    }
    for i in range(SEGMENTS):
        m.stats[("unsafe_answer_rate", ("category", f"c{i}"))] = {
            arm: Proportion(int(a.seg_n[i, k]), int(a.unsafe[i, k])) for arm, a in arms
        }
        m.arm_counts[("category", f"c{i}")] = {arm: int(a.seg_n[i, k]) for arm, a in arms}
    m.arm_counts[None] = {"control": int(c.n[k]), "canary": int(t.n[k])}
    return m


# ---------------------------------------------------------------- the naive tests (vectorized)


def _z_prop(
    ec: np.ndarray,
    nc: np.ndarray,
    et: np.ndarray,
    nt: np.ndarray,
    worse: str,
    kind: str,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """z of 'worse than the margin' and the estimator variance, plain Wald (control taken as
    a constant under a relative margin, as naive implementations do)."""
    pc, pt = (ec + 0.5) / (nc + 1), (et + 0.5) / (nt + 1)
    var = pc * (1 - pc) / nc + pt * (1 - pt) / nt
    allowed = margin * pc if kind == "relative" else margin
    harm = (pt - pc) if worse == "higher" else (pc - pt)
    return (harm - allowed) / np.sqrt(var), var


def naive_z(c: Arm, t: Arm, s: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(TESTS, LOOKS) z statistics and variances of the 18 vetoing tests."""
    tests: list[tuple[np.ndarray, np.ndarray]] = []
    for name, (_, worse, kind, margin) in PROPORTIONS.items():
        z, v = _z_prop(c.props[name], c.n, t.props[name], t.n, worse, kind, margin)
        tests.append((z, v))
    # p95 through exceedance of the control's p95 (the same idea, fixed-horizon).
    cum_c, cum_t = c.latency.cumsum(axis=1), t.latency.cumsum(axis=1)
    n_c, n_t = cum_c[:, -1], cum_t[:, -1]  # requests with a latency
    q_bucket = (cum_c < 0.95 * n_c[:, None]).sum(axis=1)
    above_c = n_c - cum_c[np.arange(LOOKS), q_bucket]
    above_t = n_t - cum_t[np.arange(LOOKS), q_bucket]
    shifted = np.clip(q_bucket - round(math.log1p(LATENCY_MARGIN) / math.log(GAMMA)), 0, None)
    implied = (n_c - cum_c[np.arange(LOOKS), shifted] - above_c) / n_c
    z, v = _z_prop(above_c, n_c, above_t, n_t, "higher", "absolute", 0.0)
    tests.append((z - implied / np.sqrt(v), v))
    mc, mt = c.cost[1] / c.cost[0], t.cost[1] / t.cost[0]
    var_c = (c.cost[2] - c.cost[0] * mc**2) / (c.cost[0] - 1) / c.cost[0]
    var_t = (t.cost[2] - t.cost[0] * mt**2) / (t.cost[0] - 1) / t.cost[0]
    var = np.clip(var_c + var_t, 1e-300, None)
    tests.append(((mt - mc * (1 + COST_MARGIN)) / np.sqrt(var), var))
    unsafe = ("higher", "relative", UNSAFE_MARGIN)
    tests.append(_z_prop(c.unsafe.sum(axis=0), c.n, t.unsafe.sum(axis=0), t.n, *unsafe))
    for i in range(SEGMENTS):
        tests.append(_z_prop(c.unsafe[i], c.seg_n[i], t.unsafe[i], t.seg_n[i], *unsafe))
    return np.array([z for z, _ in tests]), np.array([v for _, v in tests])


# ---------------------------------------------------------------- one rollout


@dataclass
class Outcome:
    first_fail: dict[str, int | None] = field(default_factory=dict)  # method -> look index
    first_pass: int | None = None  # the healthy run: first look that passed
    gate_ms: list[float] = field(default_factory=list)


def growthbook_one_sided_halfwidth(variance: float, n: int, alpha: float) -> float:
    """GrowthBook's one-sided sequential half-width (gbstats'
    sequentialIntervalHalfwidthOneSided, used by Safe Rollouts' guardrails): the mixture's
    rho from 2 * alpha and the tuning parameter, s2 the per-observation variance, n the
    sample of both arms."""
    if variance <= 0 or n <= 0:
        return 0.0
    a2 = 2 * alpha
    rho2 = (-2 * math.log(a2) + math.log(-2 * math.log(a2) + 1)) / GROWTHBOOK_TUNING
    s2 = variance * n
    width2 = (
        s2 * 2 * (n * rho2 + 1) / (n * n * rho2) * math.log1p(math.sqrt(n * rho2 + 1) / (2 * alpha))
    )
    return math.sqrt(width2)


def _naive(c: Arm, t: Arm, s: Scenario, out: Outcome) -> None:
    """The comparators, vectorized over looks (benchmark configuration only). Rows 0-7 are
    whole-traffic comparisons, rows 8-17 the unsafe rate per category; a row is judged once
    both of its arms have 300 requests, as the gate's minimum."""
    judged = np.empty((TESTS, LOOKS), dtype=bool)
    judged[:8] = np.minimum(c.n, t.n) >= 300
    judged[8:] = np.minimum(c.seg_n, t.seg_n) >= 300
    with np.errstate(divide="ignore", invalid="ignore"):
        z, var = naive_z(c, t, s)
    z = np.where(judged, z, -np.inf)

    def first(mask: np.ndarray) -> int | None:
        hits = np.nonzero(mask.any(axis=0))[0]
        return int(hits[0]) if hits.size else None

    holm_first_step = sps.norm.ppf(1 - ALPHA / TESTS)  # any rejection under Holm
    out.first_fail["naive"] = first(z > sps.norm.ppf(1 - ALPHA))
    out.first_fail["naive + Holm"] = first(z > holm_first_step)
    last = np.zeros_like(z, dtype=bool)
    last[:, -1] = z[:, -1] > holm_first_step
    out.first_fail["fixed, last look"] = first(last)
    n_total = (c.n + t.n).astype(int)
    gb = np.zeros_like(z, dtype=bool)
    for k in range(LOOKS):
        for i in range(TESTS):
            if z[i, k] > 0:
                width = growthbook_one_sided_halfwidth(
                    float(var[i, k]), int(n_total[k]), ALPHA / TESTS
                )
                gb[i, k] = z[i, k] * math.sqrt(var[i, k]) > width
    out.first_fail["GrowthBook safe rollout"] = first(gb)


def _first_look(pb: Playbook, c: Arm, t: Arm, verdict: str, out: Outcome) -> int | None:
    for k in range(LOOKS):
        m = measurement(c, t, k)
        started = time.perf_counter()
        result = gate.evaluate(
            pb,
            0,
            {"s": m},
            {},
            stage_started=START,
            now=START + timedelta(minutes=LOOK_MINUTES * (k + 1)),
            consecutive_errors=0,
        )
        out.gate_ms.append((time.perf_counter() - started) * 1000)
        if result.verdict == verdict:
            return k
        if result.verdict == "fail":  # a healthy run rolled back: it never passes
            return None
    return None


def run_one(args: tuple[Scenario, int, Config, bool]) -> Outcome:
    s, seed, config, healthy_pass = args
    c, t = simulate(np.random.default_rng(seed), s, config)
    out = Outcome()
    if healthy_pass:
        out.first_pass = _first_look(playbook(config, "non_inferiority"), c, t, "pass", out)
        return out
    if config.name == "benchmark":
        _naive(c, t, s, out)
    out.first_fail["rolloutctl"] = _first_look(playbook(config), c, t, "fail", out)
    return out


def gate_timing() -> float:
    """Median ms of gate.evaluate with 8 metrics, every one judged in 10 segments."""
    s = SCENARIOS[0]
    c, t = simulate(np.random.default_rng(1), s, USERS)
    data = playbook(USERS).model_dump(exclude_none=True)
    for m in data["metrics"]:
        m["critical"], m["per_segment"] = True, True
    pb = Playbook.model_validate(data)
    m = measurement(c, t, LOOKS - 1)
    for (name, seg), arms in list(m.stats.items()):
        if seg is None and (name, ("category", "c0")) not in m.stats:
            for i in range(SEGMENTS):  # a tenth of the traffic per segment, same shape
                m.stats[(name, ("category", f"c{i}"))] = arms
    times = []
    for _ in range(30):
        started = time.perf_counter()
        gate.evaluate(
            pb,
            0,
            {"s": m},
            {},
            stage_started=START,
            now=START + timedelta(hours=24),
            consecutive_errors=0,
        )
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _hours(looks: list[int]) -> str:
    return f", median {statistics.median(looks) * LOOK_MINUTES / 60 + 0.25:.2f} h" if looks else ""


def run_config(
    config: Config, pool: ProcessPoolExecutor, aa: int, runs: int, healthy_only: bool
) -> list[float]:
    print(f"== configuration: {config.name}")
    gate_ms: list[float] = []
    methods = METHODS if config.name == "benchmark" else ["rolloutctl"]
    for index, s in enumerate([] if healthy_only else SCENARIOS):
        n = aa if index == 0 else runs
        jobs = [(s, 1000 * index + i, config, False) for i in range(n)]
        outcomes = list(pool.map(run_one, jobs, chunksize=8))
        print(f"{s.name} ({n} rollouts)")
        for method in methods:
            looks = [k for o in outcomes if (k := o.first_fail[method]) is not None]
            print(f"  {method:<24} rolled back {len(looks) / n:7.1%}{_hours(looks)}")
        gate_ms += [ms for o in outcomes for ms in o.gate_ms]
    healthy, to_pass = healthy_at_planned_traffic(config)
    jobs = [(healthy, 90_000 + i, config, True) for i in range(runs)]
    outcomes = list(pool.map(run_one, jobs, chunksize=8))
    looks = [k for o in outcomes if (k := o.first_pass) is not None]
    print(
        f"healthy canary at {healthy.volume:,.0f}/h, pass_requires: non_inferiority "
        f"({runs} rollouts)"
    )
    if to_pass["hours"] is not None:
        by_plan = sum(1 for k in looks if (k + 1) * LOOK_MINUTES / 60 <= to_pass["hours"] + 1e-9)
        print(
            f"  plan: passes in {to_pass['hours']:.2f} h (9 in 10); can pass within 24 h: "
            f"{to_pass['can_pass']}"
        )
        print(f"  rolloutctl               passed by the planned time {by_plan / runs:7.1%}")
    else:
        print(f"  plan: {to_pass['reason']}")
    print(f"  rolloutctl               passed by 24 h {len(looks) / runs:7.1%}{_hours(looks)}\n")
    return gate_ms


def healthy_at_planned_traffic(config: Config) -> tuple[Scenario, dict[str, Any]]:
    """The healthy scenario at a traffic `plan` says suffices: its own 40,000/h when the plan
    passes it within the stage's 24 h, else the volume the plan's hours imply for 20 h
    (what a user told "CANNOT PASS ... give it more traffic" would do), planned again."""
    s = SCENARIOS[0]
    to_pass = planned_time_to_pass(config, s)
    if to_pass["can_pass"] is False and to_pass["hours"]:
        volume = s.volume * to_pass["hours"] / 20
        s = Scenario(f"healthy at {volume:,.0f}/h", volume)
        to_pass = planned_time_to_pass(config, s)
    return s, to_pass


def planned_time_to_pass(config: Config, s: Scenario) -> dict[str, Any]:
    """What `plan` says of the healthy stage, from a day of the control's data (as `plan`
    reads it from a request log) and the scenario's volume."""
    c, t = simulate(np.random.default_rng(4242), s, config)
    stats = measurement(c, t, LOOKS - 1).stats
    baseline = {name: arms["control"] for (name, seg), arms in stats.items() if seg is None}
    pb = playbook(config, "non_inferiority")
    to_pass: dict[str, Any] = planning.plan_stage(pb, 0, baseline, s.volume)["to_pass"]
    return to_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=500, help="A/A rollouts")
    parser.add_argument("--runs", type=int, default=200, help="rollouts per regression")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", choices=["benchmark", "users", "both"], default="both")
    parser.add_argument("--healthy-only", action="store_true", help="only the healthy canary")
    args = parser.parse_args()
    print(f"{LOOKS} looks every {LOOK_MINUTES} min, {SHARE:.0%} canary, alpha {ALPHA}\n")
    began = time.perf_counter()
    names = ["benchmark", "users"] if args.config == "both" else [args.config]
    gate_ms: list[float] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for name in names:
            gate_ms += run_config(CONFIGS[name], pool, args.aa, args.runs, args.healthy_only)
    print(f"gate.evaluate per look: median {statistics.median(gate_ms or [math.nan]):.2f} ms")
    print(f"gate.evaluate, 8 metrics x 10 segments: median {gate_timing():.1f} ms")
    print(f"(benchmark ran {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
