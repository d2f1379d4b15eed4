"""A store whose ledger holds spend in one unit never starts under a policy counting another.

rho spent under ``accounting: zcdp`` read as epsilon would be a budget far larger than the
one spent (rho = 0.05 is about epsilon = 1.8 at delta = 1e-8): the app refuses to start,
says why and what to do, and records the refusal in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Clock, make_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.ops.accounting import AccountingChanged
from service.ops.tokens import create_token
from service.settings import Settings
from service.store import open_store
from service.store.base import Role

DAY = "2026-11-19"  # the day before T0


def write_policy(path: Path, accounting: str) -> None:
    delta = "  delta: 1e-8\n" if accounting == "zcdp" else ""
    path.write_text(
        f"""\
version: 1
name: accounting-test
privacy:
  accounting: {accounting}
{delta}  max_per_query: 0.1
  per_analyst: 0.5
  global: 1.0
"""
    )


Start = Callable[[str], Settings]


@pytest.fixture
def configure(tmp_path: Path, master_key_b64: str, database_url: str | None) -> Start:
    """Settings for one data dir and database, under a policy file rewritten per call."""
    policy = tmp_path / "policy.yaml"

    def under(accounting: str) -> Settings:
        write_policy(policy, accounting)
        extra = {} if database_url is None else {"database_url": database_url}
        return make_settings(tmp_path / "data", master_key_b64, policy=policy, **extra)

    return under


def spend_rho(app: FastAPI) -> None:
    """Spend rho = 0.05 on DAY as analyst alice; the app's store is closed afterwards."""
    token = create_token(app.state.tacit.store, "alice", Role.ANALYST, None)
    body = {"metric": "event_count", "start": DAY, "end": DAY, "rho": 0.05}
    with TestClient(app) as client:
        r = client.post("/v1/queries", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_rho_spent_under_zcdp_refuses_a_start_under_pure(configure: Start, clock: Clock) -> None:
    spend_rho(create_app(configure("zcdp"), clock=clock))
    settings = configure("pure")
    with pytest.raises(AccountingChanged) as refused:
        create_app(settings, clock=clock)
    message = str(refused.value)
    assert "holds spend in rho" in message and "counts epsilon" in message
    assert "privacy.accounting: zcdp" in message  # what to do
    store = open_store(settings.resolved_database_url)
    try:
        last = store.audit.page(0, 1000)[-1]
        assert (last.kind, last.detail["reason"]) == ("start_refused", "accounting_changed")
        assert (last.detail["ledger_units"], last.detail["policy_unit"]) == (["rho"], "epsilon")
        assert store.ledger.units()[0].unit == "rho"  # the spend itself is left as it was
    finally:
        store.close()


def test_a_restart_under_the_same_accounting_counts_the_spend(
    configure: Start, clock: Clock
) -> None:
    spend_rho(create_app(configure("zcdp"), clock=clock))
    app = create_app(configure("zcdp"), clock=clock)
    token = create_token(app.state.tacit.store, "bob", Role.ANALYST, None)
    with TestClient(app) as client:
        budget = client.get("/v1/budget", headers={"Authorization": f"Bearer {token}"}).json()
    assert budget["unit"] == "rho"
    assert budget["global_remaining"][DAY] == pytest.approx(0.95)


def test_an_empty_ledger_starts_under_any_accounting(configure: Start, clock: Clock) -> None:
    with TestClient(create_app(configure("zcdp"), clock=clock)):
        pass
    with TestClient(create_app(configure("pure"), clock=clock)) as client:
        assert client.get("/healthz").status_code == 200


def test_nodes_under_two_accountings_never_mix_their_units(configure: Start, clock: Clock) -> None:
    # Both start on an empty ledger, so neither refuses: the ledger refuses the mix.
    zcdp = create_app(configure("zcdp"), clock=clock)
    pure = create_app(configure("pure"), clock=clock)
    spend_rho(zcdp)
    store = pure.state.tacit.store
    token = create_token(store, "bob", Role.ANALYST, None)
    body = {"metric": "event_count", "start": DAY, "end": DAY, "epsilon": 0.1}
    with TestClient(pure, raise_server_exceptions=False) as client:
        r = client.post("/v1/queries", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "accounting_conflict"
        assert "the ledger holds spend in rho on 2026-11-19" in r.json()["error"]["message"]
        assert [u.unit for u in store.ledger.units()] == ["rho"]  # bob's epsilon: not added
