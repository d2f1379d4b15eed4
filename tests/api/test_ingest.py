"""POST /v1/events: batch semantics, idempotency, limits, clock rules, policy labels,
quarantine and metrics.

Most tests use the in-process app (``api`` fixture, movable clock) and read the database
back on a connection of their own (the SQLite file; PostgreSQL too when the fixture runs
on it); the ones about concurrency and chunked bodies run the real server on SQLite.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import T0, Api
from factories import event
from prometheus_client.parser import text_string_to_metric_families
from server import Server, create_token_in_process

from privacy.policy import Identifiers
from service.ops.tokens import create_token
from service.store.base import Role

LIMIT = 1 << 20  # the default max_body_bytes: 1 MiB
IDS = Identifiers()
OLDEST_LIVE = IDS.epoch_start(IDS.oldest_live_epoch(T0))  # 2026-10-22T00:00Z at T0


# --- helpers -------------------------------------------------------------------------------


def post(api: Api, events: list[dict[str, Any]]) -> httpx.Response:
    return api.client.post("/v1/events", json={"events": events}, headers=api.headers("ingest"))


def post_raw(
    api: Api, body: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = api.headers("ingest")
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post("/v1/events", content=body, headers=headers)


def rows(api: Api, sql: str) -> list[tuple[Any, ...]]:
    """Rows straight from the database (the SQLite file, or PostgreSQL) on a connection
    of the test's own, not through the service."""
    url = api.state.store.url
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        return [tuple(r) for r in pg.execute(sql).fetchall()]


