"""Backpressure: over its rate a token gets 429, a full pool gets 503, both with
Retry-After in the error envelope; a refused batch is never stored, an acknowledged one
always is; and a throttled or flooding ingest token never takes an analyst's or the
health check's place."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, make_settings
from factories import event
from fastapi.testclient import TestClient
from server import Server, create_token_in_process

from service.api.app import create_app
from service.ops.tokens import create_token
from service.store.base import Role


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Limited:
    """An in-process app with tight limits, two ingest tokens and an analyst, and the
    limiter's clock in the test's hand."""

    def __init__(self, tmp_path: Path, master_key_b64: str, **limits: Any) -> None:
        settings = make_settings(tmp_path, master_key_b64, **limits)
        self.app = create_app(settings, clock=Clock(datetime.now(UTC)))
        store = self.app.state.tacit.store
        self.tokens = {
            "ingest": create_token(store, "app-1", Role.INGEST, "app-1"),
            "ingest-2": create_token(store, "app-2", Role.INGEST, "app-2"),
            "analyst": create_token(store, "alice", Role.ANALYST, None),
            "admin": create_token(store, "root", Role.ADMIN, None),
        }
        self.clock = FakeClock()
        self.app.state.tacit.limiter.clock = self.clock
        self.client = TestClient(self.app)

    def post(self, who: str, events: list[dict[str, Any]]) -> Any:
        return self.client.post(
            "/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )

    def get(self, who: str | None, path: str) -> Any:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.get(path, headers=headers)

    def stored(self) -> int:
        rows = self.app.state.tacit.store
        from pg import store_rows

        return int(store_rows(rows, "SELECT count(*) FROM events")[0][0])


@pytest.fixture
def limited(tmp_path: Path, master_key_b64: str) -> Iterator[Limited]:
    setup = Limited(
        tmp_path,
        master_key_b64,
        rate_limit_requests_per_s=1.0,
        rate_limit_burst_s=3.0,
        rate_limit_events_per_s=10.0,
        max_batch_events=100,
    )
    with setup.client:
        yield setup


def batch(n: int) -> list[dict[str, Any]]:
    return [event(at=datetime.now(UTC)) for _ in range(n)]


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == code
    assert "retry after" in response.json()["error"]["message"]


def test_a_token_over_its_request_rate_gets_429_with_retry_after(limited: Limited) -> None:
    statuses = [limited.get("admin", "/v1/audit").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]  # the burst
    assert_refused(limited.get("admin", "/v1/audit"), 429, "too_many_requests")
    limited.clock.now += 1.0  # one request's worth of refill
    assert limited.get("admin", "/v1/audit").status_code == 200


def test_one_token_over_its_rate_does_not_throttle_another(limited: Limited) -> None:
    for _ in range(3):
        limited.post("ingest", batch(1))
    assert limited.post("ingest", batch(1)).status_code == 429
    assert limited.post("ingest-2", batch(1)).status_code == 200
    assert limited.get("analyst", "/v1/policy").status_code == 200


def test_health_and_metrics_are_never_limited(limited: Limited) -> None:
    for _ in range(20):
        assert limited.get(None, "/healthz").status_code == 200
        assert limited.get(None, "/metrics").status_code == 200


def test_a_batch_may_drive_the_event_rate_into_debt_and_the_next_waits_unread(
    limited: Limited,
) -> None:
    assert limited.post("ingest", batch(100)).json()["accepted"] == 100  # the whole burst
    assert_refused(limited.post("ingest", batch(5)), 429, "too_many_requests")
    assert limited.stored() == 100  # the refused batch left nothing behind
    limited.clock.now += 0.5  # 5 events' worth of refill: solvent again
    assert limited.post("ingest", batch(100)).json()["accepted"] == 100  # 95 in debt
    limited.clock.now += 9.0
    assert_refused(limited.post("ingest", batch(1)), 429, "too_many_requests")
    limited.clock.now += 1.0
    assert limited.post("ingest", batch(1)).status_code == 200
    assert limited.stored() == 201


def test_refusals_are_counted_in_the_metrics(limited: Limited) -> None:
    for _ in range(4):
        limited.get("admin", "/v1/audit")
    text = limited.get(None, "/metrics").text
    assert 'tacit_refused_requests_total{reason="rate",route_class="other"} 1.0' in text


# --- the real server -------------------------------------------------------------------


def hold_upload(server: Server, token: str) -> socket.socket:
    """A POST /v1/events whose body never finishes: it holds an ingest slot."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b'{"events": ['
    )
    return sock


@pytest.fixture(scope="module")
def tight_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, str]]]:
    from privacy.keyring import MasterKey

    data_dir = tmp_path_factory.mktemp("backpressure") / "data"
    data_dir.mkdir()
    tokens = {
        "ingest": create_token_in_process(data_dir, "ingest", "app", "app"),
        "ingest-2": create_token_in_process(data_dir, "ingest", "app-2", "app"),  # same source
        "analyst": create_token_in_process(data_dir, "analyst", "alice"),
        "compliance": create_token_in_process(data_dir, "compliance", "carol"),
    }
    env = {
        "TACIT_MAX_RUNNING_INGEST": "2",
        "TACIT_MAX_WAIT_S": "0.2",
        "TACIT_RATE_LIMIT_EVENTS_PER_S": "2000",
        "TACIT_RATE_LIMIT_REQUESTS_PER_S": "200",
    }
    with Server(data_dir, MasterKey.generate_base64(), env=env) as server:
        yield server, tokens


def test_a_full_ingest_pool_answers_503_while_analysts_and_health_are_served(
    tight_server: tuple[Server, dict[str, str]],
) -> None:
    server, tokens = tight_server
    held = [hold_upload(server, tokens["ingest"]) for _ in range(2)]
    try:
        with server.client(tokens["ingest"]) as client:
            # The held uploads reach the app asynchronously: wait for the pool to fill.
            for _ in range(200):
                response = client.post("/v1/events", json={"events": batch(1)})
                if response.status_code == 503:
                    break
            assert_refused(response, 503, "unavailable")
        with server.client(tokens["compliance"]) as client:
            assert client.get("/v1/policy").status_code == 200
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in held:
            sock.close()
    with server.client(tokens["ingest"]) as client:
        for _ in range(200):  # the slots come back once the server sees the sockets close
            if client.post("/v1/events", json={"events": batch(1)}).status_code == 200:
                break
        else:
            raise AssertionError("the ingest pool never drained")


def test_under_a_flood_every_acknowledged_event_is_stored_and_every_refusal_is_429_or_503(
    tight_server: tuple[Server, dict[str, str]],
) -> None:
    server, tokens = tight_server
    acked: list[dict[str, Any]] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def flood() -> None:
        with server.client(tokens["ingest"]) as client:
            for _ in range(40):
                events = batch(100)
                response = client.post("/v1/events", json={"events": events})
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        acked.extend(events)
                    else:
                        assert "Retry-After" in response.headers

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    print(f"status mix under the flood: {dict(statuses)}")
    assert set(statuses) <= {200, 429, 503}
    assert statuses[200] > 0 and statuses[429] > 0
    with server.client(tokens["ingest-2"]) as client:  # its own rate, the same source
        for start in range(0, len(acked), 1000):
            while True:  # the retry a client would make, after its Retry-After
                response = client.post("/v1/events", json={"events": acked[start : start + 1000]})
                if response.status_code == 200:
                    break
                assert response.status_code in (429, 503)
                threading.Event().wait(float(response.headers["Retry-After"]))
            assert response.json()["duplicates"] == len(acked[start : start + 1000])
