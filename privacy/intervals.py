"""95 % intervals from noisy vectors, honest for the discrete noise OpenDP adds.

Nothing here sees a true aggregate: only noisy integers, their noise scales and public
bounds. Pure post-processing, so no privacy is spent here; what is promised is coverage.

**Ratios** (rates and means). From a = A + X and d = D + Y (integers, independent noise X
and Y of known law, A and D the noiseless bounded sums), the interval for r = A / D is
every r at which the observed statistic t(r) = |a - c·d| (c = r in the units of a per
unit of d) is a plausible draw of |X - c·Y|: the p-value P(|X - c·Y| >= t(r)) is at least
5 %. At the true r, t(r) *is* |X - c·Y|, and an inclusive tail probability evaluated at
its own draw is below 5 % with probability at most 5 %, so the true r is accepted, and
lies in the interval (the hull of what is accepted), at least 95 % of the time.

The p-value is computed for the discrete law itself, or bounded from above (which only
accepts more, never less):

- Y of small scale: exactly, P(|X - cY| >= t) = 2 Σ_y P(Y = y) P(X >= ⌈t + c·y⌉) (X and Y
  are symmetric), over every y but a tail of mass < 1e-7 that is counted as if it always
  exceeded t. Discrete Laplace tails have a closed form, P(X >= k) = q^k / (1 + q) for
  k >= 1; a discrete Gaussian's are summed from its normalised pmf.
- Larger scales, where the lattice hardly matters: from the continuous law N of the same
  scale, shifted. For every real x, P(X >= x) <= P(N >= x - δ), with δ = 1 for the discrete
  Laplace (q^k / (1 + q) <= q^(k-1) / 2) and δ = 2 for the discrete Gaussian (its tail sum
  is at most the integral from k - 1, its normaliser at least sqrt(2π)·sigma, and for k <= 0
  the reverse comparison holds one step further out). Conditioning on each variable in
  turn gives P(|X - cY| >= t) <= P(|N_x - c·N_y| >= t - δ·(1 + |c|)), a closed form: the
  difference of two Laplace variables, or one Gaussian.

**Comparisons** (`ratio_error`, `difference_interval`, `lift_interval`). A cell's noisy
ratio a / d errs by exactly (X - r·Y) / d (in natural units), so two cells of one release
(independent noise) give a difference whose error is the difference of two such terms.
Its variance (and excess kurtosis) follow from the known noise laws, weighted at the
noisy ratios and denominators; the interval is difference ± z·sd, z the normal quantile
with a Cornish-Fisher correction for the Laplace noise's heavier tails: one interval
for the difference, narrower than the two separate intervals imply (their half-widths
add; these add in quadrature). The lift r_t / r_b - 1 takes its
interval from the log ratio (delta method). Both are approximations that hold when each
denominator is well above its noise; tests/privacy/test_compare_coverage.py measures
their coverage (0.93 to 0.97) at three cell sizes, and cells whose relative error is too
large for them (`COMPARABLE`) get no interval but the whole range.

**Medians** (`sum_noise_halfwidth`): a Chernoff bound with the discrete Laplace moment
generating function, or the discrete Gaussian's sub-Gaussian bound; service/queries/
release.py reads the noisy CDF with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ALPHA",
    "COMPARABLE",
    "Noise",
    "RatioEstimate",
    "difference_interval",
    "lift_interval",
    "ratio_error",
    "ratio_interval",
    "sum_noise_halfwidth",
]

ALPHA = 0.05  # every interval here is a 1 - ALPHA = 95 % interval
_Z = 1.959963984540054  # the standard normal's 1 - ALPHA / 2 quantile
COMPARABLE = 0.25
"""Largest relative standard error of a noisy denominator for which a cell is compared."""

EXACT_REACH = 64
"""Largest |y| summed exactly: noise scales up to about 4 (where the lattice matters)."""
_TAIL = 1e-7  # mass of Y left out of the exact sum, counted as exceeding any threshold
_GRID = 32  # coarse scan of the value range, to find every accepted region
_BISECT = 40  # bisection steps per interval end: far below display precision


@dataclass(frozen=True)
class Noise:
    """Discrete noise on integers: Laplace of scale b (pure) or Gaussian of sigma (zCDP)."""

    accounting: str
    scale: float

    @property
    def laplace(self) -> bool:
        return self.accounting == "pure"

    @property
    def shift(self) -> int:
        """δ with P(X >= x) <= P(N >= x - δ) for the continuous N of the same scale."""
        return 1 if self.laplace else 2

    @property
    def variance(self) -> float:
        """Var X: 2q / (1 - q)² for the discrete Laplace, at most sigma² for the Gaussian."""
        if self.laplace:
            q = math.exp(-1 / self.scale)
            return 2 * q / (1 - q) ** 2
        return self.scale * self.scale

    def reach(self) -> int | None:
        """The M with P(|X| > M) < _TAIL, or None when M exceeds EXACT_REACH."""
        return _reach(self.accounting, self.scale)

    def upper_tail(self) -> Callable[[int], float]:
        """k -> an upper bound on P(X >= k): exact (Laplace; Gaussian of small sigma, up
        to _TAIL) or the shifted continuous bound (Gaussian of large sigma)."""
        return _upper_tail(self.accounting, self.scale)


@lru_cache(maxsize=256)
def _reach(accounting: str, scale: float) -> int | None:
    if accounting == "pure":
        q = math.exp(-1 / scale)
        # P(|X| > M) = 2 q^(M+1) / (1 + q)
        m = math.ceil(math.log(_TAIL * (1 + q) / 2) / math.log(q)) - 1 if q > 0 else 0
    else:
        # P(X >= M + 1) <= P(N >= M - 1) (the shift above) <= _TAIL / 4
        m = math.ceil(scale * math.sqrt(2 * math.log(2 / _TAIL))) + 2
    m = max(m, 0)
    return m if m <= EXACT_REACH else None


@lru_cache(maxsize=256)
def _pmf(accounting: str, scale: float, m: int) -> tuple[float, ...]:
    """P(X = y) for y = 0..m (the law is symmetric)."""
    if accounting == "pure":
        q = math.exp(-1 / scale)
        return tuple((1 - q) / (1 + q) * q**y for y in range(m + 1))
    sigma2 = scale * scale
    reach = m + 40 * max(1, math.ceil(scale))  # enough mass for the normaliser
    weights = [math.exp(-(y * y) / (2 * sigma2)) for y in range(reach + 1)]
    total = weights[0] + 2 * math.fsum(weights[1:])
    return tuple(w / total for w in weights[: m + 1])


@lru_cache(maxsize=256)
def _upper_tail(accounting: str, scale: float) -> Callable[[int], float]:
    if accounting == "pure":
        q = math.exp(-1 / scale)

        def laplace(k: int) -> float:
            return q**k / (1 + q) if k >= 1 else 1 - q ** (1 - k) / (1 + q)

        return laplace
    reach = _reach(accounting, scale)
    if reach is None:  # wide: the shifted continuous bound, at a 2-unit cost
        root = scale * math.sqrt(2)
        return lambda k: 0.5 * math.erfc((k - 2) / root)
    pmf = _pmf(accounting, scale, reach)
    # inner[k] = P(k <= X <= reach), a lower bound on P(X >= k); beyond reach < _TAIL.
    inner = [0.0] * (reach + 2)
    for k in range(reach, -1, -1):
        inner[k] = inner[k + 1] + pmf[k]

    def gaussian(k: int) -> float:
        if k > reach:
            return _TAIL
        if k >= 0:
            return min(inner[k] + _TAIL, 1.0)
        # P(X >= k) = 1 - P(X >= 1 - k): bounded above with the lower bound of the latter
        return 1.0 if 1 - k > reach else 1 - inner[1 - k]

    return gaussian


def _continuous_tail(x: Noise, y: Noise, c: float, t: float) -> float:
    """P(|N_x - c·N_y| >= t) for the continuous laws of the same scales."""
    a, b = x.scale, abs(c) * y.scale
    if t <= 0:
        return 1.0
    if not x.laplace:
        s = math.hypot(a, b)
        return math.erfc(t / (s * math.sqrt(2)))
    if b <= 0:
        return math.exp(-t / a)
    if abs(a - b) <= 1e-9 * max(a, b):
        return math.exp(-t / a) * (1 + t / (2 * a))
    return (a * a * math.exp(-t / a) - b * b * math.exp(-t / b)) / (a * a - b * b)


def _ceil(v: float) -> int:
    """⌈v⌉, a hair low at floating-point ties: a lower k only raises the tail (conservative)."""
    return math.ceil(v - 1e-9 * max(1.0, abs(v)))


def p_value(x: Noise, y: Noise, c: float, t: float) -> float:
    """An upper bound (exact up to 1e-7 at small scales) on P(|X - c·Y| >= t)."""
    if t <= 0:
        return 1.0
    bound = _continuous_tail(x, y, c, t - x.shift - y.shift * abs(c))
    reach = y.reach()
    if reach is None or bound < ALPHA:  # the bound already decides, or nothing better
        return bound
    tail = x.upper_tail()
    pmf = _pmf(y.accounting, y.scale, reach)
    total = pmf[0] * tail(_ceil(t))
    for k in range(1, reach + 1):
        total += pmf[k] * (tail(_ceil(t + c * k)) + tail(_ceil(t - c * k)))
    return min(2 * total + _TAIL, bound, 1.0)


def ratio_interval(
    a: int,
    d: int,
    noise_a: Noise,
    noise_d: Noise,
    per_unit: float,
    low: float,
    high: float,
    alpha: float = ALPHA,
) -> tuple[float, float]:
    """The 1 - alpha interval of A / D in [low, high], from noisy integers a and d.

    `per_unit` converts a ratio into units of a per unit of d: c = r x per_unit (the ratio
    of the two vectors' fixed-point divisors). Returns the hull of the accepted r, or the
    whole range when none is (an outlier draw: then nothing is known).
    """

    def accepted(r: float) -> bool:
        c = r * per_unit
        return p_value(noise_a, noise_d, c, abs(a - c * d)) >= alpha

    seeds = [low + (high - low) * i / _GRID for i in range(_GRID + 1)]
    if d > 0:
        seeds.append(min(max(a / (d * per_unit), low), high))
    inside = sorted(r for r in seeds if accepted(r))
    if not inside:
        return low, high
    return _edge(accepted, inside[0], low), _edge(accepted, inside[-1], high)


def _edge(accepted: Callable[[float], bool], inside: float, limit: float) -> float:
    """The accepted point farthest from `inside` towards `limit` (bisection)."""
    if accepted(limit):
        return limit
    good, bad = inside, limit
    for _ in range(_BISECT):
        mid = (good + bad) / 2
        if accepted(mid):
            good = mid
        else:
            bad = mid
    return good


@lru_cache(maxsize=64)  # one per (scale, bins): every release of a plan asks the same
def sum_noise_halfwidth(accounting: str, scale: float, terms: int, alpha: float = ALPHA) -> float:
    """t with P(|Z_1 + ... + Z_terms| > t) <= alpha, Z_i iid discrete noise of `scale`.

    zCDP: the discrete Gaussian is sigma-sub-Gaussian, so t = sigma·sqrt(2·terms·ln(2/alpha)).
    Pure: a Chernoff bound with the discrete Laplace moment generating function
    M(l) = (1 - q)^2 / ((1 - q e^l)(1 - q e^-l)), q = exp(-1/scale), l < 1/scale.
    """
    if accounting != "pure":
        return scale * math.sqrt(2 * terms * math.log(2 / alpha))
    q = math.exp(-1 / scale)
    log_m0 = 2 * math.log1p(-q)

    def log_tail(t: float) -> float:
        # min over l of  -l·t + terms·log M(l)  (convex in l): golden-section search.
        def f(lam: float) -> float:
            return -lam * t + terms * (
                log_m0 - math.log1p(-q * math.exp(lam)) - math.log1p(-q * math.exp(-lam))
            )

        lo, hi = 0.0, (1 / scale) * (1 - 1e-12)
        g = (math.sqrt(5) - 1) / 2
        for _ in range(100):
            m1, m2 = hi - g * (hi - lo), lo + g * (hi - lo)
            if f(m1) < f(m2):
                hi = m2
            else:
                lo = m1
        return f((lo + hi) / 2) + math.log(2)  # two-sided

    target = math.log(alpha)
    lo, hi = 0.0, scale * (terms + 50)
    while log_tail(hi) > target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if log_tail(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class RatioEstimate:
    """One cell's noisy ratio (unclipped) and the law of its error, term by term.

    The error is a weighted sum of independent noise draws: `terms` holds (weight, noise)
    pairs, from which its variance and its excess kurtosis are exact.
    """

    value: float
    terms: tuple[tuple[float, Noise], ...]
    comparable: bool  # whether the denominator is far enough above its noise

    def scaled(self, factor: float) -> tuple[tuple[float, Noise], ...]:
        return tuple((w * factor, n) for w, n in self.terms)


def ratio_error(
    a: int, d: int, noise_a: Noise, noise_d: Noise, divisor_a: int, divisor_d: int
) -> RatioEstimate | None:
    """The noisy ratio (a / divisor_a) / (d / divisor_d) and the law of its error.

    The error is exactly (X / divisor_a - r·Y / divisor_d) / (d / divisor_d); its weights
    are taken at the noisy r and d. None when d is not positive (no ratio to speak of).
    """
    if d <= 0:
        return None
    den = d / divisor_d
    r = (a / divisor_a) / den
    terms = ((1 / (divisor_a * den), noise_a), (r / (divisor_d * den), noise_d))
    relative = math.sqrt(noise_d.variance) / d
    return RatioEstimate(r, terms, relative <= COMPARABLE)


def _halfwidth(terms: tuple[tuple[float, Noise], ...]) -> float:
    """The 95 % half-width of a weighted sum of independent noise draws.

    Normal, with the Cornish-Fisher correction for its excess kurtosis g2 (a discrete
    Laplace of scale b has fourth cumulant 12 b⁴; a Gaussian none): z + (z³ - 3z)·g2 / 24.
    Laplace noise has heavier tails than the normal: 1.96 alone undercovers.
    """
    var = math.fsum(w * w * n.variance for w, n in terms)
    if var <= 0:
        return 0.0
    k4 = math.fsum(12 * (w * n.scale) ** 4 for w, n in terms if n.laplace)
    g2 = k4 / (var * var)
    z = _Z + (_Z**3 - 3 * _Z) * g2 / 24
    return z * math.sqrt(var)


def difference_interval(
    treated: RatioEstimate, baseline: RatioEstimate, low: float, high: float
) -> tuple[float, tuple[float, float]]:
    """The difference r_t - r_b and its 95 % interval, within [low - high, high - low]."""
    diff = treated.value - baseline.value
    span = high - low
    if not (treated.comparable and baseline.comparable):
        return diff, (-span, span)
    half = _halfwidth(treated.terms + baseline.terms)
    return diff, (max(diff - half, -span), min(diff + half, span))


def lift_interval(
    treated: RatioEstimate, baseline: RatioEstimate
) -> tuple[float | None, tuple[float | None, float | None]]:
    """The relative lift r_t / r_b - 1 and its 95 % interval (from the log ratio).

    None where either ratio is not positive, or a cell is not comparable: no lift is
    known then (the difference still is).
    """
    t, b = treated.value, baseline.value
    if t <= 0 or b <= 0 or not (treated.comparable and baseline.comparable):
        return None, (None, None)
    half = _halfwidth(treated.scaled(1 / t) + baseline.scaled(1 / b))
    log_ratio = math.log(t / b)
    return t / b - 1, (math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1)
