"""PostgreSQL only: day partitions, made on demand by any node, dropped whole by retention."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from store.contract import DAY, POLICY_SHA, T0_TS, batch

from service.store.postgres import PostgresStore

A, B = 1, 2
FAR_EPOCH = 10**6


@pytest.fixture
def nodes(postgres_url: str) -> Iterator[list[PostgresStore]]:
    opened: list[PostgresStore] = []
    for _ in range(4):
        store = PostgresStore(postgres_url, POLICY_SHA, pool_size=4)
        store.migrate()
        opened.append(store)
    yield opened
    for store in opened:
        store.close()


def tables(url: str, like: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE %s AND relkind IN ('r', 'p') "
            "ORDER BY relname",
            (like,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_events_land_in_one_partition_per_type_and_day(postgres_url: str, nodes: list) -> None:
    nodes[0].events.write(
        [batch([1], ts=T0_TS, event_type=A), batch([2], ts=T0_TS - DAY, event_type=B)]
    )
    assert tables(postgres_url, "events_t%") == [
        "events_t1",
        "events_t1_d20261120",
        "events_t2",
        "events_t2_d20261119",
    ]
    assert tables(postgres_url, "event_keys_d%") == ["event_keys_d20261119", "event_keys_d20261120"]


def test_nodes_making_the_same_new_partitions_at_once_all_succeed(
    postgres_url: str, nodes: list[PostgresStore]
) -> None:
    days = range(10)

    def write(i: int) -> list[list[bool]]:
        return nodes[i % len(nodes)].events.write(
            [batch([i * 100 + d], ts=T0_TS - d * DAY, event_type=1 + d % 3) for d in days]
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    assert all(flags == [[True]] * len(days) for flags in results)
    assert nodes[0].events.count() == 8 * len(days)


def test_several_nodes_migrating_an_empty_database_at_once_apply_each_migration_once(
    pg_server: object, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    stores = [PostgresStore(postgres_url, POLICY_SHA, pool_size=1) for _ in range(6)]
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda s: s.migrate(), stores))
        stores[0].events.write([batch([1])])
    finally:
        for s in stores:
            s.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM tacit_schema ORDER BY version").fetchall()
    assert [v[0] for v in versions] == list(range(1, len(versions) + 1))


def test_retention_drops_expired_partitions_whole_and_trims_the_edge(
    postgres_url: str, nodes: list[PostgresStore]
) -> None:
    store = nodes[0]
    store.events.write(
        [
            batch([d * 10 + h], ts=T0_TS - d * DAY - h * 3600, event_type=A)
            for d in range(4)
            for h in range(3)
        ]
    )
    cutoff = T0_TS - 2 * DAY - 3600  # inside day -2: its events at -0 h and -1 h are kept
    assert sum(store.retention.delete_events(A, cutoff, FAR_EPOCH, 100)) == 3 + 1
    assert tables(postgres_url, "events_t1_d%") == [
        "events_t1_d20261118",
        "events_t1_d20261119",
        "events_t1_d20261120",
    ]
    assert store.retention.count_events(A, T0_TS + DAY, FAR_EPOCH) == 12 - 4


def test_a_node_that_still_believes_in_a_dropped_partition_writes_to_a_new_one(
    nodes: list[PostgresStore],
) -> None:
    writer, sweeper = nodes[0], nodes[1]
    old = T0_TS - 10 * DAY
    writer.events.write([batch([1], ts=old)])
    assert sum(sweeper.retention.delete_events(A, old + DAY, FAR_EPOCH, 100)) == 1
    assert writer.events.write([batch([2], ts=old)]) == [[True]]
    assert writer.events.count() == 1


def test_a_new_days_partition_is_made_while_a_long_query_reads_events(
    postgres_url: str, nodes: list[PostgresStore]
) -> None:
    nodes[0].events.write([batch([1], ts=T0_TS)])
    done = threading.Event()
    with psycopg.connect(postgres_url) as reader:  # a transaction holding read locks
        reader.execute("SELECT count(*) FROM events").fetchone()

        def write_new_day() -> None:
            nodes[1].events.write([batch([2], ts=T0_TS + DAY, event_type=B)])
            done.set()

        writer = threading.Thread(target=write_new_day, daemon=True)
        writer.start()
        # CREATE TABLE ... PARTITION OF would wait for the reader's lock (forever, here).
        finished = done.wait(timeout=30)
        reader.rollback()
    writer.join(timeout=30)
    assert finished
    assert nodes[0].events.count() == 2


def detach(url: str, parent: str, name: str) -> None:
    """What a sweep interrupted between its detach and its drop leaves behind."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {name}")  # type: ignore[arg-type]


def test_a_sweep_drops_what_an_interrupted_sweep_left_detached(
    postgres_url: str, nodes: list[PostgresStore]
) -> None:
    old = T0_TS - 10 * DAY
    nodes[0].events.write([batch([1, 2], ts=old)])
    detach(postgres_url, "events_t1", "events_t1_d20261110")
    assert sum(nodes[1].retention.delete_events(A, old + DAY, FAR_EPOCH, 100)) == 2
    assert tables(postgres_url, "events_t1_d%") == []


def test_a_write_for_a_day_left_detached_replaces_it(
    postgres_url: str, nodes: list[PostgresStore]
) -> None:
    old = T0_TS - 10 * DAY
    nodes[0].events.write([batch([1], ts=old)])
    detach(postgres_url, "events_t1", "events_t1_d20261110")
    assert nodes[1].events.write([batch([2], ts=old)]) == [[True]]
    assert nodes[1].events.count() == 1  # the detached (expired) row is gone
    assert tables(postgres_url, "events_t1_d%") == ["events_t1_d20261110"]
