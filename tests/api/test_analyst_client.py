"""The analyst's Python client against a real server: answers, refusals, no token echoed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from factories import event
from server import Server, free_port

from service.client import AnalystClient, ApiError, Unreachable


def test_queries_previews_budget_and_metrics_through_the_client(
    tmp_path: Path, master_key_b64: str
) -> None:
    yesterday = datetime.now(UTC).replace(hour=12, minute=0) - timedelta(days=1)
    day = yesterday.date().isoformat()
    with Server(tmp_path / "data", master_key_b64) as server:
        app = server.create_token("ingest", "app")
        events = [event(at=yesterday + timedelta(minutes=i), user=f"u{i}") for i in range(5)]
        assert server.post_events(events, app).status_code == 200
        token = server.create_token("analyst", "alice")
        body = {"metric": "event_count", "start": day, "end": day, "epsilon": 0.25}
        with AnalystClient(server.url, token) as api:
            assert token not in repr(api)
            assert "event_count" in {m["name"] for m in api.metrics().body["metrics"]}
            preview = api.preview(body)
            assert preview.ok and preview.body["cost"]["value"] == 0.25
            before = api.budget().body["remaining"][day]
            answer = api.query(body)
            answer.raise_for_error()
            assert len(answer.body["rows"]) == 1
            assert api.budget().body["remaining"][day] == pytest.approx(before - 0.25)

            refused = api.query({**body, "metric": "no_such_metric"})
            assert not refused.ok and refused.status == 400
            assert refused.error.startswith("invalid_query: ")
            with pytest.raises(ApiError, match="invalid_query") as raised:
                refused.raise_for_error()
            assert raised.value.answer is refused
        with AnalystClient(server.url, "tct_" + "x" * 43) as api:
            assert api.budget().status == 401


def test_an_unreachable_api_is_a_clear_error_without_the_token() -> None:
    token = "tct_" + "s" * 43
    api = AnalystClient(f"http://127.0.0.1:{free_port()}", token, timeout=2)
    with api, pytest.raises(Unreachable, match=r"cannot reach http://127\.0\.0\.1") as raised:
        api.budget()
    assert token not in str(raised.value)
