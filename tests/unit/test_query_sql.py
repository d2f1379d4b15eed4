"""The bounded aggregation SQL, on a real SQLite file: what each metric counts, and how.

Each test writes a handful of stored events through the store and reads the true
(pre-noise) aggregates with `QueryEngine.aggregate`; none of them looks at noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.policy import Policy
from privacy.query import QueryPlan, QueryRequest, plan_query
from service.queries.engine import QueryEngine
from service.queries.sql import POSTGRES, SQLITE, aggregate_sql
from service.store.sqlite import SQLiteStore

YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path)
    yield s
    s.close()


def plan(pol: Policy, metric: str, *group_by: str, start: Any = TODAY, **extra: Any) -> QueryPlan:
    body = {
        "metric": metric,
        "start": str(start),
        "end": str(TODAY),
        "group_by": list(group_by),
        "epsilon": 1.0,
        **extra,
    }
    return plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)


def aggregates(store: SQLiteStore, p: QueryPlan, pol: Policy | None = None) -> dict[str, list[int]]:
    """The true aggregates, in fixed-point units (see each part's divisor)."""
    return dict(QueryEngine(store, pol or policy()).aggregate(p).values)


def natural(store: SQLiteStore, p: QueryPlan) -> dict[str, list[float]]:
    """The true aggregates in natural units (events, users, value x events)."""
    divisors = {part.name: part.divisor for part in p.parts}
    return {k: [x / divisors[k] for x in v] for k, v in aggregates(store, p).items()}


def by_key(p: QueryPlan, vector: list[int], key: str) -> dict[Any, int]:
    return {cell[key]: v for cell, v in zip(p.cells, vector, strict=True)}


# --- what each metric counts ----------------------------------------------------------


def test_event_count_counts_events_per_type_and_day(store: SQLiteStore) -> None:
    write(
        store,
        [
            event_row("response_shown", day=YESTERDAY, position=1),
            event_row("response_shown", position=1),
            event_row("response_shown", position=2, user=2),
            event_row("edit", edit_ratio=0.5),
        ],
    )
    p = plan(policy(), "event_count", "day", "event_type", start=YESTERDAY)
    counts = {
        (c["day"], c["event_type"]): v
        for c, v in zip(p.cells, natural(store, p)["count"], strict=True)
    }
    assert counts[(str(YESTERDAY), "response_shown")] == 1
    assert counts[(str(TODAY), "response_shown")] == 2
    assert counts[(str(TODAY), "edit")] == 1
    assert sum(counts.values()) == 4


def test_active_users_counts_each_pseudonym_once_per_cell(store: SQLiteStore) -> None:
    write(
        store,
        [event_row("response_shown", user=1, position=1, surface="chat") for _ in range(5)]
        + [event_row("edit", user=1, edit_ratio=0.1, surface="ide")]
        + [event_row("edit", user=2, edit_ratio=0.1, surface="chat")],
    )
    p = plan(policy(), "active_users", "surface")
    users = by_key(p, aggregates(store, p)["users"], "surface")
    assert users == {"chat": 2, "search": 0, "ide": 1, "docs": 0, "other": 0}


def test_task_completion_rate_counts_successes_over_responses_shown(store: SQLiteStore) -> None:
    write(
        store,
        [event_row("response_shown", user=u, position=1) for u in (1, 2, 3)]
        + [event_row("task_completion", user=1, outcome="success")]
        + [event_row("task_completion", user=2, outcome="failure")],
    )
    p = plan(policy(), "task_completion_rate")
    assert aggregates(store, p) == {"numerator": [1], "denominator": [3]}


def test_reformulation_rate_counts_only_similarity_at_or_above_the_threshold(
    store: SQLiteStore,
) -> None:
    write(
        store,
        [event_row("response_shown", position=1)]
        + [event_row("reformulation", similarity=s) for s in (0.2, 0.59, 0.6, 0.9)],
    )
    p = plan(policy(), "reformulation_rate")  # threshold 0.6 in the default policy
    assert aggregates(store, p)["numerator"] == [2]


def test_long_copy_rate_counts_spans_of_at_least_the_minimum(store: SQLiteStore) -> None:
    write(
        store,
        [event_row("response_shown", position=1)]
        + [event_row("copy_paste", span_length=n) for n in (10, 199, 200, 5000)],
    )
    p = plan(policy(), "long_copy_rate")  # long_copy_min_span 200
    assert aggregates(store, p)["numerator"] == [2]


def test_click_through_rate_is_per_position_and_ignores_positions_beyond_p(
    store: SQLiteStore,
) -> None:
    rows = [
        event_row("response_shown", user=u, position=pos) for u in range(1, 4) for pos in (1, 2, 7)
    ]
    rows += [event_row("click_through", user=1, position=1), event_row("click_through", position=7)]
    write(store, rows)
    p = plan(policy(), "click_through_rate", "position")
    values = aggregates(store, p)
    assert by_key(p, values["numerator"], "position") == {1: 1, 2: 0, 3: 0, 4: 0, 5: 0}
    assert by_key(p, values["denominator"], "position") == {1: 3, 2: 3, 3: 0, 4: 0, 5: 0}


def test_debiased_clicks_weigh_the_inverse_propensity_of_their_position(
    store: SQLiteStore,
) -> None:
    write(
        store,
        [
            event_row("click_through", user=1, position=1),
            event_row("click_through", user=2, position=2),
        ],
    )
    p = plan(policy(), "click_through_rate_debiased", "position")
    numerator = by_key(p, aggregates(store, p)["numerator"], "position")
    # Propensities 1.0 and 0.7: one click at position 2 counts 1 / 0.7 (in 1/1000 units).
    assert numerator[1] == 1000
    assert numerator[2] == round(1000 / 0.7)
    assert p.parts[0].divisor == 1000


def test_means_sum_clamped_values_and_count_events(store: SQLiteStore) -> None:
    write(
        store,
        [
            event_row("copy_paste", span_length=100),
            event_row("copy_paste", span_length=9_000, user=2),  # clamped to 5000
        ],
    )
    p = plan(policy(), "copy_span_length")
    assert aggregates(store, p) == {"sum": [5100], "count": [2]}


def test_edit_ratio_is_summed_in_basis_points(store: SQLiteStore) -> None:
    write(store, [event_row("edit", edit_ratio=0.25), event_row("edit", edit_ratio=0.5, user=2)])
    p = plan(policy(), "edit_ratio")
    assert aggregates(store, p) == {"sum": [7500], "count": [2]}
    assert p.parts[0].divisor == 10_000


def test_medians_count_events_per_public_bin(store: SQLiteStore) -> None:
    write(
        store,
        [
            event_row("edit", user=1, edit_ratio=0.01),
            event_row("edit", user=2, edit_ratio=0.07),
            event_row("edit", user=3, edit_ratio=1.0),
        ],
    )
    p = plan(policy(), "edit_ratio_median")
    histogram = aggregates(store, p)["histogram"]
    assert len(histogram) == 20  # bins of 0.05
    assert histogram[0] == 1 and histogram[1] == 1 and histogram[19] == 1
    assert sum(histogram) == 3


def test_abandonment_rate_counts_sessions_not_events(store: SQLiteStore) -> None:
    write(
        store,
        [event_row("response_shown", user=1, session=s, position=1) for s in (1, 1, 2, 3)]
        + [event_row("abandonment", user=1, session=1, after_ms=10) for _ in range(3)]
        + [event_row("abandonment", user=1, session=2, after_ms=10)],
    )
    p = plan(policy(), "abandonment_rate")
    assert aggregates(store, p) == {"numerator": [2], "denominator": [3]}


# --- sampling weights -------------------------------------------------------------------


def test_sampled_events_weigh_their_inverse_inclusion_probability(store: SQLiteStore) -> None:
    pol = policy()  # dwell sampled at 0.5
    write(store, [event_row("dwell", dwell_ms=1000, scroll_depth=0.5, inclusion_prob=0.5)])
    p = plan(pol, "dwell_time")
    assert aggregates(store, p, pol) == {"sum": [2000 * 1000], "count": [2000]}
    assert p.parts[1].divisor == 1000  # the count is in 1/1000 events


def test_a_weight_above_the_policy_maximum_is_capped(store: SQLiteStore) -> None:
    # Stored at p = 0.1 (an older, stricter policy); this policy's smallest rate is 0.5.
    write(store, [event_row("dwell", dwell_ms=1000, scroll_depth=0.5, inclusion_prob=0.1)])
    p = plan(policy(), "dwell_time")
    assert aggregates(store, p)["count"] == [2000]


# --- contribution bounds ----------------------------------------------------------------


def test_rows_beyond_c_are_scaled_down_to_c(store: SQLiteStore) -> None:
    pol = policy()  # C = 10
    write(store, [event_row("copy_paste", span_length=n) for n in [100] * 20 + [300] * 20])
    p = plan(pol, "copy_span_length")
    # 40 rows with mean 200: counted as 10 rows with the same mean.
    assert aggregates(store, p, pol) == {"sum": [2000], "count": [10]}


def test_a_unit_touches_at_most_k_cells(store: SQLiteStore) -> None:
    pol = policy(contribution={"max_groups_per_user": 3, "max_rows_per_group": 10})
    rows = [
        event_row("response_shown", user=7, position=1, surface=s, task_type=t)
        for s in ("chat", "search", "ide")
        for t in ("coding", "writing", "qa")
    ]
    write(store, rows)
    p = plan(pol, "event_count", "surface", "task_type", filters={"event_type": ["response_shown"]})
    assert p.truncate_groups and p.groups_per_unit == 3
    counts = aggregates(store, p, pol)["count"]
    assert sum(counts) == 3 and max(counts) == 1


def test_the_k_cells_kept_do_not_depend_on_the_values(tmp_path: Path) -> None:
    pol = policy(contribution={"max_groups_per_user": 2, "max_rows_per_group": 10})
    kept = []
    for i, span in enumerate((10, 4000)):
        s = open_store(tmp_path / str(i))
        write(
            s,
            [
                event_row("copy_paste", user=7, span_length=span, surface=surface)
                for surface in ("chat", "search", "ide", "docs")
            ],
        )
        p = plan(pol, "copy_span_length", "surface")
        counts = aggregates(s, p, pol)["count"]
        kept.append([c > 0 for c in counts])
        s.close()
    assert kept[0] == kept[1] and sum(kept[0]) == 2


def test_no_truncation_step_when_the_cells_leave_no_room_for_more_than_k() -> None:
    p = plan(policy(), "event_count", "day", "surface", start=TODAY - timedelta(days=6))
    assert p.groups_per_unit == 5 and not p.truncate_groups  # one day x five surfaces
    assert "ROW_NUMBER" not in aggregate_sql(p, {}, SQLITE).sql


# --- public keys ------------------------------------------------------------------------


def test_a_label_the_policy_does_not_declare_is_counted_under_other(store: SQLiteStore) -> None:
    # Written straight to the store, as if an older policy had declared "beta".
    write(
        store,
        [
            event_row("edit", edit_ratio=0.1, surface="beta"),
            event_row("edit", edit_ratio=0.1, surface=None, user=2),
            event_row("edit", edit_ratio=0.1, surface="chat", user=3),
        ],
    )
    p = plan(policy(), "event_count", "surface")
    assert [c["surface"] for c in p.cells] == ["chat", "search", "ide", "docs", "other"]
    assert by_key(p, natural(store, p)["count"], "surface") == {
        "chat": 1,
        "search": 0,
        "ide": 0,
        "docs": 0,
        "other": 2,
    }


def test_filters_keep_only_the_named_keys(store: SQLiteStore) -> None:
    write(
        store,
        [
            event_row("edit", edit_ratio=0.1, surface=s, user=i)
            for i, s in enumerate(("chat", "ide", "beta", None))
        ],
    )
    p = plan(policy(), "event_count", "surface", filters={"surface": ["ide", "other"]})
    assert [c["surface"] for c in p.cells] == ["ide", "other"]
    assert natural(store, p)["count"] == [1, 2]
    filtered_only = plan(policy(), "event_count", filters={"surface": ["chat"]})
    assert natural(store, filtered_only)["count"] == [1]


def test_events_outside_the_range_are_not_counted(store: SQLiteStore) -> None:
    write(
        store,
        [
            event_row("edit", edit_ratio=0.1, day=TODAY - timedelta(days=2)),
            event_row("edit", edit_ratio=0.1, day=TODAY),
        ],
    )
    p = plan(policy(), "event_count", start=YESTERDAY)
    assert natural(store, p)["count"] == [1]


def test_the_postgresql_sql_differs_only_in_the_from_clause() -> None:
    p = plan(policy(), "task_completion_rate", "day", "surface", "task_type")
    sqlite_sql = aggregate_sql(p, {"surface": ("chat",)}, SQLITE).sql
    postgres_sql = aggregate_sql(p, {"surface": ("chat",)}, POSTGRES).sql
    assert postgres_sql == sqlite_sql.replace(" INDEXED BY events_epoch_type", "")
    for sqlite_only in ("IIF(", "MIN(", "MAX(", "||", "GLOB", "INSTR("):
        assert sqlite_only not in postgres_sql
