"""Contract: DuckDB over the lake gives the row store's integer aggregates, exactly.

One random event set (fixed seed) goes into two SQLite stores. The reference is never
sealed: its engine is the row store. The other is sealed into a real Delta table the
ways production seals: small batches, late events into epochs already sealed, a batch
claimed but not copied (a crash before the lake commit), a batch copied but not deleted
(a crash after it) and rows still hot. Every catalogue metric, with each allowed group-by
and with filters, must give identical integer aggregates through both paths, under a
policy where the C and K bounds bind and one where they do not. Sampled events carry
weights; values sit on rounding halves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.policy import Policy, metrics_for
from privacy.query import QueryRequest, plan_query
from service.lake.engine import LakeQueries
from service.lake.sealer import Sealer
from service.lake.spark import SparkQueries, SparkRuntime
from service.lake.table import Lake
from service.queries.engine import QueryEngine
from service.store.base import Store

SURFACES = ("chat", "search", "ide", "docs", "beta", None)  # beta: undeclared -> other
TASKS = ("coding", "writing", "qa", "summarization", "analysis", None)
COHORTS = ("control", "treatment", None)
MODELS = ("model-a", "model-b", "model-x")
PROBS = (1.0, 1.0, 0.5, 0.25, 0.3)


def _event(rng: random.Random, user: int, day_back: int, second: int) -> tuple[Any, ...]:
    kind = rng.choice(
        ["response_shown"] * 4
        + [
            "click_through",
            "reformulation",
            "copy_paste",
            "edit",
            "dwell",
            "abandonment",
            "task_completion",
            "regenerate",
            "stop_generation",
            "feedback",
        ]
    )
    ctx = {
        "surface": rng.choice(SURFACES),
        "task_type": rng.choice(TASKS),
        "cohort": rng.choice(COHORTS),
        "model": rng.choice(MODELS),
    }
    fields: dict[str, Any] = {}
    if kind in ("response_shown", "click_through"):
        fields = {"position": rng.randint(1, 7), "candidates": 7}
    elif kind == "reformulation":
        fields = {"similarity": rng.choice([0.1, 0.5, 0.7, 0.85, 0.95, 1.0])}
    elif kind == "copy_paste":
        length = rng.choice([1, 5, 20, 50, 200, 5000])
        fields = {
            "span_start": 0,
            "span_end": length,
            "span_length": length,
            "destination": rng.choice(["internal", "external"]),
        }
    elif kind == "edit":
        fields = {"edit_ratio": rng.randint(0, 2000) / 2000}  # halves after x 1000
    elif kind == "dwell":
        fields = {"dwell_ms": rng.randint(0, 90_000), "scroll_depth": rng.randint(0, 8) / 8}
    elif kind == "abandonment":
        fields = {"after_ms": rng.randint(0, 60_000)}
    elif kind == "task_completion":
        fields = {"outcome": rng.choice(["success", "failure"])}
    elif kind == "regenerate":
        fields = {"attempt": rng.randint(1, 20)}
    elif kind == "stop_generation":
        fields = {"after_ms": rng.randint(0, 60_000)}
    elif kind == "feedback":
        fields = {"thumbs": rng.choice(["up", "down"]), "rating": rng.choice([None, 1, 3, 5])}
    return event_row(
        kind,
        day=TODAY - timedelta(days=day_back),
        user=user,
        session=user * 100 + rng.randint(0, 2),
        second=second,
        inclusion_prob=rng.choice(PROBS),
        **ctx,
        **fields,
    )


def _events(seed: int = 17) -> tuple[list[Any], list[Any], list[Any]]:
    """Three waves: sealed first, then late ones into sealed epochs, then the last."""
    rng = random.Random(seed)
    waves: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for user in range(1, 61):
        heavy = user % 15 == 0  # many rows (C binds) over many cells (K binds)
        for n in range(rng.randint(2, 12) + (60 if heavy else 0)):
            wave = rng.choice((0, 0, 1, 2))
            day_back = rng.randint(1, 2) if wave == 1 else rng.randint(0, 2)
            waves[wave].append(_event(rng, user, day_back, n))
    return waves


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Store, Lake]]:
    first, late, last = _events()
    reference = open_store(tmp_path_factory.mktemp("rowstore"))
    write(reference, first + late + last)
    where: Path = tmp_path_factory.mktemp("lake")
    store = open_store(where)
    lake = Lake(where / "lake")
    sealer = Sealer(store, lake, batch_rows=97)
    write(store, first)
    sealer.seal()
    write(store, late)  # into epochs already sealed
    sealer.seal(max_batches=2)
    # A crash after the lake commit, before the delete: the batch is in both tiers.
    write(store, last[:100])
    hot = store.hot
    batch = lake.sealed_batch() + 1
    assert hot.claim(batch, 50) == 50
    lake.append(hot.batch_rows(batch), batch)
    write(store, last[100:])
    # A crash after the claim, before the lake commit: claimed, only in the store.
    hot.claim(batch + 1, 40)
    assert hot.pending() == batch + 1 and lake.sealed_batch() == batch
    yield reference, store, lake
    reference.close()
    store.close()


def _policies() -> dict[str, Policy]:
    return {
        "bounds_bind": policy(contribution={"max_groups_per_user": 3, "max_rows_per_group": 4}),
        "bounds_loose": policy(
            contribution={"max_groups_per_user": 500, "max_rows_per_group": 1000}
        ),
    }


def _plan(pol: Policy, metric: str, group_by: list[str], extra: dict[str, Any]) -> Any:
    """The plan of one contract case: the last three days at epsilon 1."""
    body = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "group_by": group_by,
        "epsilon": 1.0,
        **extra,
    }
    return plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)


def _cases() -> list[tuple[str, list[str], dict[str, Any]]]:
    cases: list[tuple[str, list[str], dict[str, Any]]] = []
    for metric in metrics_for(policy()):
        cases.append((metric.name, ["day"], {}))
        for dim in metric.dimensions:
            cases.append((metric.name, ["day", dim], {}))
        if "surface" in metric.dimensions:
            filters = {"surface": ["chat", "other"]}
            cases.append((metric.name, [metric.dimensions[-1]], {"filters": filters}))
    return cases


CASES = _cases()


@pytest.mark.parametrize("bounds", ["bounds_bind", "bounds_loose"])
@pytest.mark.parametrize(("metric", "group_by", "extra"), CASES, ids=lambda v: str(v))
def test_duckdb_over_the_lake_gives_the_row_stores_aggregates(
    stores: tuple[Store, Store, Lake],
    bounds: str,
    metric: str,
    group_by: list[str],
    extra: dict[str, Any],
) -> None:
    reference, store, lake = stores
    pol = _policies()[bounds]
    plan = _plan(pol, metric, group_by, extra)
    expected = QueryEngine(reference, pol).aggregate(plan)
    got = QueryEngine(store, pol, LakeQueries(store, lake)).aggregate(plan)
    assert dict(got.values) == dict(expected.values)
    assert any(any(v) for v in expected.values.values())
    assert expected.coverage is None
    assert got.coverage is not None and got.coverage["hot_rows_read"]
    assert got.coverage["sealed_through_batch"] == lake.sealed_batch()


def test_the_mix_holds_sealed_hot_late_and_interrupted_batches(
    stores: tuple[Store, Store, Lake],
) -> None:
    reference, store, lake = stores
    snap = lake.snapshot()
    hot, _ = store.hot.snapshot()
    in_lake_only_hot = [r for r in hot if r[-1] is not None and r[-1] <= snap.sealed_batch]
    claimed = [r for r in hot if r[-1] is not None and r[-1] > snap.sealed_batch]
    unclaimed = [r for r in hot if r[-1] is None]
    assert in_lake_only_hot and claimed and unclaimed  # each crash state is present
    epochs = {int(p.split("epoch=")[1].split("/")[0]) for p in snap.files}
    assert len(epochs) == 3
    assert reference.events.count() == store.events.count() + _lake_rows(lake) - len(
        in_lake_only_hot
    )
    assert store.hot.unsealed(snap.sealed_batch) == len(claimed) + len(unclaimed)


def test_sealing_everything_changes_no_aggregate(
    tmp_path: Path,
) -> None:
    first, late, last = _events(seed=5)
    reference = open_store(tmp_path / "ref")
    store = open_store(tmp_path / "lake")
    try:
        write(reference, first + late + last)
        write(store, first + late + last)
        lake = Lake(tmp_path / "lake" / "lake")
        report = Sealer(store, lake, batch_rows=113).seal()
        assert report.rows == len(first + late + last) and store.events.count() == 0
        lake.compact()
        pol = _policies()["bounds_bind"]
        for metric, group_by, extra in CASES[::5]:
            body = {
                "metric": metric,
                "start": str(TODAY - timedelta(days=2)),
                "end": str(TODAY),
                "group_by": group_by,
                "epsilon": 1.0,
                **extra,
            }
            plan = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)
            got = QueryEngine(store, pol, LakeQueries(store, lake)).aggregate(plan)
            assert got.values == QueryEngine(reference, pol).aggregate(plan).values, metric
    finally:
        reference.close()
        store.close()


def _lake_rows(lake: Lake) -> int:
    dt = lake.table()
    assert dt is not None
    return int(dt.count())


# --- the same cases on Spark (tests/spark_cluster.py: the test master, one session) ---
#
# Spark costs ~0.5-1 s a query (batching statements into one query made Spark's planning
# far slower, measured): every case runs under the policy where the C and K bounds bind,
# and every fourth under the loose one, to keep the Spark part near 3 minutes.

SPARK_CASES = [(*case, "bounds_bind") for case in CASES] + [
    (*case, "bounds_loose") for case in CASES[::4]
]


@pytest.fixture(scope="module")
def spark_queries(stores: tuple[Store, Store, Lake], spark_runtime: SparkRuntime) -> SparkQueries:
    _, store, lake = stores
    return SparkQueries(store, lake, spark_runtime)


@pytest.mark.parametrize(
    ("metric", "group_by", "extra", "bounds"), SPARK_CASES, ids=lambda v: str(v)
)
def test_spark_over_the_lake_gives_the_row_stores_and_duckdbs_aggregates(
    stores: tuple[Store, Store, Lake],
    spark_queries: SparkQueries,
    bounds: str,
    metric: str,
    group_by: list[str],
    extra: dict[str, Any],
) -> None:
    reference, store, lake = stores
    pol = _policies()[bounds]
    plan = _plan(pol, metric, group_by, extra)
    expected = QueryEngine(reference, pol).aggregate(plan)
    duck = QueryEngine(store, pol, LakeQueries(store, lake)).aggregate(plan)
    got = QueryEngine(store, pol, spark_queries).aggregate(plan)
    assert dict(got.values) == dict(expected.values) == dict(duck.values)
    assert any(any(v) for v in expected.values.values())
    assert got.coverage is not None and duck.coverage is not None
    assert got.coverage["engine"] == "spark" and got.coverage["hot_rows_read"]
    assert got.coverage["sealed_through_batch"] == lake.sealed_batch()
    assert got.coverage["hot_rows"] == duck.coverage["hot_rows"] > 0


def test_spark_leaves_no_shuffle_file_after_a_query(
    stores: tuple[Store, Store, Lake], spark_queries: SparkQueries
) -> None:
    """Shuffle files hold per-person partial aggregates: none outlives its query."""
    _, store, _ = stores
    pol = _policies()["bounds_bind"]
    body = {
        "metric": "task_completion_rate",
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "group_by": ["day", "surface"],
        "epsilon": 1.0,
    }
    plan = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)
    QueryEngine(store, pol, spark_queries).aggregate(plan)
    local = spark_queries.runtime.local_dir
    assert local is not None and Path(local).is_dir()
    if not spark_queries.runtime.master.startswith("local"):
        return  # a cluster's executors write under their workers' dirs (.ci/run checks)
    # Spark removes a query's shuffle files when the query ends, without blocking the
    # query on it (SQLExecution: removeShuffle(id, blocking = isTesting)): they go
    # moments after the answer, later on a loaded machine; what this checks is that they
    # go, so it waits up to 30 s.
    deadline = time.monotonic() + 30
    while left := [p.name for p in Path(local).rglob("shuffle_*") if p.is_file()]:
        assert time.monotonic() < deadline, f"shuffle files outlived their query: {left}"
        time.sleep(0.1)


# Open dimensions: `model` open, so its stored labels (model-x included) are kept as
# written, counted by the selection's SQL and, once selected, mapped to their cells.
OPEN_CONTEXT = {
    "surface": ["chat", "search", "ide", "docs"],
    "task_type": ["coding", "writing", "qa", "summarization", "analysis"],
    "cohort": ["control", "treatment"],
    "model": {"open": {"min_users": 50, "max_values_per_user": 1}},
}
OPEN_DELTA = {"delta_per_analyst": 1e-7, "delta_global": 1e-6}  # required by an open dim
OPEN_CASES = [
    (m.name, group_by)
    for m in metrics_for(policy("strict", context=OPEN_CONTEXT, **OPEN_DELTA))
    if "model" in m.dimensions
    for group_by in (["model"], ["day", "model"])
]


@pytest.mark.parametrize(("metric", "group_by"), OPEN_CASES, ids=lambda v: str(v))
def test_an_open_dimension_gives_the_same_selection_counts_and_aggregates_on_every_path(
    stores: tuple[Store, Store, Lake],
    spark_queries: SparkQueries,
    metric: str,
    group_by: list[str],
) -> None:
    reference, store, lake = stores
    pol = policy("strict", context=OPEN_CONTEXT, **OPEN_DELTA)
    body = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "group_by": group_by,
        "rho": 0.005,
    }
    plan = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)
    rowstore, duckdb, spark = (
        QueryEngine(reference, pol),
        QueryEngine(store, pol, LakeQueries(store, lake)),
        QueryEngine(store, pol, spark_queries),
    )
    counts = rowstore.selection_counts(plan)
    assert counts == duckdb.selection_counts(plan) == spark.selection_counts(plan)
    assert set(counts["model"]) == {"model-a", "model-b", "model-x"}
    # Each unit counted in at most one value: the counts add up to at most the units.
    assert sum(counts["model"].values()) <= 60 * 3
    chosen = {"model": ("model-x", "model-a")}  # as if these two had been selected
    selected = plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY, chosen)
    assert dict(selected.dimensions)["model"] == ("model-x", "model-a", "other")
    expected = rowstore.aggregate(selected)
    assert dict(duckdb.aggregate(selected).values) == dict(expected.values)
    assert dict(spark.aggregate(selected).values) == dict(expected.values)
    assert any(any(v) for v in expected.values.values())
