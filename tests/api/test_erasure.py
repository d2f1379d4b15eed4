"""Erasure (POST /v1/subjects/erase, `tacit erase`): one subject's events and quarantined
rejects leave every live epoch, nobody else's do, and the id is never echoed or kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Api, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cli import main
from service.ops.tokens import create_token
from service.store.base import Role

ALICE = "alice-4f1c9e"  # the subject to erase
BOB = "bob-77d2a0"


def post(api: Api, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = api.client.post("/v1/events", json={"events": events}, headers=api.headers("ingest"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def invalid(at: datetime, user: str) -> dict[str, Any]:
    return event("edit", at=at, user=user, payload={"edit_ratio": 7})


def erase(api: Api, user_id: str, role: str = "admin") -> Any:
    return api.client.post(
        "/v1/subjects/erase", json={"user_id": user_id}, headers=api.headers(role)
    )


def rows_of(api: Api, user: str) -> tuple[int, int]:
    """(events, quarantined) stored under ``user``'s pseudonym in any live epoch."""
    state, now = api.state, api.clock()
    events = quarantined = 0
    for epoch, alive in state.store.salts.status():
        keys = state.keyring.existing_keys(epoch, now) if alive else None
        if keys is None:
            continue
        ps = keys.pseudonym("user_id", user)
        events += api.rows(
            "SELECT count(*) FROM events WHERE epoch = ? AND user_ps = ?", epoch, ps
        )[0][0]
        quarantined += api.rows(
            "SELECT count(*) FROM quarantine WHERE epoch = ? AND user_ps = ?", epoch, ps
        )[0][0]
    return events, quarantined


@pytest.fixture
def two_days(api: Api) -> Api:
    """Alice: 3 + 2 events on two days and one reject; Bob: 2 + 1 events and one reject."""
    post(api, [event("edit", at=T0, user=ALICE) for _ in range(3)])
    post(api, [event("dwell", at=T0, user=BOB) for _ in range(2)])
    post(api, [invalid(T0, ALICE), invalid(T0, BOB)])
    api.clock.advance(days=1)
    now = api.clock()
    post(api, [event("task_completion", at=now, user=ALICE) for _ in range(2)])
    post(api, [event("click_through", at=now, user=BOB)])
    assert rows_of(api, ALICE) == (5, 1) and rows_of(api, BOB) == (3, 1)
    return api


def test_erasure_deletes_the_subjects_events_in_every_live_epoch(two_days: Api) -> None:
    response = erase(two_days, ALICE)
    assert response.status_code == 200
    assert response.json()["erased"]["events"] == 5
    assert rows_of(two_days, ALICE) == (0, 0)


def test_erasure_deletes_the_subjects_quarantined_rejects(two_days: Api) -> None:
    assert erase(two_days, ALICE).json()["erased"]["quarantined"] == 1


def test_erasure_leaves_everyone_elses_rows(two_days: Api) -> None:
    erase(two_days, ALICE)
    assert rows_of(two_days, BOB) == (3, 1)
    assert two_days.state.store.events.count() == 3


def test_response_and_audit_hold_the_counts_never_the_id(two_days: Api) -> None:
    response = erase(two_days, ALICE)
    assert ALICE not in response.text
    entries = two_days.state.store.audit.page(0, 1000)
    (erased,) = [e for e in entries if e.kind == "subject_erased"]
    assert erased.detail == {"events": 5, "quarantined": 1, "epochs": 2}
    assert erased.actor == "test-admin"
    assert ALICE not in json.dumps([e.detail for e in entries])


@pytest.mark.sqlite_only  # reads the SQLite files' bytes
def test_the_subjects_pseudonyms_leave_the_database_files(two_days: Api) -> None:
    state, now = two_days.state, two_days.clock()
    epochs = [e for e, alive in state.store.salts.status() if alive]
    pseudonyms = [state.keyring.keys(e, now).pseudonym("user_id", ALICE) for e in epochs]
    erase(two_days, ALICE)
    db = Path(state.store.path)
    data = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    assert [p for p in pseudonyms if p.to_bytes(8, "big", signed=True) in data] == []


def test_an_unknown_subject_erases_nothing(two_days: Api) -> None:
    assert erase(two_days, "nobody-at-all").json()["erased"] == {
        "events": 0,
        "quarantined": 0,
        "epochs": 2,
    }
    assert two_days.state.store.events.count() == 8


@pytest.mark.parametrize("role", ["ingest", "analyst", "compliance"])
def test_only_admins_may_erase(two_days: Api, role: str) -> None:
    assert erase(two_days, ALICE, role).status_code == 403
    assert rows_of(two_days, ALICE) == (5, 1)


def test_erasure_without_a_token_is_refused(two_days: Api) -> None:
    response = two_days.client.post("/v1/subjects/erase", json={"user_id": ALICE})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [{"user_id": ALICE * 40}, {"user_id": ALICE, "also": ALICE}, {"user": ALICE}],
    ids=["too-long", "unknown-key", "no-user-id"],
)
def test_a_malformed_request_is_refused_without_echoing_the_id(
    two_days: Api, body: dict[str, str]
) -> None:
    response = two_days.client.post(
        "/v1/subjects/erase", json=body, headers=two_days.headers("admin")
    )
    assert response.status_code == 400
    assert ALICE not in response.text


def test_a_body_that_is_not_utf8_is_a_bad_request_in_the_envelope(api: Api) -> None:
    # FastAPI refuses it before validation; its refusal carries our code (schemathesis).
    response = api.client.post(
        "/v1/subjects/erase",
        content=b'{"user_id": "\xff\xfe"}',
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_epoch_past_salt_retention_is_made_unlinkable_instead_of_searched(api: Api) -> None:
    post(api, [event("edit", at=T0, user=ALICE)])
    policy = api.state.policy.policy
    api.clock.now = policy.identifiers.epoch_start(policy.identifiers.epoch_of(T0)) + (
        policy.identifiers.salt_retention
    )
    # No sweep ran yet: the old epoch's salt still exists. Erasure destroys it rather
    # than leave rows that the subject's id could still be linked to.
    response = erase(api, ALICE)
    assert response.json()["erased"]["events"] == 0
    assert api.state.store.salts.status() == [(api.state.keyring.epoch_of(T0), False)]
    assert api.state.store.events.count() == 1  # kept, but linked to nobody


def test_cli_erase_removes_the_subject_and_never_prints_the_id(
    tmp_path: Path,
    master_key_b64: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock(datetime.now(UTC) - timedelta(minutes=5))  # the CLI reads the real clock
    app = create_app(make_settings(tmp_path, master_key_b64), clock=clock)
    token = create_token(app.state.tacit.store, "app", Role.INGEST, "app")
    with TestClient(app) as client:
        events = [event("edit", at=clock(), user=u) for u in (ALICE, ALICE, BOB)]
        response = client.post(
            "/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.json()["accepted"] == 3
        monkeypatch.setenv("TACIT_MASTER_KEY", master_key_b64)
        assert main(["erase", "--user-id", ALICE, "--data-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "erased 2 events" in out and ALICE not in out
        assert app.state.tacit.store.events.count() == 1
