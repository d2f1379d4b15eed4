"""Privacy budgets as exact value objects.

A `Cost` is an amount of privacy loss under one accounting: pure DP (ε) or zero-concentrated
DP (rho). It is held as an integer number of nano-units so that ledgers can store it in an SQL
BIGINT and add it up exactly: ten charges of ε=0.1 are exactly ε=1, never 0.9999999999999999.

The mechanisms are fitted *under* a `Cost` (see `privacy.mechanisms.plan_scales`): the cost is
fixed first, then OpenDP is asked for noise whose privacy loss is at most that cost, so the
rounding to nanos can never undercharge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

Accounting = Literal["pure", "zcdp"]

NANOS_PER_UNIT = 1_000_000_000
# Ledgers keep `nanos` in a signed 64-bit column; nothing larger may exist.
MAX_NANOS = 2**63 - 1

_UNITS: dict[str, Literal["epsilon", "rho"]] = {"pure": "epsilon", "zcdp": "rho"}
_SYMBOLS = {"pure": "\N{GREEK SMALL LETTER EPSILON}", "zcdp": "\N{GREEK SMALL LETTER RHO}"}


def _check_accounting(accounting: object) -> Accounting:
    if accounting == "pure":
        return "pure"
    if accounting == "zcdp":
        return "zcdp"
    raise ValueError(
        f"unknown accounting {accounting!r}: use one of {', '.join(get_args(Accounting))}"
    )


def _to_nanos(x: float | int | str | Decimal, unit: str) -> int:
    """Round an amount in units to the nearest nano-unit, rejecting what no budget can be."""
    if isinstance(x, bool) or not isinstance(x, float | int | str | Decimal):
        raise TypeError(f"{unit} must be a number or a decimal string, not {type(x).__name__}")
    try:
        # str() of a float is its shortest round-tripping form, so 0.1 becomes Decimal("0.1")
        # rather than 0.1000000000000000055511151231257827.
        amount = Decimal(str(x)) if isinstance(x, float) else Decimal(x)
    except InvalidOperation:
        raise ValueError(f"{unit}={x!r} is not a number: write it like 0.5 or '0.5'") from None
    if not amount.is_finite():
        raise ValueError(f"{unit}={x!r} is not finite: give a finite, non-negative amount")
    if amount < 0:
        raise ValueError(f"{unit}={x!r} is negative: a privacy cost is zero or more")
    nanos = int((amount * NANOS_PER_UNIT).to_integral_value())  # ROUND_HALF_EVEN
    if nanos == 0 and amount > 0:
        raise ValueError(
            f"{unit}={x!r} is below one nano-unit (1e-9): use 0 or an amount of at least 1e-9"
        )
    if nanos > MAX_NANOS:
        raise ValueError(f"{unit}={x!r} is too large to account for: keep it below 9.2e9")
    return nanos


@dataclass(frozen=True, order=False)
class Cost:
    """An exact amount of privacy loss: `nanos` * 1e-9 units of ε (pure) or rho (zCDP).

    Costs of the same accounting add, subtract (never below zero) and compare; mixing
    accountings raises `TypeError`, because ε and rho are not interchangeable without a δ.
    `sum(costs)` works, as does `k * cost` for a whole number k.
    """

    nanos: int
    accounting: Accounting

    def __post_init__(self) -> None:
        if isinstance(self.nanos, bool) or not isinstance(self.nanos, int):
            raise TypeError(f"nanos must be an int, not {type(self.nanos).__name__}")
        if self.nanos < 0:
            raise ValueError(f"nanos={self.nanos} is negative: a privacy cost is zero or more")
        if self.nanos > MAX_NANOS:
            raise ValueError(f"nanos={self.nanos} does not fit a signed 64-bit ledger column")
        _check_accounting(self.accounting)

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def epsilon(cls, x: float | int | str | Decimal) -> Cost:
        """A pure-DP cost of ε=`x`, rounded to the nearest nano."""
        return cls(_to_nanos(x, "epsilon"), "pure")

    @classmethod
    def rho(cls, x: float | int | str | Decimal) -> Cost:
        """A zCDP cost of rho=`x`, rounded to the nearest nano."""
        return cls(_to_nanos(x, "rho"), "zcdp")

    @classmethod
    def of(cls, accounting: Accounting, x: float | int | str | Decimal) -> Cost:
        """A cost of `x` units under `accounting` ("pure": ε, "zcdp": rho)."""
        accounting = _check_accounting(accounting)
        return cls(_to_nanos(x, _UNITS[accounting]), accounting)

    @classmethod
    def zero(cls, accounting: Accounting) -> Cost:
        """No privacy loss under `accounting`; the identity of `+`."""
        return cls(0, _check_accounting(accounting))

    # -- views --------------------------------------------------------------------------

    @property
    def value(self) -> float:
        """The amount in units (ε or rho) as the nearest float, for OpenDP and display."""
        return self.nanos / NANOS_PER_UNIT

    @property
    def decimal(self) -> Decimal:
        """The amount in units (ε or rho), exactly."""
        return Decimal(self.nanos).scaleb(-9)

    @property
    def unit(self) -> Literal["epsilon", "rho"]:
        """Name of the unit: "epsilon" for pure DP, "rho" for zCDP."""
        return _UNITS[self.accounting]

    def __str__(self) -> str:
        return f"{_SYMBOLS[self.accounting]}={self.decimal.normalize():f}"

    # -- arithmetic ---------------------------------------------------------------------

    def _same(self, other: object, op: str) -> Cost:
        if not isinstance(other, Cost):
            raise TypeError(f"cannot {op} Cost and {type(other).__name__}")
        if other.accounting != self.accounting:
            raise TypeError(
                f"cannot {op} a {self.accounting} cost ({self}) and a {other.accounting} cost "
                f"({other}): convert one first"
            )
        return other

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.nanos + self._same(other, "add").nanos, self.accounting)

    def __radd__(self, other: int | Cost) -> Cost:
        # sum() starts from the int 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return self._same(other, "add") + self

    def __sub__(self, other: Cost) -> Cost:
        other = self._same(other, "subtract")
        if other.nanos > self.nanos:
            raise ValueError(
                f"{self} - {other} would be negative: a privacy cost is never refunded"
            )
        return Cost(self.nanos - other.nanos, self.accounting)

    def __mul__(self, k: int) -> Cost:
        if isinstance(k, bool) or not isinstance(k, int):
            return NotImplemented
        if k < 0:
            raise ValueError(f"cannot multiply {self} by {k}: use a whole number >= 0")
        return Cost(self.nanos * k, self.accounting)

    __rmul__ = __mul__

    def __lt__(self, other: Cost) -> bool:
        return self.nanos < self._same(other, "compare").nanos

    def __le__(self, other: Cost) -> bool:
        return self.nanos <= self._same(other, "compare").nanos

    def __gt__(self, other: Cost) -> bool:
        return self.nanos > self._same(other, "compare").nanos

    def __ge__(self, other: Cost) -> bool:
        return self.nanos >= self._same(other, "compare").nanos


@dataclass(frozen=True)
class EpochShortfall:
    """An epoch on which a charge would pass a cap, and what is left there (nanos)."""

    epoch: int
    analyst_left_nanos: int
    global_left_nanos: int


@dataclass(frozen=True)
class Budget:
    """The two caps every charge must fit under on each epoch it touches: the analyst's own
    and everyone's together. Spend is exact nanos per epoch, as the ledgers keep it."""

    analyst_cap: Cost
    global_cap: Cost

    def __post_init__(self) -> None:
        self.analyst_cap._same(self.global_cap, "combine")

    @property
    def accounting(self) -> Accounting:
        return self.analyst_cap.accounting

    def left(
        self, analyst_spent: Mapping[int, int], global_spent: Mapping[int, int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """What is left of each cap on each epoch spent on (never below zero)."""
        return (
            {e: max(self.analyst_cap.nanos - s, 0) for e, s in analyst_spent.items()},
            {e: max(self.global_cap.nanos - s, 0) for e, s in global_spent.items()},
        )

    def shortfalls(
        self,
        cost: Cost,
        epochs: Iterable[int],
        analyst_spent: Mapping[int, int],
        global_spent: Mapping[int, int],
    ) -> list[EpochShortfall]:
        """The epochs on which charging ``cost`` would pass either cap; empty when it fits."""
        cost = self.analyst_cap._same(cost, "charge")
        found = []
        for epoch in epochs:
            mine = self.analyst_cap.nanos - analyst_spent.get(epoch, 0)
            everyone = self.global_cap.nanos - global_spent.get(epoch, 0)
            if cost.nanos > mine or cost.nanos > everyone:
                found.append(EpochShortfall(epoch, max(mine, 0), max(everyone, 0)))
        return found
