"""Crash safety of the two tiers: the whole service (server and writer process) is
SIGKILLed 20 times at random moments while it ingests and seals; afterwards every
acknowledged event is counted exactly once.

The server seals every 0.1 s in batches of 150 rows, so kills land before a batch's
claim, between the claim and the lake commit, between the commit and the delete, and
during ingestion. After each restart the events are counted the way every query reads
them (the lake's snapshot plus the unsealed hot rows, service/lake/engine.py): the count
lies between the acknowledged and the sent events, per event type. At the end every
event ever sent is posted again and everything is sealed: the counts per type must then
equal the distinct events sent, exactly.

On PostgreSQL two nodes share the database and the lake and both seal; each round kills
one or both of them (the advisory lock decides who seals; a killed holder's batch is
finished by whoever seals next).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from acked import AckLedger, repost, stream
from server import Server

from privacy.events import EVENT_TYPE_CODES, EventType
from service.lake.engine import LakeQueries
from service.lake.sealer import Sealer
from service.lake.table import Lake
from service.store import open_store

KILLS = 20
CLIENTS = 2  # per node
BATCH = 100
SEED = 20261207
CODES = {EVENT_TYPE_CODES[t]: t.value for t in EventType}


def counted(store_url: str, lake: Path) -> Counter[str]:
    """Events per type, read exactly as a query reads them (lake snapshot + hot rows)."""
    store = open_store(store_url)
    try:
        queries = LakeQueries(store, Lake(lake))
        rows = queries.aggregate("SELECT event_type, count(*) FROM events GROUP BY event_type")
    finally:
        store.close()
    return Counter({CODES[t]: n for t, n in rows})


def by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(e["event_type"]) for e in events)


def crash_loop(nodes: list[Server], store_url: str, lake: Path, rng: random.Random) -> None:
    """KILLS rounds of streaming to every node and SIGKILLing some of them (all of them
    with one node) at a random moment; the counts checked after each restart, then exactly
    once everything sent is posted again and sealed."""
    token = nodes[0].create_token("ingest", "app")
    ledger = AckLedger()
    checked = 0  # acknowledged events already re-posted as duplicates
    for _ in range(KILLS):
        stop = threading.Event()
        clients = [
            threading.Thread(target=stream, args=(node, token, ledger, stop, BATCH))
            for node in nodes
            for _ in range(CLIENTS)
        ]
        for t in clients:
            t.start()
        time.sleep(rng.uniform(0.05, 1.5))  # a random moment of ingesting and sealing
        victims = [n for n in nodes if rng.random() < 0.5] or [rng.choice(nodes)]
        for node in victims:
            node.crash()
        time.sleep(rng.uniform(0, 0.3))  # the survivors go on ingesting and sealing
        stop.set()
        for t in clients:
            t.join(30)
        assert ledger.unexpected == []
        for node in victims:
            node.restart()
        seen = counted(store_url, lake)
        acked, sent = by_type(ledger.acked), by_type(ledger.sent)
        assert all(acked[k] <= seen[k] <= sent[k] for k in set(sent) | set(seen)), (
            seen,
            acked,
            sent,
        )
        fresh = ledger.acked[checked:]
        assert repost(rng.choice(nodes), token, fresh) == (0, len(fresh))
        checked = len(ledger.acked)
    assert ledger.acked, "the stream never got going"
    assert list(lake.rglob("*.parquet")), "the sealer never sealed"

    distinct = {str(e["event_id"]): e for e in ledger.sent}
    assert len(distinct) == len(ledger.sent)
    repost(nodes[0], token, ledger.sent)
    for node in nodes:
        node.stop()
    store = open_store(store_url)
    try:
        Sealer(store, Lake(lake)).seal()
        assert store.hot.unsealed(0) == 0
    finally:
        store.close()
    assert counted(store_url, lake) == by_type(list(distinct.values()))


SEALING = {"TACIT_SEAL_INTERVAL_S": "0.1", "TACIT_SEAL_BATCH_ROWS": "150"}


@pytest.mark.slow  # ~1-2 min: 20 kills and restarts of the real server
def test_every_acknowledged_event_is_counted_once_across_sigkills_while_sealing(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, master_key_b64, env=SEALING).start()
    try:
        crash_loop([server], f"sqlite:///{data_dir / 'tacit.db'}", data_dir / "lake",
                   random.Random(SEED))  # fmt: skip
    finally:
        server.stop()


@pytest.mark.slow  # ~2-3 min
@pytest.mark.postgres
def test_two_nodes_sealing_one_lake_on_postgresql_count_every_event_once_across_sigkills(
    tmp_path: Path, master_key_b64: str, postgres_url: str
) -> None:
    # Two nodes on one database and one lake, each sealing every 0.1 s: the store's
    # advisory lock lets one seal at a time, and a node killed while holding it (or between
    # a batch's lake commit and its delete) leaves the batch for the other to finish.
    lake = tmp_path / "lake"
    env = {**SEALING, "TACIT_LAKE_URI": str(lake)}
    nodes = [
        Server(tmp_path / f"node-{i}", master_key_b64, database_url=postgres_url, env=env)
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
        crash_loop(nodes, postgres_url, lake, random.Random(SEED + 1))
    finally:
        for node in nodes:
            node.stop()
