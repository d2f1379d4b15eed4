"""Post-processing of noisy vectors: counts, rates, means and medians with 95 % intervals.

Nothing here sees the true aggregates: it reads only the noisy integer vectors that
`privacy.mechanisms.release` returned and the public plan (scales, bounds, bins). Every
released number carries an interval meant to hold the noiseless bounded aggregate with
95 % probability; how each is derived is written next to it and in docs/guarantees.md.

- Counts: the noisy count ± OpenDP's 95 % accuracy of the discrete noise; negative
  counts are shown as 0 (the interval is clipped to 0 too, which never loses coverage).
- Rates and means (ratio r = A / D of two noisy sums): the interval is every r in the
  value range at which the observed a - r·d is a plausible draw of the noise X - r·Y, i.e.
  P(|X - r·Y| >= |a - r·d|) >= 5 % (a Fieller-type inversion). X - r·Y has a closed form:
  the difference of two Laplace variables (pure) or a Gaussian (zCDP), the continuous
  limits of the discrete noise at the scales used here. At the true ratio that event has
  probability 95 %, so the interval covers it 95 % of the time; rates are clipped to
  [0, 1], means to the metric's value bounds.
- Medians: read from the noisy CDF of a public histogram. With D_j = (mass up to bin j) -
  (mass after it), the true median lies in the first bin with D_j >= 0. Each D_j carries
  the sum of all B bins' noise (signs flipped), bounded with probability 95 % by `t`
  (a Chernoff bound for discrete Laplace, a sub-Gaussian bound for discrete Gaussian).
  The interval runs from the first bin whose noisy D_j + t >= 0 to the bin after the
  last whose noisy D_j - t < 0, widened to bin edges; it covers the median with >= 95 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from privacy.bounds import Part
from privacy.mechanisms import ALPHA, NoisyVector
from privacy.metrics import Metric
from privacy.query import QueryPlan

__all__ = ["ratio_interval", "release_rows", "sum_noise_halfwidth"]

_GRID = 32  # coarse scan of the value range, to find every accepted region
_BISECT = 48  # bisection steps per interval end: far below display precision


# --- intervals --------------------------------------------------------------------------


def _laplace_difference_tail(a: float, c: float, t: float) -> float:
    """P(|X - Z| > t) for independent Laplace X (scale a) and Z (scale c)."""
    if c <= 0:
        return math.exp(-t / a)
    if a <= 0:
        return math.exp(-t / c)
    if abs(a - c) <= 1e-9 * max(a, c):
        return math.exp(-t / a) * (1 + t / (2 * a))
    return (a * a * math.exp(-t / a) - c * c * math.exp(-t / c)) / (a * a - c * c)


def _gaussian_difference_tail(a: float, c: float, t: float) -> float:
    """P(|X - Z| > t) for independent centred Gaussians of standard deviations a and c."""
    s = math.hypot(a, c)
    return math.erfc(t / (s * math.sqrt(2))) if s > 0 else float(t <= 0)


def ratio_interval(
    a: float,
    d: float,
    scale_a: float,
    scale_d: float,
    accounting: str,
    low: float,
    high: float,
    alpha: float = ALPHA,
) -> tuple[float, float]:
    """The 1 - alpha interval of A / D in [low, high], from noisy a = A + X and d = D + Y.

    Accepts each r with P(|X - r·Y| >= |a - r·d|) >= alpha; returns the hull of the
    accepted r, or the whole range when none is (an outlier draw: then nothing is known).
    Scales are in the units of a and d.
    """
    tail = _laplace_difference_tail if accounting == "pure" else _gaussian_difference_tail

    def accepted(r: float) -> bool:
        return tail(scale_a, abs(r) * scale_d, abs(a - r * d)) >= alpha

    seeds = [low + (high - low) * i / _GRID for i in range(_GRID + 1)]
    if d > 0:
        seeds.append(min(max(a / d, low), high))
    inside = sorted(r for r in seeds if accepted(r))
    if not inside:
        return low, high
    lower = _edge(accepted, inside[0], low)
    upper = _edge(accepted, inside[-1], high)
    return lower, upper


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


# --- rows -------------------------------------------------------------------------------


def _count_row(v: int, noisy: NoisyVector, part: Part) -> tuple[float, list[float]]:
    value = v / part.divisor
    half = noisy.ci95 / part.divisor
    return max(value, 0.0), [max(value - half, 0.0), max(value + half, 0.0)]


def _ratio_row(
    plan: QueryPlan,
    top: tuple[int, NoisyVector, Part],
    bottom: tuple[int, NoisyVector, Part],
    low: float,
    high: float,
) -> tuple[float | None, list[float]]:
    (a_raw, a_noisy, a_part), (d_raw, d_noisy, d_part) = top, bottom
    a, d = a_raw / a_part.divisor, d_raw / d_part.divisor
    if d <= 0:  # no events to speak of: say nothing rather than something arbitrary
        return None, [low, high]
    value = min(max(a / d, low), high)
    lo, hi = ratio_interval(
        a,
        d,
        a_noisy.scale / a_part.divisor,
        d_noisy.scale / d_part.divisor,
        plan.accounting,
        low,
        high,
    )
    return value, [lo, hi]


def _median_row(metric: Metric, bins: Sequence[int], t: float) -> tuple[float | None, list[float]]:
    scale = metric.value
    assert scale is not None
    edges = [e / scale.factor for e in scale.edges]
    full = [edges[0], edges[-1]]
    clipped = [max(b, 0) for b in bins]
    total = sum(clipped)
    value: float | None = None
    if total > 0:
        half, seen = total / 2, 0.0
        for j, mass in enumerate(clipped):
            if mass > 0 and seen + mass >= half:
                value = edges[j] + (half - seen) / mass * (edges[j + 1] - edges[j])
                break
            seen += mass
    # D_j = (noisy mass up to j) - (noisy mass after j), on the unclipped counts.
    whole = sum(bins)
    below, d = 0, []
    for b in bins:
        below += b
        d.append(2 * below - whole)
    if value is None:  # nothing left after noise: the median could be anywhere
        return None, full
    first = next((j for j, dj in enumerate(d) if dj + t >= 0), len(bins) - 1)
    last_below = max((j for j, dj in enumerate(d) if dj - t < 0), default=-1)
    upper_bin = min(last_below + 1, len(bins) - 1)
    if first > upper_bin:  # only an outlier draw gets here: say nothing rather than wrong
        return value, full
    return value, [edges[first], edges[upper_bin + 1]]


def release_rows(
    plan: QueryPlan, noisy: Mapping[str, NoisyVector]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The released rows (cell keys + "value" + "ci95") and the notes that qualify them."""
    metric = plan.metric
    parts = {p.name: p for p in plan.parts}
    values: list[tuple[float | None, list[float]]] = []
    n = len(plan.cells)
    if metric.kind in ("count", "distinct"):
        (name,) = parts
        vector = noisy[name]
        values = [_count_row(vector.values[i], vector, parts[name]) for i in range(n)]
    elif metric.kind in ("rate", "mean"):
        top, bottom = ("numerator", "denominator") if metric.kind == "rate" else ("sum", "count")
        low, high = (0.0, 1.0)
        if metric.kind == "mean" and metric.value is not None:
            low, high = (
                metric.value.low / metric.value.factor,
                metric.value.high / metric.value.factor,
            )
        values = [
            _ratio_row(
                plan,
                (noisy[top].values[i], noisy[top], parts[top]),
                (noisy[bottom].values[i], noisy[bottom], parts[bottom]),
                low,
                high,
            )
            for i in range(n)
        ]
    else:
        assert metric.value is not None
        bins = metric.value.bins
        vector = noisy["histogram"]
        t = sum_noise_halfwidth(plan.accounting, vector.scale, bins)
        values = [
            _median_row(metric, vector.values[i * bins : (i + 1) * bins], t) for i in range(n)
        ]
    rows = [
        {**cell, "value": value, "ci95": interval}
        for cell, (value, interval) in zip(plan.cells, values, strict=True)
    ]
    return rows, notes_for(plan)


