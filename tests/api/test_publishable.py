"""Publishable keys against a real `tacit serve`: CORS, the beacon's request, refusals.

A page on https://app.example.com holds a publishable key (tpk_...). Its browser asks a
preflight before a fetch with JSON, or sends a beacon: text/plain, the key in the query
string, no header of its own. These tests send exactly those requests over HTTP.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server, ServerError

from service.store import open_store

PAGE = "https://app.example.com"
OTHER_PAGE = "https://evil.example.net"


class Site:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.key = create_publishable(server, "web", PAGE, "http://localhost:5173")
        self.secret = server.create_token("ingest", "backend", source="web")
        self.analyst = server.create_token("analyst", "ana")

    def stored(self) -> int:
        store = open_store(f"sqlite:///{self.server.data_dir / 'tacit.db'}")
        try:
            return store.events.count()
        finally:
            store.close()

    def post(
        self,
        *,
        key: str | None = None,
        bearer: str | None = None,
        origin: str | None = PAGE,
        content_type: str = "text/plain;charset=UTF-8",
        events: int = 1,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if origin is not None:
            headers["Origin"] = origin
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        body = json.dumps({"events": [event(at=datetime.now(UTC)) for _ in range(events)]})
        params = {} if key is None else {"key": key}
        with self.server.client() as client:
            return client.post("/v1/events", params=params, content=body, headers=headers)


def create_publishable(server: Server, name: str, *origins: str) -> str:
    args = ["token", "create", "--role", "ingest", "--publishable", "--name", name]
    for origin in origins:
        args += ["--origin", origin]
    return server.cli(*args).strip().splitlines()[-1]


def preflight(server: Server, origin: str, method: str = "POST") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    }
    with server.client() as client:
        return client.options("/v1/events", headers=headers)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from privacy.keyring import MasterKey

    data_dir: Path = tmp_path_factory.mktemp("publishable") / "data"
    data_dir.mkdir()
    # Every request of this module comes from 127.0.0.1: the per-address limit (5/s by
    # default) would answer 429 to a fast machine running these tests back to back. The
    # limits have their own servers below; this one must answer each request itself.
    env = {
        "TACIT_ACCESS_LOG": "1",
        "TACIT_CORS_REFRESH_S": "0",
        "TACIT_RATE_LIMIT_ADDRESS_REQUESTS_PER_S": "0",
        "TACIT_RATE_LIMIT_ADDRESS_EVENTS_PER_S": "0",
    }
    with Server(data_dir, MasterKey.generate_base64(), env=env) as server:
        yield Site(server)


def test_a_publishable_key_is_recognisable_and_listed_with_its_kind_and_origins(
    site: Site,
) -> None:
    assert site.key.startswith("tpk_") and site.secret.startswith("tct_")
    listing = site.server.cli("token", "list")
    [web] = [line.split() for line in listing.splitlines() if line.startswith("web ")]
    assert web[1:4] == ["ingest", "publishable", "web"]
    assert web[-2:] == ["http://localhost:5173", PAGE]
    [backend] = [line.split() for line in listing.splitlines() if line.startswith("backend ")]
    assert backend[2] == "secret" and backend[-1] == "-"


def test_a_preflight_from_a_listed_origin_is_approved_for_that_origin_only(site: Site) -> None:
    response = preflight(site.server, PAGE)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == PAGE
    assert response.headers["vary"] == "Origin"
    assert response.headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert allowed == {"content-type", "authorization"}
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [OTHER_PAGE, "https://app.example.com:8443", "http://app.example.com", "null", PAGE + "/"],
)
def test_a_preflight_from_an_unlisted_origin_gets_no_approval(site: Site, origin: str) -> None:
    response = preflight(site.server, origin)
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-methods" not in response.headers
    assert "publishable" in response.json()["error"]["message"]


def test_a_preflight_for_another_method_gets_no_approval(site: Site) -> None:
    response = preflight(site.server, PAGE, "DELETE")
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_a_beacon_with_the_key_in_the_query_string_and_a_text_body_is_stored(
    site: Site,
) -> None:
    before = site.stored()
    response = site.post(key=site.key)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert response.headers["access-control-allow-origin"] == PAGE
    assert "retry-after" in response.headers["access-control-expose-headers"]
    assert site.stored() == before + 1


def test_events_posted_with_a_publishable_key_belong_to_its_source_only(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with Server(data_dir, master_key_b64) as server:
        key = create_publishable(server, "shop-web", PAGE)  # its source: its name
        body = json.dumps({"events": [event(at=datetime.now(UTC))]})
        headers = {"Origin": PAGE, "Content-Type": "text/plain"}
        with server.client() as client:
            ok = client.post("/v1/events", params={"key": key}, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        db = sqlite3.connect(data_dir / "tacit.db")
        try:
            sources = db.execute(
                "SELECT s.name, count(*) FROM events e JOIN sources s ON s.id = e.source_id "
                "GROUP BY s.name"
            ).fetchall()
        finally:
            db.close()
    assert sources == [("shop-web", 1)]


def test_a_fetch_with_the_key_as_bearer_and_json_is_stored(site: Site) -> None:
    before = site.stored()
    response = site.post(bearer=site.key, content_type="application/json")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == PAGE
    assert site.stored() == before + 1


def test_the_second_listed_origin_is_accepted_too(site: Site) -> None:
    response = site.post(key=site.key, origin="http://localhost:5173")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize("origin", [OTHER_PAGE, "null", None])
def test_a_publishable_key_from_an_unlisted_origin_or_none_is_refused_and_stores_nothing(
    site: Site, origin: str | None
) -> None:
    before = site.stored()
    response = site.post(key=site.key, origin=origin)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "access-control-allow-origin" not in response.headers
    assert site.stored() == before


def test_a_secret_ingest_token_sent_from_a_page_is_refused_with_the_way_out(site: Site) -> None:
    before = site.stored()
    response = site.post(bearer=site.secret, content_type="application/json")
    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert "publishable key" in message and "--publishable" in message
    assert site.stored() == before


def test_a_secret_ingest_token_still_posts_json_without_an_origin(site: Site) -> None:
    response = site.post(bearer=site.secret, origin=None, content_type="application/json")
    assert response.status_code == 200, response.text
    assert "access-control-allow-origin" not in response.headers


def test_text_plain_is_refused_for_a_secret_token(site: Site) -> None:
    response = site.post(bearer=site.secret, origin=None)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


def test_another_body_type_is_refused_on_the_publishable_path_too(site: Site) -> None:
    response = site.post(key=site.key, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.headers["access-control-allow-origin"] == PAGE  # the page can read why


def test_a_secret_token_in_the_query_string_is_refused(site: Site) -> None:
    response = site.post(key=site.secret, origin=None, content_type="application/json")
    assert response.status_code == 401
    assert "never in a URL" in response.json()["error"]["message"]


def test_a_key_sent_twice_is_refused(site: Site) -> None:
    response = site.post(key=site.key, bearer=site.key)
    assert response.status_code == 401


READ_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/metrics", {}),
    ("GET", "/v1/budget", {}),
    ("GET", "/v1/policy", {}),
    ("GET", "/v1/audit", {}),
    ("POST", "/v1/queries", {"json": {"metric": "event_count", "epsilon": 0.1}}),
    ("POST", "/v1/queries/preview", {"json": {"metric": "event_count", "epsilon": 0.1}}),
    ("POST", "/v1/subjects/erase", {"json": {"user_id": "someone"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), READ_ROUTES)
@pytest.mark.parametrize("how", ["bearer", "query"])
def test_a_publishable_key_is_refused_on_every_other_route(
    site: Site, method: str, path: str, kwargs: dict[str, Any], how: str
) -> None:
    headers = {"Origin": PAGE}
    params: dict[str, str] = {}
    if how == "bearer":
        headers["Authorization"] = f"Bearer {site.key}"
    else:
        params["key"] = site.key
    with site.server.client() as client:
        response = client.request(method, path, headers=headers, params=params, **kwargs)
    assert response.status_code == 403, response.text
    assert "publishable key" in response.json()["error"]["message"]
    assert "access-control-allow-origin" not in response.headers


def test_no_key_or_token_reaches_the_log(site: Site) -> None:
    site.post(key=site.key)
    site.post(key=site.key, origin=OTHER_PAGE)
    site.post(key=site.secret, origin=None, content_type="application/json")
    site.post(key=site.key, content_type="application/xml")
    with site.server.client() as client:
        client.get("/v1/audit", params={"key": site.key})
    log = site.server.log_text()
    assert '"route": "/v1/events"' in log  # the access log is on and saw them
    for secret in (site.key, site.secret, site.key[4:20], site.secret[4:20]):
        assert secret not in log


# --- rate limits: per key and per client address ----------------------------------------


@pytest.fixture
def limited(tmp_path: Path, master_key_b64: str) -> Iterator[Site]:
    """A server whose publishable limits refuse a second request within ten seconds.

    Rates of 0.1/s leave a bucket of one request (the burst is never below one), so the
    second request is refused however slowly the machine runs the test."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        "TACIT_CORS_REFRESH_S": "0",
        "TACIT_RATE_LIMIT_ADDRESS_REQUESTS_PER_S": "0.1",
        "TACIT_RATE_LIMIT_PUBLISHABLE_REQUESTS_PER_S": "0.1",
    }
    with Server(data_dir, master_key_b64, env=env) as server:
        yield Site(server)


