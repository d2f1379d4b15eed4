"""Errors never leak internals; logs carry request ids, never identifiers, tokens or values.

The real server (with its per-request log on) gets hostile requests on every route, each
carrying canaries in its path, query string, headers and body; then tables are dropped
behind its back so that routes fail inside. No response holds a stack trace, SQL, a
file path or an exception's text; every 5xx names a request id that the log has; the
log is JSON lines and holds no canary and no token.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server, create_token_in_process
from system.test_canary_scan import Canaries

from privacy.keyring import MasterKey

LEAKS = {
    "a stack trace": re.compile(r"Traceback|File \"|line \d+, in "),
    "a source file": re.compile(r"\.py\b"),
    "a file path": re.compile(r"(?<![\w.])/(?:work|tmp|home|root|usr|var|etc|proc)/"),
    "SQL": re.compile(
        r"\b(?:SELECT|INSERT|UPDATE|DELETE)\b.{0,200}\b(?:FROM|INTO|SET|WHERE)\b|no such table",
        re.IGNORECASE,
    ),
    "a driver's name": re.compile(r"sqlite3|psycopg|OperationalError|IntegrityError"),
    "a Python exception": re.compile(r"\b(?:KeyError|TypeError|ValueError|AttributeError)\b"),
}


def leaks_in(text: str, data_dir: Path) -> list[str]:
    found = [what for what, pattern in LEAKS.items() if pattern.search(text)]
    return found + (["the data dir"] if str(data_dir) in text else [])


class Probe:
    """The server, a token per role, canaries, and every response it gave."""

    def __init__(self, server: Server, tokens: dict[str, str]) -> None:
        self.server = server
        self.tokens = tokens
        self.canaries = Canaries()
        self.responses: list[httpx.Response] = []
        self.hostile = 0  # how many of the responses answered hostile requests

    def send(self, method: str, path: str, role: str | None = None, **kw: Any) -> httpx.Response:
        headers = {
            "User-Agent": self.canaries.new("agent"),
            "X-Request-ID": self.canaries.new("rid"),
            "X-Forwarded-For": self.canaries.new("ip"),
            **kw.pop("headers", {}),
        }
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        with self.server.client(headers=headers) as client:
            response = client.request(method, path, **kw)
        self.responses.append(response)
        return response


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    data_dir = tmp_path_factory.mktemp("leaks") / "data"
    data_dir.mkdir()
    tokens = {
        role: create_token_in_process(
            data_dir, role, f"leak-{role}", "app" if role == "ingest" else None
        )
        for role in ("ingest", "analyst", "compliance", "admin")
    }
    server = Server(data_dir, MasterKey.generate_base64(), args=["--access-log"]).start()
    try:
        yield Probe(server, tokens)
    finally:
        server.stop()


def hostile_requests(p: Probe) -> None:
    c = p.canaries
    now = datetime.now(UTC)
    ids = {"user_id": c.new("user"), "session_id": c.new("session")}
    bodies: list[Any] = [
        {"events": [event(at=now, **ids, payload={"position": c.new("value")})]},
        {"events": [event(at=now, **ids, **{c.new("key"): c.new("value")})]},
        {"events": [{"event_type": c.new("type"), **ids}]},
        {"events": c.new("value")},
        {c.new("key"): [1, 2]},
        [c.new("value")],
        {"events": [event(at=now, **ids, timestamp=c.new("value"))]},
        {"events": [event(at=now, **ids, event_id=c.new("eid") + "/" * 80)]},
    ]
    for body in bodies:
        p.send("POST", "/v1/events", "ingest", json=body)
    p.send("POST", "/v1/events", "ingest", content=b'{"events": [' + c.new("raw").encode())
    p.send("POST", "/v1/events", "ingest", content=b"[" * 100_000 + b"]" * 100_000,
           headers={"Content-Type": "application/json"})  # fmt: skip
    p.send("POST", "/v1/events", "ingest", content=b"\xff\xfe" + c.new("bin").encode(),
           headers={"Content-Type": "application/json"})  # fmt: skip

    day = now.date().isoformat()
    queries: list[Any] = [
        {"metric": c.new("metric"), "start": day, "end": day, "epsilon": 0.1},
        {"metric": "event_count", "start": c.new("day"), "end": day, "epsilon": 0.1},
        {"metric": "event_count", "start": day, "end": day, "epsilon": -1e308},
        {"metric": "event_count", "start": day, "end": day, "epsilon": 1e308},
        {"metric": "event_count", "start": day, "end": day, "epsilon": "NaN"},
        {"metric": "event_count", "start": day, "end": day, "group_by": [c.new("dim")]},
        {"metric": "event_count", "start": day, "end": day, "filters": {c.new("dim"): ["x"]}},
        {"metric": "event_count", "start": day, "end": day, "filters": {"surface": [c.new("v")]}},
        {"metric": "event_count", "start": "0001-01-01", "end": "9999-12-31", "epsilon": 0.1},
        {"metric": ["event_count"], "start": {"$gt": ""}, "end": None},
        {c.new("key"): c.new("value")},
        c.new("value"),
    ]
    for body in queries:
        p.send("POST", "/v1/queries", "analyst", json=body)
        p.send("POST", "/v1/queries/preview", "analyst", json=body)
    p.send("POST", "/v1/queries", "analyst", content=b"{" + c.new("raw").encode())

    p.send("POST", "/v1/subjects/erase", "admin", json={"user_id": 12345678901234567890})
    p.send("POST", "/v1/subjects/erase", "admin", json={"user_id": c.new("user") * 100})
    p.send("POST", "/v1/subjects/erase", "admin", json={c.new("key"): c.new("user")})
    p.send("GET", "/v1/audit", "compliance", params={"after": c.new("after"), "limit": -1})
    p.send("GET", "/v1/audit", "compliance", params={"after": 10**30})
    p.send("GET", "/v1/budget", "analyst", params={"analyst": c.new("analyst")})
    p.send("GET", "/v1/policy", "ingest")
    for path in (
        f"/v1/{c.new('path')}?user_id={c.new('user')}",
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/ui/..%2fapp.py",
        f"/ui/{c.new('file')}.js",
        "/v1/events/" + "a" * 5000,
    ):
        p.send("GET", path, "admin")
    p.send("DELETE", "/v1/events", "ingest")
    p.send("PUT", "/v1/queries", "analyst", json={})
    p.send("GET", "/v1/audit", headers={"Authorization": f"Bearer tct_{c.new('token')}"})
    p.send("GET", "/v1/audit", headers={"Authorization": f"Basic {c.new('token')}"})


def break_tables(p: Probe) -> None:
    """Drop tables behind the running server's back, then call the routes that use them."""
    conn = sqlite3.connect(p.server.data_dir / "tacit.db")
    try:
        for table in ("audit_log", "event_keys", "releases", "budget_spend"):
            conn.execute(f"DROP TABLE {table}")
        conn.commit()
    finally:
        conn.close()
    now = datetime.now(UTC)
    p.send("GET", "/v1/audit", "admin")
    p.send(
        "POST",
        "/v1/events",
        "ingest",
        json={"events": [event(at=now, user_id=p.canaries.new("user"))]},
    )
    day = now.date().isoformat()
    p.send(
        "POST",
        "/v1/queries",
        "analyst",
        json={"metric": "event_count", "start": day, "end": day, "epsilon": 0.1},
    )
    p.send("GET", "/v1/budget", "analyst")
    p.send("POST", "/v1/subjects/erase", "admin", json={"user_id": p.canaries.new("user")})