def notes_for(plan: QueryPlan) -> list[str]:
    """Plain-words qualifications of a release: bounding, clipping, sampling."""
    metric = plan.metric
    if metric.kind == "distinct":
        per_cell = "counting once in each"
    else:
        what = "session(s)" if metric.name == "abandonment_rate" else "event(s)"
        per_cell = (
            f"and {plan.rows_per_group} {what} per cell (a person above that counts as the "
            "limit, with their own average)"
        )
    notes = [
        f"Before noise, each person's contribution within one epoch was limited to "
        f"{plan.groups_per_unit} cell(s) {per_cell}; the intervals cover the noise around "
        "these bounded aggregates, not the effect of the bounds."
    ]
    if metric.kind in ("count", "distinct"):
        notes.append("Negative noisy counts are shown as 0.")
    if metric.name == "click_through_rate_debiased":
        notes.append(
            "Clicks are weighted by 1 / the policy's examination propensity of their "
            "position; the estimate is only as good as those propensities."
        )
    if metric.kind == "rate":
        notes.append(
            "Rates are clipped to [0, 1]; a cell whose noisy denominator is not positive "
            "has no value (null) and the interval [0, 1]."
        )
    if metric.kind in ("mean", "median") and metric.value is not None:
        v = metric.value
        notes.append(
            f"Values were clamped to [{v.low / v.factor:g}, {v.high / v.factor:g}] "
            f"{metric.unit} before aggregation; a cell with no events left after noise has no "
            "value (null) and the whole range as its interval."
        )
    if metric.kind == "median":
        notes.append(
            "Medians are read from a noisy histogram over public bins; the interval is "
            "widened to bin edges."
        )
    sampled = sorted({f"{t} at {r:g}" for p in plan.parts for t, r in p.sampled})
    if sampled:
        notes.append(
            "Sampled event types (" + ", ".join(sampled) + ") are reweighted by "
            "1 / inclusion probability; the intervals include the DP noise only, not the "
            "sampling error."
        )
    return notes
