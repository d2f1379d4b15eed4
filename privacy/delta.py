"""δ as an exact, capped budget: the failure probability that partition selection adds.

A query grouped by an open context dimension (`privacy.policy.open`) is approximate DP: its
selection has a δ on top of the query's rho. The ledger keeps that δ per analyst per epoch
as exact integers in units of 1e-18 (`DELTA_UNITS_PER_ONE`), so sums never drift, and a
charge's δ is rounded UP to the next unit: against the analyst. Two caps hold on every
epoch, the analyst's own and everyone's together, checked in the same transaction as the
rho charge (service/store/*/ledger.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

__all__ = ["DELTA_UNITS_PER_ONE", "DeltaCaps", "DeltaShortfall", "delta_units", "from_units"]

DELTA_UNITS_PER_ONE = 10**18  # a δ cap is below 1, so every amount fits a signed 64-bit column


def _units(x: float, rounding: str) -> int:
    if isinstance(x, bool) or not isinstance(x, float | int):
        raise TypeError(f"delta must be a number, not {type(x).__name__}")
    # str() of a float is its shortest round-tripping form: 1e-9 is exactly 10**9 units.
    amount = Decimal(str(x))
    if not amount.is_finite() or not 0 <= amount < 1:
        raise ValueError(f"delta={x!r} is not a probability below 1: give 0 <= delta < 1")
    return int((amount * DELTA_UNITS_PER_ONE).to_integral_value(rounding))


def delta_units(x: float) -> int:
    """A charged δ in ledger units (1e-18), rounded UP so the ledger never undercharges."""
    return _units(x, ROUND_CEILING)


def from_units(units: int) -> float:
    """An amount of δ units as the nearest float, for JSON and display."""
    return units / DELTA_UNITS_PER_ONE


@dataclass(frozen=True)
class DeltaShortfall:
    """An epoch on which a δ charge would pass a cap, and what is left there (units)."""

    epoch: int
    analyst_left_units: int
    global_left_units: int


@dataclass(frozen=True)
class DeltaCaps:
    """The two δ caps every charge must fit under on each epoch it touches (units).

    Caps are rounded DOWN to whole units (a cap is never more than the policy wrote).
    """

    analyst_units: int
    global_units: int

    @classmethod
    def of(cls, per_analyst: float, global_cap: float) -> DeltaCaps:
        """The caps of a policy's ``privacy.delta_per_analyst`` and ``privacy.delta_global``."""
        return cls(_units(per_analyst, ROUND_FLOOR), _units(global_cap, ROUND_FLOOR))

    def left(
        self, analyst_spent: Mapping[int, int], global_spent: Mapping[int, int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """What is left of each cap on each epoch spent on (never below zero)."""
        return (
            {e: max(self.analyst_units - s, 0) for e, s in analyst_spent.items()},
            {e: max(self.global_units - s, 0) for e, s in global_spent.items()},
        )

    def shortfalls(
        self,
        units: int,
        epochs: Iterable[int],
        analyst_spent: Mapping[int, int],
        global_spent: Mapping[int, int],
    ) -> list[DeltaShortfall]:
        """The epochs on which charging ``units`` of δ would pass either cap; empty when it fits."""
        found = []
        for epoch in epochs:
            mine = self.analyst_units - analyst_spent.get(epoch, 0)
            everyone = self.global_units - global_spent.get(epoch, 0)
            if units > mine or units > everyone:
                found.append(DeltaShortfall(epoch, max(mine, 0), max(everyone, 0)))
        return found
