"""Bounded sums (`dwell_time_total`, `copy_span_length_total`): the bound comes from the
policy and the query, the SQL clamps, bounds and reweights on a real SQLite file, and the
95 % interval covers the noiseless bounded total.

Coverage is checked two ways. With the exact discrete laws OpenDP samples (drawn from a
seeded generator, tests/privacy/test_interval_coverage.py's `sampler`), at the scales the
real plans get: 20 000 draws per cell, asserted per cell at "0.95 - 3 standard errors",
which a coverage of exactly 95 % would fail for 0.13 % of seeds per cell (under 0.7 % for
a case's five cells; the seeds are fixed, so the figures are reproducible). With OpenDP's
own noise, which cannot be seeded: 1 000 releases of five cells, pooled, asserted at the
same floor (0.13 % false failures if coverage were exactly 95 %; it is at least that).
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from noise_laws import floor_coverage, sampler
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.bounds import sqrt_up
from privacy.intervals import Noise
from privacy.mechanisms import NoisyVector, halfwidth_for_scale, plan_scales
from privacy.policy import Policy
from privacy.query import QueryError, QueryPlan, QueryRequest, plan_query
from service.queries.engine import Aggregates, QueryEngine
from service.queries.release import release_rows

DRAWS = 20_000
ONE = {"max_groups_per_user": 1, "max_rows_per_group": 1}


def plan(metric: str, pol: Policy | None = None, **body: Any) -> QueryPlan:
    ask = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "epsilon": 1.0,
        **body,
    }
    return plan_query(QueryRequest.from_json(ask), pol or policy(), "analyst", TODAY)


def sampling(**rates: float) -> dict[str, Any]:
    data = policy().model_dump(mode="json", by_alias=True)["sampling"]
    data["rates"] = {**data["rates"], **rates}
    return dict(data)


# --- the bound ----------------------------------------------------------------------------


def test_a_sums_sensitivity_is_k_cells_x_c_rows_x_the_largest_weight_x_the_largest_value() -> None:
    # Default policy: K = 24, C = 10, dwell sampled at 0.5 (weights in 1/1000, at most
    # 2000). Three cohorts of one day each: a person (one daily epoch) touches <= 3 cells.
    p = plan("dwell_time_total", group_by=["day", "cohort"])
    (part,) = p.parts
    assert part.name == "sum" and len(p.cells) == 9 and p.groups_per_unit == 3
    assert (part.bound.groups, part.bound.rows, part.bound.row_max) == (3, 10, 2000 * 300_000)
    assert part.divisor == 1000  # a released entry / 1000 is in ms
    (component,) = p.components
    assert component.l1_sensitivity == 3 * 10 * 2000 * 300_000
    assert component.l2_sensitivity == sqrt_up(3 * (10 * 2000 * 300_000) ** 2)
    assert component.l2_sensitivity**2 >= 3 * (10 * 2000 * 300_000) ** 2


def test_a_total_has_the_bound_of_its_means_sum_and_the_whole_budget() -> None:
    total = plan("copy_span_length_total", group_by=["day", "surface"])
    mean = plan("copy_span_length", group_by=["day", "surface"])
    assert total.parts[0].bound == next(p.bound for p in mean.parts if p.name == "sum")
    (scale,) = plan_scales(total.components, total.cost, total.shares).values()
    # Pure DP: the scale is L1 / epsilon (to a few ulps: OpenDP's map is checked exactly).
    assert scale == pytest.approx(total.components[0].l1_sensitivity / 1.0, rel=1e-12)
    assert total.cost == mean.cost


def test_an_unsampled_total_counts_each_event_once() -> None:
    (part,) = plan("copy_span_length_total").parts
    assert part.weight.unit == 1 and part.bound.row_max == 5_000 and part.divisor == 1


def test_a_target_interval_buys_the_smallest_budget_that_reaches_it() -> None:
    p = plan(
        "copy_span_length_total", pol=policy(contribution=ONE), epsilon=None, target_ci95=40_000
    )
    (scale,) = plan_scales(p.components, p.cost, p.shares).values()
    assert halfwidth_for_scale("pure", scale) <= 40_000
    assert p.cost.value < 1.0


def test_cohort_level_only_restricts_the_total_of_a_dwell_family_like_its_mean() -> None:
    with pytest.raises(QueryError, match="cannot be grouped by 'surface'"):
        plan("dwell_time_total", group_by=["surface"])
    with pytest.raises(QueryError, match="cannot be grouped by 'surface'"):
        plan("dwell_time", group_by=["surface"])


def test_a_comparison_of_totals_is_refused_pointing_at_the_mean() -> None:
    compare = {"dimension": "surface", "baseline": "chat"}
    with pytest.raises(QueryError, match="compare the mean copy_span_length instead"):
        plan("copy_span_length_total", group_by=["surface"], compare=compare)


# --- the SQL: clamped, bounded to C rows, reweighted ---------------------------------------


def test_the_aggregate_clamps_values_bounds_rows_and_caps_weights(tmp_path: Path) -> None:
    # dwell sampled at 0.25: weights in 1/1000, capped at 4000.
    pol = policy(
        contribution={"max_groups_per_user": 24, "max_rows_per_group": 2},
        sampling=sampling(dwell=0.25),
    )
    rows = [
        # Person 1, control: 3 rows > C = 2, one clamped 900 000 -> 300 000 ms:
        # (1000 + 2000 + 300 000) x 1000 x 2 / 3, rounded down.
        *(
            event_row("dwell", user=1, dwell_ms=ms, cohort="control")
            for ms in (1_000, 2_000, 900_000)
        ),
        # Person 2, control, kept at 0.5: weighs 2000.
        event_row("dwell", user=2, dwell_ms=40, cohort="control", inclusion_prob=0.5),
        # Person 3, treatment, kept at 0.1 under an older policy: weighs the cap, 4000.
        event_row("dwell", user=3, dwell_ms=10, cohort="treatment", inclusion_prob=0.1),
        event_row("response_shown", user=4, cohort="control"),  # not a dwell: not read
    ]
    store = open_store(tmp_path)
    try:
        write(store, rows)
        p = plan("dwell_time_total", pol=pol, start=str(TODAY), group_by=["cohort"])
        got = QueryEngine(store, pol).aggregate(p).values
        mean = plan("dwell_time", pol=pol, start=str(TODAY), group_by=["cohort"])
        as_mean = QueryEngine(store, pol).aggregate(mean).values
    finally:
        store.close()
    assert [c["cohort"] for c in p.cells] == ["control", "treatment", "other"]
    assert got == {"sum": [303_000_000 * 2 // 3 + 80_000, 40_000, 0]}
    assert got["sum"] == as_mean["sum"]  # the same bounded sum as the mean's


# --- the interval -------------------------------------------------------------------------


def _coverage_case(accounting: str) -> tuple[QueryPlan, float]:
    if accounting == "pure":
        p = plan("copy_span_length_total", pol=policy(contribution=ONE), group_by=["surface"])
    else:
        strict = policy("strict", contribution=ONE)
        p = plan(
            "copy_span_length_total", pol=strict, group_by=["task_type"], epsilon=None, rho=0.01
        )
    (scale,) = plan_scales(p.components, p.cost, p.shares).values()
    return p, scale


@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
def test_the_interval_covers_the_true_total_at_least_95_percent_of_the_time(
    accounting: str,
) -> None:
    p, scale = _coverage_case(accounting)
    (part,) = p.parts
    # Empty, tiny, about one noise scale, and large cells (in fixed-point units).
    truth = [0, 300 * part.divisor, round(scale), 2_000 * 5_000 * part.divisor, 7]
    truth = truth[: len(p.cells)]
    assert len(truth) >= 4
    noise = sampler(Noise(accounting, scale), random.Random(31))
    ci95 = halfwidth_for_scale(accounting, scale)
    covered = [0] * len(truth)
    for _ in range(DRAWS):
        vector = NoisyVector([t + noise() for t in truth], scale, ci95)
        rows, _ = release_rows(p, {"sum": vector})
        for i, (row, t) in enumerate(zip(rows, truth, strict=True)):
            lo, hi = row["ci95"]
            assert 0 <= lo <= row["value"] <= hi
            covered[i] += lo <= t / part.divisor <= hi
    assert min(covered) / DRAWS >= floor_coverage(DRAWS), covered


def test_releases_with_opendps_noise_cover_the_true_total(tmp_path: Path) -> None:
    pol = policy(contribution=ONE)
    p = plan("copy_span_length_total", pol=pol, group_by=["surface"])
    truth = [60_000, 0, 1_500, 250_000, 5_000]
    store = open_store(tmp_path)
    store.close()  # post-processing never reads the store
    engine = QueryEngine(store, pol)
    draws, covered = 1_000, 0
    for _ in range(draws):
        rows = engine.release(p, Aggregates({"sum": list(truth)})).rows
        for row, t in zip(rows, truth, strict=True):
            lo, hi = row["ci95"]
            covered += lo <= t <= hi
    assert covered / (draws * len(truth)) >= floor_coverage(draws * len(truth))


def test_a_release_says_its_unit_its_clamping_and_its_sampling() -> None:
    p = plan("dwell_time_total", group_by=["day"])
    vector = NoisyVector([-5_000, 2_000_000, 0], 100.0, 300.0)
    rows, notes = release_rows(p, {"sum": vector})
    assert rows[0]["value"] == 0 and rows[0]["ci95"] == [0.0, 0.0]
    assert rows[1]["value"] == 2_000.0 and rows[1]["ci95"] == [1_999.7, 2_000.3]
    said = " ".join(notes)
    assert "Totals are in ms" in said
    assert "clamped to [0, 300000] ms" in said
    assert "dwell at 0.5" in said and "not the sampling error" in said