@pytest.fixture(scope="module")
def probed(probe: Probe) -> Probe:
    hostile_requests(probe)
    probe.hostile = len(probe.responses)
    break_tables(probe)
    probe.server.stop()
    return probe


def test_no_response_holds_a_trace_sql_a_path_or_an_exception(probed: Probe) -> None:
    data_dir = probed.server.data_dir
    leaky = {
        f"{r.request.method} {r.request.url.path[:60]} -> {r.status_code}": leaks_in(
            r.text + json.dumps(dict(r.headers)), data_dir
        )
        for r in probed.responses
    }
    assert {k: v for k, v in leaky.items() if v} == {}


def test_hostile_requests_get_4xx_never_5xx(probed: Probe) -> None:
    failed = [
        f"{r.request.method} {r.request.url.path[:60]}?{r.request.url.query[:60]!r}"
        for r in probed.responses[: probed.hostile]
        if r.status_code >= 500
    ]
    assert failed == []


def test_every_error_is_in_the_envelope_with_a_message(probed: Probe) -> None:
    errors = [r for r in probed.responses if r.status_code >= 400]
    assert len(errors) > 40
    for response in errors:
        error = response.json()["error"]
        assert error["code"] and error["message"], response.text


def test_no_response_echoes_an_identifier_or_a_client_request_id(probed: Probe) -> None:
    echoed = set()
    for response in probed.responses:
        echoed |= probed.canaries.kinds_in(response.text + json.dumps(dict(response.headers)))
    assert echoed.isdisjoint({"user", "session", "rid", "agent", "ip", "token", "value"})


def test_failures_inside_are_5xx_naming_a_request_id_that_the_log_has(probed: Probe) -> None:
    failures = [r for r in probed.responses if r.status_code >= 500]
    assert failures, "breaking the tables caused no failure: the test proved nothing"
    assert {r.status_code for r in failures} <= {500, 503}
    log = probed.server.log_text()
    for response in failures:
        request_id = response.headers.get("x-request-id") or response.json()["error"]["request_id"]
        assert re.fullmatch(r"[0-9a-f]{16}", request_id)
        assert f'"request_id": "{request_id}"' in log


def test_the_log_is_json_lines_with_request_ids_and_no_canary_or_token(probed: Probe) -> None:
    lines = [
        json.loads(line) for line in probed.server.log_text().splitlines() if line.startswith("{")
    ]
    requests = [line for line in lines if line.get("logger") == "tacit.request"]
    assert len(requests) >= len(probed.responses)  # the access log was on
    assert all(re.fullmatch(r"[0-9a-f]{16}", line["request_id"]) for line in requests)
    errors = [line for line in lines if line.get("exc_type")]
    assert errors, "no exception was logged: the tables were not broken"

    log = probed.server.log_text()
    assert probed.canaries.kinds_in(log) == set()
    for token in probed.tokens.values():
        assert token not in log and token[4:20] not in log
    assert leaks_in(log, Path("/nonexistent")) <= ["a stack trace", "a source file", "a file path"]
