"""No raw identifier, token or secret reaches the disk: post canaries to the real server,
stop it, and scan every byte of every file in its data dir.

Each identifier a client sends (user, session, query, response and event id, an undeclared
context label, free text in unknown fields) is a unique canary string. They go through
every path that touches the disk: accepted events, duplicates, rejections (quarantine),
clock drops and whole-request errors. The scan looks for each canary as UTF-8, UTF-16,
hex and base64, in the database, its -wal and -shm files and the server's log.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server

from privacy.keyring import KEYED_FIELDS, MasterKey
from privacy.pseudonym import derive_field_key
from service.store.sqlite import SQLiteStore

IDENTIFIERS = ("user_id", "session_id", "query_id", "response_id")
LIMIT = 1 << 20


class Canaries:
    """Unique strings sharing one random prefix, so one search finds any of them.

    A canary is ``cnry<run>-<kind>-<n><random>``: any form of a canary on disk (UTF-8,
    UTF-16, hex, base64 at any alignment) contains the same form of the prefix.
    """

    def __init__(self) -> None:
        self.prefix = f"cnry{uuid.uuid4().hex[:12]}"
        self.all: list[str] = []

    def new(self, kind: str) -> str:
        value = f"{self.prefix}-{kind}-{len(self.all):04d}{uuid.uuid4().hex[:8]}"
        self.all.append(value)
        return value

    def kinds_in(self, text: str) -> set[str]:
        return set(re.findall(re.escape(self.prefix) + r"-([a-z]+)-", text))

    def ids(self) -> dict[str, str]:
        return {name: self.new(name.removesuffix("_id")) for name in IDENTIFIERS}


def forms(secret: bytes) -> Iterator[bytes]:
    """``secret`` as it might appear on disk: raw, UTF-16, hex, base64 at any alignment."""
    yield secret
    text = secret.decode("utf-8", "ignore")
    if text.isprintable() and text.encode() == secret:
        yield text.encode("utf-16-le")
        yield text.encode("utf-16-be")
    yield secret.hex().encode()
    yield secret.hex().upper().encode()
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + secret)
            inner = encoded[(shift * 4 + 2) // 3 : (shift + len(secret)) // 3 * 4]
            if len(inner) >= 8:
                yield inner


def data_dir_bytes(data_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()
    }


def found(secret: bytes, files: dict[str, bytes]) -> list[str]:
    """Where ``secret`` appears, in any of its forms: 'file (form)' entries."""
    hits = []
    for form in forms(secret):
        hits += [f"{name} ({form[:24]!r})" for name, content in files.items() if form in content]
    return hits


def post_everything(server: Server, canaries: Canaries, tokens: dict[str, str]) -> list[str]:
    """Drive every disk-touching path with canaries; returns the response bodies."""
    now = datetime.now(UTC)
    bodies: list[str] = []
    label = canaries.new("label").replace("-", ".")  # fits the label charset, not declared
    free = canaries.new("freetext")

    def valid(event_type: str = "response_shown", at: datetime = now, **kw: Any) -> dict[str, Any]:
        # Every event id is a canary too: client ids often embed a user id.
        ids = {**canaries.ids(), "event_id": canaries.new("eventid")}
        return event(event_type, at=at, **{**ids, **kw})

    accepted = [
        valid(t, context={"surface": label, "task_type": "coding", "cohort": label})
        for t in ("response_shown", "click_through", "reformulation", "copy_paste", "edit")
    ] + [
        valid("dwell"),
        valid("abandonment"),
        valid("task_completion"),
        valid(at=now - timedelta(days=1)),  # a second epoch, a second salt
        valid(sent_at=(now + timedelta(minutes=3)).isoformat()),
    ]
    bad_type = valid()
    bad_type["event_type"] = free
    rejected = [
        valid(payload={"position": 0, "candidates": 3}),
        valid(query_text=free),
        valid(**{free: "x"}),
        valid(payload={"position": 1, "candidates": 3, free: free}),
        valid(context={"surface": f"{free} as a sentence"}),
        valid(timestamp=free),
        bad_type,
        valid(user_id=canaries.new("user") + "x" * 300),
        valid(at=now + timedelta(days=3)),  # in the future
        valid(at=now - timedelta(days=400)),  # too old: no salt
        {name: value for name, value in valid().items() if name != "payload"},
        [canaries.new("list"), canaries.new("list")],
    ]

    def send(
        token: str | None, content: bytes, content_type: str = "application/json", path: str = ""
    ) -> httpx.Response:
        headers = {"Content-Type": content_type, "User-Agent": canaries.new("agent")}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        with server.client() as client:
            response = client.post(path or "/v1/events", content=content, headers=headers)
        bodies.append(response.text)
        return response

    def batch(events: list[Any]) -> bytes:
        return json.dumps({"events": events}).encode()

    ingest = tokens["ingest"]
    assert send(ingest, batch(accepted)).json()["accepted"] == len(accepted)
    assert send(ingest, batch(accepted[:3])).json()["duplicates"] == 3
    for one in [valid("edit"), valid("dwell")]:
        assert send(ingest, batch([one])).json()["accepted"] == 1
    assert send(ingest, batch(rejected)).json()["rejected"] == len(rejected)
    assert send(ingest, batch([*accepted[:2], *rejected[:2]])).status_code == 200

    # Whole-request errors, each carrying canaries in its body or headers.
    assert send(ingest, batch([valid()])[:-3]).status_code == 400  # malformed JSON
    assert send(ingest, json.dumps({"evts": [valid()]}).encode()).status_code == 400
    one_too_many = json.dumps({"events": [valid() for _ in range(1001)]}).encode()
    assert send(ingest, one_too_many).status_code == 400
    assert send(ingest, batch([valid()]), content_type="text/plain").status_code == 415
    padding = " ".join(canaries.new("pad") for _ in range(10)).encode()
    oversized = batch([valid()])[:-1] + b" " * LIMIT + padding + b"}"
    assert send(ingest, oversized).status_code == 413
    assert send(None, batch([valid()])).status_code == 401
    assert send("tct_" + canaries.new("token"), batch([valid()])).status_code == 401
    assert send(tokens["analyst"], batch([valid()])).status_code == 403
    path = f"/v1/{canaries.new('path')}?user_id={canaries.new('user')}"
    assert send(ingest, batch([valid()]), path=path).status_code == 404
    return bodies


@pytest.mark.parametrize("stop", ["graceful", "sigkill"])
def test_no_canary_token_or_secret_is_found_in_any_byte_of_the_data_dir(
    tmp_path: Path, master_key_b64: str, stop: str
) -> None:
    data_dir = tmp_path / "data"
    # The sealer runs, so the event lake (Parquet, Delta log, checkpoints) is scanned too.
    server = Server(data_dir, master_key_b64, env={"TACIT_SEAL_INTERVAL_S": "0.2"}).start()
    canaries = Canaries()
    try:
        tokens = {
            role: server.create_token(role, f"canary-{role}") for role in ("ingest", "analyst")
        }
        bodies = post_everything(server, canaries, tokens)
        deadline = time.monotonic() + 30
        while not list((data_dir / "lake").rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if stop == "graceful":
            server.stop()
        else:  # the whole service at once, so that the WAL is left behind to scan
            server.crash()

    files = data_dir_bytes(data_dir)
    assert {"tacit.db", "server.log"} <= set(files)
    assert any(f.startswith("lake/_delta_log/") for f in files)
    assert any(f.startswith("lake/epoch=") and f.endswith(".parquet") for f in files)
    if stop == "sigkill":
        assert {"tacit.db-wal", "tacit.db-shm"} <= set(files)
    assert "Tacit listening" in files["server.log"].decode()

    leaks = found(canaries.prefix.encode(), files)
    if leaks:  # name the canaries that leaked, for the failure message
        leaks += [c for c in canaries.all if found(c.encode(), files)]
    assert leaks == []
    for token in tokens.values():
        assert found(token.encode(), files) == []

    # No response echoes an identifier either.
    echoed = set().union(*(canaries.kinds_in(body) for body in bodies))
    assert echoed.isdisjoint({"user", "session", "query", "response", "eventid"})

    # Secrets: the master key and every salt (and its derived keys) stay off the disk.
    master = MasterKey.from_base64(master_key_b64)
    assert found(base64.b64decode(master_key_b64), files) == []
    assert found(master_key_b64.encode(), files) == []
    store = SQLiteStore(data_dir / "tacit.db")  # opened only after the scan read the files
    try:
        sealed = store.salts.all_sealed()
    finally:
        store.close()
    assert len(sealed) >= 2
    for one in sealed:
        salt = master.open(one)
        assert found(salt, files) == []
        for name in KEYED_FIELDS:
            assert found(derive_field_key(salt, name), files) == []


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode(),
        lambda s: s.encode("utf-16-le"),
        lambda s: s.encode().hex().encode(),
        lambda s: base64.b64encode(b"ab" + s.encode() + b"yz"),
        lambda s: base64.urlsafe_b64encode(b"a" + s.encode()),
        lambda s: json.dumps({"k": s}).encode(),
    ],
    ids=["utf-8", "utf-16", "hex", "base64", "urlsafe-base64", "json"],
)
def test_the_scan_sees_a_canary_in_each_form(tmp_path: Path, encode: Any) -> None:
    canaries = Canaries()
    planted = canaries.new("user")
    (tmp_path / "blob").write_bytes(b"\x00noise" + encode(planted) + b"noise\xff")
    assert found(canaries.prefix.encode(), data_dir_bytes(tmp_path)) != []
