"""GET /readyz: 200 while the database answers and the lake can be read, else a 503
not_ready naming what is down. A PostgreSQL that goes away is
tests/system/test_postgres_outage.py; here the lake's log is damaged under a running app."""

from __future__ import annotations

from pathlib import Path

from conftest import Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.lake.sealer import Sealer
from service.ops.tokens import create_token
from service.store.base import Role


def test_ready_when_the_store_answers_and_the_lake_reads_then_not_when_the_lake_breaks(
    tmp_path: Path, master_key_b64: str, clock: Clock
) -> None:
    app = create_app(make_settings(tmp_path, master_key_b64), clock=clock)
    state = app.state.tacit
    token = create_token(state.store, "app", Role.INGEST, "app")
    with TestClient(app) as client:
        posted = client.post(
            "/v1/events",
            json={"events": [event(at=clock())]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert posted.status_code == 200, posted.text
        Sealer(state.store, state.lake).seal()
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"store": "ok", "lake": "ok"}}

        for entry in (tmp_path / "lake" / "_delta_log").glob("*.json"):
            entry.write_text("not a Delta log entry\n")
        broken = client.get("/readyz")
        assert broken.status_code == 503, broken.text
        assert int(broken.headers["Retry-After"]) >= 1
        error = broken.json()["error"]
        assert error["code"] == "not_ready" and "lake" in error["message"]
        assert error["checks"] == {"store": "ok", "lake": "unreadable"}
        assert str(tmp_path) not in broken.text  # the path stays in the server's log
        assert client.get("/healthz").status_code == 200  # liveness is not readiness


def test_the_rowstore_engine_has_no_lake_to_check(
    tmp_path: Path, master_key_b64: str, clock: Clock
) -> None:
    app = create_app(make_settings(tmp_path, master_key_b64, query_engine="rowstore"), clock=clock)
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready", "checks": {"store": "ok"}}
