"""Authorization: one table over every route of the app x every kind of caller.

The route list comes from the app itself, so a new route without a row in ROUTES fails
`test_every_route_of_the_app_has_a_row`. Each row gives a valid request and the roles
that may make it; the expected status follows: 401 without a usable token (none,
malformed, revoked), 403 for another role, the row's status for an allowed role, and the
row's status for everyone on public routes. Plus: an analyst never reads or spends
another analyst's budget, and a revoked token stops working at once on every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from server import Server, create_token_in_process

from privacy.keyring import MasterKey
from service.api.app import create_app
from service.ops.tokens import create_token
from service.store.base import Role

DAY = (T0 - timedelta(days=1)).date().isoformat()
CALLERS = (
    "none",
    "ingest",
    "analyst",
    "compliance",
    "admin",
    "revoked",
    "malformed",
    "publishable",  # a page's write-only key, sent from its listed origin
    "publishable-query",  # the same key as a beacon sends it: ?key=
)
ROLES = frozenset({"ingest", "analyst", "compliance", "admin", "publishable", "publishable-query"})
PAGE = "https://app.example.com"
PUBLIC = ROLES | {"none", "revoked", "malformed"}


def query(epsilon: float = 0.1) -> dict[str, Any]:
    return {"metric": "event_count", "start": DAY, "end": DAY, "epsilon": epsilon}


@dataclass(frozen=True)
class Row:
    allowed: frozenset[str]  # the callers that get ``status``; PUBLIC for open routes
    status: int = 200
    request: Callable[[], dict[str, Any]] = field(default=lambda: {})
    path: str | None = None  # the concrete path, for templates with parameters


ROUTES: dict[tuple[str, str], Row] = {
    # Operations and documentation: open to all (they reveal no data).
    ("GET", "/healthz"): Row(PUBLIC),
    ("GET", "/readyz"): Row(PUBLIC),
    ("GET", "/metrics"): Row(PUBLIC),
    ("GET", "/openapi.json"): Row(PUBLIC),
    ("GET", "/docs"): Row(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Row(PUBLIC),
    ("GET", "/redoc"): Row(PUBLIC),
    # The web page: static files; the token stays in the browser and calls the API.
    ("GET", "/"): Row(PUBLIC, 307),
    ("GET", "/ui"): Row(PUBLIC),
    ("GET", "/ui/"): Row(PUBLIC),
    ("GET", "/ui/{name}"): Row(PUBLIC, path="/ui/app.js"),
    # The demo chat page (make run): static files; its publishable key, made only by
    # `serve --dev --demo`, can only post events (none here: the config is 404).
    ("GET", "/demo"): Row(PUBLIC),
    ("GET", "/demo/"): Row(PUBLIC),
    ("GET", "/demo/config.json"): Row(PUBLIC, 404),
    ("GET", "/demo/{name}"): Row(PUBLIC, path="/demo/demo.js"),
    # Apps.
    ("POST", "/v1/events"): Row(
        frozenset({"ingest", "publishable", "publishable-query"}),
        request=lambda: {"json": {"events": [event(at=T0)]}},
    ),
    # Analysts.
    ("GET", "/v1/metrics"): Row(frozenset({"analyst"})),
    ("POST", "/v1/queries"): Row(frozenset({"analyst"}), request=lambda: {"json": query()}),
    ("POST", "/v1/queries/preview"): Row(frozenset({"analyst"}), request=lambda: {"json": query()}),
    ("GET", "/v1/budget"): Row(frozenset({"analyst"})),
    # Compliance (admins may read what compliance reads; analysts read the policy).
    ("GET", "/v1/policy"): Row(frozenset({"analyst", "compliance", "admin"})),
    ("GET", "/v1/audit"): Row(frozenset({"compliance", "admin"})),
    # Admins.
    ("POST", "/v1/subjects/erase"): Row(
        frozenset({"admin"}), request=lambda: {"json": {"user_id": "someone"}}
    ),
}


def expected(row: Row, caller: str) -> int:
    if caller in row.allowed:
        return row.status
    if caller in ("none", "revoked", "malformed"):
        return 401
    return 403


class Matrix:
    """One app, a token per role, a revoked admin token and a malformed header."""

    def __init__(self, tmp_path: Path) -> None:
        # Authorization only: the publishable key's per-address limit (every request
        # here comes from one address) is tested in api/test_publishable.py.
        settings = make_settings(
            tmp_path,
            MasterKey.generate_base64(),
            rate_limit_address_requests_per_s=0,
            rate_limit_address_events_per_s=0,
        )
        self.app = create_app(settings, clock=Clock())
        store = self.app.state.tacit.store
        self.headers: dict[str, dict[str, str]] = {"none": {}}
        for role in Role:
            source = "app" if role is Role.INGEST else None
            token = create_token(store, f"t-{role.value}", role, source)
            self.headers[role.value] = {"Authorization": f"Bearer {token}"}
        revoked = create_token(store, "t-revoked", Role.ADMIN, None)
        store.tokens.revoke("t-revoked", T0, "test")
        self.headers["revoked"] = {"Authorization": f"Bearer {revoked}"}
        self.headers["malformed"] = {"Authorization": "Token tct_not-a-bearer-token"}
        key = create_token(store, "t-page", Role.INGEST, "app", origins=[PAGE])
        self.headers["publishable"] = {"Authorization": f"Bearer {key}", "Origin": PAGE}
        self.headers["publishable-query"] = {"Origin": PAGE}
        self.params: dict[str, dict[str, str]] = {"publishable-query": {"key": key}}
        self.client = TestClient(self.app, follow_redirects=False)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    setup = Matrix(tmp_path_factory.mktemp("authz"))
    with setup.client:
        yield setup


def app_routes(matrix: Matrix) -> set[tuple[str, str]]:
    return {
        (method, str(route.path))
        for route in iter_route_contexts(matrix.app.routes)
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }


def test_every_route_of_the_app_has_a_row(matrix: Matrix) -> None:
    assert app_routes(matrix) == set(ROUTES), "add a row to ROUTES for each new route"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "template"), sorted(ROUTES))
def test_each_caller_gets_the_status_the_table_says(
    matrix: Matrix, method: str, template: str, caller: str
) -> None:
    row = ROUTES[(method, template)]
    response = matrix.client.request(
        method,
        row.path or template,
        headers=matrix.headers[caller],
        params=matrix.params.get(caller),
        **row.request(),
    )
    assert response.status_code == expected(row, caller), response.text[:300]
    if response.status_code in (401, 403):
        error = response.json()["error"]
        assert error["code"] == ("unauthorized" if response.status_code == 401 else "forbidden")
        assert error["message"]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "bearer tct_",
        "Basic dXNlcjpwYXNz",
        "Bearer tct_" + "x" * 200,
        "Bearer tct_\u00e9\u00e8",
        "Bearer tct_a b c",
        "Bearer  tct_spaces",
    ],
)
def test_a_malformed_or_unknown_authorization_header_is_401_in_the_envelope(
    matrix: Matrix, header: str
) -> None:
    response = matrix.client.get("/v1/audit", headers={"Authorization": header.encode()})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


# --- budgets are per analyst -----------------------------------------------------------


def test_an_analyst_never_reads_or_spends_another_analysts_budget(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, MasterKey.generate_base64()), clock=Clock())
    store = app.state.tacit.store
    alice = {"Authorization": f"Bearer {create_token(store, 'alice', Role.ANALYST, None)}"}
    bob = {"Authorization": f"Bearer {create_token(store, 'bob', Role.ANALYST, None)}"}
    with TestClient(app) as client:
        before = client.get("/v1/budget", headers=bob).json()
        assert client.post("/v1/queries", json=query(0.5), headers=alice).status_code == 200

        # Bob cannot name Alice: not in the budget's query string, not in a query body.
        mine = client.get("/v1/budget", params={"analyst": "alice"}, headers=bob).json()
        assert mine["analyst"] == "bob" and mine["remaining"] == before["remaining"]
        spend_for_alice = client.post(
            "/v1/queries", json={**query(), "analyst": "alice"}, headers=bob
        )
        assert spend_for_alice.status_code == 400

        assert client.get("/v1/budget", headers=bob).json()["remaining"] == before["remaining"]
        alices = client.get("/v1/budget", headers=alice).json()
        assert alices["remaining"][DAY] == pytest.approx(before["remaining"][DAY] - 0.5)


# --- revocation on every worker ---------------------------------------------------------


def count_seen_by_some_worker(server: Server, route: str, status: int) -> int:
    """The number of ``route`` requests answered ``status`` by the worker that answers
    this (fresh) connection, from its own /metrics."""
    line = f'tacit_request_seconds_count{{method="GET",route="{route}",status="{status}"}} '
    with server.client() as client:
        text = client.get("/metrics").text
    return next((int(float(x.split()[-1])) for x in text.splitlines() if x.startswith(line)), 0)


def answered_by_both_workers(server: Server, route: str, status: int, total: int) -> bool:
    # A worker that saw some but not all of the requests proves the other saw the rest.
    return any(0 < count_seen_by_some_worker(server, route, status) < total for _ in range(50))


def get_on_both_workers(server: Server, token: str, route: str, status: int) -> None:
    """GET ``route`` on fresh connections, each answered ``status``, until both workers
    have answered some. The kernel gives a new connection to whichever worker accepts
    first, and on a quiet machine that can be the same one 40 times running; requests
    sent 8 at a time find one worker busy and go to the other."""

    def get(_: int) -> int:
        with server.client(token) as client:
            return client.get(route).status_code

    total = 0
    for _ in range(10):
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(get, range(40))) == [status] * 40
        total += 40
        if answered_by_both_workers(server, route, status, total):
            return
    raise AssertionError(f"one worker answered all {total} requests: the test proved nothing")


@pytest.mark.slow  # ~5 s: two worker processes
def test_a_revoked_token_stops_working_at_once_on_every_worker(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    token = create_token_in_process(data_dir, "compliance", "carol")
    with Server(data_dir, master_key_b64, args=["--workers", "2"]) as server:
        get_on_both_workers(server, token, "/v1/audit", 200)
        server.revoke_token("carol")
        get_on_both_workers(server, token, "/v1/audit", 401)
