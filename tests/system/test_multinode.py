"""Several `tacit serve` processes on one database behave as one service.

Two real nodes (each its own process and data dir, the same master key) share one
PostgreSQL: a stream split across them with retries landing on the other node is stored
exactly once, nodes racing the first events of new epochs agree on one salt each, and
concurrent queries through both nodes never overspend one small budget.
`tacit serve --workers 2` (several processes on one machine) works on both backends.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from factories import event
from server import Server, create_token_in_process

from service.ops.audit import verify
from service.settings import DEFAULT_POLICY
from service.store import open_store

STREAM = 1200
BATCH = 50


def post(node: Server, token: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    with node.client(token) as client:
        response = client.post("/v1/events", json={"events": batch})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


BUDGET_POLICY = """\
version: 1
name: multinode
privacy:
  accounting: pure
  max_per_query: 0.5
  per_analyst: 1.0
  global: 1.5
  repeat_window: 1h
"""


def start_nodes(
    tmp_path: Path, master_key_b64: str, postgres_url: str, policy: Path = DEFAULT_POLICY
) -> list[Server]:
    """Two nodes on one database, each with its own data dir (as on two machines)."""
    nodes = [
        Server(tmp_path / f"node-{i}", master_key_b64, policy=policy, database_url=postgres_url)
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture
def two_nodes(
    tmp_path: Path, master_key_b64: str, postgres_url: str
) -> Iterator[tuple[list[Server], str]]:
    nodes = start_nodes(tmp_path, master_key_b64, postgres_url)
    try:
        token = create_token_in_process(
            nodes[0].data_dir, "ingest", "app", database_url=postgres_url
        )
        yield nodes, token
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.postgres
def test_a_stream_split_across_two_nodes_with_retries_on_the_other_node_is_stored_once(
    two_nodes: tuple[list[Server], str], postgres_url: str
) -> None:
    nodes, token = two_nodes
    at = datetime.now(UTC) - timedelta(minutes=5)
    stream = [
        event(
            ("edit", "click_through", "task_completion")[i % 3],
            at=at + timedelta(milliseconds=i),
            user=f"user-{i % 13}",
            session=f"session-{i % 29}",
            event_id=f"stream-{i:05d}",
        )
        for i in range(STREAM)
    ]
    batches = [stream[i : i + BATCH] for i in range(0, STREAM, BATCH)]
    sends: list[tuple[Server, list[dict[str, Any]]]] = []
    for i, batch in enumerate(batches):
        sends.append((nodes[i % 2], batch))
        if i % 3 == 0:  # the whole batch retried on the other node
            sends.append((nodes[(i + 1) % 2], batch))
        if i % 4 == 1:  # half of it retried there, together with half of the next batch
            sends.append(
                (
                    nodes[(i + 1) % 2],
                    batch[BATCH // 2 :] + batches[(i + 1) % len(batches)][: BATCH // 2],
                )
            )
    random.Random(5).shuffle(sends)  # retries may even arrive before the original
    with ThreadPoolExecutor(8) as pool:
        reports = list(pool.map(lambda s: post(s[0], token, s[1]), sends))
    assert sum(r["rejected"] for r in reports) == 0
    assert sum(r["accepted"] for r in reports) == STREAM
    assert sum(r["duplicates"] for r in reports) == sum(len(b) for _, b in sends) - STREAM
    assert scalar(postgres_url, "SELECT count(*) FROM events") == STREAM


@pytest.mark.postgres
def test_nodes_racing_the_first_events_of_new_epochs_share_one_salt_per_epoch(
    two_nodes: tuple[list[Server], str], postgres_url: str
) -> None:
    nodes, token = two_nodes
    now = datetime.now(UTC) - timedelta(minutes=1)
    # Today and yesterday: two epochs nobody has salted yet, raced from both nodes.
    batches = [
        [event("edit", at=now - timedelta(days=day), user="racer") for _ in range(5)]
        for day in (0, 1)
        for _ in range(8)
    ]
    with ThreadPoolExecutor(16) as pool:
        reports = list(pool.map(lambda i: post(nodes[i % 2], token, batches[i]), range(16)))
    assert sum(r["accepted"] for r in reports) == 80
    assert scalar(postgres_url, "SELECT count(*) FROM salts") == 2
    # Had a node kept a salt of its own, "racer" would have two pseudonyms in an epoch.
    assert (
        scalar(
            postgres_url,
            "SELECT max(n) FROM (SELECT count(DISTINCT user_ps) AS n FROM events GROUP BY epoch) s",
        )
        == 1
    )
    assert scalar(postgres_url, "SELECT count(DISTINCT epoch) FROM events") == 2


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_serve_with_two_workers_stores_each_event_once_and_keeps_one_audit_chain(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, master_key_b64: str
) -> None:
    url = None if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    data_dir = tmp_path / "node"
    two_workers = Server(
        data_dir, master_key_b64, database_url=url, args=["--workers", "2"], startup_timeout=90
    )
    with two_workers as node:
        token = create_token_in_process(data_dir, "ingest", "app", database_url=url)
        at = datetime.now(UTC) - timedelta(minutes=1)
        batches = [
            [event("edit", at=at, event_id=f"w-{b}-{i}") for i in range(20)] for b in range(12)
        ]
        sends = batches + batches[::2]  # every other batch sent twice
        # One connection per request, so both workers get some of them.
        with ThreadPoolExecutor(6) as pool:
            reports = list(pool.map(lambda b: post(node, token, b), sends))
    assert sum(r["accepted"] for r in reports) == 12 * 20
    store = open_store(url or f"sqlite:///{data_dir / 'tacit.db'}")
    try:
        assert store.events.count() == 12 * 20
        entries = store.audit.page(0, 10_000)
    finally:
        store.close()
    assert sum(e.kind == "policy_loaded" for e in entries) >= 2  # one per worker
    report = verify(entries)
    assert report.ok, report.message


@pytest.mark.postgres
def test_concurrent_queries_through_both_nodes_never_overspend_one_budget(
    tmp_path: Path, master_key_b64: str, postgres_url: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BUDGET_POLICY)
    nodes = start_nodes(tmp_path, master_key_b64, postgres_url, policy)
    try:
        token = create_token_in_process(
            nodes[0].data_dir, "analyst", "alice", database_url=postgres_url
        )
        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        # 16 different requests of just over 0.3 each: 3 fit in the cap of 1.0, 4 do not.
        bodies = [
            {"metric": "event_count", "start": day, "end": day, "epsilon": 0.3 + i * 1e-4}
            for i in range(16)
        ]

        def ask(i: int) -> int:
            with nodes[i % 2].client(token) as client:
                response = client.post("/v1/queries", json=bodies[i])
            assert response.status_code in (200, 403), response.text
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(ask, range(len(bodies))))
    finally:
        for node in nodes:
            node.stop()
    assert statuses.count(200) == 3
    assert scalar(postgres_url, "SELECT max(nanos) FROM budget_spend") <= 1_000_000_000
    assert scalar(postgres_url, "SELECT count(*) FROM releases") == 3
    assert scalar(postgres_url, "SELECT count(*) FROM audit_log WHERE kind = 'release'") == 3
