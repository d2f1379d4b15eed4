"""The DP mechanisms: plans that never overspend, noise that is what it claims, honest intervals.

OpenDP's samplers take no seed, so the statistical tests here are designed instead with a
false-failure rate, computed in the test itself and stated in its docstring (each <= 1e-6).
The exact distributions they compare with are written out below, independently of OpenDP:

- discrete Laplace(scale b):  P[X = k] = (1 - r) / (1 + r) * r^|k|, r = exp(-1/b);
- discrete Gaussian(scale s): P[X = k] proportional to exp(-k² / (2 s²)).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from decimal import Decimal, getcontext
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.budget import Accounting, Cost
from privacy.mechanisms import (
    Component,
    budget_for_halfwidth,
    epsilon_at_delta,
    halfwidth_for,
    halfwidth_for_scale,
    plan_scales,
    privacy_loss,
    release,
    split_budget,
)

ACCOUNTINGS: list[Accounting] = ["pure", "zcdp"]
FALSE_FAILURE = 1e-6


# -- exact distributions ----------------------------------------------------------------------


class Noise:
    """The exact distribution of the noise a measurement of `accounting` adds at `scale`."""

    def __init__(self, accounting: Accounting, scale: float) -> None:
        self.accounting, self.scale = accounting, scale
        if accounting == "zcdp":
            # Mass beyond 9 scales is below exp(-40): nothing a test can see.
            self.radius = math.ceil(9 * scale) + 10
            weights = [math.exp(-k * k / (2 * scale * scale)) for k in range(self.radius + 1)]
            total = weights[0] + 2 * math.fsum(weights[1:])
            self._pmf = [w / total for w in weights]
            tails = [0.0] * (self.radius + 2)  # tails[m] = P[X >= m], m >= 0
            for m in range(self.radius, -1, -1):
                tails[m] = tails[m + 1] + self._pmf[m]
            self._tails = tails

    def cdf(self, k: int) -> float:
        """P[X <= k]."""
        if self.accounting == "pure":
            r = math.exp(-1 / self.scale)
            return r ** (-k) / (1 + r) if k < 0 else 1 - r ** (k + 1) / (1 + r)
        if k < 0:
            return self._upper(-k)
        return 1 - self._upper(k + 1)

    def _upper(self, m: int) -> float:
        """P[X >= m] for m >= 0."""
        return self._tails[m] if m <= self.radius else 0.0

    def within(self, halfwidth: float) -> float:
        """P[|X| <= halfwidth]."""
        m = math.floor(halfwidth)
        return self.cdf(m) - self.cdf(-m - 1)


def binomial_outside(n: int, p: float, lo: int, hi: int) -> float:
    """P[Binomial(n, p) < lo or > hi], exactly (math.comb, 60-digit decimals)."""
    getcontext().prec = 60
    success, failure = Decimal(p), 1 - Decimal(p)
    inside = sum(
        Decimal(math.comb(n, k)) * success**k * failure ** (n - k) for k in range(lo, hi + 1)
    )
    return float(1 - inside)


def chernoff_at_least(n: int, p: float, k: int) -> float:
    """An upper bound on P[Binomial(n, p) >= k] for k >= n p: exp(-n KL(k/n || p))."""
    q = k / n
    if q >= 1:
        return p**n
    assert q > p
    return math.exp(-n * (q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))))


# -- drawing noise through the public API -------------------------------------------------------


def budget_for_scale(accounting: Accounting, scale: float) -> Cost:
    """The budget that gives a component of sensitivity 1 exactly this scale."""
    if accounting == "pure":
        return Cost.epsilon(Decimal(1) / Decimal(scale))  # ε = Δ1 / b
    return Cost.rho(Decimal(1) / (2 * Decimal(scale) ** 2))  # rho = Δ2² / (2 s²)


def released(
    accounting: Accounting, scale: float, true_values: Sequence[int]
) -> tuple[list[int], float, float]:
    """One release of `true_values` at `scale`: (noisy values, scale, ci95)."""
    cells = Component("cells", len(true_values), l1_sensitivity=1, l2_sensitivity=1.0)
    out = release([cells], budget_for_scale(accounting, scale), {"cells": true_values})["cells"]
    return out.values, out.scale, out.ci95


@cache
def zero_noise(accounting: Accounting, scale: float, n: int) -> tuple[tuple[int, ...], float]:
    """n noise draws (a release of a zero vector) and the scale the release reports."""
    values, actual_scale, _ = released(accounting, scale, [0] * n)
    return tuple(values), actual_scale


# -- components used throughout ----------------------------------------------------------------

A = Component("a", length=7, l1_sensitivity=3, l2_sensitivity=math.sqrt(3))
B = Component("b", length=1, l1_sensitivity=1, l2_sensitivity=1.0)
C = Component("c", length=210, l1_sensitivity=20, l2_sensitivity=math.sqrt(20) * 4)
MIXES = {
    "one": [B],
    "three": [A, B, C],
    "twenty": [
        Component(f"m{i}", length=1 + i, l1_sensitivity=1 + i % 5, l2_sensitivity=0.5 + i)
        for i in range(20)
    ],
}
BUDGETS = [
    Cost.epsilon(1),
    Cost.epsilon("0.1"),
    Cost.epsilon("3.000000007"),
    Cost.epsilon("0.00000002"),
    Cost.rho("0.5"),
    Cost.rho("0.001"),
    Cost.rho("0.00000002"),
]


# -- planning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", BUDGETS, ids=str)
@pytest.mark.parametrize("mix", MIXES.values(), ids=MIXES.keys())
def test_planned_measurements_never_spend_more_than_the_budget(
    mix: list[Component], budget: Cost
) -> None:
    scales = plan_scales(mix, budget)
    # OpenDP's maps of the very measurements, summed exactly: sequential composition.
    spent = sum(privacy_loss(c, budget.accounting, scales[c.name]) for c in mix)
    assert spent <= budget.decimal
    # ...and the plan does not waste it: at most a nano per component is left unspent.
    assert spent >= budget.decimal - Decimal(len(mix)) * Decimal("1e-9") * (1 + Decimal("1e-9"))


@settings(max_examples=60, deadline=None)
@given(
    accounting=st.sampled_from(ACCOUNTINGS),
    nanos=st.integers(min_value=10**5, max_value=10**13),
    specs=st.lists(
        st.tuples(
            st.integers(1, 500),
            st.integers(1, 10**4),
            st.floats(0.01, 1e4),
            st.floats(0.1, 10),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_any_plan_stays_within_its_budget(
    accounting: Accounting, nanos: int, specs: list[tuple[int, int, float, float]]
) -> None:
    mix = [Component(f"c{i}", n, l1, l2) for i, (n, l1, l2, _) in enumerate(specs)]
    shares = {f"c{i}": w for i, (_, _, _, w) in enumerate(specs)}
    budget = Cost(nanos, accounting)
    scales = plan_scales(mix, budget, shares)
    assert sum(privacy_loss(c, accounting, scales[c.name]) for c in mix) <= budget.decimal


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_each_scale_is_the_closed_form_for_its_share(accounting: Accounting) -> None:
    budget = Cost.of(accounting, "0.9")
    scales = plan_scales([A, B, C], budget)
    share = 0.3  # an equal split of 0.9 in three
    for c in (A, B, C):
        if accounting == "pure":
            expected = c.l1_sensitivity / share  # ε = Δ1 / b
        else:
            expected = c.l2_sensitivity / math.sqrt(2 * share)  # rho = Δ2² / (2 s²)
        assert scales[c.name] == pytest.approx(expected, rel=1e-12)
        assert scales[c.name] >= expected * (1 - 1e-15)


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_shares_weight_the_split(accounting: Accounting) -> None:
    budget = Cost.of(accounting, 1)
    parts = split_budget([A, B, C], budget, {"a": 2.0, "c": 0.5})
    assert parts == {
        "a": Cost.of(accounting, "0.571428571"),  # 2 / 3.5, rounded down to a nano
        "b": Cost.of(accounting, "0.285714285"),
        "c": Cost.of(accounting, "0.142857142"),
    }
    scales = plan_scales([A, B, C], budget, {"a": 2.0, "c": 0.5})
    losses = {c.name: privacy_loss(c, accounting, scales[c.name]) for c in (A, B, C)}
    assert float(losses["a"] / losses["b"]) == pytest.approx(2.0, rel=1e-8)


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({"z": 1.0}, "name no component: z"),
        ({"a": 0.0}, "finite weight > 0"),
        ({"a": -1.0}, "finite weight > 0"),
        ({"a": math.inf}, "finite weight > 0"),
    ],
)
def test_bad_shares_are_refused(shares: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_scales([A, B], Cost.epsilon(1), shares)


def test_a_budget_too_small_to_split_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves nothing for component"):
        plan_scales(MIXES["twenty"], Cost(19, "pure"))


def test_components_must_be_unique_and_present() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        plan_scales([A, A], Cost.epsilon(1))
    with pytest.raises(ValueError, match="at least one component"):
        plan_scales([], Cost.epsilon(1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0},
        {"l1_sensitivity": 0},
        {"l1_sensitivity": 1.5},
        {"l2_sensitivity": 0.0},
        {"l2_sensitivity": math.nan},
        {"name": ""},
    ],
)
def test_a_component_needs_a_name_a_length_and_positive_sensitivities(
    kwargs: dict[str, object],
) -> None:
    fields: dict[str, object] = {
        "name": "x",
        "length": 1,
        "l1_sensitivity": 1,
        "l2_sensitivity": 1.0,
    }
    with pytest.raises(ValueError):
        Component(**(fields | kwargs))  # type: ignore[arg-type]


# -- release -------------------------------------------------------------------------------------


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_release_returns_integers_with_the_planned_scale_and_interval(
    accounting: Accounting,
) -> None:
    budget = Cost.of(accounting, "0.5")
    values = {"a": list(range(7)), "b": [10**12], "c": [-5] * 210}
    out = release([A, B, C], budget, values)
    scales, halfwidths = plan_scales([A, B, C], budget), halfwidth_for([A, B, C], budget)
    for name, vector in out.items():
        assert len(vector.values) == len(values[name])
        assert all(type(v) is int for v in vector.values)
        assert vector.scale == scales[name]
        assert vector.ci95 == halfwidths[name]


def test_release_refuses_a_vector_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"declares length 7 but got 6 values.*probably a bug"):
        release([A], Cost.epsilon(1), {"a": [0] * 6})


def test_release_refuses_missing_or_extra_vectors() -> None:
    with pytest.raises(ValueError, match="probably a bug"):
        release([A, B], Cost.epsilon(1), {"a": [0] * 7})
    with pytest.raises(ValueError, match="probably a bug"):
        release([B], Cost.epsilon(1), {"b": [0], "x": [1]})


@pytest.mark.parametrize("bad", [1.5, "3", 2**63, True])
def test_release_takes_only_64_bit_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="not a 64-bit integer"):
        release([B], Cost.epsilon(1), {"b": [bad]})  # type: ignore[list-item]


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_released_noise_follows_the_stated_distribution(accounting: Accounting) -> None:
    """Kolmogorov-Smirnov by the DKW inequality; false-failure rate <= 1e-6.

    For n i.i.d. draws, P[sup_k |F_n(k) - F(k)| > t] <= 2 exp(-2 n t²) (Massart 1990; it holds
    for discrete F too, conservatively). n = 50 000 and t = sqrt(ln(2e6) / 2n) = 0.012
    give a false-failure rate of 1e-6. A 10 % error in the scale moves the CDF by 0.018
    (Laplace) or 0.023 (Gaussian) at scale 4, 3 and 6 standard errors beyond t.
    """
    n = 50_000
    draws, scale = zero_noise(accounting, 4.0, n)
    noise = Noise(accounting, scale)
    t = math.sqrt(math.log(2 / FALSE_FAILURE) / (2 * n))
    counts: dict[int, int] = {}
    for x in draws:
        counts[x] = counts.get(x, 0) + 1
    below, worst = 0, 0.0
    for k in range(min(draws) - 1, max(draws) + 1):
        below += counts.get(k, 0)
        worst = max(worst, abs(below / n - noise.cdf(k)))
    assert worst <= t, f"sup |F_n - F| = {worst:.4f} > {t:.4f}"


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_ci95_covers_the_true_value_in_93_to_97_percent_of_releases(
    accounting: Accounting,
) -> None:
    """4000 cells released (40 releases of 100 cells); false-failure rate <= 1e-6.

    The exact coverage p of the interval at this scale is computed from the pmf (~0.950 for
    Laplace, ~0.951 for Gaussian); P[Binomial(4000, p) outside [3720, 3880]] is computed
    exactly and is ~1e-8 (1000 releases would give ~3e-3, too often).
    """
    n_releases, cells, scale = 40, 100, 200.0
    n, lo, hi = n_releases * cells, 3720, 3880
    truth = [10**6 + 17 * i for i in range(cells)]
    covered, ci95, actual_scale = 0, 0.0, 0.0
    for _ in range(n_releases):
        values, actual_scale, ci95 = released(accounting, scale, truth)
        covered += sum(abs(v - t) <= ci95 for v, t in zip(values, truth, strict=True))
    p = Noise(accounting, actual_scale).within(ci95)
    assert 0.95 <= p < 0.96
    assert binomial_outside(n, p, lo, hi) <= FALSE_FAILURE
    assert lo <= covered <= hi, f"{covered} of {n} intervals covered the true value"


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
@pytest.mark.parametrize(
    "scale", [0.5, 1.0, 3.0, 10.0, 200.0, 5_000.0, 10_000.0, 10_001.0, 31_416.0]
)
def test_ci95_is_an_honest_and_tight_95_percent_interval(
    accounting: Accounting, scale: float
) -> None:
    """Exact: P[|noise| <= ci95] >= 95 %, and 2 steps (or 0.1 %) narrower it would be < 95 %.

    Above scale 10 000 the Gaussian half-width comes from the continuous bound (OpenDP's
    discrete helper is linear in the scale); this checks that path against the exact pmf.
    """
    noise = Noise(accounting, scale)
    halfwidth = halfwidth_for_scale(accounting, scale)
    assert noise.within(halfwidth) >= 0.95
    assert noise.within(min(halfwidth - 2, halfwidth * 0.999)) < 0.95


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
def test_halfwidth_for_matches_the_empirical_95th_percentile_of_noise(
    accounting: Accounting,
) -> None:
    """Empirical 95th percentile of |noise| within ±7.5 % of halfwidth_for; false failure <= 1e-6.

    With n = 20 000 draws, the percentile falls below (above) the band only if at least
    (fewer than) 95 % of the draws fall below its lower (upper) edge; the exact probability of
    each edge comes from the pmf and the Chernoff bound on the binomial tail, summed, is
    asserted <= 1e-6 below.
    """
    n, scale, tolerance = 20_000, 100.0, 0.075
    hw = halfwidth_for([B], budget_for_scale(accounting, scale))["b"]
    draws, actual_scale = zero_noise(accounting, scale, n)
    noise = Noise(accounting, actual_scale)
    k = math.ceil(0.95 * n)
    lower, upper = hw * (1 - tolerance), hw * (1 + tolerance)
    p_below = noise.within(math.ceil(lower) - 1)  # P[|X| < lower]
    p_upper = noise.within(upper)  # P[|X| <= upper]
    false_failure = chernoff_at_least(n, p_below, k) + chernoff_at_least(n, 1 - p_upper, n - k + 1)
    assert false_failure <= FALSE_FAILURE
    percentile = sorted(abs(x) for x in draws)[k - 1]
    assert lower <= percentile <= upper, f"95th percentile {percentile}, ci95 {hw}"


# -- accuracy first ------------------------------------------------------------------------------


@pytest.mark.parametrize("accounting", ACCOUNTINGS)
@pytest.mark.parametrize("target", [2.5, 50.0, 1234.5, 1e6])
def test_budget_for_halfwidth_is_the_smallest_budget_reaching_the_target(
    accounting: Accounting, target: float
) -> None:
    shares = {"a": 2.0}
    budget = budget_for_halfwidth(A, accounting, target, [B, C], shares)
    assert halfwidth_for([A, B, C], budget, shares)["a"] <= target
    try:
        short = halfwidth_for([A, B, C], budget - Cost(1, accounting), shares)["a"]
    except ValueError:  # so small that the split leaves some component nothing
        return
    assert short > target


@pytest.mark.parametrize("budget", [Cost.epsilon("0.5"), Cost.rho("0.02")], ids=str)
def test_budget_for_halfwidth_inverts_halfwidth_for(budget: Cost) -> None:
    target = halfwidth_for([A, B, C], budget)["a"]
    found = budget_for_halfwidth(A, budget.accounting, target, [B, C])
    assert found <= budget
    assert halfwidth_for([A, B, C], found)["a"] == target
    if budget.accounting == "pure":
        # The Laplace half-width is strictly decreasing in ε: only the split's rounding
        # (a nano per component) can make a smaller budget give the same plan.
        assert budget - found <= Cost(2, "pure")


def test_budget_for_halfwidth_refuses_a_non_positive_target() -> None:
    with pytest.raises(ValueError, match="finite number > 0"):
        budget_for_halfwidth(A, "pure", 0.0)


# -- conversions and hygiene ---------------------------------------------------------------------


def _bun_steinke(rho: float, delta: float) -> float:
    """Bun & Steinke 2016 (Prop. 1.3): the simple, looser conversion rho + 2·sqrt(rho·ln(1/δ))."""
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def _cks20(rho: float, delta: float) -> float:
    """Canonne, Kamath & Steinke 2020 (Cor. 13) by grid search over the Rényi order."""
    best, order = math.inf, 1.0001
    while order < 1e4:
        eps = order * rho + (
            math.log(1 / delta) + (order - 1) * math.log(1 - 1 / order) - math.log(order)
        ) / (order - 1)
        best, order = min(best, eps), order * 1.001
    return best


@pytest.mark.parametrize(("rho", "delta"), [(0.5, 1e-6), (0.01, 1e-9), (2.0, 1e-5), (1e-4, 1e-7)])
def test_epsilon_at_delta_is_the_tight_conversion_and_below_bun_steinke(
    rho: float, delta: float
) -> None:
    eps = epsilon_at_delta(rho, delta)
    assert rho < eps < _bun_steinke(rho, delta)
    assert eps == pytest.approx(_cks20(rho, delta), rel=1e-6)


def test_epsilon_at_delta_of_nothing_is_nothing() -> None:
    assert epsilon_at_delta(0.0, 1e-6) == 0.0
    with pytest.raises(ValueError):
        epsilon_at_delta(0.1, 0.0)


def test_epsilon_at_delta_asks_opendp_once_per_rho_and_delta() -> None:
    first = epsilon_at_delta(0.123, 1e-7)
    hits = epsilon_at_delta.cache_info().hits
    assert epsilon_at_delta(0.123, 1e-7) == first
    assert epsilon_at_delta.cache_info().hits == hits + 1


@pytest.mark.parametrize(("rho", "delta"), [(-0.1, 1e-6), (math.nan, 1e-6), (0.1, 0), (0.1, 1)])
def test_epsilon_at_delta_refuses_impossible_arguments(rho: float, delta: float) -> None:
    with pytest.raises(ValueError):
        epsilon_at_delta(rho, delta)


def test_the_mechanisms_use_no_randomness_but_opendp() -> None:
    root = Path(__file__).resolve().parents[2] / "privacy"
    for name in ("mechanisms.py", "budget.py"):
        tree = ast.parse((root / name).read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"random", "numpy", "secrets"}, name
