"""Breakdowns that add up: a consistent total and parts from one release's noisy cells.

When a query groups by day x X, the total of a day is not noised again: it is the sum of
the day's noisy parts (pure post-processing, no budget). That sum is the best linear
unbiased estimate of the total here (each part carries independent noise of one law,
and no other measurement of the total exists — the closed form of least squares over a
two-level tree with no noisy root). Released parts must also be counts that can be true
(never negative), so the parts are projected onto the non-negative integer vectors
whose sum is that total (max(sum, 0)): the least-squares projection onto the simplex
(x_i = max(v_i - λ, 0), one λ for all parts), rounded to integers by largest remainder
so that the sum stays exact. Parts that are all non-negative are left as they are.

Intervals: the total's noise is the sum of its k parts' noise, bounded by
`sum_noise_halfwidth` (a proven tail bound); a ratio of two totals (a rate's numerator
and denominator) takes each at alpha / 2, a union bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from privacy.intervals import ALPHA, sum_noise_halfwidth

__all__ = ["consistent_parts", "ratio_of_sums_interval", "sum_interval"]


def consistent_parts(values: Sequence[int]) -> list[int]:
    """Non-negative integers closest to `values` (least squares) adding up to max(sum, 0).

    Exact integer arithmetic on the total: the result always sums to max(sum(values), 0).
    """
    total = max(sum(values), 0)
    if total == 0:
        return [0] * len(values)
    if all(v >= 0 for v in values):
        return list(values)
    # Simplex projection: the λ with sum(max(v - λ, 0)) = total (λ >= 0 here, since the
    # positive parts add up to more than the total).
    # Exact fractions: the rounding below must see the true remainders.
    ordered = sorted(values, reverse=True)
    running, lam = 0, Fraction(0)
    for j, u in enumerate(ordered, start=1):
        running += u
        candidate = Fraction(running - total, j)
        if u - candidate > 0:
            lam = candidate
    shifted = [max(v - lam, Fraction(0)) for v in values]
    floors = [math.floor(x) for x in shifted]
    left = total - sum(floors)
    # Largest remainders first (ties: the earlier part), until the sum is exact.
    order = sorted(range(len(values)), key=lambda i: (floors[i] - shifted[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def sum_interval(
    total: int, accounting: str, scale: float, terms: int, alpha: float = ALPHA
) -> tuple[float, float]:
    """[lo, hi] holding a non-negative true sum of `terms` noisy integers (1 - alpha)."""
    t = sum_noise_halfwidth(accounting, scale, terms, alpha)
    return max(total - t, 0.0), max(total + t, 0.0)


def ratio_of_sums_interval(
    top: tuple[int, float, int],
    bottom: tuple[int, float, int],
    accounting: str,
    per_unit: float,
    low: float,
    high: float,
) -> tuple[float, float]:
    """95 % interval of A / D from two noisy sums, each (sum, noise scale, draws).

    `per_unit` converts a ratio of the integer sums into the metric's unit (the ratio of
    the two vectors' fixed-point divisors, as `privacy.intervals.ratio_interval` takes it).
    Each sum holds at 1 - ALPHA / 2; the ratio grows with A and shrinks with D.
    """
    a_lo, a_hi = sum_interval(top[0], accounting, top[1], top[2], ALPHA / 2)
    d_lo, d_hi = sum_interval(bottom[0], accounting, bottom[1], bottom[2], ALPHA / 2)
    lo = a_lo / (d_hi * per_unit) if d_hi > 0 else low
    hi = a_hi / (d_lo * per_unit) if d_lo > 0 else high
    return min(max(lo, low), high), min(max(hi, low), high)
