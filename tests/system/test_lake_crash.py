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
from service.store.sqlite import SQLiteStore

KILLS = 20
CLIENTS = 2
BATCH = 100
SEED = 20261207
CODES = {EVENT_TYPE_CODES[t]: t.value for t in EventType}


def counted(data_dir: Path) -> Counter[str]:
    """Events per type, read exactly as a query reads them (lake snapshot + hot rows)."""
    store = SQLiteStore(data_dir / "tacit.db")
    try:
        store.migrate()
        queries = LakeQueries(store, Lake(data_dir / "lake"))
        rows = queries.aggregate("SELECT event_type, count(*) FROM events GROUP BY event_type")
    finally:
        store.close()
    return Counter({CODES[t]: n for t, n in rows})


def by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(e["event_type"]) for e in events)


@pytest.mark.slow  # ~1-2 min: 20 kills and restarts of the real server
def test_every_acknowledged_event_is_counted_once_across_sigkills_while_sealing(
    tmp_path: Path, master_key_b64: str
) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    env = {"TACIT_SEAL_INTERVAL_S": "0.1", "TACIT_SEAL_BATCH_ROWS": "150"}
    server = Server(data_dir, master_key_b64, env=env).start()
    try:
        token = server.create_token("ingest", "app")
        ledger = AckLedger()
        checked = 0  # acknowledged events already re-posted as duplicates
        for _ in range(KILLS):
            stop = threading.Event()
            clients = [
                threading.Thread(target=stream, args=(server, token, ledger, stop))
                for _ in range(CLIENTS)
            ]
            for t in clients:
                t.start()
            time.sleep(rng.uniform(0.05, 1.5))  # a random moment of ingesting and sealing
            server.crash()
            stop.set()
            for t in clients:
                t.join(30)
            assert ledger.unexpected == []
            server.restart()
            seen = counted(data_dir)
            acked, sent = by_type(ledger.acked), by_type(ledger.sent)
            assert all(acked[k] <= seen[k] <= sent[k] for k in set(sent) | set(seen)), (
                seen,
                acked,
                sent,
            )
            fresh = ledger.acked[checked:]
            assert repost(server, token, fresh) == (0, len(fresh))
            checked = len(ledger.acked)
        assert ledger.acked, "the stream never got going"
        lake_files = list((data_dir / "lake").rglob("*.parquet"))
        assert lake_files, "the sealer never sealed"

        distinct = {str(e["event_id"]): e for e in ledger.sent}
        assert len(distinct) == len(ledger.sent)
        repost(server, token, ledger.sent)
        server.stop()
        store = SQLiteStore(data_dir / "tacit.db")
        try:
            Sealer(store, Lake(data_dir / "lake")).seal()
            assert store.hot.unsealed(0) == 0
        finally:
            store.close()
        assert counted(data_dir) == by_type(list(distinct.values()))
    finally:
        server.stop()
