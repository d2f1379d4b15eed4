"""A database that cannot be reached is a 503 store_unavailable with Retry-After, in the
error envelope, on every route; any other store failure stays a 500 (a bug).

In-process and on either backend: the store is made to raise what the PostgreSQL backend
raises when its server is gone (:class:`StoreUnavailable`), at the token check, in a
handler and at the write. POST /v1/events is checked on both of its paths: the ASGI
endpoint that serves it, and the FastAPI route that documents it (the same ``ingest()``,
served in an app built without the endpoint in front). A real server stopped under a
real service is tests/system/test_postgres_outage.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from conftest import T0, Api, Clock
from factories import event
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.routes.events import IngestEndpoint
from service.ops.tokens import create_token
from service.settings import Settings
from service.store.base import Role, StoreError, StoreUnavailable

OUTAGE = StoreUnavailable("PostgreSQL at db.internal:5432/tacit is unavailable: test")


def unavailable(*args: Any, **kwargs: Any) -> Any:
    raise OUTAGE


def assert_store_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert "bug" not in error["message"]
    assert "db.internal" not in response.text  # where the database is stays in the server
    return error


def store_unavailable_count(client: TestClient, route_class: str) -> float:
    line = f'tacit_store_unavailable_total{{route_class="{route_class}"}} '
    for text in client.get("/metrics").text.splitlines():
        if text.startswith(line):
            return float(text.removeprefix(line))
    return 0.0


@pytest.fixture(params=["endpoint", "route"])
def ingestion(request: pytest.FixtureRequest, settings: Settings, clock: Clock) -> Iterator[Api]:
    """The app, serving POST /v1/events through its ASGI endpoint or its FastAPI route."""
    app: FastAPI = create_app(settings, clock=clock)
    if request.param == "route":  # before the middleware stack is built, on first call
        app.user_middleware = [m for m in app.user_middleware if m.cls is not IngestEndpoint]
    store = app.state.tacit.store
    tokens = {
        role.value: create_token(store, role.value, role, "app" if role is Role.INGEST else None)
        for role in Role
    }
    with TestClient(app) as client:
        yield Api(client, tokens, clock)


def post_batch(api: Api, size: int = 3) -> httpx.Response:
    events = [event(at=T0 - timedelta(minutes=i)) for i in range(size)]
    return api.client.post("/v1/events", json={"events": events}, headers=api.headers("ingest"))


def test_a_batch_the_database_cannot_store_is_503_and_none_of_it_is_acknowledged(
    ingestion: Api,
) -> None:
    ingestion.state.store.events.write = unavailable  # the group writer's call
    error = assert_store_unavailable(post_batch(ingestion))
    assert "none of the batch was acknowledged" in error["message"]
    assert ingestion.rows("SELECT count(*) FROM events") == [(0,)]
    assert store_unavailable_count(ingestion.client, "ingest") == 1


def test_a_token_the_database_cannot_check_is_503_on_ingestion(ingestion: Api) -> None:
    ingestion.state.store.tokens.principal = unavailable
    assert_store_unavailable(post_batch(ingestion))
    assert store_unavailable_count(ingestion.client, "ingest") == 1


def test_ingestion_answers_again_once_the_database_does(ingestion: Api) -> None:
    write = ingestion.state.store.events.write
    ingestion.state.store.events.write = unavailable
    assert_store_unavailable(post_batch(ingestion))
    ingestion.state.store.events.write = write
    again = post_batch(ingestion)
    assert again.status_code == 200 and again.json()["accepted"] == 3


ROUTES = [
    ("GET", "/v1/metrics", "analyst", None),
    ("GET", "/v1/budget", "analyst", None),
    ("POST", "/v1/queries", "analyst", {"metric": "event_count", "start": "2026-11-19",
                                        "end": "2026-11-19", "epsilon": 0.1}),
    ("GET", "/v1/policy", "compliance", None),
    ("GET", "/v1/audit", "compliance", None),
    ("POST", "/v1/subjects/erase", "admin", {"user_id": "someone"}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "role", "body"), ROUTES, ids=[r[1] for r in ROUTES])
def test_every_route_needing_a_token_is_503_when_the_database_cannot_check_it(
    api: Api, method: str, path: str, role: str, body: dict[str, Any] | None
) -> None:
    api.state.store.tokens.principal = unavailable
    response = api.client.request(method, path, json=body, headers=api.headers(role))
    assert_store_unavailable(response)
    assert "someone" not in response.text


def test_a_handler_that_finds_the_database_gone_answers_503(api: Api) -> None:
    api.state.store.ledger.spent = unavailable
    assert_store_unavailable(api.client.get("/v1/budget", headers=api.headers("analyst")))
    assert store_unavailable_count(api.client, "query") == 1


def test_a_store_failure_that_is_not_an_outage_is_still_a_500(api: Api) -> None:
    def broken(*args: Any) -> Any:
        raise StoreError("a bug in the store")

    api.state.store.ledger.spent = broken
    # The same app, answering server errors as a real client sees them (its lifespan is
    # the api fixture's).
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get("/v1/budget", headers=api.headers("analyst"))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert store_unavailable_count(client, "query") == 0
