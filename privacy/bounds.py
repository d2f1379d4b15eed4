"""Contribution bounds and sensitivity: how much one privacy unit can move an aggregate.

The privacy unit is one user pseudonym within one salt epoch. Before anything is summed,
the query engine bounds each unit's contribution to a query:

- at most `groups` cells (the policy's K, or fewer when the query's public cells leave a
  unit no more room), chosen by a keyed order of the cell keys, never by the values;
- at most `rows` rows per cell (the policy's C): a unit with n > C rows in a cell counts as
  C rows, its own totals scaled by C / n (rounded down);
- every row's integer contribution at most `row_max`: the sampling weight capped at the
  policy's largest (1 / smallest sampling rate), in fixed-point `weight_unit`s, times the
  clamped value.

The sensitivities follow from those three numbers alone, never from the data:
L1 = groups x rows x row_max and L2 = sqrt(groups) x rows x row_max, rounded up to a float
whose exact square is not below it (a unit changes at most `groups` entries of the vector,
each by at most rows x row_max; a histogram spreads one cell's rows over bins, which only
lowers both norms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from fractions import Fraction

from privacy.events import EventType
from privacy.mechanisms import Component
from privacy.metrics import Metric
from privacy.policy import Policy

__all__ = [
    "IPW_UNIT",
    "WEIGHT_UNIT",
    "Bound",
    "Part",
    "Weight",
    "cells_per_unit",
    "parts_for",
    "sampling_weight",
    "sqrt_up",
]

WEIGHT_UNIT = 1000
"""Fixed-point units of one sampling weight when an event type is sampled (1/1000 event)."""

IPW_UNIT = 1000
"""Fixed-point units of an inverse examination propensity (debiased click-through)."""

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Weight:
    """Sampling weights of one component, as integers.

    A stored row with inclusion probability p weighs round(unit / p) capped at `max`:
    `unit` is 1 when the policy samples none of the component's event types (every row
    weighs exactly 1), else `WEIGHT_UNIT`. The cap comes from the policy's smallest rate, so
    a row sampled under an older, stricter policy cannot exceed the sensitivity.
    """

    unit: int
    max: int

    @property
    def sampled(self) -> bool:
        """Whether the weights differ from 1 (some event type is sampled)."""
        return self.unit != 1


def sampling_weight(policy: Policy, event_types: tuple[EventType, ...]) -> Weight:
    """The integer weights for rows of `event_types` under `policy`'s sampling rates."""
    rates = [policy.sampling.rate(t) for t in event_types]
    smallest = min(rates, default=1.0)
    if smallest >= 1.0:
        return Weight(1, 1)
    return Weight(WEIGHT_UNIT, round(WEIGHT_UNIT / smallest))


def sqrt_up(n: int) -> float:
    """The smallest float whose exact square is at least ``n`` (a sensitivity rounded up)."""
    root = math.sqrt(n)
    while Fraction(root) ** 2 < n:
        root = math.nextafter(root, math.inf)
    return root


@dataclass(frozen=True)
class Bound:
    """One component's contribution bound per privacy unit, and its sensitivities."""

    groups: int  # cells (vector entries of one cell) one unit may touch
    rows: int  # rows (or sessions) per cell
    row_max: int  # largest integer contribution of one row

    def __post_init__(self) -> None:
        for name in ("groups", "rows", "row_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1: this is probably a bug")

    @property
    def per_cell(self) -> int:
        """The most one unit can add to one cell."""
        return self.rows * self.row_max

    @property
    def l1(self) -> int:
        """L1 sensitivity of the component's vector: groups x rows x row_max."""
        return self.groups * self.per_cell

    @property
    def l2(self) -> float:
        """L2 sensitivity of the component's vector: sqrt(groups) x rows x row_max, rounded up.

        The product is usually irrational; the float returned is never below it (its exact
        square is at least groups x per_cell²), so the noise fitted to it is never too small.
        """
        return sqrt_up(self.groups * self.per_cell**2)

    def component(self, name: str, length: int) -> Component:
        """The mechanisms' description of a vector of `length` entries under this bound."""
        return Component(name, length, self.l1, self.l2)


