"""The bounded aggregation of `session_funnel` as one SQL statement, on every engine.

Same three levels as every metric (service/queries/sql.py), with one more step at the
bottom:

1. *rows*: the response_shown and step events of the range, each with its cell index,
   its integer weight and a 0/1 flag per step (event type and the step's conditions:
   labels the event model declares, nothing else);
2. *the order*: per (epoch, user, session, cell), t0 = the first response_shown, and
   t_k = the first event of step k at or after t_(k-1) — one window MIN per step, so
   a step counts only once every earlier one happened (ties in the stored, coarsened
   time count as in order); the session's bin is the number of steps reached;
3. *units and cells*: per (epoch, user, cell) the weighted sessions reaching at least k
   steps, scaled to C sessions when a person has more (the same factor C / n for every
   k, rounded down), differenced into bins; K cells kept; then the sums per cell and bin.
   A session weighs its response_shown's weight (the denominator's event).

Only window MIN over a partition, CASE and integer arithmetic: SQLite, PostgreSQL,
DuckDB and Spark run the same statement (the Dialect decides integer division).
"""

from __future__ import annotations

from collections.abc import Mapping

from privacy.events import EVENT_TYPE_CODES, EventType
from privacy.policy.funnel import parse_step
from privacy.query import QueryPlan
from service.queries.dialect import Dialect, Statement
from service.queries.sql import _lit, _unix_day, _weight_sql, cell_index_sql
from service.queries.units_sql import per_cell
from service.queries.units_sql import scaled_sql as _scaled

__all__ = ["funnel_sql"]

_SECONDS_PER_DAY = 86_400
_SESSION = "PARTITION BY epoch, user_ps, session_ps, cell"


def _flag(step: str) -> str:
    parsed = parse_step(step)
    terms = [f"event_type = {EVENT_TYPE_CODES[parsed.event_type]}"]
    terms += [f"{field} = {_lit(value)}" for field, value in parsed.where]
    return f"CASE WHEN {' AND '.join(terms)} THEN 1 ELSE 0 END"


def funnel_sql(
    plan: QueryPlan, declared: Mapping[str, tuple[str, ...]], dialect: Dialect
) -> Statement:
    """The bounded per-cell histograms of a funnel plan: rows (cell, b0, ..., bN)."""
    steps = plan.funnel_steps
    if not steps:
        raise AssertionError("a funnel plan without steps: this is a bug")
    cell, cell_where = cell_index_sql(plan, declared, dialect)
    start = _unix_day(plan.request.start) * _SECONDS_PER_DAY
    end = (_unix_day(plan.request.end) + 1) * _SECONDS_PER_DAY
    codes = sorted(
        {EVENT_TYPE_CODES[EventType.RESPONSE_SHOWN]}
        | {EVENT_TYPE_CODES[parse_step(s).event_type] for s in steps}
    )
    where = [
        f"epoch BETWEEN {plan.epochs[0]} AND {plan.epochs[-1]}",
        f"event_type IN ({', '.join(map(str, codes))})",
        f"ts >= {start} AND ts < {end}",
        "user_ps IS NOT NULL",
        "session_ps IS NOT NULL",
        *cell_where,
    ]
    shown = EVENT_TYPE_CODES[EventType.RESPONSE_SHOWN]
    flags = ", ".join(f"{_flag(s)} AS f{k}" for k, s in enumerate(steps, start=1))
    weight = _weight_sql(plan.parts[0].weight)
    rows = (
        f"SELECT epoch, user_ps, session_ps, {cell} AS cell, ts, {weight} AS w, "
        f"CASE WHEN event_type = {shown} THEN 1 ELSE 0 END AS f0, {flags} "
        f"FROM {dialect.events} WHERE {' AND '.join(where)}"
    )
    ordered = (
        f"SELECT *, MIN(CASE WHEN f0 = 1 THEN ts END) OVER ({_SESSION}) AS t0 FROM ({rows}) AS r0"
    )
    for k in range(1, len(steps) + 1):
        ordered = (
            f"SELECT *, MIN(CASE WHEN f{k} = 1 AND ts >= t{k - 1} THEN ts END) "
            f"OVER ({_SESSION}) AS t{k} FROM ({ordered}) AS r{k}"
        )
    depth = " ".join(f"WHEN MAX(t{k}) IS NOT NULL THEN {k}" for k in range(len(steps), 0, -1))
    sessions = (
        f"SELECT epoch, user_ps, cell, MAX(CASE WHEN f0 = 1 THEN w END) AS w, "
        f"CASE {depth} ELSE 0 END AS bin "
        f"FROM ({ordered}) AS o WHERE t0 IS NOT NULL GROUP BY epoch, user_ps, session_ps, cell"
    )
    names = [f"b{j}" for j in range(len(steps) + 1)]
    # The sessions reaching at least k steps, scaled to C sessions (floors of one
    # monotone sum), then bin j = reached(j) - reached(j + 1): never negative, and the
    # bins add up to the person's bounded sessions exactly, as abandonment_rate's
    # denominator does (scaling each bin on its own would lose up to a session per bin).
    reached = [
        _scaled(
            f"CAST(SUM(CASE WHEN bin >= {k} THEN w ELSE 0 END) AS BIGINT)",
            "COUNT(*)",
            plan.rows_per_group,
            dialect,
        )
        for k in range(len(names))
    ]
    bounded = ", ".join(
        (f"{reached[j]} - {reached[j + 1]}" if j + 1 < len(names) else reached[j]) + f" AS v_{name}"
        for j, name in enumerate(names)
    )
    return per_cell(plan, bounded, sessions, names)
