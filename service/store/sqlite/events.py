"""Events in SQLite: idempotent, durable batch writes (the ingestion hot path).

Idempotency keys go through :mod:`service.store.sqlite.idempotency` (a log of recent keys in
front of the index); rows are inserted grouped by event type (:class:`_Shape`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from itertools import compress, groupby
from operator import itemgetter
from typing import Any

from privacy.events import EVENT_TYPE_CODES, PAYLOAD_COLUMNS, PAYLOAD_FIELDS
from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, WriteBatch
from service.store.sqlite import bulk
from service.store.sqlite.db import Database, from_ms, to_ms
from service.store.sqlite.idempotency import FOLD_ROWS, Key, RecentKeys


class _Shape:
    """The columns an event type fills, and INSERTs that bind only those.

    A row carries every payload column, but each type fills one to four of the twelve;
    binding the empty ones costs CPython ~0.3 µs each (an adapter lookup per None), about
    a third of an insert. Rows are grouped by type and inserted through their shape.
    """

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.pick = itemgetter(*(EVENT_COLUMNS.index(c) for c in columns))
        others = [i for i, c in enumerate(EVENT_COLUMNS) if c not in columns]
        # A row that fills a column outside its shape (not one the pipeline makes) goes
        # in whole rather than losing that value.
        assert len(others) != 1  # itemgetter of one index gives a value, not a tuple
        self.rest = itemgetter(*others) if others else None
        self.empty = (None,) * len(others)
        width = len(columns)
        self.statements = {
            n: f"INSERT INTO events ({', '.join(columns)}) VALUES {bulk.values(width, n)}"
            for n in bulk.CHUNKS
        }

    def fit(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether every one of ``rows`` leaves the columns outside this shape empty."""
        return self.rest is None or list(map(self.rest, rows)).count(self.empty) == len(rows)


_WHOLE = _Shape(EVENT_COLUMNS)
_SHAPES: dict[int, _Shape] = {
    code: _Shape(
        tuple(c for c in EVENT_COLUMNS if c not in PAYLOAD_COLUMNS or c in PAYLOAD_FIELDS[t])
    )
    for t, code in EVENT_TYPE_CODES.items()
}
_type_of = itemgetter(EVENT_COLUMNS.index("event_type"))
_INSERT_QUARANTINE = (
    f"INSERT INTO quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in QUARANTINE_COLUMNS)})"
)


def _insert_events(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    for event_type, same_type in groupby(sorted(rows, key=_type_of), key=_type_of):
        group = list(same_type)
        shape = _SHAPES.get(event_type, _WHOLE)
        if not shape.fit(group):
            shape = _WHOLE
        bulk.execute(conn, shape.statements, list(map(shape.pick, group)))


class SQLiteEvents:
    def __init__(self, db: Database, fold_rows: int = FOLD_ROWS) -> None:
        self._db = db
        self._first_event_at: datetime | None = None
        self._keys = RecentKeys(fold_rows)

    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        for batch in batches:
            if len(batch.keys) != len(batch.rows):
                raise ValueError("a WriteBatch needs one idempotency key per row")
        keys: list[Key] = [
            (ts_ms, batch.source_id, eid) for batch in batches for ts_ms, eid in batch.keys
        ]
        rows = [row for batch in batches for row in batch.rows]
        quarantine = [q for batch in batches for q in batch.quarantine]
        try:
            with self._db.write() as conn:
                flags = self._keys.insert_new(conn, keys)
                _insert_events(conn, rows if flags is None else list(compress(rows, flags)))
                if quarantine:
                    conn.executemany(_INSERT_QUARANTINE, quarantine)
        except BaseException:
            self._keys.rolled_back()
            raise
        self._keys.committed()
        if self._keys.fold_overdue:
            self._keys.fold(self._db)
        if flags is None:
            return [[True] * len(batch.rows) for batch in batches]
        results: list[list[bool]] = []
        at = 0
        for batch in batches:
            results.append(flags[at : at + len(batch.rows)])
            at += len(batch.rows)
        return results

    def maintain(self) -> None:
        """Upkeep between writes: fold the recent keys into the index once enough piled up.

        The group writers call this after answering their requests, so that the fold
        (tens of milliseconds) is not part of any request's wait.
        """
        if self._keys.fold_due:
            self._keys.fold(self._db)

    def count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def quarantine_count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def first_event_at(self) -> datetime | None:
        if self._first_event_at is None:
            with self._db.read() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'first_event_at'").fetchone()
            if row is not None:
                self._first_event_at = from_ms(int(row[0]))
        return self._first_event_at

    def mark_first_event(self, at: datetime) -> datetime:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('first_event_at', ?) ON CONFLICT DO NOTHING",
                (str(to_ms(at)),),
            )
        self._first_event_at = None
        first = self.first_event_at()
        assert first is not None
        return first
