"""The analyst API: metrics, queries, previews, the budget, repeats, and what is charged."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.ops.tokens import create_token
from service.store.base import Role, StoreUnavailable

DAY1, DAY2 = "2026-11-18", "2026-11-19"  # T0 is 2026-11-20 12:00 UTC


def policy_yaml(
    *,
    accounting: str = "pure",
    max_per_query: float = 0.5,
    per_analyst: float = 1.0,
    global_cap: float = 1.5,
    repeat_window: str = "1h",
    extra: str = "",
) -> str:
    delta = "  delta: 1e-8\n" if accounting == "zcdp" else ""
    return f"""\
version: 1
name: api-test
context:
  surface: [chat, search, ide, docs]
  task_type: [coding, writing, qa, summarization, analysis]
  cohort: [control, treatment]
privacy:
  accounting: {accounting}
{delta}  max_per_query: {max_per_query}
  per_analyst: {per_analyst}
  global: {global_cap}
  repeat_window: {repeat_window}
{extra}"""


@dataclass
class QueryApi:
    client: TestClient
    tokens: dict[str, str]
    clock: Clock

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    @property
    def state(self) -> Any:
        return self.client.app.state.tacit  # type: ignore[attr-defined]

    def query(self, who: str = "alice", **body: Any) -> Any:
        return self.client.post("/v1/queries", json=ask(**body), headers=self.headers(who))

    def preview(self, who: str = "alice", **body: Any) -> Any:
        return self.client.post("/v1/queries/preview", json=ask(**body), headers=self.headers(who))

    def budget(self, who: str = "alice") -> dict[str, Any]:
        r = self.client.get("/v1/budget", headers=self.headers(who))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def ledger(self) -> tuple[int, int, int]:
        """(nanos spent in all, releases recorded, release audit entries): the whole ledger."""
        with self.state.store.db.read() as conn:
            spent = conn.execute("SELECT coalesce(sum(nanos), 0) FROM budget_spend").fetchone()[0]
            releases = conn.execute("SELECT count(*) FROM releases").fetchone()[0]
            audits = conn.execute(
                "SELECT count(*) FROM audit_log WHERE kind = 'release'"
            ).fetchone()[0]
        return int(spent), int(releases), int(audits)


def ask(**body: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"metric": "event_count", "start": DAY1, "end": DAY2, "epsilon": 0.1}
    base.update(body)
    return {k: v for k, v in base.items() if v is not None}


MakeApi = Callable[..., QueryApi]


@pytest.fixture
def make_api(tmp_path: Path, master_key_b64: str, clock: Clock) -> Iterator[MakeApi]:
    """An app on a policy written to tmp_path, with a small dataset on DAY1 and DAY2."""
    clients: list[TestClient] = []

    def make(**policy: Any) -> QueryApi:
        path = tmp_path / f"policy-{len(clients)}.yaml"
        path.write_text(policy_yaml(**policy))
        settings = make_settings(tmp_path / f"data-{len(clients)}", master_key_b64, policy=path)
        app = create_app(settings, clock=clock)
        store = app.state.tacit.store
        tokens = {
            name: create_token(store, name, role, "app" if role is Role.INGEST else None)
            for name, role in [
                ("alice", Role.ANALYST),
                ("bob", Role.ANALYST),
                ("carol", Role.ANALYST),
                ("app", Role.INGEST),
                ("compliance", Role.COMPLIANCE),
            ]
        }
        # Server errors become 500 responses, as a real client sees them.
        client = TestClient(app, raise_server_exceptions=False).__enter__()
        clients.append(client)
        api = QueryApi(client, tokens, clock)
        events = [
            event(at=T0 - timedelta(days=d, hours=h), user=f"u{h % 5}", session=f"s{d}-{h}")
            for d in (1, 2)
            for h in range(12)
        ]
        r = client.post("/v1/events", json={"events": events}, headers=api.headers("app"))
        assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
        return api

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: MakeApi) -> QueryApi:
    return make_api()


# --- the catalogue -----------------------------------------------------------------------


def test_metrics_lists_the_catalogue_with_its_group_bys(api: QueryApi) -> None:
    r = api.client.get("/v1/metrics", headers=api.headers("alice"))
    assert r.status_code == 200
    metrics = {m["name"]: m for m in r.json()["metrics"]}
    assert metrics["event_count"]["group_by"][0] == "day"
    assert "surface" in metrics["event_count"]["group_by"]
    assert metrics["event_count"]["description"]


def test_metrics_lists_each_dimensions_keys_and_every_key_is_accepted_as_a_filter(
    api: QueryApi,
) -> None:
    catalogue = api.client.get("/v1/metrics", headers=api.headers("alice")).json()
    metrics = {m["name"]: m for m in catalogue["metrics"]}
    assert metrics["event_count"]["keys"]["surface"] == ["chat", "search", "ide", "docs", "other"]
    assert metrics["event_count"]["keys"]["cohort"] == ["control", "treatment", "other"]
    assert metrics["click_through_rate"]["keys"]["position"] == [1, 2, 3, 4, 5]
    for name, metric in metrics.items():
        assert sorted(metric["keys"]) == sorted(metric["group_by"][1:]), name
        for dim, keys in metric["keys"].items():
            r = api.preview(metric=name, filters={dim: [str(keys[-1])]}, epsilon=0.5)
            assert r.status_code == 200, (name, dim, r.json())
            assert r.json()["filters"] == {dim: [str(keys[-1])]}


def test_metrics_needs_an_analyst_token(api: QueryApi) -> None:
    assert api.client.get("/v1/metrics", headers=api.headers("app")).status_code == 403
    assert api.client.get("/v1/metrics").status_code == 401


# --- a query -----------------------------------------------------------------------------


def test_a_query_answers_every_cell_with_a_value_and_an_interval(api: QueryApi) -> None:
    r = api.query(group_by=["day", "surface"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {
        "release_id", "metric", "start", "end", "group_by", "rows", "cost", "budget",
        "guarantee", "policy_sha256", "notes",
    }  # fmt: skip
    # Every public key is present: 2 days x (4 declared surfaces + "other").
    assert len(body["rows"]) == 2 * 5
    for row in body["rows"]:
        assert {"day", "surface", "value", "ci95"} <= set(row)
        low, high = row["ci95"]
        assert low <= row["value"] <= high
    assert body["policy_sha256"] == api.state.policy.sha256
    assert body["repeat"] is False


def test_a_query_charges_its_cost_on_every_day_of_its_range(api: QueryApi) -> None:
    body = api.query(epsilon=0.3).json()
    assert body["cost"] == {"unit": "epsilon", "value": 0.3, "epochs": [DAY1, DAY2]}
    assert body["budget"]["remaining"] == {DAY1: 0.7, DAY2: 0.7}
    assert body["budget"]["global_remaining"] == {DAY1: 1.2, DAY2: 1.2}
    remaining = api.budget()["remaining"]
    assert (remaining[DAY1], remaining[DAY2], remaining["2026-11-20"]) == (0.7, 0.7, 1.0)


def test_a_release_is_audited_with_its_request_and_cost_but_no_values(api: QueryApi) -> None:
    body = api.query(group_by=["surface"], filters={"surface": ["ide", "chat"]}).json()
    entry = api.state.store.audit.page(0, 1000)[-1]
    assert (entry.kind, entry.actor) == ("release", "alice")
    detail = entry.detail
    assert detail["release_id"] == body["release_id"]
    assert detail["request"]["filters"] == {"surface": ["chat", "ide"]}
    assert detail["cost"]["nanos"] == 100_000_000
    assert detail["epochs"] == [DAY1, DAY2]
    assert "rows" not in json.dumps(detail) and 'value": ' not in json.dumps(detail["request"])


def test_the_guarantee_is_one_plain_sentence(api: QueryApi) -> None:
    sentence = api.query().json()["guarantee"]
    assert sentence.count(". ") == 0 and sentence.endswith(".")
    assert "ε = 0.1" in sentence and "day" in sentence


# --- nothing is charged on any error -----------------------------------------------------

ERRORS: list[tuple[str, str, Any, int, str]] = [
    # (case, token, body, status, code)
    ("unknown metric", "alice", ask(metric="nope"), 400, "invalid_query"),
    ("unknown dimension", "alice", ask(group_by=["colour"]), 400, "invalid_query"),
    ("group-by not allowed", "alice", ask(metric="dwell_time", group_by=["surface"]), 400,
     "invalid_query"),
    ("undeclared filter value", "alice", ask(filters={"surface": ["tv"]}), 400, "invalid_query"),
    ("not a calendar day", "alice", ask(start="2026-11-31"), 400, "invalid_query"),
    ("end before start", "alice", ask(start=DAY2, end=DAY1), 400, "invalid_query"),
    ("range in the future", "alice", ask(end="2026-11-21"), 400, "invalid_query"),
    ("range beyond retention", "alice", ask(start="2026-01-01"), 400, "invalid_query"),
    ("above the per-query cap", "alice", ask(epsilon=0.6), 400, "invalid_query"),
    ("no budget given", "alice", ask(epsilon=None), 400, "invalid_query"),
    ("negative budget", "alice", ask(epsilon=-0.1), 400, "invalid_query"),
    ("rho under pure accounting", "alice", ask(epsilon=None, rho=0.1), 400, "invalid_query"),
    ("target_ci95 is preview only", "alice", ask(epsilon=None, target_ci95=5.0), 400,
     "invalid_query"),
    ("unknown field", "alice", ask(colour="red"), 400, "invalid_query"),
    ("body not an object", "alice", [1, 2], 400, "invalid_query"),
    ("body not JSON", "alice", b"{nope", 400, "invalid_query"),
    ("metric not granted", "carol", ask(metric="active_users"), 403, "forbidden"),
    ("not an analyst", "app", ask(), 403, "forbidden"),
    ("no token", None, ask(), 401, "unauthorized"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("token", "body", "status", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_nothing_is_charged_on_an_error(
    make_api: MakeApi, token: str | None, body: Any, status: int, code: str
) -> None:
    api = make_api(extra="  analyst_metrics:\n    carol: [event_count]\n")
    api.query(epsilon=0.2)  # something already spent, so a partial charge would show
    before = api.ledger()
    headers = api.headers(token) if token else {}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        r = api.client.post("/v1/queries", content=body, headers=headers)
    else:
        r = api.client.post("/v1/queries", json=body, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.json()["error"]["message"]
    assert api.ledger() == before


def test_budget_exhausted_names_the_days_and_what_is_left_and_charges_nothing(
    api: QueryApi,
) -> None:
    assert api.query(start=DAY2, end=DAY2, epsilon=0.5).status_code == 200
    assert api.query(start=DAY2, end=DAY2, epsilon=0.4).status_code == 200
    before = api.ledger()
    r = api.query(start=DAY1, end=DAY2, epsilon=0.2)
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "budget_exhausted"
    assert DAY2 in error["message"] and DAY1 not in error["message"]
    assert error["epochs"] == {DAY2: {"remaining": 0.1, "global_remaining": 0.6}}
    assert api.ledger() == before
    assert api.budget()["remaining"][DAY1] == 1.0


def test_a_failure_while_reading_the_data_comes_after_the_charge_and_stays_charged(
    api: QueryApi,
) -> None:
    # The charge commits before any data is read (so a refusal never follows a look at
    # the data): a failure while aggregating keeps it, and the error says so.
    service = api.state.queries

    def broken(plan: Any) -> Any:
        raise OSError("disk on fire")

    service.engine.aggregate = broken  # fault injection on the real engine
    r = api.query(epsilon=0.3)
    assert r.status_code == 500 and "disk" not in r.text
    assert r.json()["error"]["code"] == "release_failed"
    assert "charge stands" in r.json()["error"]["message"]
    assert api.ledger()[0] == 2 * 300_000_000  # two days of 0.3


def test_a_database_outage_after_the_charge_is_503_saying_the_charge_stands(
    api: QueryApi,
) -> None:
    # Not a bug: the database went away (the PostgreSQL store raises StoreUnavailable;
    # tests/system/test_postgres_outage.py stops a real one at this very moment).
    service = api.state.queries

    def unavailable(plan: Any) -> Any:
        raise StoreUnavailable("PostgreSQL at db:5432/tacit is unavailable: test")

    service.engine.aggregate = unavailable
    r = api.query(epsilon=0.3)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    error = r.json()["error"]
    assert error["code"] == "store_unavailable"
    assert "charge stands" in error["message"] and "bug" not in error["message"]
    assert "db:5432" not in r.text  # where the database is stays in the server
    assert error["release_id"].startswith("rel_")
    assert api.ledger()[0] == 2 * 300_000_000  # two days of 0.3
    assert api.budget()["remaining"][DAY1] == 0.7


def test_a_failure_after_the_charge_stays_charged(api: QueryApi) -> None:
    service = api.state.queries

    def broken(plan: Any, aggregates: Any) -> Any:
        raise RuntimeError("noise failed")

    service.engine.noise = broken
    r = api.query(epsilon=0.3)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "release_failed"
    assert api.ledger()[0] == 2 * 300_000_000  # two days of 0.3
    assert api.budget()["remaining"][DAY1] == 0.7


# --- repeats -----------------------------------------------------------------------------


def test_an_identical_request_within_the_window_returns_the_stored_release_free(
    api: QueryApi,
) -> None:
    first = api.query(group_by=["day", "surface"]).json()
    spent = api.ledger()
    api.clock.advance(minutes=59)
    again = api.query(group_by=["surface", "day"]).json()  # same request, written otherwise
    assert again["repeat"] is True
    assert again["release_id"] == first["release_id"]
    assert again["rows"] == first["rows"]
    assert again["cost"]["value"] == 0.0
    assert api.ledger() == spent


def test_an_identical_request_after_the_window_is_charged(api: QueryApi) -> None:
    first = api.query().json()
    api.clock.advance(minutes=61)
    again = api.query().json()
    assert again["repeat"] is False and again["release_id"] != first["release_id"]
    assert api.budget()["remaining"][DAY1] == 0.8


def test_a_request_that_differs_in_anything_is_charged(api: QueryApi) -> None:
    api.query(epsilon=0.1)
    assert api.query(epsilon=0.2).json()["repeat"] is False
    assert api.query(epsilon=0.1, group_by=["day"]).json()["repeat"] is False
    assert api.budget()["remaining"][DAY1] == 0.6


def test_another_analysts_identical_request_is_not_a_repeat(api: QueryApi) -> None:
    first = api.query().json()
    theirs = api.query("bob").json()
    assert theirs["repeat"] is False and theirs["release_id"] != first["release_id"]
    assert api.budget("bob")["remaining"][DAY1] == 0.9


# --- preview -----------------------------------------------------------------------------


def test_a_preview_charges_nothing_and_gives_the_expected_halfwidth_per_cell(
    api: QueryApi,
) -> None:
    before = api.ledger()
    r = api.preview(group_by=["day", "surface"], epsilon=0.5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["preview"] is True
    assert body["cost"]["value"] == 0.5 and body["cost"]["epochs"] == [DAY1, DAY2]
    assert len(body["rows"]) == 10
    assert all(row["ci95_halfwidth"] > 0 for row in body["rows"])
    assert api.ledger() == before


def test_a_preview_with_a_target_halfwidth_returns_the_budget_that_reaches_it(
    api: QueryApi,
) -> None:
    wide = api.preview(epsilon=None, target_ci95=300.0).json()
    narrow = api.preview(epsilon=None, target_ci95=150.0).json()
    assert 0 < wide["cost"]["value"] < narrow["cost"]["value"] <= 0.5
    assert all(row["ci95_halfwidth"] <= 150.0 for row in narrow["rows"])
    assert api.ledger()[0] == 0


def test_a_preview_says_when_the_budget_would_not_cover_it(api: QueryApi) -> None:
    api.query(start=DAY2, end=DAY2, epsilon=0.5)
    api.query(start=DAY2, end=DAY2, epsilon=0.4)
    body = api.preview(epsilon=0.2).json()
    assert body["affordable"] is False and body["short_epochs"] == [DAY2]


# --- the budget --------------------------------------------------------------------------


def test_budget_lists_each_day_within_retention_and_the_global_remaining(api: QueryApi) -> None:
    api.query(epsilon=0.25)
    api.query("bob", epsilon=0.5)
    mine = api.budget("alice")
    assert mine["remaining"][DAY1] == 0.75
    assert mine["global_remaining"][DAY1] == 0.75
    assert max(mine["remaining"]) == "2026-11-20"
    assert len(mine["remaining"]) == 90  # the longest retention of the policy: 90 days
    assert api.budget("bob")["remaining"][DAY1] == 0.5


def test_an_analyst_override_sets_that_analysts_cap(make_api: MakeApi) -> None:
    api = make_api(extra="  per_analyst_overrides:\n    bob: 0.3\n")
    assert api.budget("bob")["remaining"][DAY1] == 0.3
    assert api.query("bob", epsilon=0.4).json()["error"]["code"] == "budget_exhausted"
    assert api.query("bob", epsilon=0.3).status_code == 200


def test_budget_needs_an_analyst_token(api: QueryApi) -> None:
    assert api.client.get("/v1/budget", headers=api.headers("compliance")).status_code == 403


# --- zCDP --------------------------------------------------------------------------------


def test_under_zcdp_costs_are_rho_with_their_epsilon_equivalent(make_api: MakeApi) -> None:
    api = make_api(accounting="zcdp", max_per_query=0.05, per_analyst=0.25, global_cap=0.5)
    r = api.query(epsilon=None, rho=0.05)
    assert r.status_code == 200, r.text
    cost = r.json()["cost"]
    assert (cost["unit"], cost["value"], cost["delta"]) == ("rho", 0.05, 1e-8)
    assert cost["epsilon_equivalent"] > 0.05
    assert "\N{GREEK SMALL LETTER RHO} = 0.05" in r.json()["guarantee"]
    # Over the 90 days kept, one person's rho is at most 90² x the global cap of 0.5.
    assert (
        "at most 90\N{SUPERSCRIPT TWO} \N{MULTIPLICATION SIGN} that for one person: "
        in (r.json()["guarantee"])
    )
    assert "\N{GREEK SMALL LETTER RHO} = 4050 (zCDP" in r.json()["guarantee"]
    assert r.json()["budget"]["remaining"][DAY1] == 0.2
    assert api.query(epsilon=0.05).json()["error"]["code"] == "invalid_query"


# --- the CLI, against a real server --------------------------------------------------------


def test_the_cli_prints_cells_with_intervals_and_the_remaining_budget(
    tmp_path: Path, master_key_b64: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from datetime import UTC, datetime

    from server import Server

    from service.cli import main

    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml())
    yesterday = datetime.now(UTC).replace(hour=12, minute=0) - timedelta(days=1)
    day = yesterday.date().isoformat()
    with Server(tmp_path / "data", master_key_b64, policy=policy) as server:
        app = server.create_token("ingest", "app")
        events = [event(at=yesterday + timedelta(minutes=i), user=f"u{i}") for i in range(10)]
        assert server.post_events(events, app).status_code == 200
        monkeypatch.setenv("TACIT_URL", server.url)
        monkeypatch.setenv("TACIT_TOKEN", server.create_token("analyst", "alice"))
        query = ["query", "event_count", "--start", day, "--end", day, "--group-by", "day,surface"]

        assert main([*query, "--filter", "surface=chat,ide", "--epsilon", "0.25"]) == 0
        out = capsys.readouterr().out
        assert "value" in out and "ci95 low" in out and "ci95 high" in out
        assert out.count(f"{day}  chat") == 1 and out.count(f"{day}  ide") == 1
        assert "charged epsilon 0.25 on each of 1 epoch(s)" in out
        assert f"{day}  0.75" in out  # the remaining budget table: yours, then everyone's

        assert main([*query, "--preview", "--target-ci95", "1000"]) == 0
        assert "charged nothing" in capsys.readouterr().out

        assert main([*query, "--epsilon", "0.1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["budget"]["remaining"][day] == 0.65

        assert main([*query, "--epsilon", "0.9"]) == 2
        assert "invalid_query" in capsys.readouterr().err
