"""Rate and mean intervals cover the true ratio at least 95 % of the time, for the
discrete noise OpenDP adds, at the small scales where the lattice matters.

OpenDP's samplers cannot be seeded; the exact laws they sample are (discrete Laplace: the
difference of two geometric variables; discrete Gaussian: its normalised pmf), so the
noise here is drawn from those laws with a seeded generator, and every figure is
reproducible. Each coverage assertion is "at least 0.95 - 3 standard errors": had the
coverage been exactly 95 %, it would fail for 0.13 % of seeds; the seeds are fixed.

The interval is the hull of every ratio whose p-value is at least 5 % (privacy/
intervals.py). Coverage is checked in two parts that together bound it: the true ratio's
p-value is at least 5 % in >= 95 % of 20 000 draws, and the interval holds every ratio
the test accepts. The end-to-end release of a debiased click rate above 1 is checked too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from noise_laws import floor_coverage, sampler
from queries_data import TODAY, policy

from privacy.intervals import ALPHA, Noise, p_value, ratio_interval
from privacy.mechanisms import NoisyVector
from privacy.query import QueryRequest, plan_query
from service.queries.release import release_rows

DRAWS = 20_000


@dataclass(frozen=True)
class Case:
    """A ratio A / D with noise on each side; `per_unit` = divisor(A) / divisor(D)."""

    name: str
    accounting: str
    scale_a: float
    scale_d: float
    a: int
    d: int
    per_unit: float
    low: float
    high: float

    @property
    def truth(self) -> float:
        return self.a / (self.d * self.per_unit)


def _cases() -> list[Case]:
    cases = []
    for accounting in ("pure", "zcdp"):
        for scale in (0.33, 0.67, 1.0, 40.0):
            # A rate of 10 in 1000 (the review's example: K = C = 1, D = 1000).
            cases.append(Case(f"rate-{accounting}-{scale}", accounting, scale, scale,
                              10, 1000, 1.0, 0.0, 1.0))  # fmt: skip
            # A mean of 3.7 over 50 events, values in [0, 10] at 1/10 fixed point: the
            # sum's noise is 100x the count's, in its units.
            cases.append(Case(f"mean-{accounting}-{scale}", accounting, 100 * scale, scale,
                              1850, 50, 10.0, 0.0, 10.0))  # fmt: skip
    return cases


CASES = _cases()


def draw(case: Case, seed: int) -> Callable[[], tuple[int, int]]:
    rng = random.Random(seed)
    x = sampler(Noise(case.accounting, case.scale_a), rng)
    y = sampler(Noise(case.accounting, case.scale_d), rng)
    return lambda: (case.a + x(), case.d + y())


def accepts(case: Case, a: int, d: int, r: float) -> bool:
    c = r * case.per_unit
    x, y = Noise(case.accounting, case.scale_a), Noise(case.accounting, case.scale_d)
    return p_value(x, y, c, abs(a - c * d)) >= ALPHA


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_true_ratio_passes_the_intervals_test_at_least_95_percent_of_the_time(
    case: Case,
) -> None:
    noisy = draw(case, seed=15)
    hits = sum(accepts(case, *noisy(), case.truth) for _ in range(DRAWS))
    assert hits / DRAWS >= floor_coverage(DRAWS), (case, hits / DRAWS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_interval_holds_every_ratio_its_test_accepts(case: Case) -> None:
    noisy = draw(case, seed=16)
    x, y = Noise(case.accounting, case.scale_a), Noise(case.accounting, case.scale_d)
    grid = [case.low + (case.high - case.low) * i / 400 for i in range(401)]
    for _ in range(60):
        a, d = noisy()
        lo, hi = ratio_interval(a, d, x, y, case.per_unit, case.low, case.high)
        assert case.low <= lo <= hi <= case.high
        for r in [case.truth, *grid]:
            if accepts(case, a, d, r):
                assert lo <= r <= hi, (case, a, d, r, (lo, hi))


@pytest.mark.slow  # ~10 s: the whole interval, 20 000 times, at the worst small scale
@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
def test_rate_intervals_cover_the_true_rate_at_a_third_of_a_unit_of_noise(
    accounting: str,
) -> None:
    case = next(c for c in CASES if c.name == f"rate-{accounting}-0.33")
    x, y = Noise(accounting, case.scale_a), Noise(accounting, case.scale_d)
    noisy = draw(case, seed=17)
    covered = 0
    for _ in range(DRAWS):
        a, d = noisy()
        lo, hi = ratio_interval(a, d, x, y, case.per_unit, case.low, case.high)
        covered += lo <= case.truth <= hi
    assert covered / DRAWS >= floor_coverage(DRAWS)


def test_a_debiased_click_rate_of_1_5_is_covered_and_said_to_exceed_1() -> None:
    """Clicks at a position examined less than its propensity says: the bounded ratio is
    1.5, above 1. Its interval covers it (>= 95 % - 3 SE of 4 000 seeded releases) and
    the notes say that the cell exceeds 1 and why."""
    pol = policy()
    body = {"metric": "click_through_rate_debiased", "start": str(TODAY - timedelta(days=1)),
            "end": str(TODAY), "epsilon": pol.privacy.max_per_query}  # fmt: skip
    plan = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)
    assert len(plan.cells) == 1
    parts = {p.name: p for p in plan.parts}
    shown = 400
    clicks = round(1.5 * shown * parts["numerator"].divisor)  # weighted clicks, fixed point
    scale_top, scale_bottom = 3.0 * parts["numerator"].divisor, 3.0
    rng = random.Random(18)
    x = sampler(Noise("pure", scale_top), rng)
    y = sampler(Noise("pure", scale_bottom), rng)
    draws, covered, said = 4000, 0, 0
    for _ in range(draws):
        top = NoisyVector([clicks + x()], scale_top, 0.0)
        bottom = NoisyVector([shown + y()], scale_bottom, 0.0)
        rows, notes = release_rows(plan, {"numerator": top, "denominator": bottom})
        lo, hi = rows[0]["ci95"]
        covered += lo <= 1.5 <= hi
        said += any("exceed 1" in note for note in notes)
        assert rows[0]["value"] > 1
    assert covered / draws >= floor_coverage(draws)
    assert said == draws
