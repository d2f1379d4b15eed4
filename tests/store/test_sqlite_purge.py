"""SQLite's purge of deleted rows from the WAL never makes writers wait on a reader.

A truncating checkpoint needs every reader on the latest snapshot and holds the write
lock while it waits for them; a reader that started before the last commit (an analyst
query running across a retention sweep) used to stop every write for as long as it ran.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.store.sqlite import SQLiteStore
from service.store.sqlite import retention as sqlite_retention


def _commit(store: SQLiteStore, value: int) -> None:
    with store.db.write() as conn:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('purge_test', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(value),),
        )


@contextmanager
def _old_snapshot(store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """A reader in the middle of a long query: its snapshot predates the last commit."""
    conn = sqlite3.connect(store.db.path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM meta").fetchone()
    _commit(store, 0)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
        conn.close()


def _wal_bytes(store: SQLiteStore) -> int:
    return Path(f"{store.db.path}-wal").stat().st_size


def test_writers_go_on_while_a_reader_holds_up_the_purge(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_retention, "PURGE_PATIENCE_S", 2.0)
    store = sqlite_store
    other = SQLiteStore(store.db.path)  # its own lock file handle: queues like another process
    try:
        with _old_snapshot(store):
            outcome: list[bool] = []
            purge = threading.Thread(target=lambda: outcome.append(store.retention.purge_deleted()))
            purge.start()
            waits = []
            value = 1
            while purge.is_alive():
                started = time.monotonic()
                _commit(other, value)
                waits.append(time.monotonic() - started)
                value += 1
                time.sleep(0.01)
            purge.join()
            assert outcome == [False]  # the reader outlasted the purge's patience
            # Under the old purge the first write waited out SQLite's 30 s busy timeout.
            # Each attempt may hold the lock PURGE_WAIT_MS (50 ms) plus a small copy.
            assert len(waits) >= 20
            assert max(waits) < 1.0, f"a write waited {max(waits):.2f} s on the purge"
        # The reader has gone: the next purge empties the WAL.
        assert store.retention.purge_deleted() is True
        assert _wal_bytes(store) == 0
    finally:
        other.close()


def test_a_purge_waits_out_a_short_reader(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    with _old_snapshot(store) as reader:
        # The query ends 0.3 s into the purge, well within its patience.
        threading.Timer(0.3, lambda: reader.execute("COMMIT")).start()
        started = time.monotonic()
        assert store.retention.purge_deleted() is True
        assert time.monotonic() - started >= 0.3
    assert _wal_bytes(store) == 0
