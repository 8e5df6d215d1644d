"""Paired statistics: pure functions on the sums of paired observations.

Two runs answer the same items — an offline eval's baseline and candidate on the same samples,
or the control and its shadow on the same requests — so each item is its own control, and the
between-item noise an unpaired comparison has to carry drops out.

**Exact McNemar** (offline evals, and shown for a shadow's binary outcomes). When both runs
answered the same items, only the items on which they disagree carry evidence about which is
better (McNemar 1947, "Note on the sampling error of the difference between correlated
proportions or percentages", Psychometrika 12:153-157). With

- b: items that passed on the baseline and fail on the candidate (new failures),
- c: items that failed on the baseline and pass on the candidate (fixes),

under "neither run is better" each of the b + c discordant items is equally likely to fall
either way, so b ~ Binomial(b + c, 1/2) exactly. The exact test uses that binomial directly
instead of the chi-square approximation, which is poor for the handful of discordant items a
critical category usually has.

- `mcnemar_exact(b, c, "greater")`: one-sided toward harm, P(B >= b): small when the candidate
  breaks more items than it fixes;
- `mcnemar_exact(b, c, "two-sided")`: min(1, 2 P(B <= min(b, c))), as statsmodels'
  `mcnemar(table, exact=True)` and R's `binom.test(b, b + c)`; symmetric in b and c.

No discordant items (b + c = 0) means no evidence either way: p = 1.0. Negative counts are a
bug in the caller and raise ValueError.

**Shadow pairs** (x: the control's value of a request, y: the shadow's; n pairs), from the sums
in `PairedMoments` and the quantiles and counts in `PairedQuantiles`:

- **means** (`paired_contrast`): d = y - x, theta = mean(d), Var = s_d^2 / n with
  s_d^2 = s_x^2 + s_y^2 - 2 s_xy (the paired t statistic). A relative margin compares
  theta = mean(y) / mean(x) - 1 by the delta method *with* the covariance of the pair:
  Var = (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n mean(x)^2), R = mean(y) / mean(x).
- **rates** (binary events, e.g. `json_valid`, `safety_violation`): the same on 0/1 values
  after the Agresti-Min adjustment (half a pair added to each cell of the 2x2 table, so no
  discordant pair does not mean zero variance). The exact one-sided McNemar p-value on the
  discordant pairs (b: only the shadow worse, c: only the control worse) is reported.
  Safety metrics fail on *any* significant excess (margin 0): the normal sequential test
  and an always-valid exact McNemar test (`mcnemar_always_valid`), Bonferroni-combined as in
  `stats.compare.compare_rare_events`; the pass side still uses the playbook's margin.
- **quantiles** (p95 latency) are compared as paired quantiles, not means: the sample
  q-quantiles of x and of y over the pairs, with the variance of their difference from the
  Bahadur representation, Q^ - Q ~ (share above Q - (1 - q)) / f(Q):
  Var(Qy^ - Qx^) = [py(1-py)/fy^2 + px(1-px)/fx^2 - 2 (pxy - px py)/(fx fy)] / n, where px, py
  are the shares above each quantile and pxy the share of pairs above both (the pairing), and
  the densities f come from Siddiqui's difference quotient 2 delta / (Q(q+delta) -
  Q(q-delta)) with the Hall-Sheather bandwidth delta. A relative margin uses the delta method
  on Qy / Qx - 1. Asymptotic, as every sequential bound here.
- **output length** (`ratio_of_sums`): R = sum(y) / sum(x) over the pairs, delta-method
  variance; a diagnostic that never vetoes.

Each estimate is judged by `stats.compare.decide`: always-valid one-sided bounds and p-values
of `stats.sequential` with n = the number of pairs (or one planned look with `fixed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal

from rolloutctl.stats import sequential
from rolloutctl.stats.compare import Comparison, MarginSpec, Worse, decide
from rolloutctl.stats.sufficient import BivariateSums

Alternative = Literal["greater", "less", "two-sided"]
_NORMAL = NormalDist()
# Candidate bandwidths (in probability) for the quantile density estimate; the one nearest
# Hall-Sheather's choice for the group's size is used.
BANDWIDTHS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)


# ================================================================ exact McNemar


def mcnemar_exact(b: int, c: int, alternative: Alternative = "greater") -> float:
    """Exact McNemar p-value from the discordant counts b (new failures) and c (fixes)."""
    from scipy.stats import binom  # lazily: scipy.stats costs ~0.4 s to import

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    if alternative == "greater":
        p = float(binom.sf(b - 1, n, 0.5))
    elif alternative == "less":
        p = float(binom.cdf(b, n, 0.5))
    elif alternative == "two-sided":
        p = 2.0 * float(binom.cdf(min(b, c), n, 0.5))
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, got {alternative!r}")
    return min(1.0, max(0.0, p))


@dataclass(frozen=True)
class McNemar:
    """The discordant counts of a paired comparison and both exact p-values."""

    new_failures: int  # b: passed on the baseline, fail on the candidate
    fixed: int  # c: failed on the baseline, pass on the candidate
    p_worse: float  # one-sided: is the candidate worse?
    p_two_sided: float

    @property
    def discordant(self) -> int:
        return self.new_failures + self.fixed


def mcnemar(new_failures: int, fixed: int) -> McNemar:
    return McNemar(
        new_failures,
        fixed,
        mcnemar_exact(new_failures, fixed, "greater"),
        mcnemar_exact(new_failures, fixed, "two-sided"),
    )


def discordant_counts(pairs: list[tuple[bool, bool]]) -> tuple[int, int]:
    """(b, c) from (baseline passed, candidate passed) pairs."""
    b = sum(1 for base, cand in pairs if base and not cand)
    c = sum(1 for base, cand in pairs if cand and not base)
    return b, c


def mcnemar_always_valid(b: int, c: int) -> float:
    """Always-valid one-sided p-value that the shadow is worse on a binary outcome, exact.

    Under "not worse", each discordant pair is a b with probability at most 1/2, so for any
    p >= 1/2 the likelihood ratio (2p)^b (2(1-p))^c is a nonnegative supermartingale over the
    discordant pairs; so is its mixture over p uniform on [1/2, 1]:
    E = 2^(b+c+1) * integral_{1/2}^{1} p^b (1-p)^c dp = 2^(n+1) P(Bin(n+1, 1/2) <= b) /
    ((n+1) C(n, b)), n = b + c. By Ville's inequality 1/E is a p-value valid at every look,
    exact however few the pairs (b = 10, c = 0 gives 11/2047)."""
    from scipy.stats import binom  # lazily: scipy.stats costs ~0.4 s to import

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    log_c = math.lgamma(n + 1) - math.lgamma(b + 1) - math.lgamma(c + 1)
    log_e = (n + 1) * math.log(2) + float(binom.logcdf(b, n + 1, 0.5)) - math.log(n + 1) - log_c
    return min(1.0, math.exp(-log_e))


# ================================================================ paired means and rates


@dataclass(frozen=True)
class PairedMoments(BivariateSums):
    """Sums over n pairs (x: control, y: shadow): enough for paired means, rates, ratios."""

    @property
    def mean_x(self) -> float:
        return self.sum_x / self.n if self.n else math.nan

    @property
    def mean_y(self) -> float:
        return self.sum_y / self.n if self.n else math.nan

    def _co(self, s_ab: float, s_a: float, s_b: float) -> float:
        return (s_ab - s_a * s_b / self.n) / (self.n - 1) if self.n >= 2 else 0.0

    @property
    def var_x(self) -> float:
        return max(0.0, self._co(self.sum_x2, self.sum_x, self.sum_x))

    @property
    def var_y(self) -> float:
        return max(0.0, self._co(self.sum_y2, self.sum_y, self.sum_y))

    @property
    def cov(self) -> float:
        return self._co(self.sum_xy, self.sum_x, self.sum_y)


def paired_contrast(m: PairedMoments, relative: bool) -> tuple[float, float]:
    """theta and its variance: mean(y - x), or mean(y) / mean(x) - 1 by the delta method."""
    if m.n < 2:
        return math.nan, math.nan
    if not relative:
        var_d = max(0.0, m.var_x + m.var_y - 2 * m.cov)
        return m.mean_y - m.mean_x, var_d / m.n
    if m.mean_x == 0:
        return math.nan, math.nan
    r = m.mean_y / m.mean_x
    var = (m.var_y - 2 * r * m.cov + r * r * m.var_x) / (m.n * m.mean_x**2)
    return r - 1, max(0.0, var)


def ratio_of_sums(m: PairedMoments) -> tuple[float, float]:
    """sum(y) / sum(x) over the pairs and its delta-method variance."""
    theta, var = paired_contrast(m, relative=True)
    return theta + 1, var


def agresti_min(m: PairedMoments) -> PairedMoments:
    """Binary pairs with half a pair added to each cell of the 2x2 table (Agresti & Min 2005)."""
    return PairedMoments(
        m.n + 2, m.sum_x + 1, m.sum_y + 1, m.sum_x + 1, m.sum_y + 1, m.sum_xy + 0.5
    )


def discordant(m: PairedMoments, worse: Worse) -> tuple[int, int]:
    """(b, c) of binary pairs: b pairs where only the shadow has the worse outcome, c only the
    control. With `worse: lower` (e.g. json_valid) the worse outcome is the event's absence."""
    only_x = round(m.sum_x - m.sum_xy)  # control has the event, shadow not
    only_y = round(m.sum_y - m.sum_xy)
    return (only_y, only_x) if worse == "higher" else (only_x, only_y)


