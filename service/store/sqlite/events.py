"""Events in SQLite: idempotent, durable batch writes (the ingestion hot path)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, WriteBatch
from service.store.sqlite.db import Database, from_ms, to_ms

_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_INSERT_QUARANTINE = (
    f"INSERT INTO quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in QUARANTINE_COLUMNS)})"
)
_KEY_CHUNK = 2000  # 3 variables a key: well under SQLite's 32766-variable limit


def _new_keys(
    conn: sqlite3.Connection, source_id: int, keys: Sequence[tuple[int, int]]
) -> set[tuple[int, int]]:
    """Insert idempotency keys; return the ones that were not there before."""
    inserted: set[tuple[int, int]] = set()
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        params: list[int] = []
        for ts_ms, eid in chunk:
            params += (ts_ms, source_id, eid)
        sql = (
            "INSERT INTO event_keys (ts_ms, source_id, eid) VALUES "
            + ",".join(["(?,?,?)"] * len(chunk))
            + " ON CONFLICT DO NOTHING RETURNING ts_ms, eid"
        )
        inserted.update(conn.execute(sql, params).fetchall())
    return inserted


class SQLiteEvents:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._first_event_at: datetime | None = None

    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        results: list[list[bool]] = []
        with self._db.write() as conn:
            for batch in batches:
                new = _new_keys(conn, batch.source_id, batch.keys) if batch.keys else set()
                flags: list[bool] = []
                fresh_rows = []
                for key, row in zip(batch.keys, batch.rows, strict=True):
                    if key in new:
                        new.discard(key)  # a repeat inside the same batch is a duplicate
                        flags.append(True)
                        fresh_rows.append(row)
                    else:
                        flags.append(False)
                if fresh_rows:
                    conn.executemany(_INSERT_EVENT, fresh_rows)
                if batch.quarantine:
                    conn.executemany(_INSERT_QUARANTINE, batch.quarantine)
                results.append(flags)
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
