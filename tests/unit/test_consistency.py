"""The consistent breakdown: non-negative whole parts, closest to the noisy ones, adding
up exactly to the sum of the noisy parts (privacy/consistency.py)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.consistency import consistent_parts, ratio_of_sums_interval, sum_interval

VALUES = st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=30)


def projection(values: list[int]) -> list[Fraction]:
    """The continuous least-squares projection onto {x >= 0, sum x = max(sum, 0)}, by
    bisection on λ (independent of the implementation's sort)."""
    total = max(sum(values), 0)
    lo, hi = Fraction(-1), Fraction(max(values) + 1)  # λ >= 0 when the sum is positive
    for _ in range(200):
        mid = (lo + hi) / 2
        if sum(max(v - mid, 0) for v in values) > total:
            lo = mid
        else:
            hi = mid
    return [max(v - hi, Fraction(0)) for v in values]


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_parts_are_whole_non_negative_and_add_up_to_the_noisy_sum(values: list[int]) -> None:
    parts = consistent_parts(values)
    assert all(isinstance(p, int) and p >= 0 for p in parts)
    assert sum(parts) == max(sum(values), 0)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_each_part_is_within_one_of_the_least_squares_projection(values: list[int]) -> None:
    if sum(values) <= 0:
        assert consistent_parts(values) == [0] * len(values)
        return
    for got, exact in zip(consistent_parts(values), projection(values), strict=True):
        assert abs(got - exact) < 1


def test_parts_that_are_all_non_negative_are_left_as_they_are() -> None:
    assert consistent_parts([0, 7, 3]) == [0, 7, 3]
    assert consistent_parts([10, -3, 5, -1]) == [8, 0, 3, 0]  # λ = 2: 10 - 2, 5 - 2
    assert consistent_parts([-4, -1]) == [0, 0]


def test_a_sums_interval_is_clipped_at_zero_and_widens_with_more_parts() -> None:
    lo1, hi1 = sum_interval(100, "pure", 5.0, 1)
    lo9, hi9 = sum_interval(100, "pure", 5.0, 9)
    assert 0 < lo9 < lo1 < 100 < hi1 < hi9
    assert sum_interval(-50, "pure", 5.0, 2)[0] == 0.0


def test_a_ratio_of_sums_is_bounded_by_its_extreme_corners() -> None:
    lo, hi = ratio_of_sums_interval((300, 2.0, 4), (1_000, 2.0, 4), "pure", 1.0, 0.0, 1.0)
    assert lo < 0.3 < hi and hi - lo < 0.1
    assert ratio_of_sums_interval((5, 50.0, 4), (3, 50.0, 4), "pure", 1.0, 0.0, 1.0) == (0.0, 1.0)
