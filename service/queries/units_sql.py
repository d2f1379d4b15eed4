"""Levels 2 and 3 of the aggregation (service/queries/sql.py): per unit and cell, then
per cell.

A unit (one person pseudonym in one epoch) gives each cell its rows' totals scaled down
to C rows (`scaled_sql`); a unit the query's cells leave with more than K cells keeps K
of them, chosen by a keyed order of its pseudonym and the cell index, never by a value;
then the cells' sums.
"""

from __future__ import annotations

from privacy.query import QueryPlan
from service.queries.dialect import SQLITE, Dialect, Statement

__all__ = ["per_cell", "scaled_sql"]

_MOD = 2_147_483_647  # 2^31 - 1: products of two residues stay below 2^62
_MIX = 1_103_515_245


def per_cell(plan: QueryPlan, bounded: str, rows: str, names: list[str]) -> Statement:
    """Levels 2 and 3: per (unit, cell) bounded totals, K cells kept, then sums per cell."""
    units = (
        f"SELECT epoch, user_ps, cell, {bounded} FROM ({rows}) AS s GROUP BY epoch, user_ps, cell"
    )
    sums = ", ".join(f"CAST(SUM(v_{x}) AS BIGINT)" for x in names)
    if not plan.truncate_groups:
        return Statement(f"SELECT cell, {sums} FROM ({units}) AS u GROUP BY cell", tuple(names))
    # The K cut. Only units with more than K cells lose any, so the keyed ranking (a
    # window: a sort per unit) runs over those units alone; which units they are is
    # decided by their count of cells, and which cells they keep by a keyed order of the
    # pseudonym and the cell index, never by a value.
    k = plan.groups_per_unit
    values = ", ".join(f"u.v_{x}" for x in names)
    x = f"(((u.user_ps & {_MOD}) + CAST(u.cell AS BIGINT) * {_MIX}) % {_MOD})"
    rank = (
        f"ROW_NUMBER() OVER (PARTITION BY u.epoch, u.user_ps ORDER BY ({x} * {x}) % {_MOD}, "
        "u.cell) AS rk"
    )
    same = "h.epoch = u.epoch AND h.user_ps = u.user_ps"
    sql = (
        f"WITH u AS ({units}), "
        f"h AS (SELECT epoch, user_ps FROM u GROUP BY epoch, user_ps HAVING COUNT(*) > {k}), "
        f"kept AS (SELECT u.cell, {values} FROM u WHERE NOT EXISTS (SELECT 1 FROM h WHERE {same}) "
        f"UNION ALL SELECT cell, {', '.join(f'v_{x}' for x in names)} FROM "
        f"(SELECT u.cell, {values}, {rank} FROM u JOIN h ON {same}) AS r WHERE rk <= {k}) "
        f"SELECT cell, {sums} FROM kept GROUP BY cell"
    )
    return Statement(sql, tuple(names))


def scaled_sql(total: str, n: str, c: int, dialect: Dialect | None = None) -> str:
    """A unit's total in a cell, as if it had at most C rows: floor(total x C / n) when n > C.

    Written as (total / n) x C + (total % n) x C / n, which is the same floor for the
    non-negative totals here but never multiplies the unbounded total: total x C could
    leave BIGINT (PostgreSQL refuses, SQLite turns it into a float) on data alone.
    """
    div = (dialect or SQLITE).idiv
    return (
        f"(CASE WHEN {n} > {c} THEN ({div(total, n)}) * {c} + {div(f'({total} % {n}) * {c}', n)} "
        f"ELSE {total} END)"
    )
