"""Partition selection for open dimensions: the counting SQL and the selection step.

A query grouped by an open dimension (privacy.policy.open) is charged first, like any
other; then, before its aggregates, one statement counts the distinct privacy units
(epoch, user pseudonym) per stored value of the dimension among the events the metric
reads in the range, each unit counted in at most L values (`max_values_per_user`: its
first L values in label order, a choice that reads only the unit's own labels). OpenDP's
threshold mechanism (privacy.selection) noises those counts and releases the values above
`min_users`; the query is then planned again with them as its keys, every other stored
value pooled into "other". Only "other" and values the selection released leave.
"""

from __future__ import annotations

from collections.abc import Mapping

from privacy.budget import Cost
from privacy.events import EVENT_TYPE_CODES, OTHER
from privacy.policy.open import OpenSelection
from privacy.query import QueryPlan
from privacy.selection import plan_selection, select
from service.queries.sql import Dialect, cell_index_sql

__all__ = ["select_values", "selection_sql"]

_SECONDS_PER_DAY = 86_400


def selection_sql(
    plan: QueryPlan,
    dim: str,
    selection: OpenSelection,
    declared: Mapping[str, tuple[str, ...]],
    dialect: Dialect,
) -> str:
    """Rows (value, units): distinct units per stored value of `dim`, L values per unit."""
    codes = sorted({EVENT_TYPE_CODES[t] for t in plan.metric.event_types})
    start = (plan.request.start.toordinal() - 719_163) * _SECONDS_PER_DAY
    end = (plan.request.end.toordinal() - 719_163 + 1) * _SECONDS_PER_DAY
    # The filters of the other dimensions (an open dimension cannot be filtered).
    _, filtered = cell_index_sql(plan, declared, dialect)
    where = [
        f"epoch BETWEEN {plan.epochs[0]} AND {plan.epochs[-1]}",
        f"event_type IN ({', '.join(map(str, codes))})",
        f"ts >= {start} AND ts < {end}",
        "user_ps IS NOT NULL",
        f"{dim} IS NOT NULL",
        f"{dim} <> '{OTHER}'",
        *filtered,
    ]
    distinct = (
        f"SELECT DISTINCT epoch, user_ps, {dim} AS value FROM {dialect.events} "
        f"WHERE {' AND '.join(where)}"
    )
    ranked = (
        "SELECT value, ROW_NUMBER() OVER (PARTITION BY epoch, user_ps ORDER BY value) AS rk "
        f"FROM ({distinct}) AS d"
    )
    return (
        f"SELECT value, COUNT(*) FROM ({ranked}) AS r "
        f"WHERE rk <= {selection.max_values_per_user} GROUP BY value"
    )


def select_values(
    plan: QueryPlan, counts: Mapping[str, Mapping[str, int]]
) -> dict[str, tuple[str, ...]]:
    """The released values of each open dimension of `plan`, from the exact unit counts.

    `counts` maps each open dimension to its value -> distinct units (what
    `selection_sql` returned). Values come back by descending noisy count.
    """
    chosen: dict[str, tuple[str, ...]] = {}
    for dim, sel in plan.open:
        planned = plan_selection(
            Cost.rho(sel.rho), sel.delta, sel.max_values_per_user, sel.min_users
        )
        chosen[dim] = tuple(select(planned, counts.get(dim, {}), sel.max_values))
    return chosen
