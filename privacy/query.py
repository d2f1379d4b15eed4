"""Queries: validation and planning, from the request and the policy alone.

A `QueryRequest` (`privacy.request`) is an immutable description of what an analyst asks;
`plan_query` checks it against the catalogue and the policy and compiles it into a
`QueryPlan`: the public group keys (every cell of the answer, empty or not), the
contribution bounds of each aggregate, the integer vectors to be noised with their
sensitivities, and the cost. No step here looks at data, so neither the cells nor the cost
can leak anything about it. The request's names are exported here too, so that callers
import the query API from one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from privacy.bounds import IPW_UNIT, Part, cells_per_unit, parts_for
from privacy.budget import Cost
from privacy.events import OTHER, EventType
from privacy.mechanisms import Component, budget_for_halfwidth
from privacy.metrics import DIMENSIONS, METRICS, Metric
from privacy.policy import Policy, granted, metric_unavailable, metrics_for, restricted
from privacy.policy.open import OpenSelection, declared_values, open_dimensions
from privacy.query_checks import check_compare as _check_compare
from privacy.query_checks import check_totals as _check_totals
from privacy.request import NotGranted, QueryError, QueryRequest
from privacy.selection import check_open_request, with_selection_cost

__all__ = [
    "MAX_CELLS",
    "NotGranted",
    "Part",
    "QueryError",
    "QueryPlan",
    "QueryRequest",
    "dimension_keys",
    "oldest_queryable_day",
    "plan_query",
]

MAX_CELLS = 20_000
"""The most cells (public group keys) one answer may have; histogram bins count too."""

DAY = "day"
_ONE_DAY = timedelta(days=1)

# How the budget is split between the vectors of one release: the numerator of a rate
# and the sum of a mean carry most of the relative error, so they get two thirds.
_SHARES: dict[str, dict[str, float]] = {
    "rate": {"numerator": 2.0, "denominator": 1.0},
    "mean": {"sum": 2.0, "count": 1.0},
}


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryPlan:
    """A validated request compiled against the policy; touches no data."""

    request: QueryRequest
    metric: Metric
    cost: Cost
    epochs: tuple[int, ...]
    cells: tuple[Mapping[str, str | int], ...]
    components: tuple[Component, ...]
    # How the engine builds and reads the vectors (all public, from request and policy):
    parts: tuple[Part, ...] = ()
    shares: Mapping[str, float] = field(default_factory=dict)
    days: tuple[date, ...] = ()  # grouped days, in cell order (empty: not grouped by day)
    dimensions: tuple[tuple[str, tuple[str | int, ...]], ...] = ()  # grouped dims and keys
    filters: tuple[tuple[str, tuple[str | int, ...]], ...] = ()  # filtered dims and keys
    groups_per_unit: int = 1  # K, or fewer when the cells leave a unit less room
    truncate_groups: bool = False  # whether a unit can touch more cells than K at all
    rows_per_group: int = 1  # C
    settings: Mapping[str, float] = field(default_factory=dict)  # metric thresholds
    propensity_units: tuple[int, ...] = ()  # debiased clicks: IPW_UNIT / propensity(position)
    funnel_steps: tuple[str, ...] = ()  # session_funnel: the policy's steps, in order
    # Grouped open dimensions (privacy.policy.open): their keys are the selected values +
    # "other" once `selected`; before, only "other" (the plan charged, not yet run).
    open: tuple[tuple[str, OpenSelection], ...] = ()
    selected: bool = False

    @property
    def delta(self) -> float:
        """The δ this release's selections spend (0 without an open dimension)."""
        return sum(s.delta for _, s in self.open)

    @property
    def accounting(self) -> str:
        """ "pure" (ε) or "zcdp" (rho): the unit of `cost`."""
        return self.cost.accounting


def dimension_keys(policy: Policy, metric: Metric, dim: str) -> tuple[str | int, ...]:
    """The public keys of one dimension: declared values + "other", positions 1..P, types."""
    if dim == "position":
        return tuple(range(1, len(policy.privacy.metrics.click_examination_propensity) + 1))
    if dim == "event_type":
        return tuple(t.value for t in policy.event_types if t in metric.event_types)
    return (*declared_values(policy, dim), OTHER)


