"""The budget ledger's protocol and values, backend-neutral: charges, shortfalls, releases.

Each backend implements ``LedgerRepository`` (service/store/sqlite/ledger.py,
service/store/postgres/ledger.py); the store contract suite runs against both.

Every amount is kept with its unit ("epsilon" or "rho"): nanos of one are not nanos of
the other, so the ledger never adds a charge to spend of another unit, and the service
refuses to start under a policy whose unit is not the one the spend was recorded in
(service/ops/accounting.py). Beside it, each (analyst, epoch) keeps the δ its selections
charged, in exact units of 1e-18 (``privacy.delta``), under caps of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from privacy.budget import Budget, Cost, EpochShortfall
from privacy.delta import DeltaCaps, DeltaShortfall
from service.store.errors import StoreError

__all__ = [
    "Charge",
    "DeltaShortfall",
    "EpochShortfall",
    "LedgerRepository",
    "OverBudget",
    "OverDeltaBudget",
    "ReleaseRecord",
    "SpendColumn",
    "UnitMismatch",
    "UnitSpend",
]


# The spend a backend reads: rho or epsilon nanos, or δ units (privacy/delta.py).
SpendColumn = Literal["nanos", "delta_units"]


class OverBudget(StoreError):
    """A charge was refused; nothing was charged. ``shortfalls`` lists every short epoch."""

    def __init__(self, shortfalls: Sequence[EpochShortfall]) -> None:
        self.shortfalls = list(shortfalls)
        super().__init__(f"over budget on epochs {[s.epoch for s in self.shortfalls]}")


class OverDeltaBudget(StoreError):
    """A charge's δ would pass a δ cap; nothing was charged (neither rho nor δ).
    ``shortfalls`` lists every short epoch and what is left of both δ caps there."""

    def __init__(self, shortfalls: Sequence[DeltaShortfall]) -> None:
        self.shortfalls = list(shortfalls)
        super().__init__(f"over the delta budget on epochs {[s.epoch for s in self.shortfalls]}")


class UnitMismatch(StoreError):
    """A charge in one unit met spend in another on one of its epochs; nothing was charged."""

    def __init__(self, recorded: str, charged: str, epochs: Sequence[int]) -> None:
        self.recorded, self.charged, self.epochs = recorded, charged, list(epochs)
        super().__init__(
            f"a charge in {charged} met spend in {recorded} on epochs {self.epochs}: "
            "the ledger never adds one unit to the other"
        )


@dataclass(frozen=True)
class UnitSpend:
    """Spend recorded in one unit: on how many epochs, and the newest of them."""

    unit: str
    epochs: int
    last_epoch: int


@dataclass(frozen=True)
class Charge:
    """One release's budget charge: ``cost_nanos`` on every epoch in ``epochs``.

    Amounts are exact integer nanos (1e-9 of a unit), so ten charges of 0.1 are exactly 1.
    A release that selects an open dimension's values also charges ``delta_units`` (1e-18,
    rounded up) on every epoch, under ``delta_caps``.
    """

    release_id: str
    analyst: str
    at: datetime
    request_json: str  # the normalized request (canonical JSON): no values' raw inputs
    request_hash: str  # sha256 hex of request_json, for the repeat lookup
    metric: str
    unit: str  # "epsilon" or "rho"
    cost_nanos: int
    epochs: tuple[int, ...]
    budget: Budget  # the caps the charge must fit under on every epoch
    policy_sha256: str
    audit_detail: dict[str, Any]  # appended as the "release" audit entry, same transaction
    delta_units: int = 0
    delta_caps: DeltaCaps | None = None  # required when delta_units > 0

    def __post_init__(self) -> None:
        if self.delta_units < 0 or (self.delta_units > 0 and self.delta_caps is None):
            # A δ the ledger could not check would escape its caps: a bug upstream.
            raise ValueError("a charge of delta needs a non-negative amount and its caps")

    def shortfalls(
        self, analyst_spent: dict[int, int], global_spent: dict[int, int]
    ) -> list[EpochShortfall]:
        """The epochs where this charge would pass the analyst cap or the global cap."""
        cost = Cost(self.cost_nanos, self.budget.accounting)
        if cost.unit != self.unit:
            raise ValueError(
                f"a charge in {self.unit} cannot be checked against caps in {cost.unit}"
            )
        return self.budget.shortfalls(cost, self.epochs, analyst_spent, global_spent)

    def delta_shortfalls(
        self, analyst_spent: dict[int, int], global_spent: dict[int, int]
    ) -> list[DeltaShortfall]:
        """The epochs where this charge's δ would pass a δ cap (none when it charges no δ)."""
        if self.delta_units == 0 or self.delta_caps is None:
            return []
        return self.delta_caps.shortfalls(
            self.delta_units, self.epochs, analyst_spent, global_spent
        )


@dataclass(frozen=True)
class ReleaseRecord:
    """A recorded release; ``rows``/``notes`` are None until its values were stored."""

    release_id: str
    analyst: str
    at: datetime
    request_json: str
    metric: str
    unit: str
    cost_nanos: int
    epochs: tuple[int, ...]
    policy_sha256: str
    rows: list[dict[str, Any]] | None
    notes: list[str] | None


class LedgerRepository(Protocol):
    """The persistent privacy budget: spend per analyst per epoch, and the releases."""

    def spent(self, analyst: str, epochs: Sequence[int]) -> dict[int, int]:
        """Nanos ``analyst`` has spent on each of ``epochs`` (0 where nothing)."""
        ...

    def global_spent(self, epochs: Sequence[int]) -> dict[int, int]:
        """Nanos all analysts together have spent on each of ``epochs``."""
        ...

    def delta_spent(self, analyst: str, epochs: Sequence[int]) -> dict[int, int]:
        """δ units (1e-18) ``analyst`` has spent on each of ``epochs`` (0 where nothing)."""
        ...

    def global_delta_spent(self, epochs: Sequence[int]) -> dict[int, int]:
        """δ units all analysts together have spent on each of ``epochs``."""
        ...

    def charge(self, charge: Charge, repeat_since: datetime | None = None) -> ReleaseRecord | None:
        """Check every epoch against both caps and charge, in ONE durable transaction.

        First, if ``repeat_since`` is given and the same analyst made a release of the
        same request (hash) at or after it whose values are stored, return that release
        and charge nothing. Otherwise raise ``OverBudget`` (nothing charged) if any epoch
        would pass a cap, or ``UnitMismatch`` (nothing charged) if any epoch holds spend
        of another unit than ``charge.unit`` (by any analyst), or ``OverDeltaBudget``
        (nothing charged: neither the cost nor the δ) if its δ would pass a δ cap on any
        epoch, else add the cost and the δ to every epoch, record the release (values
        pending) and append the audit entry; return None once committed.
        """
        ...

    def units(self) -> list[UnitSpend]:
        """Every unit the ledger holds spend in, by unit name (none when it is empty)."""
        ...

    def find_repeat(self, analyst: str, request_hash: str, since: datetime) -> ReleaseRecord | None:
        """The latest release of this request by this analyst at or after ``since`` whose
        values are stored."""
        ...

    def store_values(
        self, release_id: str, rows: Sequence[dict[str, Any]], notes: Sequence[str]
    ) -> None:
        """Keep a release's (already noisy) values, for the repeat window."""
        ...

    def release(self, release_id: str) -> ReleaseRecord | None: ...

    def forget_before(self, epoch: int) -> list[int]:
        """Delete the budgets of every epoch < ``epoch`` and the releases that touched only
        such epochs; return the epochs whose budgets were deleted."""
        ...
