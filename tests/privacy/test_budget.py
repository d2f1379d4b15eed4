"""Budgets are exact value objects: integer nanos, one accounting, arithmetic that never lies."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy.budget import MAX_NANOS, Budget, Cost, EpochShortfall

nanos = st.integers(min_value=0, max_value=10**15)


def test_ten_charges_of_a_tenth_are_exactly_one() -> None:
    tenth = Cost.epsilon(0.1)
    assert sum([tenth] * 10) == Cost.epsilon(1)
    assert sum([tenth] * 10, Cost.zero("pure")).nanos == 1_000_000_000
    assert 10 * tenth == Cost.epsilon("1.0")
    # The float way is the bug this class exists to avoid.
    assert sum([0.1] * 10) != 1.0


def test_three_tenths_minus_a_tenth_is_exactly_two_tenths() -> None:
    assert Cost.rho(0.3) - Cost.rho(0.1) == Cost.rho(0.2)


def test_constructors_agree_on_float_string_decimal_and_int() -> None:
    assert Cost.epsilon(0.5) == Cost.epsilon("0.5") == Cost.epsilon(Decimal("0.5"))
    assert Cost.epsilon(2) == Cost.epsilon(2.0) == Cost(2_000_000_000, "pure")
    assert Cost.of("zcdp", 0.125) == Cost.rho(0.125) == Cost(125_000_000, "zcdp")
    assert Cost.of("pure", "0.25") == Cost.epsilon(0.25)
    assert Cost.zero("zcdp") == Cost.rho(0)


@given(st.integers(min_value=0, max_value=10**12))
def test_a_decimal_with_nine_places_is_held_exactly_from_a_float(n: int) -> None:
    text = f"{Decimal(n).scaleb(-9):f}"
    assert Cost.epsilon(float(text)).nanos == n
    assert Cost.epsilon(text).nanos == n


def test_amounts_round_to_the_nearest_nano() -> None:
    assert Cost.epsilon("0.0000000014").nanos == 1
    assert Cost.epsilon("0.0000000016").nanos == 2
    assert Cost.epsilon("0.1234567894").nanos == 123_456_789
    assert Cost.epsilon("0.1234567896").nanos == 123_456_790


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-0.1, "negative"),
        ("-1", "negative"),
        (math.nan, "not finite"),
        (math.inf, "not finite"),
        ("nan", "not finite"),
        ("lots", "not a number"),
        ("1e-12", "below one nano"),
        (1e10, "too large"),
    ],
)
def test_impossible_amounts_are_refused_with_what_to_do(amount: float | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cost.epsilon(amount)


def test_an_unknown_accounting_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of pure, zcdp"):
        Cost.of("approx", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown accounting"):
        Cost(1, "renyi")  # type: ignore[arg-type]


def test_nanos_must_be_a_non_negative_int_that_fits_a_bigint() -> None:
    with pytest.raises(ValueError, match="negative"):
        Cost(-1, "pure")
    with pytest.raises(TypeError, match="must be an int"):
        Cost(1.5, "pure")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64-bit"):
        Cost(MAX_NANOS + 1, "pure")
    assert Cost(MAX_NANOS, "pure").nanos == 2**63 - 1


def test_subtraction_never_goes_below_zero() -> None:
    assert Cost.epsilon(1) - Cost.epsilon(1) == Cost.zero("pure")
    with pytest.raises(ValueError, match="never refunded"):
        Cost.epsilon(1) - Cost.epsilon("1.000000001")


def test_mixing_accountings_is_a_type_error() -> None:
    eps, rho = Cost.epsilon(1), Cost.rho(1)
    with pytest.raises(TypeError, match="convert one first"):
        eps + rho
    with pytest.raises(TypeError, match="convert one first"):
        eps - rho
    with pytest.raises(TypeError, match="convert one first"):
        _ = eps < rho
    with pytest.raises(TypeError, match="convert one first"):
        _ = eps >= rho
    with pytest.raises(TypeError, match="convert one first"):
        sum([eps, rho])
    assert eps != rho  # equality may be asked; it is just false


def test_a_cost_does_not_add_to_a_bare_number() -> None:
    with pytest.raises(TypeError):
        Cost.epsilon(1) + 0.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        0.5 + Cost.epsilon(1)  # type: ignore[operator]
    with pytest.raises(TypeError):
        Cost.epsilon(1) * 0.5  # type: ignore[operator]


def test_costs_compare_and_sort_by_amount() -> None:
    small, large = Cost.epsilon(0.1), Cost.epsilon(0.2)
    assert small < large <= large and large > small >= small
    assert sorted([large, small, Cost.zero("pure")]) == [Cost.zero("pure"), small, large]
    assert max(small, large) is large


def test_sum_of_nothing_needs_a_start() -> None:
    assert sum([], Cost.zero("zcdp")) == Cost.zero("zcdp")
    assert sum([Cost.rho(0.5)]) == Cost.rho(0.5)


def test_value_unit_and_text() -> None:
    assert Cost.epsilon(0.5).value == 0.5
    assert Cost.epsilon(0.5).unit == "epsilon"
    assert Cost.rho(0.125).unit == "rho"
    assert str(Cost.epsilon(0.5)) == "ε=0.5"
    assert str(Cost.rho(0.125)) == "\N{GREEK SMALL LETTER RHO}=0.125"
    assert str(Cost.epsilon(10)) == "ε=10"
    assert str(Cost.zero("pure")) == "ε=0"
    assert str(Cost(1, "pure")) == "ε=0.000000001"
    assert Cost.rho("0.3").decimal == Decimal("0.3")


def test_costs_are_frozen_and_hashable() -> None:
    cost = Cost.epsilon(1)
    with pytest.raises(AttributeError):
        cost.nanos = 0  # type: ignore[misc]
    assert {cost, Cost.epsilon(1.0)} == {cost}


@given(nanos, nanos, nanos)
def test_arithmetic_is_exact_integer_arithmetic(a: int, b: int, c: int) -> None:
    x, y, z = Cost(a, "pure"), Cost(b, "pure"), Cost(c, "pure")
    assert (x + y) + z == x + (y + z) == Cost(a + b + c, "pure")
    assert x + y - y == x
    assert (x < y) == (a < b)


# -- Budget: the two caps a charge must fit under -------------------------------------


def test_a_charge_that_fills_a_cap_exactly_fits_and_one_nano_more_does_not() -> None:
    caps = Budget(analyst_cap=Cost.epsilon(1), global_cap=Cost.epsilon(3))
    spent = {7: 700_000_000}
    assert caps.shortfalls(Cost.epsilon("0.3"), [7], spent, spent) == []
    short = caps.shortfalls(Cost(300_000_001, "pure"), [7, 8], spent, spent)
    assert short == [EpochShortfall(7, 300_000_000, 2_300_000_000)]


def test_the_global_cap_binds_when_other_analysts_spent_it() -> None:
    caps = Budget(analyst_cap=Cost.epsilon(1), global_cap=Cost.epsilon(2))
    short = caps.shortfalls(Cost.epsilon("0.5"), [1, 2], {}, {1: 1_800_000_000})
    assert short == [EpochShortfall(1, 1_000_000_000, 200_000_000)]


def test_what_is_left_never_goes_below_zero() -> None:
    caps = Budget(analyst_cap=Cost.rho("0.5"), global_cap=Cost.rho(1))
    mine, everyone = caps.left({1: 600_000_000, 2: 0}, {1: 600_000_000})
    assert mine == {1: 0, 2: 500_000_000}
    assert everyone == {1: 400_000_000}


def test_caps_and_charges_of_different_accountings_never_mix() -> None:
    with pytest.raises(TypeError, match="cannot combine"):
        Budget(analyst_cap=Cost.epsilon(1), global_cap=Cost.rho(1))
    caps = Budget(analyst_cap=Cost.epsilon(1), global_cap=Cost.epsilon(1))
    with pytest.raises(TypeError, match="cannot charge"):
        caps.shortfalls(Cost.rho("0.1"), [1], {}, {})
