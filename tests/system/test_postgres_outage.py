"""A PostgreSQL that goes away under a running service: 503s, then recovery by itself.

The test runs a cluster of its own (tests/pg.py: ``pg_cluster``) so that it can stop it
the hard way (``pg_ctl stop -m immediate``, as a crash or a failover looks to a client)
under a real `tacit serve`, and start it again on the same port. While it is down, every
route that needs the database answers 503 ``store_unavailable`` with Retry-After in the
error envelope, never the 500 of a bug, and no response or log line holds an identifier
the clients sent. When it is back, ingestion resumes without restarting Tacit, and every
event acknowledged before the outage is still there. A query charged just before the
database went away (in-process: the outage is timed between the charge and the
aggregation) answers 503 saying its charge stands, and the ledger keeps it.

Requests wait at most TACIT_DATABASE_POOL_TIMEOUT_S for a connection; the test lowers it
so that an outage costs each refused request half a second, not the default's seconds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import make_settings
from factories import event
from fastapi.testclient import TestClient
from hardening.test_errors_leak import leaks_in
from pg import PgCluster, PgServer
from server import Server
from system.test_canary_scan import Canaries

from service.api.app import create_app
from service.ops.tokens import create_token
from service.store.base import Role

POOL_TIMEOUT_S = 0.5
RECOVERY_S = 30.0  # the longest the service may take to notice the database is back


@pytest.fixture
def database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh migrated database on the private cluster; the cluster runs again after."""
    if not pg_cluster.running:  # an earlier test failed while it was stopped
        pg_cluster.start()
    server = PgServer(pg_cluster.url)
    url = server.create_database()
    try:
        yield url
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
        server.drop_database(url)
        server.close()


@pytest.fixture
def tacit(tmp_path: Path, master_key_b64: str, database: str) -> Iterator[Server]:
    server = Server(
        tmp_path / "data",
        master_key_b64,
        database_url=database,
        env={"TACIT_DATABASE_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S)},
        args=["--access-log"],  # so the scan of the log covers every request's line too
    )
    with server:
        yield server


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def a_query() -> dict[str, Any]:
    return {"metric": "event_count", "start": today(), "end": today(), "epsilon": 0.1}


def batch(canaries: Canaries, size: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        event(
            at=now,
            user=canaries.new("user"),
            session=canaries.new("session"),
            event_id=canaries.new("eid"),
        )
        for _ in range(size)
    ]


def assert_store_unavailable(response: httpx.Response) -> dict[str, Any]:
    """503, Retry-After in whole seconds, the error envelope with the outage's code."""
    where = f"{response.request.method} {response.request.url.path}"
    assert response.status_code == 503, f"{where}: {response.status_code} {response.text}"
    assert int(response.headers["Retry-After"]) >= 1, where
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "store_unavailable", where
    assert error["message"] and "bug" not in error["message"], where
    return error


def post_until_stored(
    send: Callable[[], httpx.Response], seconds: float = RECOVERY_S
) -> tuple[httpx.Response, int]:
    """Send until the answer is 200; every refusal before it must be the outage's 503."""
    deadline = time.monotonic() + seconds
    refused = 0
    while True:
        response = send()
        if response.status_code == 200:
            return response, refused
        assert_store_unavailable(response)
        refused += 1
        assert time.monotonic() < deadline, f"still refused after {seconds} s: {response.text}"
        time.sleep(0.1)


def test_while_the_database_is_down_every_route_needing_it_answers_503_store_unavailable(
    tacit: Server, pg_cluster: PgCluster
) -> None:
    canaries = Canaries()
    tokens = {
        role: tacit.create_token(role, f"outage-{role}", "app" if role == "ingest" else None)
        for role in ("ingest", "analyst", "compliance", "admin")
    }
    assert tacit.post_events(batch(canaries, 5), tokens["ingest"]).status_code == 200
    with tacit.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "lake": "ok"}}

    pg_cluster.stop()
    responses: list[httpx.Response] = []

    def send(method: str, path: str, role: str, **kw: Any) -> httpx.Response:
        with tacit.client(tokens[role]) as client:
            response = client.request(method, path, **kw)
        responses.append(response)
        return response

    # The first batch may meet a pooled connection the server's exit broke, the next
    # ones find no connection at all: both are the outage.
    for _ in range(3):
        send("POST", "/v1/events", "ingest", json={"events": batch(canaries, 3)})
    send("POST", "/v1/queries", "analyst", json=a_query())
    send("POST", "/v1/queries/preview", "analyst", json=a_query())
    send("GET", "/v1/budget", "analyst")
    send("GET", "/v1/metrics", "analyst")  # the token is checked in the database
    send("GET", "/v1/audit", "compliance")
    send("POST", "/v1/subjects/erase", "admin", json={"user_id": canaries.new("user")})
    for response in responses:
        assert_store_unavailable(response)

    with tacit.client() as client:
        health = client.get("/healthz")  # liveness: it needs no database
        ready = client.get("/readyz")  # readiness: it does
        metrics = client.get("/metrics").text
    assert health.status_code == 200
    assert ready.status_code == 503 and int(ready.headers["Retry-After"]) >= 1
    not_ready = ready.json()["error"]
    assert not_ready["code"] == "not_ready"
    assert not_ready["checks"] == {"store": "unavailable", "lake": "ok"}
    assert "127.0.0.1" not in ready.text  # where the database is stays in the server's log
    responses.append(ready)
    assert 'tacit_store_unavailable_total{route_class="ingest"} 3.0' in metrics
    assert 'tacit_store_unavailable_total{route_class="query"} 4.0' in metrics
    assert 'tacit_store_unavailable_total{route_class="other"} 2.0' in metrics

    texts = [r.text + json.dumps(dict(r.headers)) for r in responses]
    assert [canaries.kinds_in(t) for t in texts if canaries.kinds_in(t)] == []
    assert [leaks_in(t, tacit.data_dir) for t in texts if leaks_in(t, tacit.data_dir)] == []
    tacit.stop()
    log = tacit.log_text()
    assert canaries.kinds_in(log) == set()
    assert "probably a bug" not in log
    assert re.search(r"Traceback", log) is None


