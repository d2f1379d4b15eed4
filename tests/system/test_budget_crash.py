"""A budget charge that preceded an answer survives kill -9 (real server subprocess).

The charge commits in the same transaction as the release record and the audit entry,
before any noisy value exists; so after a SIGKILL at any moment, every release that was
answered with 200 is in the ledger, the ledger equals the sum of the recorded releases,
and the database passes an integrity check.
"""

from __future__ import annotations

import itertools
import random
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server

NANOS = 1_000_000_000
SURFACES = ("chat", "search", "ide", "docs", "other")
TASKS = ("coding", "writing", "qa", "summarization", "analysis", "other")

POLICY = """\
version: 1
name: crash-test
context:
  surface: [chat, search, ide, docs]
  task_type: [coding, writing, qa, summarization, analysis]
  cohort: [control, treatment]
privacy:
  accounting: pure
  max_per_query: 1.0
  per_analyst: 1000.0
  global: 1000.0
  repeat_window: 1h
"""


def yesterday() -> datetime:
    return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)


def start_server(tmp_path: Path, master_key_b64: str) -> tuple[Server, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server = Server(tmp_path / "data", master_key_b64, policy=policy).start()
    ingest = server.create_token("ingest", "app")
    at = yesterday()
    events = [
        event(at=at + timedelta(minutes=i), user=f"u{i % 7}", session=f"s{i}") for i in range(40)
    ]
    assert server.post_events(events, ingest).status_code == 200
    return server, server.create_token("analyst", "alice")


def subset(keys: tuple[str, ...], n: int) -> list[str]:
    """The n-th non-empty subset of keys (n from 1 to 2**len(keys) - 1)."""
    return [k for i, k in enumerate(keys) if n >> i & 1]


def query(day: str, epsilon: float, n: int) -> dict[str, Any]:
    """The n-th of many distinct requests (by filters), so none is a free repeat; past
    the 1953 filter combinations, the budget differs by a millionth."""
    surfaces, tasks, lap = n % 31 + 1, n // 31 % 63 + 1, n // (31 * 63)
    return {
        "metric": "event_count",
        "start": day,
        "end": day,
        "filters": {"surface": subset(SURFACES, surfaces), "task_type": subset(TASKS, tasks)},
        "epsilon": epsilon + lap * 1e-6,
    }


def ledger_after_kill(data_dir: Path) -> tuple[dict[str, int], int, str]:
    """(release_id -> cost nanos, nanos spent on all epochs, integrity_check) of a dead server."""
    db = data_dir / "tacit.db"
    with sqlite3.connect(db) as conn:
        releases = dict(conn.execute("SELECT release_id, cost_nanos FROM releases"))
        spent = conn.execute("SELECT coalesce(sum(nanos), 0) FROM budget_spend").fetchone()[0]
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return releases, int(spent), check


def test_a_charge_answered_with_200_survives_kill_9(tmp_path: Path, master_key_b64: str) -> None:
    server, token = start_server(tmp_path, master_key_b64)
    day = yesterday().date().isoformat()
    try:
        with server.client(token) as client:
            answer = client.post("/v1/queries", json=query(day, 0.3, 0))
        assert answer.status_code == 200, answer.text
        server.kill(signal.SIGKILL)

        releases, spent, check = ledger_after_kill(server.data_dir)
        assert check == "ok"
        assert answer.json()["release_id"] in releases
        assert spent == 3 * NANOS // 10

        server.start()
        with server.client(token) as client:
            left = client.get("/v1/budget").json()["remaining"][day]
        assert left == 1000.0 - 0.3
    finally:
        server.stop()


# Shared by every flooder of every round: each request is new, so none is a free repeat.
_numbers = itertools.count(1)


def _flood(
    server: Server, token: str, day: str, acked: dict[str, int], stop: threading.Event
) -> None:
    with server.client(token, timeout=10.0) as client:
        while not stop.is_set():
            try:
                r = client.post("/v1/queries", json=query(day, 0.01, next(_numbers)))
            except httpx.HTTPError:
                return  # the server died under us: that request was never acknowledged
            if r.status_code == 200:
                body = r.json()
                assert body["repeat"] is False
                acked[body["release_id"]] = round(body["cost"]["value"] * NANOS)


@pytest.mark.parametrize(
    "rounds",
    [pytest.param(3, id="3-rounds"), pytest.param(20, id="20-rounds", marks=pytest.mark.slow)],
)
def test_no_acknowledged_charge_is_lost_when_killed_at_random_moments(
    tmp_path: Path, master_key_b64: str, rounds: int
) -> None:
    server, token = start_server(tmp_path, master_key_b64)
    day = yesterday().date().isoformat()
    acked: dict[str, int] = {}
    rng = random.Random(20261120)  # the kill moments only; no noise comes from here
    try:
        for _ in range(rounds):
            stop = threading.Event()
            flooders = [
                threading.Thread(target=_flood, args=(server, token, day, acked, stop))
                for _ in range(3)
            ]
            for f in flooders:
                f.start()
            time.sleep(rng.uniform(0.2, 1.5))
            server.kill(signal.SIGKILL)
            stop.set()
            for f in flooders:
                f.join(timeout=30)

            releases, spent, check = ledger_after_kill(server.data_dir)
            assert check == "ok"
            missing = set(acked) - set(releases)
            assert not missing, f"answered releases missing from the ledger: {missing}"
            wrong = {r: (c, releases[r]) for r, c in acked.items() if releases[r] != c}
            assert not wrong
            assert spent == sum(releases.values())
            server.start()
        assert acked, "no query was answered in any round: the test proved nothing"
    finally:
        server.stop()


def test_two_server_processes_never_spend_past_a_cap_together(
    tmp_path: Path, master_key_b64: str
) -> None:
    """Two uvicorn workers (two processes, one SQLite file) share one budget exactly."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("per_analyst: 1000.0", "per_analyst: 1.0"))
    server = Server(tmp_path / "data", master_key_b64, policy=policy, args=["--workers", "2"])
    server.start()
    try:
        ingest = server.create_token("ingest", "app")
        at = yesterday()
        assert server.post_events([event(at=at)], ingest).status_code == 200
        token = server.create_token("analyst", "alice")
        day = at.date().isoformat()

        def ask(n: int) -> int:
            # A fresh connection each time, so both workers get requests.
            with server.client(token) as client:
                return client.post("/v1/queries", json=query(day, 0.1, n)).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(ask, range(40)))
        assert (statuses.count(200), statuses.count(403)) == (10, 30)
        with server.client(token) as client:
            assert client.get("/v1/budget").json()["remaining"][day] == 0.0
    finally:
        server.stop()
    releases, spent, _ = ledger_after_kill(server.data_dir)
    assert spent == sum(releases.values()) == NANOS
