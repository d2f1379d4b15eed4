"""SQLite's recent-keys log: deduplication stays exact across folds, several writers on one
file, failed transactions and restarts (service/store/sqlite/idempotency.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store.contract import T0_TS, batch

from service.store.sqlite import SQLiteStore
from service.store.sqlite.db import Database
from service.store.sqlite.events import SQLiteEvents


def open_events(path: Path, fold_rows: int = 1000) -> SQLiteEvents:
    store = SQLiteStore(path, "normal")
    store.migrate()
    return SQLiteEvents(store.db, fold_rows=fold_rows)


def table_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_new_keys_go_to_the_log_and_a_fold_moves_them_into_the_index(tmp_path: Path) -> None:
    db = tmp_path / "tacit.db"
    events = open_events(db, fold_rows=3)
    assert events.write([batch([1, 2])]) == [[True, True]]
    events.maintain()  # 2 < 3: not due
    assert (table_count(db, "event_keys_log"), table_count(db, "event_keys")) == (2, 0)
    assert events.write([batch([3])]) == [[True]]
    events.maintain()
    assert (table_count(db, "event_keys_log"), table_count(db, "event_keys")) == (0, 3)


def test_a_writer_that_never_calls_maintain_still_folds_at_twice_the_size(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tacit.db"
    events = open_events(db, fold_rows=2)
    assert events.write([batch([1, 2, 3])]) == [[True, True, True]]  # 3 < 4: kept
    assert (table_count(db, "event_keys_log"), table_count(db, "event_keys")) == (3, 0)
    assert events.write([batch([4])]) == [[True]]
    assert (table_count(db, "event_keys_log"), table_count(db, "event_keys")) == (0, 4)


def test_a_key_is_a_duplicate_before_and_after_its_fold(tmp_path: Path) -> None:
    events = open_events(tmp_path / "tacit.db", fold_rows=2)
    assert events.write([batch([1, 2])]) == [[True, True]]
    assert events.write([batch([2, 3])]) == [[False, True]]  # 2 from the log
    events.maintain()
    assert events.write([batch([1, 3, 4, 4])]) == [[False, False, True, False]]  # the index
    assert events.count() == 4


def test_two_writers_on_one_file_see_each_others_keys_at_once(tmp_path: Path) -> None:
    db = tmp_path / "tacit.db"
    first, second = open_events(db, fold_rows=3), open_events(db, fold_rows=3)
    assert first.write([batch([1])]) == [[True]]
    assert second.write([batch([1, 2])]) == [[False, True]]  # read from the log
    assert first.write([batch([2, 3])]) == [[False, True]]
    first.maintain()  # folds 1, 2, 3: the second writer's copy of the log is now stale
    assert second.write([batch([3, 4])]) == [[False, True]]
    assert first.write([batch([4])]) == [[False]]
    assert first.count() == 4


def test_a_restarted_writer_reads_the_log_back(tmp_path: Path) -> None:
    db = tmp_path / "tacit.db"
    assert open_events(db).write([batch([1, 2])]) == [[True, True]]
    assert open_events(db).write([batch([2, 3])]) == [[False, True]]


def test_keys_of_a_transaction_that_failed_are_not_remembered(tmp_path: Path) -> None:
    events = open_events(tmp_path / "tacit.db")
    broken = batch([1])
    broken.quarantine.append((1,))  # too few columns: the INSERT fails, all rolls back
    with pytest.raises(sqlite3.Error):
        events.write([broken])
    assert events.write([batch([1])]) == [[True]]
    assert events.count() == 1


def test_retention_removes_logged_keys_and_every_writer_forgets_them(tmp_path: Path) -> None:
    path = tmp_path / "tacit.db"
    store = SQLiteStore(path, "normal")
    store.migrate()
    other = SQLiteEvents(Database(path, "normal"))
    assert store.events.write([batch([1], ts=T0_TS - 100)]) == [[True]]
    assert other.write([batch([1], ts=T0_TS - 100)]) == [[False]]
    before_ms = T0_TS * 1000
    assert store.retention.count_event_keys(before_ms) == 1
    assert sum(store.retention.delete_event_keys(before_ms, 10)) == 1
    assert store.retention.count_event_keys(before_ms) == 0
    # Both writers learn that the key is gone: a resend is a new event again.
    assert other.write([batch([1], ts=T0_TS - 100)]) == [[True]]
    assert store.events.write([batch([1], ts=T0_TS - 100)]) == [[False]]
