"""Breakdowns that add up ("totals": true): each day's total equals the sum of its
released parts exactly, costs nothing, reads nothing, and its interval covers."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from queries_data import TODAY, open_store, policy

from privacy.mechanisms import release
from privacy.policy import Policy
from privacy.query import QueryError, QueryPlan, QueryRequest, plan_query
from service.queries.engine import Aggregates, QueryEngine
from service.queries.release import ratio_range
from service.queries.totals import add_totals

POLICY = policy(contribution={"max_groups_per_user": 1, "max_rows_per_group": 1})


def plan(metric: str, pol: Policy = POLICY, **body: Any) -> QueryPlan:
    ask = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "group_by": ["day", "surface"],
        "epsilon": 0.5,
        "totals": True,
        **body,
    }
    return plan_query(QueryRequest.from_json(ask), pol, "analyst", TODAY)


@pytest.fixture
def engine(tmp_path: Path) -> QueryEngine:
    # Post-processing never reads the store: it is closed before any release below.
    store = open_store(tmp_path)
    store.close()
    return QueryEngine(store, POLICY)


def truth(p: QueryPlan, rng: random.Random) -> dict[str, list[int]]:
    """True aggregates with empty, tiny and large cells (rates: numerator <= denominator)."""
    out: dict[str, list[int]] = {}
    for part in p.parts:
        out[part.name] = [rng.choice([0, 0, 1, 2, 30, 4_000]) for _ in range(part.length)]
    if "numerator" in out:
        out["numerator"] = [min(a, d) for a, d in zip(out["numerator"], out["denominator"])]
    return out


def split(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [r for r in rows if not r.get("total")], [r for r in rows if r.get("total")]


@pytest.mark.parametrize(
    "metric", ["event_count", "copy_span_length_total", "task_completion_rate", "session_funnel"]
)
def test_every_days_total_is_exactly_the_sum_of_its_released_parts(
    engine: QueryEngine, metric: str
) -> None:
    p = plan(metric)
    rng = random.Random(7)
    for _ in range(150):
        rows, totals = split(engine.release(p, Aggregates(truth(p, rng))).rows)
        assert [t["day"] for t in totals] == [d.isoformat() for d in p.days]
        for total in totals:
            parts = [r for r in rows if r["day"] == total["day"]]
            assert len(parts) == 5  # chat, search, ide, docs, other
            if metric in ("event_count", "copy_span_length_total"):
                assert all(isinstance(r["value"], int) and r["value"] >= 0 for r in parts)
                assert total["value"] == sum(r["value"] for r in parts)
            elif metric == "task_completion_rate":
                for key in ("numerator", "denominator"):
                    assert all(isinstance(r[key], int) and r[key] >= 0 for r in parts)
                    assert total[key] == sum(r[key] for r in parts)
                if total["denominator"]:
                    assert total["value"] == min(total["numerator"] / total["denominator"], 1)
            else:
                assert total["sessions"] == sum(r["sessions"] for r in parts)
                for k, step in enumerate(total["steps"]):
                    assert step["sessions"] == sum(r["steps"][k]["sessions"] for r in parts)
                shares = [s["value"] for s in total["steps"]]
                assert all(s is None for s in shares) or shares == sorted(shares, reverse=True)
            lo, hi = total["ci95"]
            assert 0 <= lo <= hi


def test_totals_cost_nothing_more_than_the_breakdown() -> None:
    for metric in (
        "event_count",
        "copy_span_length_total",
        "task_completion_rate",
        "session_funnel",
    ):
        with_totals, without = plan(metric), plan(metric, totals=False)
        assert with_totals.cost == without.cost
        assert with_totals.components == without.components


def test_a_total_without_the_day_adds_up_the_whole_range(engine: QueryEngine) -> None:
    p = plan("event_count", group_by=["surface"])
    rows, (total,) = split(engine.release(p, Aggregates({"count": [5, 0, 9, 2, 40]})).rows)
    assert "day" not in total and total["value"] == sum(r["value"] for r in rows)


@pytest.mark.parametrize(
    ("metric", "body", "message"),
    [
        ("active_users", {}, "do not add up to the day's"),
        (
            "dwell_time_median",
            {"group_by": ["day", "cohort"]},
            "works on counts, rates, sums and funnels",
        ),
        ("event_count", {"group_by": ["day"]}, "group by a dimension besides"),
        (
            "task_completion_rate",
            {"group_by": ["cohort"], "compare": {"dimension": "cohort", "baseline": "control"}},
            "cannot be asked together",
        ),
    ],
)
def test_totals_that_would_not_add_up_are_refused_before_anything_is_planned(
    metric: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        plan(metric, **body)


def test_totals_must_be_a_boolean() -> None:
    with pytest.raises(QueryError, match='"totals" must be true or false'):
        plan("event_count", totals="yes")


@pytest.mark.parametrize("metric", ["event_count", "task_completion_rate"])
def test_a_totals_interval_covers_the_true_sum_at_least_95_percent(metric: str) -> None:
    # ~2,000 totals (5 parts each, 3 days per release) under real OpenDP noise. The
    # bounds are proven (Chernoff; a union bound for the rate), so the true coverage is
    # >= 95 %; it would fall below 0.935 here with probability < 0.2 %.
    p = plan(metric, epsilon=0.5 if metric == "event_count" else 1.0)
    days = len(p.days)
    values = {
        "count": [3, 0, 120, 40, 1] * days,
        "numerator": [1, 0, 30, 10, 0] * days,
        "denominator": [3, 0, 120, 40, 1] * days,
    }
    given = {name: values[name] for name in (part.name for part in p.parts)}
    # event_count's vector is in 1/1000 events (the policy samples dwell).
    expected = 164 / p.parts[0].divisor if metric == "event_count" else 41 / 164
    hits = n = 0
    for _ in range(2_000 // days):
        # OpenDP noise, then the totals alone (the rows' own intervals are not needed).
        noisy = release(p.components, p.cost, given, p.shares)
        totals = add_totals(p, noisy, [{} for _ in p.cells], ratio_range(p))
        for total in totals:
            lo, hi = total["ci95"]
            hits += lo <= expected <= hi
            n += 1
    assert hits / n >= 0.935
