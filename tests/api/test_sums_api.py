"""Bounded sums over HTTP: listed, released in their unit, totalled, refused where they do
not apply (charging nothing), on a real app and store (SQLite, and PostgreSQL when
configured).

OpenDP's noise cannot be seeded here, so a released value is checked against the truth
within three times its own 95 % half-width: the discrete Laplace noise exceeds that with
probability about 0.05³ ≈ 1.3e-4 per cell (its tail is geometric), the false-failure rate.
(A check that a cell of true total 0 has its interval's low end at 0 failed one run in
about 40: that holds only when the noise is below the half-width, 97.5 % of the time.)
"""

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
PEOPLE = 400  # half on chat and control, half on ide and treatment; one copy, one dwell each


@pytest.fixture
def api(
    tmp_path: Path, master_key_b64: str, clock: Clock, database_url: str | None
) -> Iterator[Api]:
    """The default policy with one cell and one event per person (K = C = 1)."""
    text = DEFAULT_POLICY.read_text()
    text = text.replace("max_groups_per_user: 24", "max_groups_per_user: 1")
    text = text.replace("max_rows_per_group: 10", "max_rows_per_group: 1")
    assert "max_groups_per_user: 1\n" in text and "max_rows_per_group: 1\n" in text
    policy = tmp_path / "sums.yaml"
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
    for i in range(PEOPLE):
        user = f"person-{i}"
        ctx = {"surface": ("chat", "ide")[i % 2], "cohort": ("control", "treatment")[i % 2]}
        events.append(event("copy_paste", at=AT, user=user, context=ctx))  # 300 characters
        events.append(event("dwell", at=AT, user=user, context=ctx))  # 12 000 ms
    with TestClient(app) as client:
        for start in range(0, len(events), 500):
            r = client.post(
                "/v1/events",
                json={"events": events[start : start + 500]},
                headers={"Authorization": tokens["app"]},
            )
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        yield client, tokens


def post(api: Api, path: str, **body: Any) -> Any:
    client, tokens = api
    ask = {"start": DAY, "end": DAY, "epsilon": 1.0, **body}
    return client.post(path, json=ask, headers={"Authorization": tokens["alice"]})


def spent(api: Api) -> float:
    client, tokens = api
    r = client.get("/v1/budget", headers={"Authorization": tokens["alice"]})
    return 4.0 - float(r.json()["remaining"][DAY])


def half_width(api: Api, **body: Any) -> float:
    """The 95 % half-width every cell of this query gets (its preview: nothing charged).

    A cell's own interval cannot tell it once cut at 0, so it is asked for apart."""
    r = post(api, "/v1/queries/preview", **body)
    assert r.status_code == 200, r.text
    return float(r.json()["ci95_halfwidth"]["sum"])


def close_to(row: dict[str, Any], truth: float, half: float) -> bool:
    lo, hi = row["ci95"]
    return lo <= row["value"] <= hi and abs(row["value"] - truth) <= 3 * half + 1e-6


def test_the_catalogue_lists_the_totals_as_sums_in_their_unit(api: Api) -> None:
    client, tokens = api
    r = client.get("/v1/metrics", headers={"Authorization": tokens["alice"]})
    metrics = {m["name"]: m for m in r.json()["metrics"]}
    dwell, copy = metrics["dwell_time_total"], metrics["copy_span_length_total"]
    assert dwell["kind"] == copy["kind"] == "sum"
    assert (dwell["unit"], copy["unit"]) == ("ms", "chars")
    assert dwell["denominator"] is None and dwell["granted"]
    assert dwell["group_by"] == ["day", "cohort"]  # cohort level only, like dwell_time
    assert "surface" in copy["group_by"]


def test_a_total_estimates_what_was_posted_and_charges_its_budget(api: Api) -> None:
    r = post(api, "/v1/queries", metric="copy_span_length_total", group_by=["surface"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert spent(api) == pytest.approx(1.0)
    rows = {row["surface"]: row for row in body["rows"]}
    half = half_width(api, metric="copy_span_length_total", group_by=["surface"])
    assert close_to(rows["chat"], PEOPLE / 2 * 300, half)
    assert close_to(rows["ide"], PEOPLE / 2 * 300, half)
    assert close_to(rows["search"], 0, half)
    # The interval is the noisy total ± the half-width cut at 0 (no total is below 0), and
    # a negative noisy total is shown as 0: its interval is [0, noisy + half] then.
    value, (low, high) = rows["search"]["value"], rows["search"]["ci95"]
    if value > 0:
        assert (low, high) == pytest.approx((max(value - half, 0.0), value + half), abs=1e-6)
    else:
        assert value == 0 and low == 0 and 0 <= high <= half + 1e-6
    assert any(n.startswith("Totals are in chars") for n in body["notes"])


def test_a_dwell_total_is_in_ms_by_cohort_and_refused_by_surface(api: Api) -> None:
    r = post(api, "/v1/queries", metric="dwell_time_total", group_by=["cohort"])
    assert r.status_code == 200, r.text
    rows = {row["cohort"]: row for row in r.json()["rows"]}
    half = half_width(api, metric="dwell_time_total", group_by=["cohort"])
    assert close_to(rows["control"], PEOPLE / 2 * 12_000, half)
    assert close_to(rows["treatment"], PEOPLE / 2 * 12_000, half)
    before = spent(api)
    r = post(api, "/v1/queries", metric="dwell_time_total", group_by=["surface"])
    assert r.status_code == 400 and "cannot be grouped by 'surface'" in r.text
    assert spent(api) == before


def test_each_days_total_of_a_sum_is_the_sum_of_its_rows(api: Api) -> None:
    r = post(
        api,
        "/v1/queries",
        metric="copy_span_length_total",
        group_by=["day", "surface"],
        totals=True,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    (total,) = body["totals"]
    values = [row["value"] for row in body["rows"]]
    assert all(isinstance(v, int) and v >= 0 for v in values)
    assert total["value"] == sum(values)
    # The day's total is 120,000 characters, many half-widths above 0: its interval is
    # not cut, so it gives its own half-width.
    assert close_to(total, PEOPLE * 300, (total["ci95"][1] - total["ci95"][0]) / 2)


def test_comparing_totals_is_refused_and_charges_nothing(api: Api) -> None:
    r = post(
        api,
        "/v1/queries",
        metric="copy_span_length_total",
        group_by=["cohort"],
        compare={"dimension": "cohort", "baseline": "control"},
    )
    assert r.status_code == 400
    assert "compare the mean copy_span_length instead" in r.json()["error"]["message"]
    assert spent(api) == 0


def test_a_preview_prices_a_target_interval_in_the_metrics_unit(api: Api) -> None:
    r = post(
        api,
        "/v1/queries/preview",
        metric="copy_span_length_total",
        epsilon=None,
        target_ci95=30_000,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ci95_halfwidth"]["sum"] <= 30_000
    assert 0 < body["cost"]["value"] < 1.0
    assert any("each cell's total (chars)" in n for n in body["notes"])
    assert spent(api) == 0
