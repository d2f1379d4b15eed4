"""PostgreSQL only: TACIT_DATABASE_POOL_SIZE bounds the connections a serving process opens.

Operators size max_connections (or PgBouncer) as nodes x workers x this (docs/deploy.md),
so a process must never open more, however many requests want the database at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from privacy.keyring import MasterKey
from service.api.app import build_state
from service.settings import Settings


def connections_to(url: str) -> int:
    """Backends connected to this test's database, apart from the one asking."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_process_never_holds_more_connections_than_its_pool_size(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TACIT_DATABASE_POOL_SIZE", "3")
    settings = Settings(
        data_dir=tmp_path, database_url=postgres_url, master_key=MasterKey.generate_base64()
    )
    state = build_state(settings)
    pool = state.store.db.pool
    busy = threading.Event()

    def hold() -> None:
        with pool.connection() as conn:
            busy.set()
            conn.execute("SELECT pg_sleep(0.3)")

    try:
        with ThreadPoolExecutor(8) as threads:  # eight want a connection at once
            done = [threads.submit(hold) for _ in range(8)]
            busy.wait(10)
            seen = []
            while not all(f.done() for f in done):
                seen.append(connections_to(postgres_url))
                time.sleep(0.05)
            for f in done:
                f.result()
        assert max(seen) == 3, seen  # all three in use, and never a fourth
    finally:
        state.store.close()


def test_a_pool_size_below_one_is_refused_in_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TACIT_DATABASE_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="database_pool_size"):
        Settings()
