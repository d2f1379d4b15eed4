"""The DP query's bounded aggregation gives the same numbers on PostgreSQL as on SQLite.

The same rows go into a SQLite store and a PostgreSQL store; every metric of the
catalogue is planned, grouped by day and by one of its dimensions, and its bounded
aggregates must be equal cell for cell. The rows include values that land exactly on a
half after scaling (SQLite rounds those away from zero, PostgreSQL's built-in round to
even), labels outside the declared sets, sampled rows and users past every bound.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from store.contract import DAY, POLICY_SHA, T0_TS, event_row

from privacy.events import EVENT_TYPE_CODES, EventType
from privacy.policy import load_policy, metrics_for
from privacy.query import QueryRequest, plan_query
from service.queries.engine import QueryEngine
from service.settings import DEFAULT_POLICY
from service.store import open_store
from service.store.base import Store, WriteBatch

TODAY = date(2026, 11, 20)
LABELS = {
    "surface": ["chat", "search", "ide", "docs", "other", None, "unknown"],
    "task_type": ["coding", "writing", "qa", None],
    "cohort": ["control", "treatment", None],
    "model": ["model-a", "model-b", "model-x"],
}


def payload(kind: EventType, rng: random.Random) -> dict[str, object]:
    """Column values of one event of ``kind``; a third of the numbers sit on a half."""
    half = rng.random() < 0.3
    if kind in (EventType.RESPONSE_SHOWN, EventType.CLICK_THROUGH):
        return {"position": rng.randint(1, 6), "candidates": 6}
    if kind is EventType.REFORMULATION:
        return {"similarity": rng.choice([0.2, 0.6, 0.85, 0.9, 0.99])}
    if kind is EventType.COPY_PASTE:
        length = rng.choice([5, 40, 300, 9000])
        return {
            "span_start": 0,
            "span_end": length,
            "span_length": length,
            "destination": "external",
        }
    if kind is EventType.EDIT:
        return {"edit_ratio": (2 * rng.randint(0, 9999) + 1) / 20_000 if half else rng.random()}
    if kind is EventType.DWELL:
        depth = (2 * rng.randint(0, 9999) + 1) / 20_000 if half else rng.random()
        return {"dwell_ms": rng.choice([500, 12_000, 400_000]), "scroll_depth": depth}
    if kind in (EventType.ABANDONMENT, EventType.STOP_GENERATION):
        return {"after_ms": rng.randint(0, 100_000)}
    if kind is EventType.REGENERATE:
        return {"attempt": rng.randint(1, 20)}
    if kind is EventType.FEEDBACK:
        return {"thumbs": rng.choice(["up", "down"]), "rating": rng.choice([None, 1, 3, 5])}
    return {"outcome": rng.choice(["success", "failure"])}


def batches() -> list[WriteBatch]:
    rng = random.Random(20261120)
    out: list[WriteBatch] = []
    eid = 0
    for day in range(7):
        b = WriteBatch(1)
        for _ in range(400):
            kind = rng.choice(list(EventType))
            ts = T0_TS - day * DAY - rng.randint(0, 11 * 3600)
            user = rng.choice(range(1, 40)) if rng.random() < 0.5 else 7  # user 7: very busy
            eid += 1
            b.keys.append((ts * 1000, eid))
            b.rows.append(
                event_row(
                    ts,
                    event_type=EVENT_TYPE_CODES[kind],
                    user_ps=user * 1_000_003 - 2**40,
                    session_ps=user * 10 + rng.randint(0, 2),
                    inclusion_prob=rng.choice([1.0, 1.0, 0.4, 0.8, 0.3]),
                    **{dim: rng.choice(values) for dim, values in LABELS.items()},
                    **payload(kind, rng),
                )
            )
        out.append(b)
    return out


@pytest.fixture
def both(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Store, Store]]:
    sqlite = open_store(f"sqlite:///{tmp_path / 'q.db'}", policy_sha256=POLICY_SHA)
    postgres = open_store(postgres_url, policy_sha256=POLICY_SHA)
    try:
        for store in (sqlite, postgres):
            store.events.write(batches())
        yield sqlite, postgres
    finally:
        sqlite.close()
        postgres.close()


def test_every_metric_aggregates_to_the_same_numbers_on_both_backends(
    both: tuple[Store, Store],
) -> None:
    policy = load_policy(DEFAULT_POLICY).policy
    sqlite, postgres = (QueryEngine(store, policy) for store in both)
    compared = 0
    for metric in metrics_for(policy):
        for dims in ([], [metric.dimensions[0]] if metric.dimensions else []):
            request = QueryRequest(
                metric=metric.name,
                start=TODAY - timedelta(days=6),
                end=TODAY,
                group_by=("day", *dims),
                epsilon=0.5 if policy.privacy.accounting == "pure" else None,
                rho=None if policy.privacy.accounting == "pure" else 0.01,
            )
            plan = plan_query(request, policy, "analyst", TODAY)
            expected = sqlite.aggregate(plan).values
            assert any(any(v) for v in expected.values()), metric.name  # real data compared
            assert postgres.aggregate(plan).values == expected, (metric.name, dims)
            compared += 1
    assert compared >= len(metrics_for(policy))
