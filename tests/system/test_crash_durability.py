"""Durability: the real server is SIGKILLed in the middle of a stream of batches; after a
restart every event that got a 200 is stored, exactly once.

Two client threads stream batches with unique event ids; the main thread kills the
server while they are sending, restarts it and checks: the rows stored lie between the
events acknowledged and the events sent, and a re-post of every acknowledged event is
answered 100 % duplicates. At the end every event ever sent is posted again; the row
count must then equal the number of distinct events sent (nothing stored twice).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from acked import AckLedger, repost, stream
from server import Server

ROUNDS = 3
CLIENTS = 2
BATCH = 100
ACKS_BEFORE_KILL = 8  # batches acknowledged in a round before the kill


def stored_rows(server: Server) -> int:
    conn = sqlite3.connect(server.data_dir / "tacit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def kill_mid_stream(server: Server, token: str, ledger: AckLedger) -> None:
    stop = threading.Event()
    target = ledger.acked_batches + ACKS_BEFORE_KILL
    clients = [
        threading.Thread(target=stream, args=(server, token, ledger, stop)) for _ in range(CLIENTS)
    ]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 20
    while ledger.acked_batches < target and time.monotonic() < deadline and not ledger.unexpected:
        time.sleep(0.005)
    server.crash()  # writer process and server at once; the clients are still sending
    stop.set()
    for t in clients:
        t.join(30)
    assert ledger.unexpected == []
    assert ledger.acked_batches >= target, "the stream never got going"


@pytest.mark.slow  # ~10-13 s: three restarts of the real server
def test_every_acknowledged_event_survives_sigkill_exactly_once(
    tmp_path: Path, master_key_b64: str
) -> None:
    server = Server(tmp_path / "data", master_key_b64).start()
    try:
        token = server.create_token("ingest", "app")
        ledger = AckLedger()
        for _ in range(ROUNDS):
            kill_mid_stream(server, token, ledger)
            server.restart()
            assert len(ledger.acked) <= stored_rows(server) <= len(ledger.sent)
            accepted, duplicates = repost(server, token, ledger.acked)
            assert (accepted, duplicates) == (0, len(ledger.acked))

        # Everything ever sent, once more: unacknowledged events may land now, none twice.
        distinct = {e["event_id"] for e in ledger.sent}
        assert len(distinct) == len(ledger.sent)
        repost(server, token, ledger.sent)
        assert stored_rows(server) == len(distinct)
        assert repost(server, token, ledger.sent) == (0, len(ledger.sent))
    finally:
        server.stop()
