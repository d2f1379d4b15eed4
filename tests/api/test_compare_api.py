"""A/B comparisons over the API: one interval for the difference and the lift, from the
same noisy cells, at no extra cost; refused (and free) when it cannot be answered. Real
app and store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.ops.tokens import create_token
from service.settings import DEFAULT_POLICY
from service.store.base import Role

DAY = (T0 - timedelta(days=1)).date().isoformat()
AT = T0 - timedelta(days=1, hours=2)
Api = tuple[TestClient, dict[str, str]]


@pytest.fixture
def api(
    tmp_path: Path, master_key_b64: str, clock: Clock, database_url: str | None
) -> Iterator[Api]:
    """The default policy with one cell and one event per person (small noise), and 1,200
    people per cohort: control completes 30 % of tasks, treatment 40 %."""
    text = DEFAULT_POLICY.read_text()
    text = text.replace("max_groups_per_user: 24", "max_groups_per_user: 1")
    text = text.replace("max_rows_per_group: 10", "max_rows_per_group: 1")
    assert "max_groups_per_user: 1\n" in text and "max_rows_per_group: 1\n" in text
    policy = tmp_path / "compare.yaml"
    policy.write_text(text)
    extra = {} if database_url is None else {"database_url": database_url}
    app = create_app(
        make_settings(tmp_path / "data", master_key_b64, policy=policy, **extra), clock=clock
    )
    store = app.state.tacit.store
    tokens = {
        who: "Bearer " + create_token(store, who, role, src)
        for who, role, src in [("app", Role.INGEST, "app"), ("alice", Role.ANALYST, None)]
    }
    events: list[dict[str, Any]] = []
    for cohort, success in (("control", 360), ("treatment", 480)):
        for i in range(1_200):
            user = f"{cohort}-{i}"
            ctx = {"surface": "chat", "task_type": "coding", "cohort": cohort}
            events.append(event("response_shown", at=AT, user=user, context=ctx))
            if i < success:
                events.append(event("task_completion", at=AT, user=user, context=ctx))
    with TestClient(app) as client:
        for start in range(0, len(events), 500):
            r = client.post(
                "/v1/events",
                json={"events": events[start : start + 500]},
                headers={"Authorization": tokens["app"]},
            )
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        yield client, tokens


def query(api: Api, **body: Any) -> Any:
    client, tokens = api
    ask = {"metric": "task_completion_rate", "start": DAY, "end": DAY, "epsilon": 1.0, **body}
    return client.post("/v1/queries", json=ask, headers={"Authorization": tokens["alice"]})


def spent(api: Api) -> float:
    client, tokens = api
    r = client.get("/v1/budget", headers={"Authorization": tokens["alice"]})
    return 4.0 - float(r.json()["remaining"][DAY])


COMPARE = {"dimension": "cohort", "baseline": "control"}


def test_compare_gives_the_difference_and_lift_with_intervals_for_each_other_cohort(
    api: Api,
) -> None:
    r = query(api, group_by=["cohort"], compare=COMPARE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["compare"] == COMPARE
    assert [c["cohort"] for c in body["comparison"]] == ["treatment", "other"]
    treated = body["comparison"][0]
    assert set(treated) == {"cohort", "difference", "difference_ci95", "lift", "lift_ci95"}
    # Noise scales 1.5 and 3 events: the values are within 0.03 of the truth (0.1 and
    # 1/3) except with probability far below 1e-9.
    assert abs(treated["difference"] - 0.1) < 0.03
    assert abs(treated["lift"] - 1 / 3) < 0.12
    lo, hi = treated["difference_ci95"]
    assert 0 < lo <= treated["difference"] <= hi  # the interval excludes zero
    lift_lo, lift_hi = treated["lift_ci95"]
    assert 0 < lift_lo <= treated["lift"] <= lift_hi
    # One interval for the difference, narrower than the two separate ones imply.
    rows = {row["cohort"]: row for row in body["rows"]}
    implied = (
        rows["treatment"]["ci95"][1]
        - rows["control"]["ci95"][0]
        - (rows["treatment"]["ci95"][0] - rows["control"]["ci95"][1])
    )
    assert hi - lo < implied
    assert any("compared with control" in note for note in body["notes"])


def test_each_comparison_keeps_the_rows_other_keys(api: Api) -> None:
    body = query(
        api,
        group_by=["cohort", "surface"],
        filters={"cohort": ["control", "treatment"], "surface": ["chat"]},
        compare=COMPARE,
    ).json()
    (treated,) = body["comparison"]
    assert (treated["cohort"], treated["surface"]) == ("treatment", "chat")
    assert abs(treated["difference"] - 0.1) < 0.03


def test_compare_costs_what_the_query_costs_and_a_repeat_returns_it_free(api: Api) -> None:
    ask = {"group_by": ["cohort"], "compare": {"dimension": "cohort", "baseline": "control"}}
    first = query(api, **ask).json()
    assert spent(api) == pytest.approx(1.0)
    again = query(api, **ask).json()
    assert again["repeat"] is True and again["cost"]["value"] == 0
    assert again["comparison"] == first["comparison"]
    assert spent(api) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"compare": {"dimension": "cohort", "baseline": "control"}}, "add it to"),
        (
            {"group_by": ["cohort"], "compare": {"dimension": "cohort", "baseline": "placebo"}},
            "not a key of cohort",
        ),
        (
            {
                "metric": "event_count",
                "group_by": ["cohort"],
                "compare": {"dimension": "cohort", "baseline": "control"},
            },
            "works on rates and means",
        ),
        ({"group_by": ["cohort"], "compare": {"dimension": "cohort"}}, '"compare" must be'),
    ],
)
def test_a_comparison_that_cannot_be_answered_is_refused_and_charges_nothing(
    api: Api, body: dict[str, Any], message: str
) -> None:
    r = query(api, **body)
    assert r.status_code == 400, r.text
    assert message.replace("\\", "") in r.json()["error"]["message"]
    assert spent(api) == 0


def test_the_cli_compares_cohorts_and_says_whether_the_interval_excludes_zero(
    tmp_path: Path, master_key_b64: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from datetime import UTC, datetime

    from server import Server

    from service.cli import main

    text = DEFAULT_POLICY.read_text().replace("max_groups_per_user: 24", "max_groups_per_user: 1")
    text = text.replace("max_rows_per_group: 10", "max_rows_per_group: 1")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    yesterday = datetime.now(UTC).replace(hour=12, minute=0) - timedelta(days=1)
    day = yesterday.date().isoformat()
    events = []
    for cohort, success in (("control", 300), ("treatment", 500)):
        ctx = {"surface": "chat", "task_type": "coding", "cohort": cohort}
        for i in range(1_000):
            user, at = f"{cohort}-{i}", yesterday + timedelta(seconds=i)
            events.append(event("response_shown", at=at, user=user, context=ctx))
            if i < success:
                events.append(event("task_completion", at=at, user=user, context=ctx))
    with Server(tmp_path / "data", master_key_b64, policy=policy) as server:
        app = server.create_token("ingest", "app")
        for start in range(0, len(events), 500):
            assert server.post_events(events[start : start + 500], app).status_code == 200
        monkeypatch.setenv("TACIT_URL", server.url)
        monkeypatch.setenv("TACIT_TOKEN", server.create_token("analyst", "alice"))
        query = ["query", "task_completion_rate", "--start", day, "--end", day]
        query += ["--group-by", "cohort", "--filter", "cohort=control,treatment"]

        assert main([*query, "--compare", "cohort=control", "--epsilon", "1"]) == 0
        out = capsys.readouterr().out
        assert "compared with cohort = control (no extra budget):" in out
        (line,) = [x for x in out.splitlines() if x.startswith("treatment ") and "%" in x]
        assert "yes: higher than control" in line  # 0.5 against 0.3, noise ~0.003
        assert "charged epsilon 1 on each of 1 epoch(s)" in out

        assert main([*query, "--compare", "cohort", "--epsilon", "1"]) == 2
        assert "write DIM=BASELINE" in capsys.readouterr().err
