"""The hot tier in SQLite: events not sealed into the lake yet (service/lake/sealer.py).

A seal batch is claimed by writing its number into ``seal_batch`` of up to ``limit``
unclaimed rows, oldest first (one short write transaction); the sealer then copies the
batch into the lake and finally deletes it here. The lake commit carries the batch
number, so a crash at any point leaves either an unclaimed row, a claimed row whose
batch the lake lacks (copied again) or one it holds (only deleted): never a loss, never
a second copy.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from service.store.base import EVENT_COLUMNS
from service.store.sqlite.db import Database

_SELECT = ", ".join(EVENT_COLUMNS)
DELETE_CHUNK = 20_000


class SQLiteHot:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pending(self) -> int | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT max(seal_batch) FROM events WHERE seal_batch IS NOT NULL"
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def claim(self, batch: int, limit: int) -> int:
        with self._db.write() as conn:
            _set_claimed(conn, batch)
            return conn.execute(
                "UPDATE events SET seal_batch = ? WHERE id IN "
                "(SELECT id FROM events WHERE seal_batch IS NULL ORDER BY id LIMIT ?)",
                (batch, limit),
            ).rowcount

    def batch_rows(self, batch: int) -> list[tuple[Any, ...]]:
        with self._db.read() as conn:
            return conn.execute(
                f"SELECT {_SELECT} FROM events WHERE seal_batch = ?", (batch,)
            ).fetchall()

    def release(self, through: int) -> int:
        deleted = 0
        while True:
            with self._db.write() as conn:
                n = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events "
                    "WHERE seal_batch IS NOT NULL AND seal_batch <= ? LIMIT ?)",
                    (through, DELETE_CHUNK),
                ).rowcount
            deleted += n
            if n < DELETE_CHUNK:
                return deleted

    def snapshot(self) -> tuple[list[tuple[Any, ...]], int]:
        with self._db.read() as conn:
            rows = conn.execute(f"SELECT {_SELECT}, seal_batch FROM events").fetchall()
            return rows, _claimed(conn)

    def claimed(self) -> int:
        with self._db.read() as conn:
            return _claimed(conn)

    def unsealed(self, watermark: int) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE seal_batch IS NULL OR seal_batch > ?",
                (watermark,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def note(self, key: str, at_ms: int) -> None:
        """Record when the lake was last sealed, compacted or vacuumed (``key``)."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                ("lake_" + key, str(at_ms)),
            )

    def notes(self) -> dict[str, int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'lake\\_%' ESCAPE '\\'"
            ).fetchall()
        return {str(k).removeprefix("lake_"): int(v) for k, v in rows}

    @contextmanager
    def lake_lock(self, wait: bool = True) -> Iterator[bool]:
        """The one lake writer at a time, across processes: a lock file beside the database.

        Yields False (holding nothing) when ``wait`` is False and another process holds it.
        """
        fd = os.open(f"{self._db.path}.lakelock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _claimed(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'lake_claimed'").fetchone()
    return 0 if row is None else int(row[0])


def _set_claimed(conn: sqlite3.Connection, batch: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('lake_claimed', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(batch),),
    )