@dataclass(frozen=True)
class Part:
    """How one noised vector is made: its contribution bound and its fixed-point units.

    A released entry divided by `divisor` is in the metric's natural unit (events,
    users, sessions, or value x events for sums).
    """

    name: str
    bound: Bound
    weight: Weight
    divisor: int
    length: int
    sampled: tuple[tuple[str, float], ...] = ()  # (event type, policy rate) of sampled types

    @property
    def component(self) -> Component:
        """The vector as `privacy.mechanisms` noises it."""
        return self.bound.component(self.name, self.length)


def cells_per_unit(
    policy: Policy, n_days: int, dims: tuple[tuple[str, tuple[str | int, ...]], ...]
) -> int:
    """The most cells one privacy unit (user x epoch) can touch: public, from the shape.

    `n_days` is 0 when the query is not grouped by day; `dims` are the grouped
    dimensions with their keys.
    """
    span = 1
    if n_days:
        rotation = policy.identifiers.salt_rotation
        # An epoch of N whole days covers exactly N UTC days; a shorter one lies in one day.
        span = min(n_days, max(rotation // _DAY, 1))
    return span * math.prod(len(keys) for _, keys in dims)


def parts_for(
    metric: Metric,
    policy: Policy,
    filters: Mapping[str, tuple[str | int, ...]],
    groups: int,
    rows: int,
    n_cells: int,
) -> tuple[Part, ...]:
    """The vectors of one metric, with bounds derived from K, C, weights and value bounds.

    `groups` is K (or fewer, see `cells_per_unit`), `rows` is C; `filters` may narrow
    the event types `event_count` reads, and so its largest weight.
    """

    def part(name: str, types: tuple[EventType, ...], value_max: int = 1, factor: int = 1) -> Part:
        # One row adds at most (largest weight) x (largest value), both as integers; an
        # entry divided by (weight unit) x (value factor) is back in natural units.
        weight = sampling_weight(policy, types)
        bound = Bound(groups, rows, weight.max * value_max)
        rates = tuple((t.value, policy.sampling.rate(t)) for t in types)
        sampled = tuple((t, r) for t, r in rates if r < 1.0)
        return Part(name, bound, weight, weight.unit * factor, n_cells, sampled)

    kind = metric.kind
    if kind == "distinct":
        # A unit counts once in each cell it appears in, whatever its weight.
        return (Part("users", Bound(groups, 1, 1), Weight(1, 1), 1, n_cells),)
    if kind == "count":
        chosen = filters.get("event_type")
        types = tuple(t for t in policy.event_types if chosen is None or t.value in chosen)
        return (part("count", types),)
    if kind == "rate":
        numerator_type, denominator_type = metric.event_types
        if metric.name == "click_through_rate_debiased":
            propensities = policy.privacy.metrics.click_examination_propensity
            worst = max(round(IPW_UNIT / p) for p in propensities)
            numerator = part("numerator", (numerator_type,), worst, IPW_UNIT)
        else:
            numerator = part("numerator", (numerator_type,))
        return (numerator, part("denominator", (denominator_type,)))
    if kind == "funnel":
        # One histogram per cell: bin j holds the sessions that reached exactly j steps.
        levels = len(policy.privacy.metrics.funnel.steps) + 1
        funnel = part("levels", metric.event_types)
        return (replace(funnel, length=n_cells * levels),)
    value = metric.value
    if value is None:
        raise AssertionError(f"{metric.name} declares no value: this is a bug in the catalogue")
    if kind == "mean":
        return (
            part("sum", metric.event_types, value.high, value.factor),
            part("count", metric.event_types),
        )
    if kind == "sum":
        # The total alone: K x C x (largest weight) x (largest |value|), like a mean's sum.
        return (
            part("sum", metric.event_types, max(abs(value.low), abs(value.high)), value.factor),
        )
    histogram = part("histogram", metric.event_types)
    return (replace(histogram, length=n_cells * value.bins),)
