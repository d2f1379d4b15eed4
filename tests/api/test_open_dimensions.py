"""Open dimensions end to end: labels kept as sent, released only through selection.

Real app, real store (SQLite, and PostgreSQL when configured), real OpenDP noise. A model
version used by 150 people (three times min_users) appears in the answer without any
policy edit; one used by a single person does not, and is pooled into "other". OpenDP
takes no seed: the first fails with probability below 1e-40 (a 14-sigma miss), the
second with at most the selection's δ (1e-9), the released count's check (three
half-widths) with about 4e-9.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient
from pg import store_rows

from service.api.app import create_app
from service.ops.tokens import create_token
from service.settings import DEFAULT_POLICY
from service.store.base import Role

STRICT = DEFAULT_POLICY.parent / "strict.yaml"

DAY = (T0 - timedelta(days=1)).date().isoformat()
AT = T0 - timedelta(days=1, hours=2)
MIN_USERS = 50


def open_policy_text(delta_caps: str = "1e-7, 1e-6") -> str:
    """The strict policy (zCDP, rho 0.015 per query, 0.2 per analyst), `model` open, with
    ``delta_caps`` (per analyst, global) as its caps of δ per epoch."""
    text = STRICT.read_text()
    old = "  model: [model-a, model-b]\n"
    assert old in text
    analyst, everyone = delta_caps.split(", ")
    caps = f"  delta_per_analyst: {analyst}\n  delta_global: {everyone}\n"
    text = text.replace("  repeat_window: 24h", caps + "  repeat_window: 24h", 1)
    return text.replace(old, "  model: {open: {min_users: 50, max_values_per_user: 1}}\n")


@pytest.fixture
def app(
    tmp_path: Path, master_key_b64: str, clock: Clock, database_url: str | None
) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    policy = tmp_path / "open.yaml"
    policy.write_text(open_policy_text())
    extra = {} if database_url is None else {"database_url": database_url}
    settings = make_settings(tmp_path / "data", master_key_b64, policy=policy, **extra)
    application = create_app(settings, clock=clock)
    store = application.state.tacit.store
    tokens = {
        who: f"Bearer {create_token(store, who, role, src)}"
        for who, role, src in [("app", Role.INGEST, "app"), ("alice", Role.ANALYST, None)]
    }
    with TestClient(application) as client:
        yield client, tokens, store


def post(client: TestClient, token: str, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        r = client.post(
            "/v1/events",
            json={"events": events[start : start + 500]},
            headers={"Authorization": token},
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(events[start : start + 500]), r.text


def shown(user: str, model: str) -> dict[str, Any]:
    return event("response_shown", at=AT, user=user, session=f"s-{user}", context={"model": model})


def test_a_model_used_by_enough_people_appears_and_one_used_by_one_person_does_not(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, store = app
    events = [shown(f"u{i}", "model-z9") for i in range(3 * MIN_USERS)]
    events.append(shown("solo", "model-solo"))
    post(client, tokens["app"], events)
    # Ingestion kept the labels as sent (the dimension is open), not "other".
    stored = {m for (m,) in store_rows(store, "SELECT DISTINCT model FROM events")}
    assert stored == {"model-z9", "model-solo"}

    r = client.post(
        "/v1/queries",
        json={
            "metric": "active_users",
            "start": DAY,
            "end": DAY,
            "group_by": ["model"],
            "rho": 0.005,
        },
        headers={"Authorization": tokens["alice"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [row["model"] for row in body["rows"]] == ["model-z9", "other"]
    assert "model-solo" not in r.text
    z9 = body["rows"][0]
    # Within three of its 95 % half-widths (a 95 % interval misses one time in twenty: it
    # cannot be the test). The count's noise is Gaussian under zCDP, so a miss of 3 x 1.96
    # sigma has probability about 4e-9.
    half = z9["ci95"][1] - z9["value"]
    assert abs(z9["value"] - 3 * MIN_USERS) <= 3 * half + 1
    assert any("open dimension" in n and "partition selection" in n for n in body["notes"])
    # The charge: the query's rho and the selection's (0.01), and the selection's delta.
    assert body["cost"]["value"] == pytest.approx(0.015)
    assert body["cost"]["selection_delta"] == pytest.approx(1e-9)
    assert body["cost"]["delta"] == 1e-8  # the δ its epsilon_equivalent is stated at
    spent = client.get("/v1/budget", headers={"Authorization": tokens["alice"]}).json()
    assert spent["remaining"][DAY] == pytest.approx(0.2 - 0.015)
    (detail,) = [
        e["detail"]
        for e in _audit(store)
        if e["action"] == "release" and e["detail"]["release_id"] == body["release_id"]
    ]
    assert detail["cost"]["delta"] == pytest.approx(1e-9)
    assert detail["cost"]["nanos"] == 15_000_000


def test_the_catalogue_lists_an_open_dimension_as_a_group_by_without_public_keys(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, _ = app
    r = client.get("/v1/metrics", headers={"Authorization": tokens["alice"]})
    assert r.status_code == 200, r.text
    body = r.json()
    (users,) = [m for m in body["metrics"] if m["name"] == "active_users"]
    assert "model" in users["group_by"] and "model" not in users["keys"]
    assert "surface" in users["keys"]
    assert body["context"]["model"] == {
        "open": {
            "min_users": 50,
            "max_values_per_user": 1,
            "max_values": 50,
            "rho": 0.01,
            "delta": 1e-9,
        }
    }


def test_an_open_dimension_cannot_be_filtered_or_compared_on(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, _ = app
    base = {"metric": "active_users", "start": DAY, "end": DAY, "rho": 0.005}
    auth = {"Authorization": tokens["alice"]}
    r = client.post("/v1/queries", json={**base, "filters": {"model": ["x"]}}, headers=auth)
    assert r.status_code == 400 and "open dimension" in r.text, r.text
    r = client.post(
        "/v1/queries",
        json={**base, "rho": 0.01, "group_by": ["model"]},
        headers=auth,
    )
    assert r.status_code == 400 and "selection's rho 0.01" in r.text, r.text
    assert client.get("/v1/budget", headers=auth).json()["remaining"][DAY] == 0.2


def test_a_preview_says_an_open_dimensions_values_are_chosen_when_the_query_runs(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, _ = app
    post(client, tokens["app"], [shown(f"u{i}", "model-z9") for i in range(3 * MIN_USERS)])
    auth = {"Authorization": tokens["alice"]}
    ask = {"metric": "active_users", "start": DAY, "end": DAY, "group_by": ["model"]}
    r = client.post("/v1/queries/preview", json={**ask, "rho": 0.005}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "model-z9" not in r.text  # a preview reads no data
    assert [row["model"] for row in body["rows"]] == ["other"]
    (note,) = [n for n in body["notes"] if n.startswith("model is an open dimension")]
    assert "chosen when the query runs" in note and 'only as "other"' in note
    assert client.get("/v1/budget", headers=auth).json()["remaining"][DAY] == 0.2


def _audit(store: Any) -> list[dict[str, Any]]:
    rows = store_rows(store, "SELECT kind, detail FROM audit_log ORDER BY seq")
    return [{"action": a, "detail": json.loads(d)} for a, d in rows]