def compare_paired(
    m: PairedMoments,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    rho2: sequential.Rho2,
    *,
    binary: bool = False,
    zero_tolerance: bool = False,
    fixed: bool = False,
    alpha_pass: float | None = None,
) -> Comparison:
    """Shadow against control on the same requests, one-sided toward harm, against a margin.

    `binary`: 0/1 values (rates), tested after the Agresti-Min adjustment. `zero_tolerance`
    (safety): FAIL on any significant excess — the normal test at margin 0 and the exact
    always-valid McNemar test, each at alpha / 2; PASS still needs the margin. `fixed`: one
    planned look (the normal tail), for comparison with fixed-horizon tests. PASS is shown at
    `alpha_pass` (`alpha` when not given; see `stats.compare`)."""
    method: Literal["sequential", "fixed"] = "fixed" if fixed else "sequential"
    if m.n < 2:
        return decide(
            m.mean_x,
            m.mean_y,
            math.nan,
            math.nan,
            m.n,
            margin,
            worse,
            alpha,
            method,
            rho2,
            "fewer than 2 pairs",
        )
    test = agresti_min(m) if binary else m
    theta, var = paired_contrast(test, margin.relative)
    comp = decide(
        m.mean_x,
        m.mean_y,
        theta,
        var,
        m.n,
        margin,
        worse,
        alpha,
        method,
        rho2,
        alpha_pass=alpha_pass,
    )
    if not zero_tolerance or comp.note:
        return comp
    theta0, var0 = paired_contrast(test, relative=False)
    at_zero = decide(
        m.mean_x, m.mean_y, theta0, var0, m.n, MarginSpec(0.0, False), worse, alpha, method, rho2
    )
    b, c = discordant(m, worse) if binary else (0, 0)
    exact = mcnemar_always_valid(b, c) if binary else 1.0
    p_fail = min(1.0, 2 * min(at_zero.p_fail, exact)) if binary else at_zero.p_fail
    verdict: Literal["pass", "fail", "inconclusive"] = (
        "fail"
        if p_fail <= alpha
        else "pass"
        if comp.p_pass <= (alpha if alpha_pass is None else alpha_pass)
        else "inconclusive"
    )
    note = "safety: any significant excess fails (margin 0 for failing"
    note += f"; exact always-valid McNemar p = {exact:.2g})" if binary else ")"
    return replace(comp, p_fail=p_fail, verdict=verdict, note=note)


