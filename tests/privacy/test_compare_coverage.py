"""A/B comparisons: the interval of a difference (and of a lift) between two cells of one
release covers the true difference 93-97 % of the time, at three cell sizes including
small cells, and is narrower than the two separate intervals imply.

The noise is drawn from the exact discrete laws OpenDP samples (discrete Laplace: the
difference of two geometric variables; discrete Gaussian: its normalised pmf) with a
seeded generator, so every figure is reproducible; the seeds are fixed. With 4,000
releases per case the standard error of a coverage is 0.0034: a true coverage of 0.95
lies more than 5 standard errors inside [0.93, 0.97].
"""

from __future__ import annotations

import random

import pytest
from noise_laws import sampler

from privacy.intervals import (
    Noise,
    difference_interval,
    lift_interval,
    ratio_error,
    ratio_interval,
)

RELEASES = 4_000


# (accounting, numerator scale, denominator scale): a rate at epsilon 1 with K = C = 1
# splits 2 : 1 (scales 1.5 and 3); at K x C = 10 the scales are ten times larger.
NOISE = [("pure", 1.5, 3.0), ("pure", 15.0, 30.0), ("zcdp", 4.0, 6.0)]
SIZES = [1_000, 3_000, 30_000]  # people (one event each) shown an answer per cohort


def releases(
    accounting: str, scale_a: float, scale_d: float, size: int, seed: int
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    rng = random.Random(seed)
    noise_a, noise_d = Noise(accounting, scale_a), Noise(accounting, scale_d)
    draw_a, draw_d = sampler(noise_a, rng), sampler(noise_d, rng)
    a_b, a_t = round(0.30 * size), round(0.36 * size)
    return [
        ((a_t + draw_a(), size + draw_d()), (a_b + draw_a(), size + draw_d()))
        for _ in range(RELEASES)
    ]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("accounting", "scale_a", "scale_d"), NOISE)
def test_difference_and_lift_intervals_cover_the_truth_93_to_97_percent(
    accounting: str, scale_a: float, scale_d: float, size: int
) -> None:
    noise_a, noise_d = Noise(accounting, scale_a), Noise(accounting, scale_d)
    true_t, true_b = round(0.36 * size) / size, round(0.30 * size) / size
    covered = lifted = compared = 0
    for (a_t, d_t), (a_b, d_b) in releases(accounting, scale_a, scale_d, size, seed=size):
        t = ratio_error(a_t, d_t, noise_a, noise_d, 1, 1)
        b = ratio_error(a_b, d_b, noise_a, noise_d, 1, 1)
        assert t is not None and b is not None
        _, (lo, hi) = difference_interval(t, b, 0.0, 1.0)
        covered += lo <= true_t - true_b <= hi
        _, (lift_lo, lift_hi) = lift_interval(t, b)
        if lift_lo is not None and lift_hi is not None:
            compared += 1
            lifted += lift_lo <= true_t / true_b - 1 <= lift_hi
    # A cell too noisy to compare gets the whole range (covered, and counted): rare here.
    assert 0.93 <= covered / RELEASES <= 0.97, covered / RELEASES
    assert compared >= 0.98 * RELEASES
    assert 0.93 <= lifted / compared <= 0.97, lifted / compared


@pytest.mark.parametrize(("accounting", "scale_a", "scale_d"), NOISE)
def test_the_difference_interval_is_narrower_than_the_two_separate_intervals_imply(
    accounting: str, scale_a: float, scale_d: float
) -> None:
    noise_a, noise_d = Noise(accounting, scale_a), Noise(accounting, scale_d)
    for (a_t, d_t), (a_b, d_b) in releases(accounting, scale_a, scale_d, SIZES[0], 7)[:200]:
        t = ratio_error(a_t, d_t, noise_a, noise_d, 1, 1)
        b = ratio_error(a_b, d_b, noise_a, noise_d, 1, 1)
        assert t is not None and b is not None
        _, (lo, hi) = difference_interval(t, b, 0.0, 1.0)
        t_lo, t_hi = ratio_interval(a_t, d_t, noise_a, noise_d, 1.0, 0.0, 1.0)
        b_lo, b_hi = ratio_interval(a_b, d_b, noise_a, noise_d, 1.0, 0.0, 1.0)
        # What reading the two intervals side by side implies: [t_lo - b_hi, t_hi - b_lo].
        implied = (t_hi - b_lo) - (t_lo - b_hi)
        assert hi - lo < 0.85 * implied, (hi - lo, implied)


def test_a_cell_whose_denominator_is_mostly_noise_gets_the_whole_range() -> None:
    noise = Noise("pure", 30.0)
    small = ratio_error(3, 20, noise, noise, 1, 1)
    large = ratio_error(300, 1_000, noise, noise, 1, 1)
    assert small is not None and large is not None
    assert not small.comparable and large.comparable
    assert difference_interval(small, large, 0.0, 1.0)[1] == (-1.0, 1.0)
    assert lift_interval(small, large) == (None, (None, None))
    assert ratio_error(3, 0, noise, noise, 1, 1) is None
