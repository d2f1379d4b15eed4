"""privacy/intervals.py against brute force: the ratio test's p-value is the exact tail of
the discrete law (up to the few 1e-7 of truncated mass it counts in), and its shifted
continuous bound is never below the discrete tail, for both noises."""

from __future__ import annotations

import math

import pytest

from privacy.intervals import Noise, _continuous_tail, p_value, ratio_interval


def pmf(noise: Noise, reach: int) -> dict[int, float]:
    if noise.laplace:
        q = math.exp(-1 / noise.scale)
        return {k: (1 - q) / (1 + q) * q ** abs(k) for k in range(-reach, reach + 1)}
    far = reach + 60 * math.ceil(noise.scale)
    weights = {k: math.exp(-(k * k) / (2 * noise.scale**2)) for k in range(-far, far + 1)}
    total = math.fsum(weights.values())
    return {k: weights[k] / total for k in range(-reach, reach + 1)}


def brute_tail(x: Noise, y: Noise, c: float, t: float) -> float:
    """P(|X - cY| >= t) by summing the joint pmf."""
    px, py = pmf(x, 80), pmf(y, 80)
    return math.fsum(
        p * q for i, p in px.items() for j, q in py.items() if abs(i - c * j) >= t - 1e-12
    )


@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
@pytest.mark.parametrize("scale", [0.33, 0.67, 1.0, 2.5])
@pytest.mark.parametrize(("c", "t"), [(0.01, 0.5), (0.01, 1.0), (0.4, 1.7), (1.0, 2.0), (3.0, 4.2)])
def test_the_p_value_is_the_exact_discrete_tail(
    accounting: str, scale: float, c: float, t: float
) -> None:
    x = y = Noise(accounting, scale)
    exact = brute_tail(x, y, c, t)
    got = p_value(x, y, c, t)
    # Above by at most what is left out of the sums (< 1e-7 each, counted in).
    assert exact <= got <= exact + 5e-7


@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
@pytest.mark.parametrize("scale", [0.2, 0.5, 1.0, 3.0, 10.0, 50.0])
def test_the_shifted_continuous_bound_is_never_below_the_discrete_tail(
    accounting: str, scale: float
) -> None:
    """P(X >= k) <= P(N >= k - shift) at every integer k, so the bound only accepts more."""
    noise = Noise(accounting, scale)
    law = pmf(noise, int(20 * scale) + 20)
    zero = Noise(accounting, 1.0)  # c = 0: the bound is the tail of N_x alone
    for k in range(-int(10 * scale) - 5, int(10 * scale) + 6):
        discrete = math.fsum(p for j, p in law.items() if j >= k)
        one_sided = _continuous_tail(noise, zero, 0.0, abs(k - noise.shift))
        continuous = one_sided / 2 if k - noise.shift > 0 else 1 - one_sided / 2
        assert discrete <= continuous + 1e-12, (k, discrete, continuous)


def test_a_wide_gaussian_uses_the_bound_and_stays_conservative() -> None:
    x, y = Noise("zcdp", 500.0), Noise("zcdp", 80.0)
    assert y.reach() is None
    for t in (10.0, 400.0, 1500.0):
        assert p_value(x, y, 0.5, t) >= _continuous_tail(x, y, 0.5, t)


def test_an_outlier_draw_says_nothing_rather_than_something_wrong() -> None:
    noise = Noise("pure", 0.5)
    # A ratio outside its range by far: no r in [0, 1] is plausible.
    assert ratio_interval(5000, 100, noise, noise, 1.0, 0.0, 1.0) == (0.0, 1.0)
