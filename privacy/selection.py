"""Partition selection: which values of an open dimension a release may show.

An open context dimension (`privacy.policy.open`) has no declared values: its keys would
come from the data, which privacy rule 4 allows only through a thresholded, budgeted
selection. This is that selection, and the only place besides `privacy.mechanisms` that
imports OpenDP: OpenDP's `make_gaussian_threshold` (Rogers 2023, "A Unifying Privacy
Analysis Framework for Unknown Domain Algorithms") adds discrete Gaussian noise to the
count of distinct privacy units per value and releases only values whose noisy count
exceeds the threshold. Its privacy loss is approximate zCDP, (rho, δ): rho from the
noise, δ the chance that a value few people used clears the threshold anyway.

Each privacy unit (a pseudonym within an epoch) is counted in at most L values (the
policy's `max_values_per_user`, enforced by the engine before counting), once per value:
the input distance is (L0, L2, L∞) = (L, L, 1), which OpenDP tightens to L2 = √L.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import opendp.domains as dp_domains
import opendp.measurements as dp_measurements
import opendp.metrics as dp_metrics

# Importing privacy.mechanisms turns on OpenDP's "contrib" features, once, for the
# process; `make_gaussian_threshold` is behind them.
from privacy.budget import Cost
from privacy.mechanisms import halfwidth_for_scale
from privacy.request import QueryError, QueryRequest

if TYPE_CHECKING:
    from privacy.policy import Policy
    from privacy.policy.open import OpenSelection

__all__ = [
    "SelectionPlan",
    "check_open_request",
    "plan_selection",
    "select",
    "with_selection_cost",
]

_T = "i64"


@dataclass(frozen=True)
class SelectionPlan:
    """A planned selection: noise scale, threshold and what it costs (rho and δ).

    `rho` and `delta` are OpenDP's own privacy map at `scale` and `threshold` for a
    unit counted in up to `values_per_unit` values; both are at most what was asked.
    """

    scale: float
    threshold: int
    values_per_unit: int
    rho: Cost
    delta: float
    measurement: Any

    @property
    def d_in(self) -> tuple[int, int, int]:
        """(L0, L2, L∞) of one unit's counts: L values, one unit each."""
        return (self.values_per_unit, self.values_per_unit, 1)


def _domain_and_metric() -> tuple[Any, Any]:
    domain = dp_domains.map_domain(dp_domains.atom_domain(T=str), dp_domains.atom_domain(T=_T))
    return domain, dp_metrics.l02inf_distance(dp_metrics.absolute_distance(T=_T))


def _measure(scale: float, threshold: int) -> Any:
    domain, metric = _domain_and_metric()
    return dp_measurements.make_gaussian_threshold(domain, metric, scale=scale, threshold=threshold)


def plan_selection(rho: Cost, delta: float, values_per_unit: int, min_users: int) -> SelectionPlan:
    """The selection releasing values counted by more than `min_users` noisy units.

    The scale is the smallest whose OpenDP rho (for `values_per_unit` values per unit) is
    within `rho`; the threshold is `min_users`. Raises ValueError, naming the smallest
    threshold that would do, when OpenDP's δ at that threshold exceeds `delta`.
    """
    if rho.accounting != "zcdp" or rho.nanos == 0:
        raise ValueError(f"a selection is charged in rho > 0 (zCDP), not {rho}")
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} must be strictly between 0 and 1, e.g. 1e-9")
    if values_per_unit < 1 or min_users < 1:
        raise ValueError("values_per_unit and min_users must be whole numbers >= 1")
    d_in = (values_per_unit, values_per_unit, 1)
    share = rho.decimal
    scale = math.sqrt(values_per_unit / (2.0 * rho.value))  # rho = L / (2 scale²)
    for _ in range(64):
        meas = _measure(scale, min_users)
        spent, spent_delta = meas.map(d_in)
        if Decimal(spent) <= share:
            break
        scale = math.nextafter(scale, math.inf) * (1 + 2**-50)
    else:  # pragma: no cover - OpenDP's map is within ulps of the closed form
        raise RuntimeError("could not fit a selection scale: this is probably a bug")
    if spent_delta > delta:
        raise ValueError(
            f"min_users {min_users} is too low for delta {delta:g} at rho {rho.value:g}: "
            f"the threshold must be at least {_least_threshold(scale, d_in, delta)} "
            "(raise min_users, rho or delta)"
        )
    return SelectionPlan(scale, min_users, values_per_unit, rho, float(spent_delta), meas)


def _least_threshold(scale: float, d_in: tuple[int, int, int], delta: float) -> int:
    """The smallest threshold whose OpenDP δ at `scale` is within `delta`."""
    low, high = 1, 2
    while _measure(scale, high).map(d_in)[1] > delta:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if _measure(scale, mid).map(d_in)[1] > delta:
            low = mid
        else:
            high = mid
    return high


def select(plan: SelectionPlan, counts: Mapping[str, int], most: int) -> dict[str, int]:
    """The values released by the selection, with their noisy unit counts.

    `counts` holds the exact number of distinct units per value seen in the data (values
    no unit used are absent: the mechanism never learns of them). OpenDP noises every
    count and keeps those above the threshold; of those, the `most` with the highest
    noisy counts are kept (post-processing), in descending order of count, then value.
    """
    released: Mapping[str, int] = plan.measurement(dict(counts))
    kept = sorted(released.items(), key=lambda kv: (-kv[1], kv[0]))[:most]
    return dict(kept)


def selection_halfwidth(plan: SelectionPlan) -> float:
    """The 95 % half-width of one released noisy count (discrete Gaussian at `scale`)."""
    return halfwidth_for_scale("zcdp", plan.scale)


def check_open_request(request: QueryRequest, opened: Mapping[str, OpenSelection]) -> None:
    """An open dimension's values are not public: it can be grouped by, not named."""
    for dim, _ in request.filters:
        if dim in opened:
            raise QueryError(
                f"filters.{dim}: {dim} is an open dimension, whose values are not public; "
                "group by it instead (the values a selection releases are shown)"
            )
    if request.compare is not None and request.compare[0] in opened:
        raise QueryError(
            f'"compare": {request.compare[0]} is an open dimension: its baseline cannot be '
            "named before the selection releases its values"
        )


def with_selection_cost(cost: Cost, policy: Policy, opened: Mapping[str, OpenSelection]) -> Cost:
    """The query's own cost plus each selection's rho, within the per-query cap."""
    total = cost + sum((Cost.rho(s.rho) for s in opened.values()), Cost.zero("zcdp"))
    if total > Cost.of(policy.privacy.accounting, policy.privacy.max_per_query):
        extra = total - cost
        raise QueryError(
            f"grouping by {', '.join(opened)} adds the selection's rho {extra.value:g}: the "
            f"total {total.value:g} is above the per-query cap of "
            f"{policy.privacy.max_per_query:g}; give at most "
            f"{policy.privacy.max_per_query - extra.value:g}"
        )
    return total
