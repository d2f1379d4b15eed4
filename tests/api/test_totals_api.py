"""Totals over HTTP and in `tacit query --totals`, against a real `tacit serve`: each
day's total is the sum of its released breakdown, charged as the breakdown alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server

from privacy.keyring import MasterKey
from service.settings import DEFAULT_POLICY

NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
DAYS = [(NOON - timedelta(days=n)).date().isoformat() for n in (2, 1)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One cell and one event per person (small noise): 300 people a day, half succeed."""
    where: Path = tmp_path_factory.mktemp("totals")
    text = DEFAULT_POLICY.read_text().replace("max_groups_per_user: 24", "max_groups_per_user: 1")
    policy = where / "policy.yaml"
    policy.write_text(text.replace("max_rows_per_group: 10", "max_rows_per_group: 1"))
    with Server(where / "data", MasterKey.generate_base64(), policy=policy) as srv:
        app = srv.create_token("ingest", "app")
        events: list[dict[str, Any]] = []
        for back in (2, 1):
            for i in range(300):
                ctx = {"surface": ["chat", "ide", "docs"][i % 3], "cohort": "control"}
                who = {"user": f"u{back}-{i}", "session": f"s{back}-{i}", "context": ctx}
                at = NOON - timedelta(days=back) + timedelta(seconds=i)
                events.append(event("response_shown", at=at, **who))
                if i % 2:
                    events.append(event("task_completion", at=at + timedelta(minutes=1), **who))
        for start in range(0, len(events), 500):
            assert srv.post_events(events[start : start + 500], app).status_code == 200
        yield srv, srv.create_token("analyst", "alice")


def ask(server: tuple[Server, str], **body: Any) -> httpx.Response:
    srv, token = server
    query = {"start": DAYS[0], "end": DAYS[1], "group_by": ["day", "surface"], **body}
    with srv.client(token) as client:
        return client.post("/v1/queries", json={"epsilon": 0.5, **query})


def spent(server: tuple[Server, str]) -> float:
    srv, token = server
    with srv.client(token) as client:
        return 4.0 - float(client.get("/v1/budget").json()["remaining"][DAYS[0]])


def test_each_days_count_total_is_the_sum_of_its_rows_and_costs_the_query_alone(
    server: tuple[Server, str],
) -> None:
    before = spent(server)
    body = ask(server, metric="event_count", totals=True).json()
    assert spent(server) - before == pytest.approx(0.5)
    assert [t["day"] for t in body["totals"]] == DAYS
    for total in body["totals"]:
        parts = [r["value"] for r in body["rows"] if r["day"] == total["day"]]
        assert len(parts) == 5 and total["value"] == sum(parts)
        assert all(isinstance(v, int) and v >= 0 for v in parts)
        lo, hi = total["ci95"]
        assert lo <= total["value"] <= hi
    assert not any(r.get("total") for r in body["rows"])
    assert any(n.startswith("Totals: the total of each day is the sum") for n in body["notes"])


def test_a_rates_numerators_and_denominators_add_up_and_a_repeat_returns_them(
    server: tuple[Server, str],
) -> None:
    first = ask(server, metric="task_completion_rate", totals=True).json()
    for total in first["totals"]:
        parts = [r for r in first["rows"] if r["day"] == total["day"]]
        for key in ("numerator", "denominator"):
            assert total[key] == sum(r[key] for r in parts)
        # ~150 of ~300 a day, noise of scale 3: the denominator is far from 0.
        assert total["value"] == pytest.approx(total["numerator"] / total["denominator"])
        assert abs(total["value"] - 0.5) < 0.15
    again = ask(server, metric="task_completion_rate", totals=True).json()
    assert again["repeat"] is True
    assert again["totals"] == first["totals"] and again["rows"] == first["rows"]


def test_a_funnels_sessions_add_up_at_every_step(server: tuple[Server, str]) -> None:
    body = ask(server, metric="session_funnel", totals=True).json()
    for total in body["totals"]:
        parts = [r for r in body["rows"] if r["day"] == total["day"]]
        assert total["sessions"] == sum(r["sessions"] for r in parts)
        for k, step in enumerate(total["steps"]):
            assert step["sessions"] == sum(r["steps"][k]["sessions"] for r in parts)


def test_totals_that_cannot_add_up_are_refused_and_charge_nothing(
    server: tuple[Server, str],
) -> None:
    before = spent(server)
    r = ask(server, metric="active_users", totals=True)
    assert r.status_code == 400 and "do not add up" in r.json()["error"]["message"]
    r = ask(server, metric="event_count", totals=True, group_by=["day"])
    assert r.status_code == 400 and "group by a dimension" in r.json()["error"]["message"]
    assert spent(server) == before


def test_tacit_query_totals_prints_each_days_total(
    server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from service.cli import main

    srv, token = server
    monkeypatch.setenv("TACIT_URL", srv.url)
    monkeypatch.setenv("TACIT_TOKEN", token)
    args = ["query", "event_count", "--start", DAYS[0], "--end", DAYS[1], "--epsilon", "0.25"]
    assert main([*args, "--group-by", "day,surface", "--totals"]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("totals (the sum of the rows above, no extra budget):")
    surfaces = {"chat", "search", "ide", "docs", "other"}
    rows = [line.split() for line in out[:at] if line[:10] in DAYS]
    rows = [r for r in rows if r[1] in surfaces]  # not the budget table's lines
    assert len(rows) == 10
    totals = [line.split() for line in out[at + 2 : at + 4]]
    assert [t[0] for t in totals] == DAYS
    for day, value, *_ in totals:
        assert int(value) == sum(int(r[2]) for r in rows if r[0] == day)
