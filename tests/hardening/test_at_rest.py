"""At rest: after a full run, no canary, token, salt or master key in any byte of the data
dir, of the log, or of a dump of the database.

tests/system/test_canary_scan.py scans after ingestion; this run covers every feature:
ingestion (all its paths, through that test's own driver), queries and previews (valid
and rejected, with canaries in what was rejected), budgets, the policy and audit reads,
erasure of canary subjects over the API and the CLI, a retention run, key status, token
revocation, the per-request log, and requests with canary tokens. The scan then looks
for each secret in every form (UTF-8, UTF-16, hex, base64) in the files and in the SQL
text of ``iterdump``, which also shows what deleted rows left in live tables.
"""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server import Server
from system.test_canary_scan import Canaries, data_dir_bytes, found, post_everything

from privacy.keyring import KEYED_FIELDS, MasterKey
from privacy.pseudonym import derive_field_key
from service.store.sqlite import SQLiteStore

ROLES = ("ingest", "analyst", "compliance", "admin")


def query_everything(server: Server, canaries: Canaries, tokens: dict[str, str]) -> None:
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=d)).isoformat() for d in (0, 1)]
    valid: list[dict[str, Any]] = [
        {"metric": "event_count", "start": days[1], "end": days[0], "epsilon": 0.2},
        {"metric": "event_count", "start": days[1], "end": days[0], "group_by": ["day", "surface"],
         "epsilon": 0.2},
        {"metric": "task_completion_rate", "start": days[0], "end": days[0], "epsilon": 0.2},
    ]  # fmt: skip
    rejected: list[Any] = [
        {"metric": canaries.new("metric"), "start": days[0], "end": days[0], "epsilon": 0.1},
        {"metric": "event_count", "start": days[0], "end": days[0],
         "filters": {"surface": [canaries.new("label")]}, "epsilon": 0.1},
        {"metric": "event_count", "start": days[0], "end": days[0],
         canaries.new("key"): canaries.new("value")},
        {"user_id": canaries.new("user")},
    ]  # fmt: skip
    with server.client(tokens["analyst"]) as client:
        assert client.get("/v1/metrics").status_code == 200
        for body in valid:
            assert client.post("/v1/queries/preview", json=body).status_code == 200
            assert client.post("/v1/queries", json=body).status_code == 200, body
        assert client.post("/v1/queries", json=valid[0]).json()["repeat"]
        for body in rejected:
            assert client.post("/v1/queries", json=body).status_code == 400
        assert client.get("/v1/budget").status_code == 200
    with server.client(tokens["compliance"]) as client:
        assert client.get("/v1/policy").status_code == 200
        assert client.get("/v1/audit", params={"limit": 1000}).status_code == 200


def operate(server: Server, canaries: Canaries, tokens: dict[str, str]) -> None:
    with server.client(tokens["admin"]) as client:
        for _ in range(2):
            erased = client.post("/v1/subjects/erase", json={"user_id": canaries.new("user")})
            assert erased.status_code == 200
    server.cli("erase", "--user-id", canaries.new("user"))
    server.cli("retention", "run")
    server.cli("keys", "status")
    server.cli("token", "list")
    server.revoke_token("at-rest-ingest")
    with server.client(tokens["ingest"]) as client:
        assert client.post("/v1/events", json={"events": []}).status_code == 401
    for _ in range(2):
        with server.client("tct_" + canaries.new("token")) as client:
            assert client.get("/v1/budget").status_code == 401


def dump(db: Path) -> bytes:
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump()).encode()
    finally:
        conn.close()


def test_after_a_full_run_no_secret_is_in_the_data_dir_the_log_or_a_dump(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, master_key_b64, args=["--access-log"]).start()
    canaries = Canaries()
    try:
        tokens = {role: server.create_token(role, f"at-rest-{role}") for role in ROLES}
        post_everything(server, canaries, tokens)
        query_everything(server, canaries, tokens)
        operate(server, canaries, tokens)
    finally:
        server.stop()

    files = data_dir_bytes(data_dir)
    files["iterdump.sql"] = dump(data_dir / "tacit.db")
    assert b"INSERT INTO" in files["iterdump.sql"] and b"request" in files["server.log"]

    leaks = found(canaries.prefix.encode(), files)
    if leaks:  # name the canaries that leaked, for the failure message
        leaks += [c for c in canaries.all if found(c.encode(), files)]
    assert leaks == []
    for token in tokens.values():
        assert found(token.encode(), files) == []
        assert found(token.removeprefix("tct_").encode(), files) == []

    master = MasterKey.from_base64(master_key_b64)
    assert found(base64.b64decode(master_key_b64), files) == []
    assert found(master_key_b64.encode(), files) == []
    store = SQLiteStore(data_dir / "tacit.db")  # opened only after the files were read
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
