"""Events in SQLite: idempotent, durable batch writes (the ingestion hot path)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, WriteBatch
from service.store.sqlite.db import Database, from_ms, to_ms

# Rows go in as multi-row INSERTs of a few fixed sizes: one statement (and one release
# of the GIL, which the event loop thread is waiting for) per chunk instead of per row,
# and a bounded set of statement texts for sqlite3's statement cache.
_CHUNKS = (256, 64, 16, 4, 1)  # 25 columns x 256 rows: well under 32766 variables


def _values(width: int, rows: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * rows)


_INSERT_EVENTS = {
    n: f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES {_values(len(EVENT_COLUMNS), n)}"
    for n in _CHUNKS
}
_INSERT_KEYS = {
    n: f"INSERT INTO event_keys (ts_ms, source_id, eid) VALUES {_values(3, n)}" for n in _CHUNKS
}
# The keys of a group that are already stored: one primary-key lookup per key (CROSS JOIN
# keeps the VALUES list as the outer loop; a row-value IN would scan the table).
_FIND_KEYS = {
    n: "SELECT k.ts_ms, k.source_id, k.eid FROM (VALUES "
    + _values(3, n)
    + ") AS v CROSS JOIN event_keys AS k "
    "ON k.ts_ms = v.column1 AND k.source_id = v.column2 AND k.eid = v.column3"
    for n in _CHUNKS
}
_INSERT_QUARANTINE = (
    f"INSERT INTO quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in QUARANTINE_COLUMNS)})"
)

Key = tuple[int, int, int]  # (ts_ms, source_id, eid)


def _chunked(items: Sequence[Any]) -> Iterator[tuple[int, Sequence[Any]]]:
    start = 0
    for size in _CHUNKS:
        while len(items) - start >= size:
            yield size, items[start : start + size]
            start += size


def _insert(conn: sqlite3.Connection, statements: dict[int, str], rows: Sequence[Any]) -> None:
    for size, chunk in _chunked(rows):
        conn.execute(statements[size], list(chain.from_iterable(chunk)))


def _stored(conn: sqlite3.Connection, keys: Sequence[Key]) -> set[Key]:
    found: set[Key] = set()
    for size, chunk in _chunked(keys):
        found.update(conn.execute(_FIND_KEYS[size], list(chain.from_iterable(chunk))))
    return found


class SQLiteEvents:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._first_event_at: datetime | None = None

    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        for batch in batches:
            if len(batch.keys) != len(batch.rows):
                raise ValueError("a WriteBatch needs one idempotency key per row")
        keys: list[Key] = [
            (ts_ms, batch.source_id, eid) for batch in batches for ts_ms, eid in batch.keys
        ]
        results: list[list[bool]] = []
        with self._db.write() as conn:
            # Holding the write lock, look up then insert: no other writer can come between.
            seen = _stored(conn, keys)  # then also every key written earlier in this group
            new_keys: list[Key] = []
            new_rows: list[tuple[Any, ...]] = []
            quarantine: list[tuple[Any, ...]] = []
            at = 0
            for batch in batches:
                flags = []
                for row in batch.rows:
                    key = keys[at]
                    at += 1
                    fresh = key not in seen  # a repeat inside the group is a duplicate
                    if fresh:
                        seen.add(key)
                        new_keys.append(key)
                        new_rows.append(row)
                    flags.append(fresh)
                quarantine += batch.quarantine
                results.append(flags)
            _insert(conn, _INSERT_KEYS, new_keys)
            _insert(conn, _INSERT_EVENTS, new_rows)
            if quarantine:
                conn.executemany(_INSERT_QUARANTINE, quarantine)
        return results

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
