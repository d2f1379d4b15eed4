"""SQLite's event inserts bind only the columns of each event type's shape
(service/store/sqlite/events.py): what a row holds must be stored whole all the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store.contract import T0_TS, event_row

from privacy.events import EVENT_TYPE_CODES, EventType
from service.store.base import EVENT_COLUMNS, WriteBatch
from service.store.sqlite import SQLiteStore

REFORMULATION = EVENT_TYPE_CODES[EventType.REFORMULATION]
CLICK = EVENT_TYPE_CODES[EventType.CLICK_THROUGH]


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        columns = ", ".join(EVENT_COLUMNS)
        return conn.execute(f"SELECT {columns} FROM events ORDER BY user_ps").fetchall()


def test_rows_are_stored_whole_whether_or_not_they_fit_their_type(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tacit.db", "normal")
    store.migrate()
    fits = event_row(T0_TS, event_type=CLICK, user_ps=1, position=2, candidates=4)
    # A reformulation carries a similarity; this row also fills a click's columns.
    beyond = event_row(T0_TS, event_type=REFORMULATION, user_ps=2, position=1, similarity=0.25)
    fits_too = event_row(
        T0_TS, event_type=REFORMULATION, user_ps=3, position=None, candidates=None, similarity=0.5
    )
    batch = WriteBatch(1, [(T0_TS * 1000, 1), (T0_TS * 1000, 2), (T0_TS * 1000, 3)])
    batch.rows.extend([fits, beyond, fits_too])

    assert store.events.write([batch]) == [[True, True, True]]

    assert stored_rows(tmp_path / "tacit.db") == [fits, beyond, fits_too]
