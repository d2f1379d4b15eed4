"""The hot tier in PostgreSQL: events not sealed into the lake yet (service/lake/sealer.py).

As in SQLite (service/store/sqlite/hot.py, which says why a crash loses nothing): a batch
is claimed by writing its number into ``seal_batch``, copied into the lake, then deleted.
Rows of transactions not committed yet are invisible to the claim and go in a later
batch. The one lake writer among all nodes is chosen by a session advisory lock, held on
its own connection for as long as the lake work lasts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from service.store.base import EVENT_COLUMNS
from service.store.postgres.db import LOCK_SPACE, Conn, Database

_SELECT = ", ".join(EVENT_COLUMNS)
LOCK_LAKE = 6
DELETE_CHUNK = 20_000


class PostgresHot:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pending(self) -> int | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT max(seal_batch) FROM events WHERE seal_batch IS NOT NULL"
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def claim(self, batch: int, limit: int) -> int:
        with self._db.write() as conn:
            _set_claimed(conn, batch)
            cur = conn.execute(
                "UPDATE events SET seal_batch = %s WHERE (tableoid, ctid) IN "
                "(SELECT tableoid, ctid FROM events WHERE seal_batch IS NULL LIMIT %s "
                "FOR UPDATE SKIP LOCKED)",
                (batch, limit),
            )
            return cur.rowcount

    def batch_rows(self, batch: int) -> list[tuple[Any, ...]]:
        with self._db.read() as conn:
            return conn.execute(
                f"SELECT {_SELECT} FROM events WHERE seal_batch = %s", (batch,)
            ).fetchall()

    def release(self, through: int) -> int:
        deleted = 0
        while True:
            with self._db.write() as conn:
                n = conn.execute(
                    "DELETE FROM events WHERE (tableoid, ctid) IN (SELECT tableoid, ctid "
                    "FROM events WHERE seal_batch IS NOT NULL AND seal_batch <= %s LIMIT %s)",
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
                "SELECT count(*) FROM events WHERE seal_batch IS NULL OR seal_batch > %s",
                (watermark,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def note(self, key: str, at_ms: int) -> None:
        """Record when the lake was last sealed, compacted or vacuumed (``key``)."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) "
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
        """The one lake writer among all nodes: a session advisory lock on its own connection."""
        with self._db.session() as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, LOCK_LAKE))
            else:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_SPACE, LOCK_LAKE)
                ).fetchone()
                if row is None or not row[0]:
                    yield False
                    return
            try:
                yield True
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, LOCK_LAKE))


def _claimed(conn: Conn) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'lake_claimed'").fetchone()
    return 0 if row is None else int(row[0])


def _set_claimed(conn: Conn, batch: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('lake_claimed', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(batch),),
    )