def post_from(site: Site, address: str) -> httpx.Response:
    # uvicorn takes the client address a proxy on 127.0.0.1 forwards (FORWARDED_ALLOW_IPS).
    body = json.dumps({"events": [event(at=datetime.now(UTC))]})
    headers = {"Origin": PAGE, "Content-Type": "text/plain", "X-Forwarded-For": address}
    with site.server.client() as client:
        return client.post("/v1/events", params={"key": site.key}, content=body, headers=headers)


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(response.headers["retry-after"]) <= 10
    assert response.headers["access-control-allow-origin"] == PAGE  # the page reads it
    assert "retry-after" in response.headers["access-control-expose-headers"]


def test_a_publishable_key_is_limited_per_client_address(limited: Site) -> None:
    second_key = create_publishable(limited.server, "web2", PAGE)
    assert post_from(limited, "203.0.113.7").status_code == 200
    before = limited.stored()
    assert_limited(post_from(limited, "203.0.113.7"))
    assert limited.stored() == before  # a refused batch is not stored
    # The same address with another key is refused too: the address's bucket is spent.
    body = json.dumps({"events": [event(at=datetime.now(UTC))]})
    headers = {"Origin": PAGE, "Content-Type": "text/plain", "X-Forwarded-For": "203.0.113.7"}
    with limited.server.client() as client:
        other = client.post("/v1/events", params={"key": second_key}, content=body, headers=headers)
    assert_limited(other)
    # A secret token from a server at that address is not limited by it.
    secret = limited.server.create_token("ingest", "backend2", source="web")
    with limited.server.client(secret, headers={"X-Forwarded-For": "203.0.113.7"}) as client:
        ok = client.post("/v1/events", json={"events": [event(at=datetime.now(UTC))]})
    assert ok.status_code == 200, ok.text


def test_a_publishable_key_is_limited_across_all_addresses(limited: Site) -> None:
    assert post_from(limited, "198.51.100.1").status_code == 200
    assert_limited(post_from(limited, "198.51.100.2"))


def test_the_cli_refuses_an_origin_without_publishable_and_a_publishable_analyst(
    site: Site,
) -> None:
    with pytest.raises(ServerError, match="--origin only applies with --publishable"):
        site.server.cli("token", "create", "--role", "ingest", "--origin", PAGE, "--name", "a")
    with pytest.raises(ServerError, match="only ingest tokens can be publishable"):
        args = ["--role", "analyst", "--publishable", "--origin", PAGE, "--name", "b"]
        site.server.cli("token", "create", *args)
    with pytest.raises(ServerError, match="scheme://host"):
        args = ["--role", "ingest", "--publishable", "--origin", PAGE + "/app", "--name", "c"]
        site.server.cli("token", "create", *args)
