"""`tacit serve` refuses to start when the policy's accounting no longer matches the ledger.

The real server, restarted on the same data dir (and database) after its policy file
changed from ``accounting: zcdp`` to ``pure``: it exits with the reason and what to do,
and starts again, with the rho it spent still counted, once the accounting is restored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from server import Server, ServerError

POLICY = """\
version: 1
name: accounting-change
privacy:
  accounting: {accounting}
  max_per_query: 0.1
  per_analyst: 0.5
  global: 1.0
"""


def test_serve_refuses_a_policy_whose_accounting_differs_from_the_spend(
    tmp_path: Path, master_key_b64: str, database_url: str | None
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(accounting="zcdp"))
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    ask = {"metric": "event_count", "start": day, "end": day, "rho": 0.1}
    server = Server(tmp_path / "data", master_key_b64, policy=policy, database_url=database_url)
    with server:
        token = server.create_token("analyst", "alice")
        with server.client(token) as client:
            assert client.post("/v1/queries", json=ask).status_code == 200

    policy.write_text(POLICY.format(accounting="pure"))
    with pytest.raises(ServerError):
        server.start()
    assert server.process is not None and server.process.returncode == 2
    log = server.log_text()
    assert "tacit: the budget ledger holds spend in rho" in log
    assert "set privacy.accounting: zcdp" in log
    assert "Traceback" not in log

    policy.write_text(POLICY.format(accounting="zcdp"))
    with server, server.client(token) as client:
        budget = client.get("/v1/budget").json()
    assert (budget["unit"], budget["remaining"][day]) == ("rho", pytest.approx(0.4))
