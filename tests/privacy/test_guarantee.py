"""The person-level guarantee against OpenDP's own maps, and sensitivities rounded up.

One person is one privacy unit per salt period. A query over R periods that is not grouped
by period can put all R of a person's units into one cell, so the person moves the vector by
R times one unit's sensitivity: the stated bound over retention must be at least what
OpenDP's map gives for a measurement fitted to the per-period cap, at d_in = R x that
sensitivity.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import opendp.prelude as dp
import pytest

from privacy.bounds import Bound, parts_for, sqrt_up
from privacy.metrics import METRICS
from privacy.policy import Policy
from privacy.policy.guarantee import guarantee_of

dp.enable_features("contrib")


def policy(accounting: str, global_cap: float, retention_days: int) -> Policy:
    privacy: dict[str, Any] = {
        "accounting": accounting,
        "max_per_query": global_cap,
        "per_analyst": global_cap,
        "global": global_cap,
    }
    if accounting == "zcdp":
        privacy["delta"] = 1e-7
    return Policy.model_validate(
        {
            "version": 1,
            "name": "person-level",
            "privacy": privacy,
            "retention": {"default": f"{retention_days}d"},
        }
    )


def fitted_to_the_cap(accounting: str, sensitivity: float, cap: float) -> Any:
    """An OpenDP measurement whose loss at d_in = ``sensitivity`` is within ``cap``."""
    space = dp.vector_domain(dp.atom_domain(T=int))
    if accounting == "pure":
        metric = dp.l1_distance(T=int)
        make = lambda s: dp.m.make_laplace(space, metric, scale=s)  # noqa: E731
    else:
        metric = dp.l2_distance(T=float)
        make = lambda s: dp.m.make_gaussian(space, metric, scale=s)  # noqa: E731
    measurement = dp.binary_search_chain(make, d_in=sensitivity, d_out=cap)
    assert measurement.map(sensitivity) <= cap
    return measurement


@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
@pytest.mark.parametrize("retention_days", [1, 2, 7, 30, 90])
@pytest.mark.parametrize("sensitivity", [1, 3, 24])
def test_the_stated_bound_over_retention_holds_at_r_times_the_sensitivity(
    accounting: str, retention_days: int, sensitivity: int
) -> None:
    g = guarantee_of(policy(accounting, 0.1, retention_days))
    assert g.periods_kept == retention_days
    d_in = sensitivity if accounting == "pure" else sqrt_up(sensitivity)
    measurement = fitted_to_the_cap(accounting, d_in, g.global_cap)
    person = measurement.map(retention_days * d_in)
    assert person <= g.over_retention


def test_the_linear_form_understates_zcdp_the_example_of_the_review() -> None:
    g = guarantee_of(policy("zcdp", 0.1, 30))
    person = fitted_to_the_cap("zcdp", 1.0, 0.1).map(30.0)
    assert 30 * 0.1 < 89.0 < person <= g.over_retention == pytest.approx(90.0)


@pytest.mark.parametrize("per_cell", [1, 2, 3, 7, 1000, 20_000, 123_456_789])
def test_l2_sensitivity_is_never_below_the_true_value(per_cell: int) -> None:
    for groups in range(1, 2001):
        l2 = Bound(groups, 1, per_cell).l2
        assert Fraction(l2) ** 2 >= groups * per_cell**2, (groups, per_cell)


def test_l2_of_three_cells_rounds_up_where_the_nearest_float_is_below() -> None:
    assert Fraction(3**0.5) ** 2 < 3
    assert Fraction(Bound(3, 1, 1).l2) ** 2 >= 3 and Bound(3, 1, 1).l2 > 3**0.5


def test_distinct_counts_use_the_same_rounding() -> None:
    (users,) = parts_for(METRICS["active_users"], policy("zcdp", 0.1, 1), {}, 3, 1, 4)
    assert Fraction(users.component.l2_sensitivity) ** 2 >= 3
