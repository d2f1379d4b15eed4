"""What clients sent to a server that is being killed, and what it acknowledged.

The crash tests (tests/system/test_crash_durability.py, test_lake_crash.py,
tests/hardening/test_crash_loop.py) stream batches at a real server, SIGKILL it, and
check afterwards that every acknowledged event is stored exactly once: the helpers they
share live here.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from factories import PAYLOADS, event
from server import Server

__all__ = ["AckLedger", "repost", "stream"]


@dataclass
class AckLedger:
    """What the clients sent and which of it the server acknowledged."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    acked: list[dict[str, Any]] = field(default_factory=list)
    acked_batches: int = 0
    unexpected: list[str] = field(default_factory=list)  # any answer but 200, all accepted
    lock: threading.Lock = field(default_factory=threading.Lock)


_TYPES: Iterator[str] = itertools.cycle(PAYLOADS)
_TYPES_LOCK = threading.Lock()


def stream(
    server: Server, token: str, ledger: AckLedger, stop: threading.Event, batch: int = 100
) -> None:
    """Post batches of ``batch`` fresh events (every event type in turn) until told to
    stop or the server goes away; the ledger records each batch before it is sent and once
    it is acknowledged."""
    with server.client(token, timeout=10.0) as client:
        while not stop.is_set():
            now = datetime.now(UTC)
            with _TYPES_LOCK:
                types = [next(_TYPES) for _ in range(batch)]
            events = [event(t, at=now) for t in types]
            with ledger.lock:
                ledger.sent += events
            try:
                response = client.post("/v1/events", json={"events": events})
            except httpx.TransportError:
                return  # killed mid-request: this batch may or may not be stored
            if response.status_code != 200 or response.json()["rejected"]:
                ledger.unexpected.append(f"{response.status_code}: {response.text[:200]}")
                return
            with ledger.lock:
                ledger.acked += events
                ledger.acked_batches += 1


def repost(server: Server, token: str, events: list[dict[str, Any]]) -> tuple[int, int]:
    """Post ``events`` again in batches of 1000; (accepted, duplicates) summed.

    As a client must, it waits out a 429 (the token's event rate: nothing of that batch
    was taken) and sends the same batch again; re-posting a whole run's events at once
    can pass the rate when the machine was fast enough to send many."""
    accepted = duplicates = 0
    with server.client(token) as client:
        for start in range(0, len(events), 1000):
            batch = {"events": events[start : start + 1000]}
            response = client.post("/v1/events", json=batch)
            for _ in range(120):
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
                response = client.post("/v1/events", json=batch)
            assert response.status_code == 200, response.text
            body = response.json()
            accepted += body["accepted"]
            duplicates += body["duplicates"]
    return accepted, duplicates
