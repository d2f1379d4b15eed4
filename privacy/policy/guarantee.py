"""The numbers of a policy's differential-privacy guarantee for one person.

The privacy unit is one user pseudonym within one salt period (an "epoch", one day by
default): the service cannot link a person across periods, so the guarantee is stated per
period, from the policy alone. Under zCDP every amount is also given as the ε of (ε, δ)-DP
at the policy's δ, by OpenDP's conversion (`privacy.mechanisms.epsilon_at_delta`), the same
the query API reports. `privacy.policy.explain` puts these numbers into words;
`privacy.policy.diff` compares budgets across accountings with `epsilon_equivalent`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from privacy.durations import format_duration
from privacy.mechanisms import epsilon_at_delta
from privacy.policy.model import Policy
from privacy.policy.open import selection_deltas
from privacy.policy.sections import QueryPolicy

__all__ = [
    "Guarantee",
    "epsilon_equivalent",
    "guarantee_of",
    "longest_retention",
    "over_periods",
]


def epsilon_equivalent(privacy: QueryPolicy, amount: float) -> float:
    """The ε that a budget ``amount`` of ``privacy``'s accounting amounts to.

    Under pure accounting the amount is already ε; under zCDP it is rho, converted to the ε
    of (ε, δ)-DP at the policy's δ by OpenDP's conversion.
    """
    if privacy.accounting == "pure":
        return amount
    return epsilon_at_delta(amount, privacy.delta)


@dataclass(frozen=True)
class Guarantee:
    """The differential-privacy promise of a policy, in numbers.

    Budget amounts are in the policy's unit (ε under pure, rho under zCDP); the
    ``epsilon_*`` fields are their ε equivalents (equal to them under pure accounting).
    ``period`` is the salt rotation: the time span of the privacy unit. ``periods_kept``
    is how many periods a person's stored events can span (the longest retention), and
    ``over_retention`` what all releases together can spend on one person over them
    (see `over_periods`).
    """

    accounting: Literal["pure", "zcdp"]
    unit: Literal["epsilon", "rho"]
    delta: float | None  # zCDP only: the δ of the (ε, δ) statement
    period: timedelta
    per_query: float
    per_analyst: float  # the largest per-period cap of any analyst (default or override)
    global_cap: float
    periods_kept: int
    over_retention: float  # the budget of all kept periods together, in the policy's unit
    epsilon_per_query: float
    epsilon_per_analyst: float
    epsilon_per_period: float
    epsilon_over_retention: float
    # Open dimensions (privacy.policy.open): the δ their selections add, per period and
    # over the kept periods, on top of `delta` (0 without an open dimension).
    selection_delta_per_period: float = 0.0
    selection_delta_over_retention: float = 0.0
    # The policy's caps on the δ selections may spend per period (None: no δ may be spent).
    delta_per_analyst: float | None = None
    delta_global: float | None = None

    @property
    def total_delta_per_period(self) -> float | None:
        """The whole δ of the per-period (ε, δ) promise: the zCDP conversion's δ plus all
        the selections' δ (bounded by the ledger's global δ cap); None under pure DP."""
        if self.delta is None:
            return None
        return self.delta + self.selection_delta_per_period

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (the period as a policy duration, e.g. ``1d``)."""
        return {
            "accounting": self.accounting,
            "unit": self.unit,
            "delta": self.delta,
            "period": format_duration(self.period),
            "per_query": self.per_query,
            "per_analyst": self.per_analyst,
            "global": self.global_cap,
            "periods_kept": self.periods_kept,
            "over_retention": self.over_retention,
            "epsilon_per_query": self.epsilon_per_query,
            "epsilon_per_analyst": self.epsilon_per_analyst,
            "epsilon_per_period": self.epsilon_per_period,
            "epsilon_over_retention": self.epsilon_over_retention,
            "selection_delta_per_period": self.selection_delta_per_period,
            "selection_delta_over_retention": self.selection_delta_over_retention,
            "delta_per_analyst": self.delta_per_analyst,
            "delta_global": self.delta_global,
            "total_delta_per_period": self.total_delta_per_period,
        }


def longest_retention(policy: Policy) -> timedelta:
    """The longest time any collected event type is kept."""
    return max(policy.retention.for_type(t) for t in policy.event_types)


def over_periods(privacy: QueryPolicy, periods: int, per_period: float) -> float:
    """What ``per_period`` on each of ``periods`` periods amounts to for one person.

    One person is ``periods`` privacy units, one per period, and a query over several days
    that is not grouped by day puts all of them into the same cells: the person moves
    the noised vector by ``periods`` times one unit's sensitivity. Under pure accounting ε
    scales linearly with the sensitivity, so the per-period amounts add up: periods x ε.
    Under zCDP rho scales with its square (group privacy for zCDP), so one such query
    alone costs the person periods² x its rho, and no mix of queries can cost more: each
    query is charged on every period it reads, so summing periods(q)² x rho(q) over the
    queries is at most periods x (the sum over periods of what each was charged).
    """
    factor = periods if privacy.accounting == "pure" else periods * periods
    return factor * per_period


def guarantee_of(policy: Policy) -> Guarantee:
    """The numbers of ``policy``'s guarantee for one person.

    Per period, the global cap bounds what all releases together spend on any one
    person's activity; under zCDP its (ε, δ) statement has δ = the policy's δ (of the
    conversion) plus what the selections of open dimensions add, which the ledger's
    global δ cap bounds (`selection_deltas`). Over the periods a person's events are kept,
    the bound is `over_periods` of that cap: periods x ε under pure accounting, periods² x rho under
    zCDP (then converted to ε once).
    """
    q = policy.privacy
    periods = math.ceil(longest_retention(policy) / policy.identifiers.salt_rotation)
    over = over_periods(q, periods, q.global_cap)
    analyst = max([q.per_analyst, *q.per_analyst_overrides.values()])
    selection_per_period, selection_over = selection_deltas(policy, periods)
    return Guarantee(
        accounting=q.accounting,
        unit=q.budget_unit,
        delta=q.delta if q.accounting == "zcdp" else None,
        period=policy.identifiers.salt_rotation,
        per_query=q.max_per_query,
        per_analyst=analyst,
        global_cap=q.global_cap,
        periods_kept=periods,
        over_retention=over,
        epsilon_per_query=epsilon_equivalent(q, q.max_per_query),
        epsilon_per_analyst=epsilon_equivalent(q, analyst),
        epsilon_per_period=epsilon_equivalent(q, q.global_cap),
        epsilon_over_retention=epsilon_equivalent(q, over),
        selection_delta_per_period=selection_per_period,
        selection_delta_over_retention=selection_over,
        delta_per_analyst=q.delta_per_analyst,
        delta_global=q.delta_global,
    )
