"""Validation and planning: public keys, contribution bounds, sensitivities and cost.

Planning never touches data: every test here runs without a store.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import Any

import pytest
from queries_data import TODAY, policy

from privacy.budget import Cost
from privacy.mechanisms import halfwidth_for
from privacy.metrics import METRICS
from privacy.policy import metrics_for
from privacy.query import NotGranted, QueryError, QueryRequest, oldest_queryable_day, plan_query


def body(metric: str = "event_count", **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "start": str(TODAY), "end": str(TODAY), "epsilon": 0.5, **extra}


def plan(b: dict[str, Any], pol: Any = None, analyst: str = "analyst") -> Any:
    return plan_query(QueryRequest.from_json(b), pol or policy(), analyst, TODAY)


def refused(b: dict[str, Any], pol: Any = None, analyst: str = "analyst") -> QueryError:
    with pytest.raises(QueryError) as caught:
        plan(b, pol, analyst)
    return caught.value


# --- the request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"start": "2026-13-01"}, '"start"'),
        ({"end": "yesterday"}, '"end"'),
        ({"group_by": "day"}, '"group_by"'),
        ({"group_by": ["day", "day"]}, '"group_by"'),
        ({"filters": {"surface": "chat"}}, '"filters.surface"'),
        ({"epsilon": -1}, '"epsilon"'),
        ({"epsilon": True}, '"epsilon"'),
        ({"rho": 0.1}, '"rho"'),
        ({"colour": "blue"}, "colour"),
        ({"metric": ""}, '"metric"'),
    ],
)
def test_a_malformed_request_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as caught:
        QueryRequest.from_json(body(**change))
    assert field in str(caught.value)
    assert not isinstance(caught.value, NotGranted)


def test_the_normalized_request_ignores_the_order_of_group_by_and_filters() -> None:
    a = QueryRequest.from_json(
        body(
            group_by=["surface", "day"], filters={"surface": ["ide", "chat"], "cohort": ["control"]}
        )
    )
    b = QueryRequest.from_json(
        body(
            group_by=["day", "surface"], filters={"cohort": ["control"], "surface": ["chat", "ide"]}
        )
    )
    assert a.normalized() == b.normalized()
    assert json.loads(a.normalized())["group_by"] == ["day", "surface"]
    assert a.normalized() != QueryRequest.from_json(body(epsilon=0.6)).normalized()


# --- what may be asked ------------------------------------------------------------------


def test_an_unknown_metric_lists_the_available_ones() -> None:
    error = refused(body("click_rate"))
    assert "click_through_rate" in str(error) and not isinstance(error, NotGranted)


def test_a_group_by_the_metric_does_not_allow_says_what_is_allowed() -> None:
    error = refused(body("task_completion_rate", group_by=["position"]))
    assert "allowed: day, surface, task_type, cohort, model" in str(error)


@pytest.mark.parametrize("metric", ["dwell_time", "scroll_depth_median"])
def test_cohort_level_metrics_group_by_day_and_cohort_only(metric: str) -> None:
    assert plan(body(metric, group_by=["day", "cohort"])).cells
    error = refused(body(metric, group_by=["surface"]))
    assert "allowed: day, cohort" in str(error)
    assert "cohort" in str(refused(body(metric, filters={"surface": ["chat"]})))


def test_a_metric_not_granted_to_the_analyst_is_forbidden() -> None:
    strict = policy("strict")
    error = refused(body("edit_ratio", rho=0.01, epsilon=None), strict, "contractor")
    assert isinstance(error, NotGranted)
    assert "task_completion_rate" in str(error)
    assert plan(body("abandonment_rate", rho=0.01, epsilon=None), strict, "contractor")


def test_abandonment_needs_session_pseudonyms() -> None:
    dropped = policy(
        identifiers={
            "salt_rotation": "1d",
            "salt_retention": "30d",
            "fields": {"session_id": "drop"},
        }
    )
    assert "abandonment_rate" not in [m.name for m in metrics_for(dropped)]
    assert "session_id" in str(refused(body("abandonment_rate"), dropped))


def test_a_filter_value_must_be_declared() -> None:
    error = refused(body(filters={"surface": ["beta"]}))
    assert "allowed: chat, search, ide, docs, other" in str(error)


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        (TODAY, TODAY - timedelta(days=1), "before"),
        (TODAY, TODAY + timedelta(days=1), "future"),
        (TODAY - timedelta(days=90), TODAY, "retention"),
    ],
)
def test_a_bad_range_is_refused(start: date, end: date, words: str) -> None:
    assert words in str(refused(body(start=str(start), end=str(end))))


def test_the_oldest_day_follows_the_shortest_retention_of_the_metric() -> None:
    pol = policy()  # events 90 days, dwell 30 days
    assert oldest_queryable_day(pol, TODAY, METRICS["edit_ratio"]) == TODAY - timedelta(days=89)
    assert oldest_queryable_day(pol, TODAY, METRICS["dwell_time"]) == TODAY - timedelta(days=29)
    assert oldest_queryable_day(pol, TODAY) == TODAY - timedelta(days=89)


def test_a_budget_above_the_per_query_cap_is_refused() -> None:
    assert "cap" in str(refused(body(epsilon=1.5)))


def test_a_budget_in_the_wrong_unit_is_refused() -> None:
    error = refused(body(), policy("strict"))
    assert '"rho"' in str(error)
    assert '"epsilon"' in str(refused(body(epsilon=None, rho=0.1)))


# --- public keys ------------------------------------------------------------------------


def test_cells_are_every_day_times_every_declared_value_and_other() -> None:
    p = plan(body(start=str(TODAY - timedelta(days=2)), group_by=["surface", "day"]))
    assert len(p.cells) == 3 * 5
    assert p.cells[0] == {"day": str(TODAY - timedelta(days=2)), "surface": "chat"}
    assert p.cells[4] == {"day": str(TODAY - timedelta(days=2)), "surface": "other"}
    assert p.cells[-1] == {"day": str(TODAY), "surface": "other"}


def test_positions_are_one_to_the_number_of_declared_propensities() -> None:
    p = plan(body("click_through_rate", group_by=["position"]))
    assert [c["position"] for c in p.cells] == [1, 2, 3, 4, 5]
    strict = plan(
        body("click_through_rate", group_by=["position"], epsilon=None, rho=0.01), policy("strict")
    )
    assert [c["position"] for c in strict.cells] == [1, 2, 3]


def test_event_types_are_those_the_policy_collects() -> None:
    p = plan(body(group_by=["event_type"]))
    assert [c["event_type"] for c in p.cells] == [
        "response_shown",
        "click_through",
        "reformulation",
        "copy_paste",
        "edit",
        "dwell",
        "abandonment",
        "task_completion",
    ]


def test_no_group_by_is_one_cell() -> None:
    assert plan(body()).cells == ({},)


def test_every_epoch_of_the_range_is_charged() -> None:
    p = plan(body(start=str(TODAY - timedelta(days=3))))
    first = (TODAY - timedelta(days=3) - date(1970, 1, 1)).days
    assert p.epochs == (first, first + 1, first + 2, first + 3)


# --- bounds and sensitivity ---------------------------------------------------------------


def test_sensitivity_is_k_times_c_times_the_largest_weight() -> None:
    pol = policy()  # K 24, C 10, dwell sampled at 0.5
    p = plan(body("event_count", group_by=["day", "surface", "task_type"]), pol)
    (count,) = p.components
    # One unit: one day x 5 surfaces x 6 task types = 30 cells > K, so K = 24 bind.
    assert p.groups_per_unit == 24 and p.truncate_groups
    assert count.l1_sensitivity == 24 * 10 * 2000  # weight 1/0.5 in 1/1000 units
    assert count.l2_sensitivity == pytest.approx(math.sqrt(24) * 10 * 2000)


def test_sensitivity_shrinks_when_a_unit_cannot_touch_k_cells() -> None:
    p = plan(body("task_completion_rate", group_by=["surface"]))
    numerator, denominator = p.components
    assert p.groups_per_unit == 5 and not p.truncate_groups
    assert numerator.l1_sensitivity == 5 * 10 and denominator.l1_sensitivity == 5 * 10


def test_a_mean_is_bounded_by_the_largest_value() -> None:
    p = plan(body("copy_span_length"))
    total, count = p.components
    assert total.l1_sensitivity == 1 * 10 * 5000
    assert count.l1_sensitivity == 1 * 10


def test_debiased_clicks_are_bounded_by_the_smallest_propensity() -> None:
    p = plan(body("click_through_rate_debiased"))
    numerator = p.components[0]
    assert numerator.l1_sensitivity == 1 * 10 * round(1000 / 0.33)


def test_distinct_users_count_once_per_cell() -> None:
    (users,) = plan(body("active_users", group_by=["surface"])).components
    assert users.l1_sensitivity == 5


def test_a_median_noises_one_histogram_of_cells_times_bins() -> None:
    (histogram,) = plan(body("edit_ratio_median", group_by=["task_type"])).components
    assert histogram.length == 6 * 20
    assert histogram.l1_sensitivity == 6 * 10


def test_sensitivity_never_depends_on_anything_but_request_and_policy() -> None:
    a, b = plan(body("edit_ratio")), plan(body("edit_ratio"))
    assert a.components == b.components and a.cost == b.cost


# --- cost ---------------------------------------------------------------------------------


def test_the_cost_is_the_requested_budget_in_the_policy_unit() -> None:
    assert plan(body(epsilon=0.25)).cost == Cost.epsilon(0.25)
    strict = plan(body(epsilon=None, rho=0.01), policy("strict"))
    assert strict.cost == Cost.rho(0.01)


def test_a_target_half_width_plans_the_smallest_budget_that_reaches_it() -> None:
    p = plan(body("event_count", epsilon=None, target_ci95=50.0, filters={"event_type": ["edit"]}))
    widths = halfwidth_for(p.components, p.cost, p.shares)
    assert widths["count"] <= 50.0
    less = Cost(p.cost.nanos - 1, "pure")
    assert halfwidth_for(p.components, less, p.shares)["count"] > 50.0


def test_a_target_beyond_the_cap_is_refused_with_the_budget_it_needs() -> None:
    error = refused(body("event_count", epsilon=None, target_ci95=0.5))
    assert "per-query cap" in str(error)


# --- documentation ------------------------------------------------------------------------


def test_every_metric_of_the_catalogue_is_documented() -> None:
    from conftest import REPO

    text = (REPO / "docs" / "metrics.md").read_text()
    missing = [name for name in METRICS if f"### `{name}`" not in text]
    assert missing == []
    for name in METRICS:
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        for field in (
            "Definition",
            "Numerator",
            "Value bounds",
            "Contribution bounds",
            "Group-bys",
            "How to read it",
        ):
            assert f"**{field}**" in section, (name, field)
