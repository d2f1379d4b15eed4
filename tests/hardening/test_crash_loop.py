"""Crash loop: stream events and queries at the real server, SIGKILL it at a random
moment, restart it, check nothing acknowledged was lost or doubled; 20 rounds.

Every round, two clients stream event batches of random sizes (some carrying events
already acknowledged, as a retrying client would) and one analyst asks distinct queries.
The kill comes at a random moment once the round's first batch was acknowledged. On the
dead server's files: the database passes ``PRAGMA integrity_check``; the events stored
lie between the events acknowledged and the events sent; every answered release is in
the ledger with its cost, and the budget spent is the sum of the recorded releases.
After the restart, a re-post of the round's acknowledged events is 100 % duplicates.
At the end every event ever sent is posted once more: the row count must then equal the
number of distinct events sent (nothing stored twice).
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from acked import repost
from factories import PAYLOADS, event
from server import Server, create_token_in_process

ROUNDS = 20
NANOS = 1_000_000_000
SURFACES = ("chat", "search", "ide", "docs")
TYPES = itertools.cycle(PAYLOADS)

# A budget large enough that the analyst never runs out within the loop.
POLICY = """\
version: 1
name: crash-loop
context:
  surface: [chat, search, ide, docs]
  task_type: [coding, writing, qa, summarization, analysis]
  cohort: [control, treatment]
privacy:
  accounting: pure
  max_per_query: 1.0
  per_analyst: 100000.0
  global: 100000.0
  repeat_window: 1h
"""


@dataclass
class Ledger:
    """What the clients sent, and which of it the server acknowledged, this round and ever."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> event
    acked: list[dict[str, Any]] = field(default_factory=list)  # this round
    acked_ids: set[str] = field(default_factory=set)  # every round
    acked_batches: int = 0
    releases: dict[str, int] = field(default_factory=dict)  # release_id -> cost nanos
    query_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def stream_events(
    server: Server, token: str, ledger: Ledger, rng: random.Random, stop: threading.Event
) -> None:
    """Post batches until told to stop or the server dies under us."""
    with server.client(token, timeout=10.0) as client:
        while not stop.is_set():
            now = datetime.now(UTC)
            batch = [event(next(TYPES), at=now) for _ in range(rng.randint(1, 200))]
            with ledger.lock:
                ledger.sent.update((e["event_id"], e) for e in batch)
                if ledger.acked and rng.random() < 0.2:  # a client retrying earlier events
                    batch += rng.sample(ledger.acked, min(5, len(ledger.acked)))
            try:
                response = client.post("/v1/events", json={"events": batch})
            except httpx.TransportError:
                return  # killed mid-request: this batch may or may not be stored
            if response.status_code != 200 or response.json()["rejected"]:
                ledger.unexpected.append(f"events {response.status_code}: {response.text[:300]}")
                return
            with ledger.lock:
                ledger.acked += batch
                ledger.acked_ids.update(e["event_id"] for e in batch)
                ledger.acked_batches += 1


def ask_queries(
    server: Server, token: str, day: str, ledger: Ledger, stop: threading.Event
) -> None:
    """Distinct queries (none a free repeat of another) until stopped or killed."""
    with server.client(token, timeout=10.0) as client:
        for n in ledger.query_numbers:  # never reused: a killed query may have been charged
            if stop.is_set():
                return
            subset = [s for i, s in enumerate(SURFACES) if n >> i & 1] or list(SURFACES)
            body = {
                "metric": "event_count",
                "start": day,
                "end": day,
                "filters": {"surface": subset},
                "epsilon": 0.01 + (n % 100_000) * 1e-6,  # distinct, so no free repeats
            }
            try:
                response = client.post("/v1/queries", json=body)
            except httpx.TransportError:
                return  # killed: that query was never answered
            if response.status_code != 200:
                ledger.unexpected.append(f"query {response.status_code}: {response.text[:300]}")
                return
            answer = response.json()
            if answer["repeat"]:
                ledger.unexpected.append(f"query {n} was answered as a repeat")
                return
            with ledger.lock:
                ledger.releases[answer["release_id"]] = round(answer["cost"]["value"] * NANOS)


@dataclass(frozen=True)
class DeadState:
    integrity: str
    events: int
    releases: dict[str, int]
    spent_nanos: int


def read_dead_server(data_dir: Path) -> DeadState:
    """The database of a killed server, read straight from its files."""
    conn = sqlite3.connect(data_dir / "tacit.db")
    try:
        return DeadState(
            integrity=conn.execute("PRAGMA integrity_check").fetchone()[0],
            events=conn.execute("SELECT count(*) FROM events").fetchone()[0],
            releases=dict(conn.execute("SELECT release_id, cost_nanos FROM releases")),
            spent_nanos=conn.execute("SELECT coalesce(sum(nanos), 0) FROM budget_spend").fetchone()[
                0
            ],
        )
    finally:
        conn.close()


def run_round(
    server: Server, tokens: dict[str, str], day: str, ledger: Ledger, rng: random.Random
) -> None:
    stop = threading.Event()
    target = ledger.acked_batches + 1
    workers = [
        threading.Thread(
            target=stream_events,
            args=(server, tokens["ingest"], ledger, random.Random(rng.random()), stop),
        )
        for _ in range(2)
    ]
    workers.append(
        threading.Thread(target=ask_queries, args=(server, tokens["analyst"], day, ledger, stop))
    )
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while ledger.acked_batches < target and time.monotonic() < deadline and not ledger.unexpected:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.6))  # the random moment
    server.crash()  # writer process and server at once; the clients are still sending
    stop.set()
    for worker in workers:
        worker.join(30)
    assert ledger.unexpected == []
    assert ledger.acked_batches >= target, "the stream never got going"


@pytest.mark.slow  # ~1.5-2 min: twenty restarts of the real server
def test_nothing_acknowledged_is_lost_or_doubled_across_twenty_sigkills(
    tmp_path: Path, master_key_b64: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tokens = {
        "ingest": create_token_in_process(data_dir, "ingest", "app", "app"),
        "analyst": create_token_in_process(data_dir, "analyst", "alice"),
    }
    server = Server(data_dir, master_key_b64, policy=policy)
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    rng = random.Random(20261126)  # kill moments and batch sizes only
    ledger = Ledger()
    answered = 0
    try:
        for _ in range(ROUNDS):
            server.start()
            if ledger.acked:  # the previous round's acknowledged events, once more
                assert repost(server, tokens["ingest"], ledger.acked) == (0, len(ledger.acked))
                ledger.acked = []
            run_round(server, tokens, day, ledger, rng)

            dead = read_dead_server(data_dir)
            assert dead.integrity == "ok"
            assert len(ledger.acked_ids) <= dead.events <= len(ledger.sent)
            lost = set(ledger.releases) - set(dead.releases)
            assert not lost, f"answered releases missing from the ledger: {lost}"
            assert all(dead.releases[r] == cost for r, cost in ledger.releases.items())
            assert dead.spent_nanos == sum(dead.releases.values())
            answered = len(ledger.releases)

        server.start()
        assert repost(server, tokens["ingest"], ledger.acked) == (0, len(ledger.acked))
        everything = list(ledger.sent.values())
        repost(server, tokens["ingest"], everything)  # unacknowledged events may land now
        assert read_stored(data_dir) == len(ledger.sent)
        assert repost(server, tokens["ingest"], everything) == (0, len(everything))
        assert answered > 0, "no query was answered in any round: the budget half proved nothing"
    finally:
        server.stop()


def read_stored(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "tacit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()
