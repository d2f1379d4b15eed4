"""Who may post events: ingest tokens only; tokens are kept only as SHA-256 digests."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import T0, Api
from factories import event
from server import Server

ANOTHER_TOKEN = "tct_" + "A" * 43  # well formed, never issued

# (description, Authorization header from the role's tokens or None, status, error code)
MATRIX: list[tuple[str, Callable[[dict[str, str]], str | None], int, str | None]] = [
    ("no header", lambda t: None, 401, "unauthorized"),
    ("empty header", lambda t: "", 401, "unauthorized"),
    ("basic scheme", lambda t: "Basic dXNlcjpwYXNz", 401, "unauthorized"),
    ("token without scheme", lambda t: t["ingest"], 401, "unauthorized"),
    ("other scheme", lambda t: f"Token {t['ingest']}", 401, "unauthorized"),
    ("bearer without token", lambda t: "Bearer", 401, "unauthorized"),
    ("bearer and a blank", lambda t: "Bearer ", 401, "unauthorized"),
    ("token without the tct_ prefix", lambda t: "Bearer abc123", 401, "unauthorized"),
    ("unknown token", lambda t: f"Bearer {ANOTHER_TOKEN}", 401, "unauthorized"),
    ("overlong token", lambda t: "Bearer tct_" + "x" * 300, 401, "unauthorized"),
    ("token cut short", lambda t: f"Bearer {t['ingest'][:-1]}", 401, "unauthorized"),
    ("ingest token", lambda t: f"Bearer {t['ingest']}", 200, None),
    ("analyst token", lambda t: f"Bearer {t['analyst']}", 403, "forbidden"),
    ("compliance token", lambda t: f"Bearer {t['compliance']}", 403, "forbidden"),
    ("admin token", lambda t: f"Bearer {t['admin']}", 403, "forbidden"),
]


def post_as(api: Api, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return api.client.post("/v1/events", json={"events": [event(at=T0)]}, headers=headers)


def stored_events(api: Api) -> int:
    return api.state.store.events.count()


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [(m[1], m[2], m[3]) for m in MATRIX],
    ids=[m[0] for m in MATRIX],
)
def test_post_events_auth_matrix(
    api: Api, header: Callable[[dict[str, str]], str | None], status: int, code: str | None
) -> None:
    response = post_as(api, header(api.tokens))
    assert response.status_code == status, response.text
    if code is None:
        assert response.json()["accepted"] == 1
        assert stored_events(api) == 1
    else:
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]
        assert stored_events(api) == 0


def test_a_revoked_token_stops_working_at_once(api: Api) -> None:
    assert post_as(api, f"Bearer {api.tokens['ingest']}").status_code == 200
    api.state.store.tokens.revoke("test-ingest", T0, "test")
    response = post_as(api, f"Bearer {api.tokens['ingest']}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_an_unauthenticated_request_is_refused_before_its_body_is_read(api: Api) -> None:
    response = api.client.post(
        "/v1/events", content=b"{not json", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 401


def test_a_token_revoked_with_the_cli_stops_working_on_the_running_server(
    tmp_path: Path, master_key_b64: str
) -> None:
    with Server(tmp_path / "data", master_key_b64) as server:
        token = server.create_token("ingest", "app")
        now = datetime.now(UTC)
        assert server.post_events([event(at=now)], token).status_code == 200
        server.revoke_token("app")
        assert server.post_events([event(at=now)], token).status_code == 401


def encodings(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [
        raw,
        secret.encode("utf-16-le"),
        secret.encode("utf-16-be"),
        raw.hex().encode(),
        base64.b64encode(raw),
        raw.removeprefix(b"tct_"),
    ]


@pytest.mark.sqlite_only  # scans the bytes of the data dir
def test_tokens_are_stored_only_as_sha256_digests(api: Api) -> None:
    for token in api.tokens.values():
        post_as(api, f"Bearer {token}")  # used at least once
    files = [p for p in Path(api.state.settings.data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "tacit.db" for p in files)
    contents = b"".join(p.read_bytes() for p in files)
    for token in api.tokens.values():
        for form in encodings(token):
            assert form not in contents
    conn = sqlite3.connect(api.state.store.path)
    try:
        digests = {r[0] for r in conn.execute("SELECT digest FROM tokens")}
    finally:
        conn.close()
    assert digests == {hashlib.sha256(t.encode()).digest() for t in api.tokens.values()}
