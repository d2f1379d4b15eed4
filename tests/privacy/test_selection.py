"""Partition selection with real OpenDP noise: common values released, rare ones never.

OpenDP's samplers take no seed, so each statistical test states its false-failure rate.
Each trial is one key of one call (OpenDP noises every key independently), so thousands
of trials cost one call.
"""

from __future__ import annotations

import pytest

from privacy.budget import Cost
from privacy.selection import plan_selection, select

MIN_USERS = 50
DELTA = 1e-9
RHO = Cost.rho(0.01)


def test_a_value_used_by_three_times_min_users_people_is_released_in_99_percent_of_trials() -> None:
    plan = plan_selection(RHO, DELTA, values_per_unit=1, min_users=MIN_USERS)
    trials = 2_000
    released = select(plan, {f"v{i}": 3 * MIN_USERS for i in range(trials)}, most=trials)
    # The noise's scale is ~7.1 and the count stands 100 above the threshold: a miss is a
    # 14-sigma event, so the chance that 21 of 2,000 miss is far below 1e-40.
    assert len(released) >= 0.99 * trials


def test_a_value_used_by_one_person_is_released_in_none_of_10000_trials() -> None:
    plan = plan_selection(RHO, DELTA, values_per_unit=1, min_users=MIN_USERS)
    assert plan.delta <= DELTA
    released = select(plan, {f"v{i}": 1 for i in range(10_000)}, most=10_000)
    # Each release of a one-person value is an event of probability <= plan.delta <= 1e-9,
    # so any of 10,000 happens with probability <= 1e-5 (the false-failure rate).
    assert released == {}


def test_a_person_counted_in_several_values_makes_the_selection_cost_more_noise() -> None:
    one = plan_selection(RHO, DELTA, values_per_unit=1, min_users=MIN_USERS)
    four = plan_selection(RHO, DELTA, values_per_unit=4, min_users=MIN_USERS * 2)
    # rho = L / (2 scale^2): four values per unit need twice the scale for the same rho.
    assert four.scale == pytest.approx(2 * one.scale, rel=1e-6)
    assert four.measurement.map(four.d_in)[0] <= RHO.value


def test_the_plan_is_within_the_rho_and_delta_asked_for_by_opendps_own_map() -> None:
    plan = plan_selection(RHO, DELTA, values_per_unit=2, min_users=80)
    rho, delta = plan.measurement.map(plan.d_in)
    assert rho <= RHO.value
    assert delta == plan.delta <= DELTA


def test_a_threshold_too_low_for_delta_is_refused_naming_the_least_that_would_do() -> None:
    with pytest.raises(ValueError, match=r"min_users 5 is too low .* at least (\d+)") as info:
        plan_selection(RHO, DELTA, values_per_unit=1, min_users=5)
    least = int(str(info.value).split("at least ")[1].split(" ")[0])
    assert plan_selection(RHO, DELTA, 1, least).delta <= DELTA
    with pytest.raises(ValueError):
        plan_selection(RHO, DELTA, 1, least - 1)


def test_the_most_released_values_keep_the_highest_noisy_counts() -> None:
    plan = plan_selection(RHO, DELTA, values_per_unit=1, min_users=MIN_USERS)
    counts = {"a": 1_000, "b": 800, "c": 600, "d": 400}
    assert list(select(plan, counts, most=2)) == ["a", "b"]


def test_a_pure_budget_cannot_pay_for_a_selection() -> None:
    with pytest.raises(ValueError, match="zCDP"):
        plan_selection(Cost.epsilon(1), DELTA, 1, MIN_USERS)


def test_no_value_in_the_data_releases_nothing() -> None:
    plan = plan_selection(RHO, DELTA, values_per_unit=1, min_users=MIN_USERS)
    assert select(plan, {}, most=10) == {}
