"""session_funnel over HTTP and in `tacit query`, against a real `tacit serve`: the steps
in the policy's order, monotone, each with its interval; charged once, repeated free."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from factories import event
from server import Server

from privacy.keyring import MasterKey
from service.settings import DEFAULT_POLICY

YESTERDAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
    days=1
)
DAY = YESTERDAY.date().isoformat()
STEPS = ["click_through", "copy_paste", "task_completion:outcome=success"]
SESSIONS = 600  # per surface: chat reaches 60 / 40 / 20 %, ide 30 / 20 / 10 %


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One cell and one session per person (noise of scale 1 session per bin)."""
    where = tmp_path_factory.mktemp("funnel")
    text = DEFAULT_POLICY.read_text().replace("max_groups_per_user: 24", "max_groups_per_user: 1")
    text = text.replace("max_rows_per_group: 10", "max_rows_per_group: 1")
    policy = where / "policy.yaml"
    policy.write_text(text)
    with Server(where / "data", MasterKey.generate_base64(), policy=policy) as srv:
        app = srv.create_token("ingest", "app")
        events: list[dict[str, Any]] = []
        for surface, scale in (("chat", 2), ("ide", 1)):
            ctx = {"surface": surface, "task_type": "coding", "cohort": "control"}
            for i in range(SESSIONS):
                who = {"user": f"{surface}-{i}", "session": f"s-{surface}-{i}", "context": ctx}
                at = YESTERDAY + timedelta(seconds=i)
                events.append(event("response_shown", at=at, **who))
                # i < 0.3 x scale x 600 clicks, then copies, then solved tasks, in order
                for k, kind in enumerate(("click_through", "copy_paste", "task_completion")):
                    if i < (3 - k) * 60 * scale:
                        events.append(event(kind, at=at + timedelta(minutes=k + 1), **who))
        for start in range(0, len(events), 500):
            r = srv.post_events(events[start : start + 500], app)
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
        yield srv, srv.create_token("analyst", "alice")


def ask(server: tuple[Server, str], path: str = "/v1/queries", **body: Any) -> httpx.Response:
    srv, token = server
    query = {"metric": "session_funnel", "start": DAY, "end": DAY, "epsilon": 1.0, **body}
    with srv.client(token) as client:
        return client.post(path, json=query)


def test_the_catalogue_lists_the_funnel(server: tuple[Server, str]) -> None:
    srv, token = server
    with srv.client(token) as client:
        metrics = {m["name"]: m for m in client.get("/v1/metrics").json()["metrics"]}
    funnel = metrics["session_funnel"]
    assert funnel["kind"] == "funnel" and funnel["group_by"][:2] == ["day", "surface"]


def test_each_row_carries_the_steps_in_order_monotone_with_intervals(
    server: tuple[Server, str],
) -> None:
    r = ask(server, group_by=["surface"], filters={"surface": ["chat", "ide"]})
    assert r.status_code == 200, r.text
    body = r.json()
    truth = {"chat": [0.6, 0.4, 0.2], "ide": [0.3, 0.2, 0.1]}
    for row in body["rows"]:
        assert [s["step"] for s in row["steps"]] == STEPS
        shares = [s["value"] for s in row["steps"]]
        assert all(a >= b for a, b in itertools.pairwise(shares))
        # Noise of scale 1 session per bin over 600 sessions: within 0.03 but with
        # probability far below 1e-9.
        for share, expected, step in zip(shares, truth[row["surface"]], row["steps"], strict=True):
            assert abs(share - expected) < 0.03
            lo, hi = step["ci95"]
            assert lo <= share <= hi and hi - lo < 0.1
        assert abs(row["sessions"] - SESSIONS) < 20
        assert row["value"] == shares[-1]
    assert any("Funnel response_shown → click_through" in n for n in body["notes"])
    assert body["cost"]["value"] == 1.0


def test_a_funnel_is_charged_once_and_a_repeat_returns_it_free(
    server: tuple[Server, str],
) -> None:
    first = ask(server, group_by=["day"], epsilon=0.5).json()
    again = ask(server, group_by=["day"], epsilon=0.5).json()
    assert again["repeat"] is True and again["cost"]["value"] == 0.0
    assert again["rows"] == first["rows"] and again["release_id"] == first["release_id"]


def test_a_preview_states_the_cost_and_each_counts_half_width_without_data(
    server: tuple[Server, str],
) -> None:
    r = ask(server, "/v1/queries/preview", group_by=["surface"])
    body = r.json()
    assert r.status_code == 200 and body["preview"] is True
    assert set(body["ci95_halfwidth"]) == {"levels"}
    assert any("session counts by steps reached" in n for n in body["notes"])


def test_a_funnel_cannot_be_compared_and_the_refusal_charges_nothing(
    server: tuple[Server, str],
) -> None:
    srv, token = server
    with srv.client(token) as client:
        before = client.get("/v1/budget").json()["remaining"]
    r = ask(server, group_by=["cohort"], compare={"dimension": "cohort", "baseline": "control"})
    assert r.status_code == 400
    assert "compare" in r.json()["error"]["message"]
    with srv.client(token) as client:
        assert client.get("/v1/budget").json()["remaining"] == before


def test_tacit_query_prints_each_cells_steps_with_their_intervals(
    server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from service.cli import main

    srv, token = server
    monkeypatch.setenv("TACIT_URL", srv.url)
    monkeypatch.setenv("TACIT_TOKEN", token)
    args = ["query", "session_funnel", "--start", DAY, "--end", DAY, "--epsilon", "0.25"]
    assert main([*args, "--group-by", "surface", "--filter", "surface=chat"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("surface"))
    assert header.split() == ["surface", "step", "value", "ci95", "low", "ci95", "high"]
    lines = [line.split() for line in out if line.startswith("chat ")]
    assert [line[1] for line in lines] == ["sessions", *STEPS]
    shares = [float(line[2]) for line in lines[1:]]
    assert shares == sorted(shares, reverse=True) and abs(shares[0] - 0.6) < 0.05
    assert any("charged epsilon 0.25" in line for line in out)