def oldest_queryable_day(
    policy: Policy,
    today: date,
    metric: Metric | None = None,
    event_types: Sequence[EventType] | None = None,
) -> date:
    """The first day a query may ask for: older events are gone with their retention.

    For a metric, the shortest retention of the event types it reads (`event_types`, or
    all of the metric's); without one, the longest retention of any collected type (the
    oldest day any query could still use).
    """
    if metric is None:
        types: Sequence[EventType] = policy.event_types
    else:
        types = event_types if event_types is not None else metric.event_types
    kept = [policy.retention.for_type(t) for t in types if t in policy.event_types]
    retention = (min(kept) if metric is not None else max(kept)) if kept else _ONE_DAY
    days = max(retention // _ONE_DAY, 1)
    return today - timedelta(days=days - 1)


def plan_query(
    request: QueryRequest,
    policy: Policy,
    analyst: str,
    today: date,
    selected: Mapping[str, tuple[str, ...]] | None = None,
) -> QueryPlan:
    """Check `request` against the catalogue and `policy`, and compile it (no data read).

    A request grouped by an open dimension is planned twice: without `selected` (its keys
    are "other" alone, its cost includes the selection's), then, once charged, with the
    values the selection released (`selected`, by dimension); the cost is the same.

    Raises `QueryError` for an unknown metric or dimension, a group-by the metric does not
    allow, a bad, empty, expired or future range, a budget in the wrong unit or above the
    per-query cap; its subclass `NotGranted` when the analyst may not use the metric.
    """
    metric = _metric(request.metric, policy, analyst)
    grouped = _group_by(request.group_by, metric)
    check_open_request(request, open_dimensions(policy))
    filters = _filters(request.filters, metric, policy)
    days = _days(request, policy, metric, filters, today)
    opened = {d: s for d, s in open_dimensions(policy).items() if d in grouped}
    chosen = selected or {}
    dims = tuple(
        (
            d,
            (*chosen.get(d, ()), OTHER)
            if d in opened
            else filters.get(d, dimension_keys(policy, metric, d)),
        )
        for d in DIMENSIONS
        if d in grouped
    )
    cell_days = days if DAY in grouped else ()
    _check_compare(request, metric, dims, cell_days)
    _check_totals(request, metric, dims)
    # Before the selection, bounds assume an open dimension shows all it may.
    widest = tuple(
        (
            d,
            keys
            if selected is not None or d not in opened
            else (OTHER,) * (opened[d].max_values + 1),
        )
        for d, keys in dims
    )
    cells = _cells(cell_days, dims)
    bins = metric.value.bins if metric.kind == "median" and metric.value else 1
    if metric.kind == "funnel":
        bins = len(policy.privacy.metrics.funnel.steps) + 1
    most = max(len(cell_days), 1) * math.prod(len(keys) for _, keys in widest) * bins
    if most > MAX_CELLS:
        raise QueryError(
            f"this query has {most} cells (days x dimension values"
            f"{' x bins' if bins > 1 else ''}; an open dimension counts all it may show), "
            f"more than {MAX_CELLS}: shorten the range, "
            "group by fewer dimensions or filter"
        )
    bounds = policy.privacy.contribution
    per_unit = cells_per_unit(policy, len(cell_days), widest)
    groups = min(bounds.max_groups_per_user, per_unit)
    parts = parts_for(metric, policy, filters, groups, bounds.max_rows_per_group, len(cells))
    shares = _SHARES.get(metric.kind, {})
    components = tuple(p.component for p in parts)
    cost = _cost(request, policy, parts, components, shares)
    if opened:
        cost = with_selection_cost(cost, policy, opened)
    return QueryPlan(
        request=request,
        metric=metric,
        cost=cost,
        epochs=_epochs(policy, days[0], days[-1]),
        cells=cells,
        components=components,
        parts=parts,
        shares=shares,
        days=cell_days,
        dimensions=dims,
        filters=tuple((d, keys) for d, keys in filters.items()),
        groups_per_unit=groups,
        truncate_groups=per_unit > bounds.max_groups_per_user,
        rows_per_group=bounds.max_rows_per_group,
        settings={
            "reformulation_similarity_threshold": (
                policy.privacy.metrics.reformulation_similarity_threshold
            ),
            "long_copy_min_span": float(policy.privacy.metrics.long_copy_min_span),
        },
        propensity_units=tuple(
            round(IPW_UNIT / p) for p in policy.privacy.metrics.click_examination_propensity
        ),
        funnel_steps=tuple(policy.privacy.metrics.funnel.steps) if metric.kind == "funnel" else (),
        open=tuple(opened.items()),
        selected=selected is not None,
    )


def _metric(name: str, policy: Policy, analyst: str) -> Metric:
    base = METRICS.get(name)
    if base is None:
        names = ", ".join(m.name for m in metrics_for(policy))
        raise QueryError(f"unknown metric {name!r}; available: {names}")
    reason = metric_unavailable(base, policy)
    if reason is not None:
        raise QueryError(reason)
    if not granted(base, policy, analyst):
        allowed = policy.privacy.analyst_metrics.get(analyst, [])
        raise NotGranted(
            f"metric {name!r} is not granted to {analyst!r} by the policy; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return restricted(base, policy)


def _group_by(group_by: Sequence[str], metric: Metric) -> set[str]:
    allowed = (DAY, *metric.dimensions)
    for dim in group_by:
        if dim not in allowed:
            raise QueryError(
                f"{metric.name} cannot be grouped by {dim!r}; allowed: {', '.join(allowed)}"
            )
    return set(group_by)


def _filters(
    filters: Sequence[tuple[str, tuple[str, ...]]], metric: Metric, policy: Policy
) -> dict[str, tuple[str | int, ...]]:
    found: dict[str, tuple[str | int, ...]] = {}
    for dim, values in filters:
        if dim not in metric.dimensions:
            raise QueryError(
                f"{metric.name} cannot be filtered by {dim!r}; allowed: "
                f"{', '.join(metric.dimensions) or 'none'}"
            )
        keys = dimension_keys(policy, metric, dim)
        by_text = {str(k): k for k in keys}
        unknown = [v for v in values if v not in by_text]
        if unknown:
            raise QueryError(
                f"filters.{dim}: {', '.join(map(repr, unknown))} not declared; "
                f"allowed: {', '.join(map(str, keys))}"
            )
        wanted = {by_text[v] for v in values}
        found[dim] = tuple(k for k in keys if k in wanted)  # the policy's order
    return found


def _days(
    request: QueryRequest,
    policy: Policy,
    metric: Metric,
    filters: Mapping[str, tuple[str | int, ...]],
    today: date,
) -> tuple[date, ...]:
    if request.end < request.start:
        raise QueryError(f'"end" ({request.end}) is before "start" ({request.start})')
    if request.end > today:
        raise QueryError(f'"end" ({request.end}) is in the future: the last day is today ({today})')
    chosen = filters.get("event_type")
    read = [t for t in metric.event_types if chosen is None or t.value in chosen]
    oldest = oldest_queryable_day(policy, today, metric, read)
    if request.start < oldest:
        raise QueryError(
            f'"start" ({request.start}) is beyond the retention of {metric.name}\'s events: '
            f"the oldest day that can be asked for is {oldest}"
        )
    n = (request.end - request.start).days + 1
    return tuple(request.start + timedelta(days=i) for i in range(n))


def _cells(
    days: tuple[date, ...], dims: tuple[tuple[str, tuple[str | int, ...]], ...]
) -> tuple[Mapping[str, str | int], ...]:
    """Day-major, then dimensions in catalogue order: the cell index the SQL computes."""
    cells: list[dict[str, str | int]] = [{DAY: d.isoformat()} for d in days] or [{}]
    for dim, keys in dims:
        cells = [{**c, dim: k} for c in cells for k in keys]
    return tuple(cells)


def _cost(
    request: QueryRequest,
    policy: Policy,
    parts: tuple[Part, ...],
    components: tuple[Component, ...],
    shares: Mapping[str, float],
) -> Cost:
    privacy = policy.privacy
    accounting = privacy.accounting
    unit = privacy.budget_unit
    cap = Cost.of(accounting, privacy.max_per_query)
    if request.target_ci95 is not None:
        # Accuracy first: the smallest budget whose plan gives the counted vector (the
        # denominator of a rate, the count of a mean, the histogram of a median; a sum's
        # only vector) a 95 % half-width of at most the target, in natural units.
        target = next((p for p in parts if p.name not in ("numerator", "sum")), parts[0])
        others = [c for c in components if c.name != target.name]
        try:
            cost = budget_for_halfwidth(
                target.component, accounting, request.target_ci95 * target.divisor, others, shares
            )
        except ValueError as exc:
            raise QueryError(f'"target_ci95": {exc}') from None
        if cost > cap:
            raise QueryError(
                f'"target_ci95" {request.target_ci95:g} needs {unit} {cost.value:g}, more than '
                f"the per-query cap of {privacy.max_per_query:g}: ask for a wider interval"
            )
        return cost
    wrong = "rho" if accounting == "pure" else "epsilon"
    if getattr(request, wrong) is not None:
        raise QueryError(
            f'this policy accounts in {unit} ({accounting}): give "{unit}", not "{wrong}"'
        )
    amount = getattr(request, unit)
    if amount is None:
        raise QueryError(
            f'give the budget to spend as "{unit}" (at most {privacy.max_per_query:g}), '
            'or preview with "target_ci95"'
        )
    if amount > privacy.max_per_query:
        raise QueryError(
            f'"{unit}" {amount:g} is above the per-query cap of {privacy.max_per_query:g}'
        )
    try:
        return Cost.of(accounting, amount)
    except ValueError as exc:
        raise QueryError(f'"{unit}": {exc}') from None


def _epochs(policy: Policy, first: date, last: date) -> tuple[int, ...]:
    """Every salt epoch overlapping [first 00:00, last 24:00) UTC."""
    ids = policy.identifiers
    begin = ids.epoch_of(datetime(first.year, first.month, first.day, tzinfo=UTC))
    end_instant = datetime(last.year, last.month, last.day, tzinfo=UTC) + _ONE_DAY
    end = ids.epoch_of(end_instant - timedelta(microseconds=1))
    return tuple(range(begin, end + 1))
