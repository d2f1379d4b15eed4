"""The δ of open dimensions is a real budget: charged, capped, shown, refused whole.

Real app, real store (SQLite, and PostgreSQL when configured), real OpenDP noise. The
strict policy with `model` open (selection δ 1e-9) and δ caps per day of 2e-9 for each
analyst and 1e-6 for all: two selections fit an analyst's day, a third is refused and
charges nothing, neither rho nor δ.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient
from pg import store_rows

from service.api.app import create_app
from service.cli.query import render
from service.ops.tokens import create_token
from service.settings import DEFAULT_POLICY
from service.store.base import Role

DAY = (T0 - timedelta(days=1)).date().isoformat()
AT = T0 - timedelta(days=1, hours=2)


def policy_text() -> str:
    text = (DEFAULT_POLICY.parent / "strict.yaml").read_text()
    caps = "  delta_per_analyst: 2.0e-9\n  delta_global: 1.0e-6\n"
    text = text.replace("  repeat_window: 24h", caps + "  repeat_window: 24h", 1)
    old = "  model: [model-a, model-b]\n"
    assert old in text
    return text.replace(old, "  model: {open: {min_users: 50, max_values_per_user: 1}}\n")


@pytest.fixture
def app(
    tmp_path: Path, master_key_b64: str, clock: Clock, database_url: str | None
) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    policy = tmp_path / "open.yaml"
    policy.write_text(policy_text())
    extra: dict[str, Any] = {} if database_url is None else {"database_url": database_url}
    # Concurrent requests must all reach the ledger, not be shed by the backpressure.
    extra["max_wait_s"] = 120.0
    settings = make_settings(tmp_path / "data", master_key_b64, policy=policy, **extra)
    application = create_app(settings, clock=clock)
    store = application.state.tacit.store
    tokens = {
        who: f"Bearer {create_token(store, who, role, src)}"
        for who, role, src in [
            ("app", Role.INGEST, "app"),
            ("alice", Role.ANALYST, None),
            ("bob", Role.ANALYST, None),
        ]
    }
    with TestClient(application) as client:
        events = [
            event("response_shown", at=AT, user=f"u{i}", session=f"s{i}", context={"model": "m1"})
            for i in range(150)
        ]
        r = client.post(
            "/v1/events", json={"events": events}, headers={"Authorization": tokens["app"]}
        )
        assert r.status_code == 200 and r.json()["accepted"] == 150, r.text
        yield client, tokens, store


def ask(client: TestClient, token: str, rho: float) -> Any:
    body = {"metric": "active_users", "start": DAY, "end": DAY, "group_by": ["model"], "rho": rho}
    return client.post("/v1/queries", json=body, headers={"Authorization": token})


def budget(client: TestClient, token: str) -> dict[str, Any]:
    r = client.get("/v1/budget", headers={"Authorization": token})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_budget_shows_delta_spent_and_left_per_epoch_beside_rho(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, _ = app
    before = budget(client, tokens["alice"])["delta"]
    assert (before["per_epoch_cap"], before["global_cap"]) == (2e-9, 1e-6)
    assert before["spent"][DAY] == 0 and before["remaining"][DAY] == 2e-9
    r = ask(client, tokens["alice"], 0.005)
    assert r.status_code == 200, r.text
    assert r.json()["guarantee"].endswith(
        "Its partition selection adds δ = 1e-09 on each day; all selections for all analysts "
        "together can never add more than δ = 1e-06 per day (yours: 2e-09)."
    )
    assert r.json()["budget"]["delta_remaining"] == {DAY: 1e-9}
    assert r.json()["budget"]["delta_global_remaining"][DAY] == pytest.approx(1e-6 - 1e-9)
    printed = render(r.json())
    assert "remaining delta (open dimensions' selections):" in printed and "1e-09" in printed
    after = budget(client, tokens["alice"])
    assert after["remaining"][DAY] == pytest.approx(0.2 - 0.015)
    assert after["delta"]["spent"][DAY] == 1e-9
    assert after["delta"]["remaining"][DAY] == 1e-9
    assert after["delta"]["global_remaining"][DAY] == pytest.approx(1e-6 - 1e-9)
    # Bob spent nothing; the global δ spent is shown to him too.
    bob = budget(client, tokens["bob"])["delta"]
    assert bob["spent"][DAY] == 0 and bob["global_spent"][DAY] == 1e-9


def test_the_release_audit_entry_records_its_delta_exactly(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, store = app
    r = ask(client, tokens["alice"], 0.005)
    assert r.status_code == 200, r.text
    rows = store_rows(store, "SELECT kind, detail FROM audit_log ORDER BY seq")
    (detail,) = [json.loads(d) for k, d in rows if k == "release"]
    assert detail["cost"]["delta"] == 1e-9
    assert detail["cost"]["delta_units"] == 10**9  # units of 1e-18


def test_a_query_whose_delta_is_more_than_is_left_is_refused_and_charges_nothing(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, store = app
    for rho in (0.005, 0.004):  # two different questions: two selections, 2e-9 of δ
        assert ask(client, tokens["alice"], rho).status_code == 200
    before = budget(client, tokens["alice"])
    body = {"metric": "active_users", "start": DAY, "end": DAY, "group_by": ["model"]}
    preview = client.post(
        "/v1/queries/preview",
        json={**body, "rho": 0.003},
        headers={"Authorization": tokens["alice"]},
    ).json()
    assert (preview["affordable"], preview["short_epochs"]) == (False, [DAY])
    audit_before = store_rows(store, "SELECT count(*) FROM audit_log")
    r = ask(client, tokens["alice"], 0.003)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "budget_exhausted" and error["unit"] == "delta"
    message = error["message"]
    assert "delta budget exhausted" in message and DAY in message
    assert "0 left of your cap (privacy.delta_per_analyst 2e-09)" in message
    assert "Nothing was charged (neither rho nor delta)" in message
    assert error["epochs"][DAY] == {
        "remaining": 0.0,
        "global_remaining": pytest.approx(1e-6 - 2e-9),
    }
    after = budget(client, tokens["alice"])
    assert after["remaining"] == before["remaining"]
    assert after["delta"] == before["delta"]
    assert store_rows(store, "SELECT count(*) FROM audit_log") == audit_before
    # Another analyst has a δ budget of their own.
    assert ask(client, tokens["bob"], 0.003).status_code == 200


def test_concurrent_queries_never_pass_the_delta_cap(
    app: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, tokens, store = app

    def one(i: int) -> tuple[int, str]:
        r = ask(client, tokens["alice"], round(0.001 + i * 0.0001, 4))  # all different
        return r.status_code, "ok" if r.status_code == 200 else r.json()["error"]["unit"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(20)))
    # The cap of 2e-9 holds two selections of 1e-9: two answers, eighteen refusals.
    assert outcomes.count((200, "ok")) == 2, Counter(outcomes)
    assert outcomes.count((403, "delta")) == 18, Counter(outcomes)
    assert store_rows(store, "SELECT sum(delta_units) FROM budget_spend") == [(2 * 10**9,)]
