"""Contract: the query repository runs the engine's aggregation SQL alike on every backend.

The same stored events must give the same bounded aggregates on SQLite and PostgreSQL,
for every kind of metric (counts, distinct users, rates, IPW, means, sums, histograms,
sessions) and for both paths of the K-cells rule (no cut needed, and the ROW_NUMBER cut).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.query import QueryRequest, plan_query
from service.queries.engine import QueryEngine
from service.queries.sql import scaled_sql
from service.store.base import Store


def _events() -> list[tuple[Any, ...]]:
    rows = []
    for u in range(1, 31):
        day = TODAY - timedelta(days=u % 2)
        surface = ("chat", "ide", "beta", None)[u % 4]
        task = ("coding", "qa", None)[u % 3]
        for k in range(u % 13):  # up to 12 rows: some above C = 10
            rows.append(
                event_row(
                    "response_shown",
                    day=day,
                    user=u,
                    session=u * 10 + k % 2,
                    position=1 + k % 6,
                    surface=surface,
                    task_type=task,
                    cohort="control",
                )
            )
        rows += [
            event_row("click_through", day=day, user=u, position=1 + u % 5, surface=surface),
            event_row(
                "task_completion",
                day=day,
                user=u,
                outcome=("success", "failure")[u % 2],
                surface=surface,
                task_type=task,
            ),
            event_row("copy_paste", day=day, user=u, span_length=40 * u, surface=surface),
            event_row("edit", day=day, user=u, edit_ratio=u / 31, task_type=task),
            event_row(
                "dwell",
                day=day,
                user=u,
                dwell_ms=1000 * u,
                scroll_depth=u / 40,
                cohort=("control", "treatment")[u % 2],
                inclusion_prob=0.5,
            ),
            event_row("abandonment", day=day, user=u, session=u * 10, after_ms=5),
        ]
    # One heavy user over every surface x task type: the K-cells cut applies.
    rows += [
        event_row("response_shown", user=777, position=1, surface=s, task_type=t)
        for s in ("chat", "search", "ide", "docs", "beta")
        for t in ("coding", "writing", "qa", "summarization", "analysis", None)
    ]
    return rows


CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("event_count", ["day", "event_type"], {}),
    ("event_count", ["surface", "task_type"], {"filters": {"event_type": ["response_shown"]}}),
    ("active_users", ["day", "surface"], {}),
    ("task_completion_rate", ["surface", "task_type"], {}),
    ("click_through_rate_debiased", ["position"], {"filters": {"surface": ["chat", "other"]}}),
    ("long_copy_rate", ["day"], {}),
    ("copy_span_length", ["surface"], {}),
    ("edit_ratio_median", ["task_type"], {}),
    ("dwell_time", ["cohort"], {}),
    ("dwell_time_total", ["day", "cohort"], {}),
    ("copy_span_length_total", ["surface"], {"filters": {"surface": ["chat", "other"]}}),
    ("abandonment_rate", ["day"], {}),
]


@pytest.mark.parametrize(("metric", "group_by", "extra"), CASES)
def test_every_backend_computes_the_same_bounded_aggregates(
    store: Store,
    backend: str,
    tmp_path: Any,
    metric: str,
    group_by: list[str],
    extra: dict[str, Any],
) -> None:
    pol = policy(contribution={"max_groups_per_user": 24, "max_rows_per_group": 10})
    write(store, _events())
    body = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=1)),
        "end": str(TODAY),
        "group_by": group_by,
        "epsilon": 1.0,
        **extra,
    }
    plan = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)
    got = dict(QueryEngine(store, pol).aggregate(plan).values)
    assert all(len(v) == p.length for p, v in zip(plan.parts, got.values(), strict=True))
    assert any(any(v) for v in got.values())
    if backend == "sqlite":
        return
    # SQLite is the reference: the same events there must give the same numbers.
    reference_store = open_store(tmp_path)
    try:
        write(reference_store, _events())
        expected = dict(QueryEngine(reference_store, pol).aggregate(plan).values)
    finally:
        reference_store.close()
    assert got == expected


@pytest.mark.parametrize(
    ("total", "n", "c"),
    [(2**62 + 1, 2, 1), (2**62 + 3, 3, 2), (2**62 + 5, 11, 10), (2**63 - 1, 5, 4), (7, 3, 2)],
)
def test_scaling_a_unit_down_to_c_rows_is_the_exact_floor_even_near_bigints_end(
    store: Store, total: int, n: int, c: int
) -> None:
    # total x C alone would leave BIGINT: PostgreSQL would refuse the query, SQLite would
    # answer a float; the scaled total is exact and never above the raw total.
    sql = f"SELECT {scaled_sql('t', 'n', c)} FROM (SELECT {total} AS t, {n} AS n) AS u"
    ((scaled,),) = store.queries.aggregate(sql)
    assert type(scaled) is int and scaled == total * c // n
