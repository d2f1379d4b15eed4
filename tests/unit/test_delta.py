"""δ as ledger units: exact, a charge rounded up and a cap rounded down (against the analyst)."""

from __future__ import annotations

import pytest

from privacy.delta import DELTA_UNITS_PER_ONE, DeltaCaps, DeltaShortfall, delta_units, from_units


def test_a_declared_delta_is_an_exact_number_of_units() -> None:
    assert delta_units(1e-9) == 10**9
    assert sum(delta_units(1e-9) for _ in range(100)) == delta_units(1e-7)
    assert from_units(10**9) == 1e-9


def test_a_charge_below_one_unit_is_rounded_up_never_to_zero() -> None:
    assert delta_units(1e-19) == 1
    assert delta_units(1.5e-18) == 2


def test_a_cap_is_rounded_down_to_whole_units() -> None:
    assert DeltaCaps.of(1.5e-18, 2.5e-18) == DeltaCaps(1, 2)


def test_a_delta_that_is_no_probability_below_one_is_refused() -> None:
    for bad in (-1e-9, 1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not a probability below 1"):
            delta_units(bad)
    assert DELTA_UNITS_PER_ONE * 9 < 2**63  # every amount below 1 fits a BIGINT


def test_shortfalls_name_each_epoch_that_would_pass_either_cap_and_what_is_left() -> None:
    caps = DeltaCaps(10, 15)
    spent = {1: 8, 2: 0, 3: 0}
    everyone = {1: 8, 2: 13, 3: 0}
    assert caps.shortfalls(3, [1, 2, 3], spent, everyone) == [
        DeltaShortfall(1, 2, 7),
        DeltaShortfall(2, 10, 2),
    ]
    assert caps.shortfalls(2, [1, 2, 3], spent, everyone) == []
    assert caps.left(spent, everyone) == ({1: 2, 2: 10, 3: 10}, {1: 7, 2: 2, 3: 15})