def count(api: Api, table: str = "events") -> int:
    return int(rows(api, f"SELECT count(*) FROM {table}")[0][0])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """A whole-request error in the one envelope: {"error": {"code", "message"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def body_of_size(size: int, events: list[dict[str, Any]]) -> bytes:
    """A valid batch padded with JSON whitespace to exactly ``size`` bytes."""
    compact = json.dumps({"events": events}, separators=(",", ":")).encode()
    assert len(compact) <= size
    return compact[:-1] + b" " * (size - len(compact)) + b"}"


def changed(at: datetime = T0, **changes: Any) -> dict[str, Any]:
    """A valid event with ``changes`` applied on top (any field, event_type included)."""
    document = event(at=at)
    document.update(changes)
    return document


def iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


# --- batch semantics -----------------------------------------------------------------------

# Seven ways to be invalid, each with the one field path the client must be told about.
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"payload": {"position": 0, "candidates": 3}}, "payload.position"),
    ({"event_type": "page_view"}, "event_type"),
    ({"user_id": ""}, "user_id"),
    ({"timestamp": "2026-11-20T12:00:00"}, "timestamp"),
    ({"query_text": "how do I ..."}, "query_text"),
    ({"payload": {"position": 1, "candidates": 3, "text": "..."}}, "payload.text"),
    ({"context": {"surface": "chat", "email": "a@example.com"}}, "context.email"),
]


def test_100_valid_and_7_invalid_give_100_accepted_and_7_rejected_with_field_paths(
    api: Api,
) -> None:
    batch = [event(at=T0) for _ in range(100)]
    invalid_at = [3, 10, 11, 50, 77, 99, 106]
    for position, (changes, _) in zip(invalid_at, INVALID, strict=True):
        batch.insert(position, changed(**changes))
    response = post(api, batch)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["sampled_out"], body["rejected"]) == (
        100,
        0,
        0,
        7,
    )
    expected = [
        {
            "index": i,
            "status": "rejected",
            "fields": [field],
        }
        for i, (_, field) in zip(invalid_at, INVALID, strict=True)
    ]
    got = [
        {
            "index": r["index"],
            "status": r["status"],
            "fields": [e["field"] for e in r["errors"]],
        }
        for r in body["results"]
    ]
    assert got == expected
    assert count(api) == 100


def test_every_rejection_carries_a_message_per_field(api: Api) -> None:
    body = post(api, [event(at=T0, payload={"position": 0, "candidates": 0})]).json()
    errors = body["results"][0]["errors"]
    assert {e["field"] for e in errors} == {"payload.position", "payload.candidates"}
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)


def test_results_name_events_by_index_and_never_echo_an_event_id(api: Api) -> None:
    # Client event ids often embed a user id: a result names its event by position only.
    batch = [
        event(at=T0, event_id="user42-e" + "e" * 60),
        event(at=T0, event_id=7),
        "not an object",
        event(at=T0, event_id="user42-valid-id", payload={"position": 0, "candidates": 3}),
    ]
    response = post(api, batch)
    assert [(r["index"], r["status"]) for r in response.json()["results"]] == [
        (0, "rejected"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
    ]
    assert all("event_id" not in r for r in response.json()["results"])
    assert "user42" not in response.text


def test_results_list_every_event_not_accepted_in_batch_order(api: Api) -> None:
    stored_before = event(at=T0)
    assert post(api, [stored_before]).json()["accepted"] == 1
    batch = [
        event(at=T0),  # 0 accepted
        event(at=T0, user_id=""),  # 1 invalid (parse step)
        stored_before,  # 2 duplicate (store step)
        event(at=T0 + timedelta(days=2)),  # 3 in the future (clock step)
        event(at=T0),  # 4 accepted
        event(at=T0 - timedelta(days=365)),  # 5 too old (clock step)
        event(at=T0, payload={"position": 9, "candidates": 3}),  # 6 invalid
        stored_before,  # 7 duplicate
    ]
    body = post(api, batch).json()
    assert [(r["index"], r["status"], r.get("reason")) for r in body["results"]] == [
        (1, "rejected", "invalid"),
        (2, "duplicate", None),
        (3, "rejected", "in_future"),
        (5, "rejected", "too_old"),
        (6, "rejected", "invalid"),
        (7, "duplicate", None),
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 4)


def test_a_batch_of_1000_events_is_accepted(api: Api) -> None:
    body = post(api, [event(at=T0) for _ in range(1000)]).json()
    assert body["accepted"] == 1000
    assert count(api) == 1000


# --- idempotency ---------------------------------------------------------------------------


def test_a_repost_answers_duplicates_and_stores_nothing(api: Api) -> None:
    batch = [event(at=T0) for _ in range(10)]
    post(api, batch)
    body = post(api, batch).json()
    assert (body["accepted"], body["duplicates"]) == (0, 10)
    assert [r["status"] for r in body["results"]] == ["duplicate"] * 10
    assert [r["index"] for r in body["results"]] == list(range(10))
    assert count(api) == 10


def test_a_repeat_inside_one_batch_is_a_duplicate(api: Api) -> None:
    one = event(at=T0)
    body = post(api, [one, one]).json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    assert count(api) == 1


@pytest.mark.parametrize("days", [1, 7, 29])
def test_a_duplicate_is_detected_at_any_age_within_retention(api: Api, days: int) -> None:
    one = event(at=T0)
    post(api, [one])
    api.clock.advance(days=days)
    body = post(api, [one]).json()
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert count(api) == 1


def test_a_retry_with_a_later_sent_at_is_still_a_duplicate(api: Api) -> None:
    first = event(at=T0, sent_at=iso(T0))
    post(api, [first])
    api.clock.advance(hours=5)
    retry = dict(first, sent_at=iso(T0 + timedelta(hours=5)))
    assert post(api, [retry]).json()["duplicates"] == 1
    assert count(api) == 1


def test_the_same_event_id_from_another_source_is_stored_separately(api: Api) -> None:
    other = create_token(api.state.store, "other-app", Role.INGEST, "other-app")
    one = event(at=T0)
    post(api, [one])
    response = api.client.post(
        "/v1/events", json={"events": [one]}, headers={"Authorization": f"Bearer {other}"}
    )
    assert response.json()["accepted"] == 1
    assert count(api) == 2


@pytest.fixture
def server(tmp_path: Path, master_key_b64: str) -> Iterator[Server]:
    with Server(tmp_path / "data", master_key_b64) as running:
        yield running


def server_rows(server: Server, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(server.data_dir / "tacit.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_same_batch_posted_three_times_concurrently_is_stored_once(server: Server) -> None:
    token = create_token_in_process(server.data_dir, "ingest", "app")
    now = datetime.now(UTC)
    batch = [event(at=now) for _ in range(100)]
    barrier = threading.Barrier(3)
    bodies: list[dict[str, Any]] = []

    def send() -> None:
        with server.client(token) as client:
            barrier.wait()
            response = client.post("/v1/events", json={"events": batch})
            assert response.status_code == 200
            bodies.append(response.json())

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(bodies) == 3
    assert sum(b["accepted"] for b in bodies) == 100
    assert sum(b["duplicates"] for b in bodies) == 200
    assert server_rows(server, "SELECT count(*) FROM events") == [(100,)]
    later = server.post_events(batch, token).json()
    assert (later["accepted"], later["duplicates"]) == (0, 100)
    assert server_rows(server, "SELECT count(*) FROM events") == [(100,)]


# --- body size -----------------------------------------------------------------------------


def test_a_body_one_byte_over_the_limit_is_refused_with_413(api: Api) -> None:
    response = post_raw(api, body_of_size(LIMIT + 1, [event(at=T0)]))
    assert_error(response, 413, "payload_too_large")
    assert count(api) == 0


def test_a_body_of_exactly_the_limit_is_accepted(api: Api) -> None:
    response = post_raw(api, body_of_size(LIMIT, [event(at=T0)]))
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_a_body_of_exactly_the_limit_is_judged_on_content_only(api: Api) -> None:
    response = post_raw(api, body_of_size(LIMIT, [event(at=T0, user_id="")]))
    assert response.status_code == 200
    assert response.json()["rejected"] == 1


def post_chunked(server: Server, token: str, body: bytes, chunk: int = 65536) -> tuple[int, bytes]:
    """POST ``body`` with Transfer-Encoding: chunked over a raw socket; (status, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (
            "POST /v1/events HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for start in range(0, len(body), chunk):
                part = body[start : start + chunk]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before the body ends
        received = b""
        while data := sock.recv(65536):
            received += data
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_chunked_body_one_byte_over_the_limit_is_refused_with_413(server: Server) -> None:
    token = create_token_in_process(server.data_dir, "ingest", "app")
    status, body = post_chunked(server, token, body_of_size(LIMIT + 1, [event(at=T0)]))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert server_rows(server, "SELECT count(*) FROM events") == [(0,)]


def test_a_chunked_body_of_exactly_the_limit_is_accepted(server: Server) -> None:
    token = create_token_in_process(server.data_dir, "ingest", "app")
    status, body = post_chunked(server, token, body_of_size(LIMIT, [event(at=datetime.now(UTC))]))
    assert status == 200
    assert json.loads(body)["accepted"] == 1


# --- whole-request errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"],
)
def test_a_body_that_is_not_declared_json_is_refused_with_415(
    api: Api, content_type: str | None
) -> None:
    body = json.dumps({"events": [event(at=T0)]}).encode()
    assert_error(post_raw(api, body, content_type), 415, "unsupported_media_type")
    assert count(api) == 0


def test_json_with_a_charset_parameter_is_accepted(api: Api) -> None:
    body = json.dumps({"events": [event(at=T0)]}).encode()
    response = post_raw(api, body, "application/json; charset=utf-8")
    assert response.json()["accepted"] == 1


def _valid() -> dict[str, Any]:
    return event(at=T0)


BAD_BODIES: dict[str, bytes] = {
    "malformed JSON": b'{"events": [',
    "not JSON at all": b"events=1",
    "not UTF-8": b'{"events": ["\xff\xfe"]}',
    "empty body": b"",
    "null": b"null",
    "a list, not an object": json.dumps([_valid()]).encode(),
    "no events key": json.dumps({"evts": [_valid()]}).encode(),
    "events not a list": json.dumps({"events": _valid()}).encode(),
    "events null": b'{"events": null}',
    "empty list": b'{"events": []}',
    "1001 events": json.dumps({"events": [_valid() for _ in range(1001)]}).encode(),
    "unknown top-level key": json.dumps({"events": [_valid()], "batch_id": "b-1"}).encode(),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_an_unusable_batch_is_refused_with_400_in_the_error_envelope(api: Api, body: bytes) -> None:
    assert_error(post_raw(api, body), 400, "bad_request")
    assert count(api) == 0
    assert count(api, "quarantine") == 0


# --- clock rules ---------------------------------------------------------------------------

H = timedelta(hours=1)
MS = timedelta(milliseconds=1)

# (timestamp, sent_at or None, outcome: "accepted" or the rejection reason, stored time)
CLOCK_CASES = {
    "now": (T0, None, "accepted", T0),
    "sent_at equal to now": (T0 - H, T0, "accepted", T0 - H),
    "exactly 23 h ahead": (T0 + 23 * H, None, "accepted", T0 + 23 * H),
    "23 h and 1 ms ahead": (T0 + 23 * H + MS, None, "in_future", None),
    "2 days ahead, no sent_at": (T0 + 48 * H, None, "in_future", None),
    "client clock 3 days fast, corrected": (
        T0 + 72 * H + timedelta(minutes=5),
        T0 + 72 * H + timedelta(minutes=10),
        "accepted",
        T0 - timedelta(minutes=5),
    ),
    "client clock 3 days slow, corrected": (
        T0 - 72 * H - timedelta(minutes=10),
        T0 - 72 * H,
        "accepted",
        T0 - timedelta(minutes=10),
    ),
    "corrected to exactly 23 h ahead": (T0 + 20 * H, T0 - 3 * H, "accepted", T0 + 23 * H),
    "corrected to 23 h and 1 ms ahead": (T0 + 20 * H + MS, T0 - 3 * H, "in_future", None),
    "corrected from the future to now": (T0 + 30 * H, T0 + 30 * H, "accepted", T0),
    "first instant of the oldest live epoch": (OLDEST_LIVE, None, "accepted", OLDEST_LIVE),
    "1 ms before the oldest live epoch": (OLDEST_LIVE - MS, None, "too_old", None),
    "corrected into an expired epoch": (OLDEST_LIVE + H, T0 + 2 * H, "too_old", None),
    "a year old": (T0 - timedelta(days=365), None, "too_old", None),
}


@pytest.mark.parametrize(
    ("timestamp", "sent_at", "outcome", "stored"), CLOCK_CASES.values(), ids=CLOCK_CASES.keys()
)
def test_clock_rules_decide_acceptance_and_the_stored_time(
    api: Api,
    timestamp: datetime,
    sent_at: datetime | None,
    outcome: str,
    stored: datetime | None,
) -> None:
    one = event(at=timestamp)
    one["timestamp"] = iso(timestamp)
    if sent_at is not None:
        one["sent_at"] = iso(sent_at)
    body = post(api, [one]).json()
    if outcome == "accepted":
        assert body["accepted"] == 1, body
        assert stored is not None
        minute = int(stored.timestamp()) // 60 * 60  # the default policy keeps minutes
        assert rows(api, "SELECT ts, epoch FROM events") == [(minute, IDS.epoch_of(stored))]
    else:
        (result,) = body["results"]
        assert (result["status"], result["reason"]) == ("rejected", outcome)
        assert [e["field"] for e in result["errors"]] == ["timestamp"]
        assert count(api) == 0


# --- policy: context labels ----------------------------------------------------------------


def test_context_values_outside_the_declared_lists_become_other(api: Api) -> None:
    one = event(at=T0, context={"surface": "slack", "task_type": "coding", "cohort": "holdout-7"})
    post(api, [one])
    assert rows(api, "SELECT surface, task_type, cohort, model FROM events") == [
        ("other", "coding", "other", None)
    ]


def test_declared_context_values_are_kept(api: Api) -> None:
    labels = {"surface": "ide", "task_type": "qa", "cohort": "treatment", "model": "model-b"}
    post(api, [event(at=T0, context=labels)])
    assert rows(api, "SELECT surface, task_type, cohort, model FROM events") == [
        ("ide", "qa", "treatment", "model-b")
    ]


# --- quarantine ----------------------------------------------------------------------------

RAW_IDS = {
    "user_id": "raw-user-4f1c9e",
    "session_id": "raw-session-77ab",
    "query_id": "raw-query-0d3e",
    "response_id": "raw-response-9a21",
}
FREE_TEXT = "please summarise the Q3 board minutes for Alice"


def quarantine_rows(api: Api) -> list[dict[str, Any]]:
    names = ["received_at", "source_id", "epoch", "user_ps", "reason", "errors", "event"]
    return [
        dict(zip(names, r, strict=True))
        for r in rows(api, f"SELECT {', '.join(names)} FROM quarantine ORDER BY received_at")
    ]


def test_quarantine_holds_reason_errors_and_the_event_with_identifiers_pseudonymized(
    api: Api,
) -> None:
    bad = event(at=T0, payload={"position": 0, "candidates": 3}, **RAW_IDS)
    post(api, [bad])
    (row,) = quarantine_rows(api)
    assert row["reason"] == "invalid"
    assert [e["field"] for e in json.loads(row["errors"])] == ["payload.position"]
    keys = api.state.keyring.keys(IDS.epoch_of(T0), T0)
    stored = json.loads(row["event"])
    for name, raw in RAW_IDS.items():
        expected = keys.pseudonym(name, raw)
        assert stored[name] == f"ps:{expected & 0xFFFFFFFFFFFFFFFF:016x}"
    assert row["user_ps"] == keys.pseudonym("user_id", RAW_IDS["user_id"])
    assert stored["payload"] == {"position": 0, "candidates": 3}
    assert stored["event_type"] == "response_shown"


def test_quarantine_keeps_the_event_id_only_as_its_keyed_hash_and_times_coarsened(
    api: Api,
) -> None:
    # Client event ids often embed a user id: the quarantine keeps what the idempotency
    # index keeps (a keyed hash), and times only to the policy's precision (a minute).
    raw_id = "user42-0007-retry"
    at = T0.replace(second=37, microsecond=120_000)
    bad = event(
        at=at,
        event_id=raw_id,
        sent_at=(at + timedelta(seconds=5)).isoformat(),
        payload={"position": 0, "candidates": 3},
    )
    post(api, [bad])
    (row,) = quarantine_rows(api)
    stored = json.loads(row["event"])
    keys = api.state.keyring.keys(IDS.epoch_of(T0), T0)
    assert stored["event_id"] == f"ps:{keys.pseudonym('event_id', raw_id) & (2**64 - 1):016x}"
    minute = at.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stored["timestamp"] == stored["sent_at"] == minute
    # No time of day with its seconds anywhere (a bare ":37" would also match "ps:37…").
    assert raw_id not in row["event"] and re.search(r"\d\d:\d\d:37", row["event"]) is None


def test_quarantine_keeps_no_raw_identifier_and_no_unknown_free_text(api: Api) -> None:
    batch = [
        event(at=T0, query_text=FREE_TEXT, **RAW_IDS),
        event(at=T0, payload={"position": 1, "candidates": 3, "note": FREE_TEXT}, **RAW_IDS),
        event(at=T0, context={"surface": FREE_TEXT}, **RAW_IDS),
        event(at=T0, payload={"position": FREE_TEXT, "candidates": 3}, **RAW_IDS),
        event(at=T0, timestamp=FREE_TEXT, **RAW_IDS),
        event(at=T0, **{FREE_TEXT: 1}, **RAW_IDS),
        event(at=T0, payload={"position": 1, "candidates": 3, FREE_TEXT: 1}, **RAW_IDS),
        changed(event_type=FREE_TEXT, **RAW_IDS),
        event(
            "copy_paste",
            at=T0,
            payload={"span_start": 0, "span_end": 1, "span_length": 1, "destination": FREE_TEXT},
            **RAW_IDS,
        ),
        event(at=T0 + timedelta(days=3), **RAW_IDS),  # valid, but in the future
    ]
    body = post(api, batch).json()
    assert body["rejected"] == len(batch)
    everything = repr(rows(api, "SELECT * FROM quarantine"))
    assert len(quarantine_rows(api)) == len(batch)
    for secret in [*RAW_IDS.values(), FREE_TEXT, "Alice"]:
        assert secret not in everything


def test_unknown_keys_are_kept_in_quarantine_only_as_placeholders(api: Api) -> None:
    post(api, [event(at=T0, query_text=FREE_TEXT)])
    (row,) = quarantine_rows(api)
    stored = json.loads(row["event"])
    assert "query_text" not in stored
    assert stored["<unknown key>"] == [f"<string of {len(FREE_TEXT)} chars>"]


def test_unknown_keys_are_named_in_quarantined_errors_only_as_placeholders(api: Api) -> None:
    post(api, [event(at=T0, payload={"position": 1, "candidates": 3, FREE_TEXT: 1})])
    (row,) = quarantine_rows(api)
    assert [e["field"] for e in json.loads(row["errors"])] == ["payload.<unknown key>"]


def test_an_unknown_event_type_is_not_echoed_in_the_error_message(api: Api) -> None:
    body = post(api, [changed(event_type=FREE_TEXT)]).json()
    (error,) = body["results"][0]["errors"]
    assert error["field"] == "event_type"
    assert FREE_TEXT not in error["message"]
    assert "task_completion" in error["message"]  # it says what is allowed


def test_an_event_dropped_by_the_clock_is_quarantined_with_its_reason(api: Api) -> None:
    post(api, [event(at=T0 + timedelta(days=3), **RAW_IDS)])
    (row,) = quarantine_rows(api)
    assert row["reason"] == "in_future"
    assert json.loads(row["event"])["user_id"].startswith("ps:")


def test_a_valid_event_is_never_quarantined(api: Api) -> None:
    post(api, [event(at=T0)])
    assert count(api, "quarantine") == 0


# --- metrics -------------------------------------------------------------------------------


def event_counts(api: Api) -> dict[tuple[str, str], float]:
    text = api.client.get("/metrics").text
    return {
        (s.labels["outcome"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "tacit_events"
        for s in family.samples
        if s.name == "tacit_events_total"
    }


def test_metrics_count_accepted_duplicate_and_rejected_by_reason(api: Api) -> None:
    first = [event(at=T0) for _ in range(3)]
    post(api, first)
    post(
        api,
        [
            *first[:2],
            event(at=T0, user_id=""),
            changed(event_type="page_view"),
            event(at=T0 + timedelta(days=2)),
            event(at=T0 - timedelta(days=60)),
            event(at=T0),
        ],
    )
    assert event_counts(api) == {
        ("accepted", ""): 4,
        ("duplicate", ""): 2,
        ("rejected", "invalid"): 2,
        ("rejected", "in_future"): 1,
        ("rejected", "too_old"): 1,
    }


def test_metrics_count_nothing_for_a_refused_request(api: Api) -> None:
    post_raw(api, b'{"events": [')
    assert event_counts(api) == {}
