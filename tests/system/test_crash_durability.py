"""Durability: the real server is SIGKILLed in the middle of a stream of batches; after a
restart every event that got a 200 is stored, exactly once.

Two client threads stream batches with unique event ids; the main thread kills the
server while they are sending, restarts it and checks: the rows stored lie between the
events acknowledged and the events sent, and a re-post of every acknowledged event is
answered 100 % duplicates. At the end every event ever sent is posted again; the row
count must then equal the number of distinct events sent (nothing stored twice).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import PAYLOADS, event
from server import Server

ROUNDS = 3
CLIENTS = 2
BATCH = 100
ACKS_BEFORE_KILL = 8  # batches acknowledged in a round before the kill
TYPES = itertools.cycle(PAYLOADS)


@dataclass
class Ledger:
    """What the clients sent and which of it the server acknowledged."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    acked: list[dict[str, Any]] = field(default_factory=list)
    acked_batches: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def stream(server: Server, token: str, ledger: Ledger, stop: threading.Event) -> None:
    """Post batches until told to stop or the server goes away."""
    with server.client(token, timeout=10.0) as client:
        while not stop.is_set():
            now = datetime.now(UTC)
            batch = [event(next(TYPES), at=now) for _ in range(BATCH)]
            with ledger.lock:
                ledger.sent += batch
            try:
                response = client.post("/v1/events", json={"events": batch})
            except httpx.TransportError:
                return  # killed mid-request: this batch may or may not be stored
            if response.status_code != 200 or response.json()["rejected"]:
                ledger.unexpected.append(f"{response.status_code}: {response.text[:200]}")
                return
            with ledger.lock:
                ledger.acked += batch
                ledger.acked_batches += 1


def stored_rows(server: Server) -> int:
    conn = sqlite3.connect(server.data_dir / "tacit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def repost(server: Server, token: str, events: list[dict[str, Any]]) -> tuple[int, int]:
    """Post ``events`` again in batches of 1000; (accepted, duplicates) summed."""
    accepted = duplicates = 0
    with server.client(token) as client:
        for start in range(0, len(events), 1000):
            response = client.post("/v1/events", json={"events": events[start : start + 1000]})
            assert response.status_code == 200, response.text
            body = response.json()
            accepted += body["accepted"]
            duplicates += body["duplicates"]
    return accepted, duplicates


def kill_mid_stream(server: Server, token: str, ledger: Ledger) -> None:
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
        ledger = Ledger()
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
