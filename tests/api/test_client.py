"""The Python client against the real server (a `tacit serve` subprocess): nothing
acknowledged is lost and nothing is stored twice across restarts, Retry-After is honoured,
a full buffer is counted and reported, per-event rejections reach the caller."""

from __future__ import annotations

import logging
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import event
from server import Server, create_token_in_process

from privacy.keyring import MasterKey
from service.client import BatchResult, Client, ClientClosed, new_event_id

EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # privacy.events.EventId
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def server(tmp_path: Path, master_key_b64: str) -> Iterator[Server]:
    """A server of the test's own, free to be stopped and restarted."""
    with Server(tmp_path / "data", master_key_b64) as running:
        yield running


@pytest.fixture
def token(server: Server) -> str:
    return create_token_in_process(server.data_dir, "ingest", "app")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One server for the tests that leave it running, with an ingest token of each test's
    own source (so their events never meet)."""
    with Server(tmp_path_factory.mktemp("shared") / "data", MasterKey.generate_base64()) as s:
        yield s, ""


@pytest.fixture
def source(shared: tuple[Server, str], request: pytest.FixtureRequest) -> tuple[Server, str]:
    server = shared[0]
    name = request.node.name[-60:].replace("[", "-").replace("]", "")
    return server, create_token_in_process(server.data_dir, "ingest", name)


def stored(server: Server, source: str | None = None) -> tuple[int, int]:
    """(rows in events, distinct query pseudonyms), of one source if given, read from the
    SQLite file itself."""
    conn = sqlite3.connect(server.data_dir / "tacit.db")
    where = "" if source is None else "WHERE source_id = (SELECT id FROM sources WHERE name = ?)"
    try:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT query_ps) FROM events {where}",
            () if source is None else (source,),
        ).fetchone()
        return int(row[0]), int(row[1])
    finally:
        conn.close()


def fresh(n: int, now: datetime | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """n valid events with distinct query ids and no event id (the client makes one)."""
    at = now or datetime.now(UTC)
    events = []
    for i in range(n):
        e = event("click_through", at=at, user=f"user-{i % 50}", **overrides)
        del e["event_id"]
        events.append(e)
    return events


class Results:
    """Collects what on_result receives (called from the client's thread)."""

    def __init__(self) -> None:
        self.batches: list[BatchResult] = []
        self._lock = threading.Lock()

    def __call__(self, result: BatchResult) -> None:
        with self._lock:
            self.batches.append(result)

    @property
    def acknowledged(self) -> int:
        with self._lock:
            return sum(b.events for b in self.batches if b.ok)


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# --- ids -----------------------------------------------------------------------------------


def test_generated_event_ids_are_uuid7_valid_as_event_ids_and_ordered_by_time() -> None:
    ids = [new_event_id(ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert all(UUID7.match(i) and EVENT_ID.match(i) for i in ids)
    assert ids == sorted(ids)
    assert len({new_event_id(1) for _ in range(1000)}) == 1000


# --- durability and idempotency across restarts ------------------------------------------


def test_server_restarts_mid_stream_lose_nothing_acknowledged_and_store_nothing_twice(
    server: Server, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = Results()
    client = Client(
        server.url, token, batch_size=50, flush_interval=0.05, on_result=results,
        max_attempts=None, backoff_base=0.05, backoff_max=0.5,
    )  # fmt: skip
    stop = threading.Event()
    tracked: list[dict[str, Any]] = []

    def pump() -> None:
        while not stop.is_set():
            (e,) = fresh(1)
            tracked.append(e)
            client.track(e, block=True)
            time.sleep(0.002)

    sender = threading.Thread(target=pump)
    sender.start()
    try:
        for restart in (
            lambda: server.restart(signal.SIGTERM),
            lambda: server.restart(signal.SIGKILL),
        ):
            seen = results.acknowledged
            wait_for(lambda seen=seen: results.acknowledged >= seen + 300)
            restart()
        seen = results.acknowledged
        wait_for(lambda: results.acknowledged >= seen + 300)
    finally:
        stop.set()
        sender.join()
    assert client.flush(timeout=120)
    stats = client.close()

    n = len(tracked)
    assert stats.tracked == n
    assert (stats.failed, stats.dropped_overflow, stats.abandoned, stats.rejected) == (0, 0, 0, 0)
    assert stats.accepted + stats.duplicates == n
    assert stats.retries > 0  # the restarts did interrupt the stream
    assert stored(server) == (n, n)  # every event once: none lost, none twice
    logged = caplog.text
    assert token not in logged
    assert not any(e["user_id"] in logged or e["query_id"] in logged for e in tracked)


def test_resending_an_event_id_is_a_duplicate_reported_to_the_caller(
    source: tuple[Server, str], request: pytest.FixtureRequest
) -> None:
    server, token = source
    results = Results()
    (e,) = fresh(1)
    e["event_id"] = "app-made-id-1"
    with Client(server.url, token, on_result=results) as client:
        client.track(e)
        assert client.flush(timeout=30)
        client.track(e)
    assert client.stats.accepted == 1 and client.stats.duplicates == 1
    [dup] = [r for b in results.batches for r in b.results]
    assert (dup.event_id, dup.status) == ("app-made-id-1", "duplicate")
    assert stored(server, request.node.name[-60:]) == (1, 1)


def test_a_lone_event_is_sent_after_flush_interval_without_a_flush(
    source: tuple[Server, str], request: pytest.FixtureRequest
) -> None:
    server, token = source
    results = Results()
    with Client(server.url, token, batch_size=100, flush_interval=0.2, on_result=results) as client:
        client.track(fresh(1)[0])
        wait_for(lambda: results.acknowledged == 1)
        assert client.stats.accepted == 1
    assert stored(server, request.node.name[-60:]) == (1, 1)


# --- retries ---------------------------------------------------------------------------------


def test_a_429_is_retried_after_the_servers_retry_after_not_the_backoff(
    tmp_path: Path, master_key_b64: str
) -> None:
    # 500 events/s per token with a burst of 1000: the third batch of 500 takes the bucket
    # into debt and the fourth is refused with 429 and Retry-After, before it is read.
    env = {"TACIT_RATE_LIMIT_EVENTS_PER_S": "500"}
    with Server(tmp_path / "data", master_key_b64, env=env) as server:
        token = create_token_in_process(server.data_dir, "ingest", "app")
        results = Results()
        # The backoff alone would wait at most 2 ms: any longer wait is the server's.
        with Client(
            server.url, token, batch_size=500, on_result=results,
            backoff_base=0.001, backoff_max=0.002,
        ) as client:  # fmt: skip
            for e in fresh(2000):
                client.track(e)
        retried = [b for b in results.batches if b.attempts > 1]
        assert retried, "no batch was refused: the rate limit did not apply"
        assert all(b.ok and b.waits and min(b.waits) >= 1.0 for b in retried)
        assert client.stats.accepted == 2000 and client.stats.failed == 0
        assert stored(server) == (2000, 2000)


def test_a_refused_token_fails_the_batch_at_once_and_says_why(
    shared: tuple[Server, str],
) -> None:
    server = shared[0]
    results = Results()
    with Client(server.url, "tct_not-a-real-token", on_result=results) as client:
        for e in fresh(3):
            client.track(e)
    [batch] = results.batches
    assert batch.attempts == 1 and batch.status_code == 401
    assert batch.error is not None and "unauthorized" in batch.error
    assert client.stats.failed == 3 and client.stats.accepted == 0


# --- overflow -------------------------------------------------------------------------------


def test_a_full_buffer_drops_new_events_counts_reports_and_warns(
    server: Server, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tacit.client")
    server.stop()  # nothing drains the buffer while the server is down
    results = Results()
    client = Client(
        server.url, token, batch_size=10, max_buffer=20, flush_interval=0.01,
        on_result=results, max_attempts=None, backoff_base=0.05, backoff_max=0.2,
    )  # fmt: skip
    for e in fresh(100):
        client.track(e)
    dropped = client.stats.dropped_overflow
    assert dropped >= 100 - 20 - 10  # at most a buffer and one batch in flight were kept
    server.start()
    assert client.flush(timeout=60)
    stats = client.close()

    assert stats.dropped_overflow == dropped and stats.tracked == 100
    assert stats.accepted == 100 - dropped and stats.failed == 0
    assert sum(b.dropped_overflow for b in results.batches) == dropped
    assert "buffer is full" in caplog.text
    # One warning per overflow episode (the buffer may fill, drain a little and fill again).
    episodes = re.findall(r"dropped (\d+) events while its buffer was full", caplog.text)
    assert sum(int(n) for n in episodes) == dropped
    assert stored(server) == (100 - dropped, 100 - dropped)


def test_closing_wakes_a_track_waiting_for_room_with_client_closed(
    server: Server, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tacit.client")
    server.stop()  # nothing drains the buffer
    client = Client(
        server.url, token, batch_size=10, max_buffer=20, flush_interval=0.01,
        max_attempts=None, backoff_base=0.05, backoff_max=0.2,
    )  # fmt: skip
    raised: list[BaseException] = []

    def backfill() -> None:  # a simulation or backfill: every event, waiting for room
        try:
            for e in fresh(100):
                client.track(e, block=True)
        except ClientClosed as exc:
            raised.append(exc)

    sender = threading.Thread(target=backfill)
    sender.start()
    deadline = time.monotonic() + 30
    while client.pending < 20:  # the buffer is full: the sender waits for room
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stats = client.close(timeout=0)
    sender.join(10)
    assert not sender.is_alive() and len(raised) == 1
    # The waiting event was refused, not dropped: only what was queued is abandoned.
    assert stats.dropped_overflow == 0 and "buffer is full" not in caplog.text
    # A full buffer and at most one batch in flight; none could be delivered.
    assert 20 <= stats.tracked <= 30 and stats.abandoned == stats.tracked


# --- rejections -----------------------------------------------------------------------------


def test_rejected_events_reach_on_result_with_reason_and_fields(
    source: tuple[Server, str],
) -> None:
    server, token = source
    results = Results()
    now = datetime.now(UTC)
    good, bad, future = fresh(3, now)
    bad["event_type"], bad["payload"] = "reformulation", {"similarity": 2.0}
    future["timestamp"] = (now + timedelta(days=3)).isoformat()
    with Client(server.url, token, on_result=results, stamp_sent_at=False) as client:
        for e in (good, bad, future):
            client.track(e)
    rejected = {r.reason: r for b in results.batches for r in b.results}
    assert set(rejected) == {"invalid", "in_future"}
    assert rejected["invalid"].status == "rejected"
    assert [err["field"] for err in rejected["invalid"].errors] == ["payload.similarity"]
    assert rejected["invalid"].event is not None
    assert rejected["invalid"].event["query_id"] == bad["query_id"]
    assert bad["user_id"] not in repr(rejected["invalid"])  # safe to log
    assert (client.stats.accepted, client.stats.rejected) == (1, 2)