def test_ingestion_resumes_by_itself_when_the_database_returns_and_keeps_what_it_acknowledged(
    tacit: Server, pg_cluster: PgCluster, database: str
) -> None:
    canaries = Canaries()
    ingest = tacit.create_token("ingest", "outage", "app")
    analyst = tacit.create_token("analyst", "alice")
    acknowledged = 0
    for _ in range(4):
        before = tacit.post_events(batch(canaries, 25), ingest)
        assert before.status_code == 200, before.text
        acknowledged += before.json()["accepted"]
    assert acknowledged == 100

    pg_cluster.stop()
    refused = batch(canaries, 10)
    assert_store_unavailable(tacit.post_events(refused, ingest))

    pg_cluster.start()  # the same port: the service's URL is unchanged
    # The client's retry of the refused batch, as service/client.py would send it.
    stored, _ = post_until_stored(lambda: tacit.post_events(refused, ingest))
    assert stored.json()["accepted"] == 10  # nothing of it was stored while refused
    with tacit.client() as client:
        assert client.get("/readyz").status_code == 200  # ready again, no restart
    after = tacit.post_events(batch(canaries, 5), ingest)
    assert after.status_code == 200 and after.json()["accepted"] == 5
    with tacit.client(analyst) as client:
        assert client.get("/v1/budget").status_code == 200

    assert scalar(database, "SELECT count(*) FROM events") == acknowledged + 10 + 5


def test_a_query_charged_before_the_database_went_away_answers_503_and_its_charge_stands(
    tmp_path: Path, master_key_b64: str, pg_cluster: PgCluster, database: str
) -> None:
    settings = make_settings(
        tmp_path, master_key_b64, database_url=database, database_pool_timeout_s=POOL_TIMEOUT_S
    )
    app = create_app(settings)
    state = app.state.tacit
    analyst = {"Authorization": f"Bearer {create_token(state.store, 'alice', Role.ANALYST, None)}"}
    engine = state.queries.engine
    aggregate = engine.aggregate

    def outage_then_aggregate(plan: Any) -> Any:
        pg_cluster.stop()  # after the charge committed, before any data is read
        return aggregate(plan)

    engine.aggregate = outage_then_aggregate
    with TestClient(app) as client:
        spent_before = client.get("/v1/budget", headers=analyst).json()["remaining"]
        answer = client.post("/v1/queries", json=a_query(), headers=analyst)
        error = assert_store_unavailable(answer)
        assert "charge stands" in error["message"]
        release_id = error["release_id"]

        engine.aggregate = aggregate
        pg_cluster.start()
        budget, _ = post_until_stored(lambda: client.get("/v1/budget", headers=analyst))

    assert budget.json()["remaining"][today()] == pytest.approx(spent_before[today()] - 0.1)
    charged = scalar(
        database, f"SELECT count(*) FROM releases WHERE release_id = '{release_id}'"
    )  # the release id is ours: rel_ and hex
    assert charged == 1
