"""Events in SQLite: idempotent, durable batch writes (the ingestion hot path)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import chain, compress
from operator import itemgetter
from typing import Any

from privacy.events import EVENT_TYPE_CODES, PAYLOAD_COLUMNS, PAYLOAD_FIELDS
from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, WriteBatch
from service.store.sqlite.db import Database, from_ms, to_ms

# Rows go in as multi-row INSERTs of a few fixed sizes: one statement (and one release
# of the GIL, which the event loop thread is waiting for) per chunk instead of per row,
# and a bounded set of statement texts for sqlite3's statement cache.
_CHUNKS = (256, 64, 16, 4, 1)  # 25 columns x 256 rows: well under 32766 variables


def _values(width: int, rows: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * rows)


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
        self.statements = {
            n: f"INSERT INTO events ({', '.join(columns)}) VALUES {_values(len(columns), n)}"
            for n in _CHUNKS
        }

    def fits(self, row: tuple[Any, ...]) -> bool:
        return self.rest is None or self.rest(row) == self.empty


_WHOLE = _Shape(EVENT_COLUMNS)
_SHAPES: dict[int, _Shape] = {
    code: _Shape(
        tuple(c for c in EVENT_COLUMNS if c not in PAYLOAD_COLUMNS or c in PAYLOAD_FIELDS[t])
    )
    for t, code in EVENT_TYPE_CODES.items()
}
_TYPE = EVENT_COLUMNS.index("event_type")
_INSERT_KEYS = {
    n: f"INSERT INTO event_keys (ts_ms, source_id, eid) VALUES {_values(3, n)} "
    "ON CONFLICT DO NOTHING"
    for n in _CHUNKS
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


def _insert_events(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    by_shape: dict[_Shape, list[tuple[Any, ...]]] = {}
    for row in rows:
        shape = _SHAPES.get(row[_TYPE], _WHOLE)
        if not shape.fits(row):
            shape = _WHOLE
        by_shape.setdefault(shape, []).append(row)
    for shape, group in by_shape.items():
        _insert(conn, shape.statements, [shape.pick(row) for row in group])


def _insert_keys(conn: sqlite3.Connection, keys: Sequence[Key]) -> list[bool] | None:
    """Insert the keys that are new; None when all were, else a flag per key (True: new).

    Inside the write transaction. Most groups hold no duplicate, so the keys go straight
    in; only when the index refuses some (a retry, or a repeat within the group) is the
    insert undone and each key looked up, so that the first copy of a key in the group
    counts as new and any other copy, or a key stored earlier, as a duplicate.
    """
    before = conn.total_changes
    conn.execute("SAVEPOINT event_keys")
    _insert(conn, _INSERT_KEYS, keys)
    if conn.total_changes - before == len(keys):
        conn.execute("RELEASE event_keys")
        return None
    conn.execute("ROLLBACK TO event_keys")
    conn.execute("RELEASE event_keys")
    seen = _stored(conn, keys)
    flags = []
    for key in keys:
        fresh = key not in seen
        if fresh:
            seen.add(key)
        flags.append(fresh)
    _insert(conn, _INSERT_KEYS, list(compress(keys, flags)))
    return flags


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
        rows = [row for batch in batches for row in batch.rows]
        quarantine = [q for batch in batches for q in batch.quarantine]
        with self._db.write() as conn:
            flags = _insert_keys(conn, keys)
            _insert_events(conn, rows if flags is None else list(compress(rows, flags)))
            if quarantine:
                conn.executemany(_INSERT_QUARANTINE, quarantine)
        if flags is None:
            return [[True] * len(batch.rows) for batch in batches]
        results: list[list[bool]] = []
        at = 0
        for batch in batches:
            results.append(flags[at : at + len(batch.rows)])
            at += len(batch.rows)
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
