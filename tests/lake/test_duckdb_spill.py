"""DuckDB's spill files stay private: what a query does not fit in TACIT_DUCKDB_MEMORY_LIMIT
goes to a directory of the serving process alone (0700), removed when the engine closes,
never to DuckDB's default `.tmp` under the working directory; the limit changes no
aggregate.

Enough events (360,000; 240,000 person-cell units) that a 32 MB limit makes DuckDB spill
(measured: 6 MB; it spills from 24 MB to 40 MB and refuses below 20 MB, with one
thread); the spill directory is sampled while the query runs.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.policy import Policy
from privacy.query import QueryPlan, QueryRequest, plan_query
from service.lake.engine import LakeQueries
from service.lake.sealer import Sealer
from service.lake.table import Lake
from service.queries.engine import QueryEngine
from service.store.base import EngineUnavailable
from service.store.sqlite import SQLiteStore

SURFACES = ("chat", "search", "ide", "docs")


@pytest.fixture(scope="module")
def lake_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SQLiteStore, Lake]]:
    where = tmp_path_factory.mktemp("spill")
    store = open_store(where)
    lake = Lake(where / "lake")
    rows = [
        event_row(
            kind,
            day=TODAY - timedelta(days=user % 3),
            user=user,
            session=user,
            second=k,
            surface=SURFACES[(user + k) % 4],
            position=1 + k % 2,
            candidates=3,
        )
        for user in range(1, 120_001)
        for k, kind in enumerate(("response_shown", "click_through", "response_shown"))
    ]
    write(store, rows)
    Sealer(store, lake, batch_rows=200_000).seal()
    yield store, lake
    store.close()


def _plan() -> tuple[Policy, QueryPlan]:
    pol = policy("default")
    body = {
        "metric": "click_through_rate",
        "start": str(TODAY - timedelta(days=2)),
        "end": str(TODAY),
        "group_by": ["day", "surface"],
        "epsilon": 1.0,
    }
    return pol, plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)


def _spill_bytes(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files
    )


def test_a_query_past_the_memory_limit_spills_only_into_the_private_directory(
    lake_store: tuple[SQLiteStore, Lake], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # DuckDB's default would be ./.tmp here
    store, lake = lake_store
    pol, plan = _plan()
    free = LakeQueries(store, lake)
    limited = LakeQueries(store, lake, threads=1, memory_limit="32MB")
    spill = limited.spill_dir
    assert stat.S_IMODE(os.stat(spill).st_mode) == 0o700
    (setting,) = limited._db.execute("SELECT current_setting('temp_directory')").fetchone()
    assert setting == spill

    most = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            most[0] = max(most[0], _spill_bytes(spill))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        got = QueryEngine(store, pol, limited).aggregate(plan)
    finally:
        done.set()
        sampler.join()
    expected = QueryEngine(store, pol, free).aggregate(plan)
    assert dict(got.values) == dict(expected.values)
    assert any(any(v) for v in expected.values.values())
    assert most[0] > 0, "the 32 MB limit should have made DuckDB spill"

    limited.close()
    free.close()
    assert not Path(spill).exists()
    assert not (tmp_path / ".tmp").exists()


def test_a_query_that_cannot_fit_even_by_spilling_is_refused_with_what_to_do(
    lake_store: tuple[SQLiteStore, Lake],
) -> None:
    store, lake = lake_store
    pol, plan = _plan()
    tight = LakeQueries(store, lake, threads=1, memory_limit="4MB")
    with pytest.raises(EngineUnavailable, match=r"TACIT_DUCKDB_MEMORY_LIMIT.*raise the limit"):
        QueryEngine(store, pol, tight).aggregate(plan)
    tight.close()
