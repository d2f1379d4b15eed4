"""The spark engine behind the API: a real app answers with Spark, and a Spark it cannot
reach refuses a query before charging it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Clock, make_settings
from fastapi.testclient import TestClient
from queries_data import TODAY, event_row, write
from spark_cluster import available, master, spark_test_conf

from privacy.query import QueryRequest, plan_query
from service.api.app import create_app
from service.lake.engine import LakeQueries
from service.lake.sealer import Sealer
from service.ops.tokens import create_token
from service.queries.engine import QueryEngine
from service.store.base import Role

BODY = {
    "metric": "task_completion_rate",
    "start": str(TODAY - timedelta(days=2)),
    "end": str(TODAY - timedelta(days=1)),
    "group_by": ["day", "surface"],
    "epsilon": 0.5,
}


def _rows() -> list[tuple[object, ...]]:
    rows = []
    for user in range(1, 41):
        for n in range(6):
            day = TODAY - timedelta(days=1 + (user + n) % 2)
            surface = ("chat", "search", "ide")[(user * n) % 3]
            kind = "response_shown" if n % 2 else "task_completion"
            extra = {"outcome": ("success", "failure")[user % 2]} if n % 2 == 0 else {}
            rows.append(event_row(kind, day=day, user=user, second=n, surface=surface, **extra))
    return rows


def _client(tmp_path: Path, key: str, spark_master: str) -> Iterator[tuple[TestClient, str]]:
    settings = make_settings(
        tmp_path,
        key,
        query_engine="spark",
        spark_master=spark_master,
        spark_conf=spark_test_conf(),
    )
    app = create_app(settings, clock=Clock())
    token = create_token(app.state.tacit.store, "test-analyst", Role.ANALYST, None)
    with TestClient(app) as client:
        yield client, token


@pytest.fixture
def spark_app(tmp_path: Path, master_key_b64: str) -> Iterator[tuple[TestClient, str]]:
    available()
    yield from _client(tmp_path, master_key_b64, master())


def test_a_query_on_the_spark_engine_answers_from_spark_with_duckdbs_aggregates(
    spark_app: tuple[TestClient, str],
) -> None:
    client, token = spark_app
    state = client.app.state.tacit  # type: ignore[attr-defined]
    rows = _rows()
    write(state.store, rows[:150])
    Sealer(state.store, state.lake, batch_rows=50).seal()
    write(state.store, rows[150:])  # hot: not sealed
    r = client.post("/v1/queries", json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    coverage = r.json()["coverage"]
    assert coverage["engine"] == "spark" and coverage["hot_rows"] == len(rows) - 150
    assert coverage["sealed_through_batch"] == 3
    policy = state.policy.policy
    plan = plan_query(QueryRequest.from_json(BODY), policy, "test-analyst", TODAY)
    spark = state.queries.engine.aggregate(plan)  # the app's own engine: Spark
    duck = QueryEngine(state.store, policy, LakeQueries(state.store, state.lake)).aggregate(plan)
    assert spark.coverage["engine"] == "spark"
    assert dict(spark.values) == dict(duck.values) and any(spark.values["numerator"])


def test_an_unreachable_spark_master_refuses_the_query_and_charges_nothing(
    tmp_path: Path, master_key_b64: str
) -> None:
    available()  # the app refuses to start without pyspark
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = _client(tmp_path, master_key_b64, f"spark://127.0.0.1:{port}")
    client, token = next(gen)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        before = client.get("/v1/budget", headers=headers).json()["remaining"]
        r = client.post("/v1/queries", json=BODY, headers=headers)
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "engine_unavailable" and "release_id" not in error
        assert f"spark://127.0.0.1:{port} does not answer" in error["message"]
        assert "Nothing was charged" in error["message"]
        assert r.headers["Retry-After"] == "30"
        assert client.get("/v1/budget", headers=headers).json()["remaining"] == before
    finally:
        gen.close()