# ================================================================ paired quantiles


@dataclass(frozen=True)
class PairedQuantiles:
    """Sample q-quantiles of control (x) and shadow (y) over n pairs, the quantiles at
    q -/+ delta for the densities, and the shares above each quantile and above both."""

    n: int
    q: float
    delta: float
    qx: float
    qy: float
    qx_lo: float
    qx_hi: float
    qy_lo: float
    qy_hi: float
    above_x: int
    above_y: int
    above_both: int


def hall_sheather(n: int, q: float, alpha: float = 0.05) -> float:
    """Hall & Sheather (1988) bandwidth for the sparsity 1/f(Q(q)) (Koenker 2005, eq. 3.18)."""
    x = _NORMAL.inv_cdf(q)
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    return n ** (-1 / 3) * z ** (2 / 3) * (1.5 * _NORMAL.pdf(x) ** 2 / (2 * x * x + 1)) ** (1 / 3)


def bandwidths(q: float) -> list[float]:
    """The candidate bandwidths usable at q (q -/+ delta inside (0, 1))."""
    usable = [d for d in BANDWIDTHS if d < min(q, 1 - q)]
    return usable or [min(q, 1 - q) / 2]


def pick_bandwidth(n: int, q: float) -> float:
    h = hall_sheather(max(n, 2), q)
    return min(bandwidths(q), key=lambda d: abs(math.log(d / h)))


def quantile_contrast(s: PairedQuantiles, relative: bool) -> tuple[float, float]:
    """theta = Qy - Qx (or Qy / Qx - 1) and its variance (Bahadur representation)."""
    wx, wy = s.qx_hi - s.qx_lo, s.qy_hi - s.qy_lo
    if s.n < 2 or not wx > 0 or not wy > 0:
        return math.nan, math.nan
    fx, fy = 2 * s.delta / wx, 2 * s.delta / wy
    px, py, pxy = s.above_x / s.n, s.above_y / s.n, s.above_both / s.n
    vx = px * (1 - px) / (s.n * fx * fx)
    vy = py * (1 - py) / (s.n * fy * fy)
    cxy = (pxy - px * py) / (s.n * fx * fy)
    if not relative:
        return s.qy - s.qx, max(0.0, vx + vy - 2 * cxy)
    if s.qx == 0:
        return math.nan, math.nan
    var = vy / s.qx**2 + s.qy**2 * vx / s.qx**4 - 2 * s.qy * cxy / s.qx**3
    return s.qy / s.qx - 1, max(0.0, var)


def compare_paired_quantiles(
    s: PairedQuantiles,
    margin: MarginSpec,
    worse: Worse,
    alpha: float,
    rho2: sequential.Rho2,
    fixed: bool = False,
    alpha_pass: float | None = None,
) -> Comparison:
    theta, var = quantile_contrast(s, margin.relative)
    note = "" if math.isfinite(var) else "no spread around the quantile (ties?) or too few pairs"
    return decide(
        s.qx,
        s.qy,
        theta,
        var,
        s.n,
        margin,
        worse,
        alpha,
        "fixed" if fixed else "sequential",
        rho2,
        note,
        alpha_pass,
    )
