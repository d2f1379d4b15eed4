"""The retention sweeper's SQL for PostgreSQL: whole partitions dropped, edges trimmed.

Every (event type, day) of ``events`` and every day of ``quarantine`` and ``event_keys``
is its own partition, so almost everything retention removes leaves as a whole table:
``DETACH PARTITION ... CONCURRENTLY`` (which never blocks ingestion or queries) and then
``DROP TABLE``, which unlinks its files. Only the edge partition, the one the cutoff
falls in, is trimmed with short batched deletes, and then vacuumed.

The drop itself and partition creation serialise on the partition advisory lock: a table
is dropped only while it is detached, and a writer that needs a partition retention has
detached but not dropped yet drops it and makes a new one (a late event for an expiring
day). A node that still believes in a dropped partition gets a routing error, makes the
partition again and retries its write (see events.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from psycopg import errors, sql

from privacy.events import EVENT_TYPE_CODES
from service.store.postgres.audit import PostgresAudit
from service.store.postgres.db import LOCK_PARTITIONS, LOCK_SPACE, Conn, Database, to_ms
from service.store.postgres.partitions import DayPartition, Partitions, parent_name
from service.store.postgres.schema import PARTITIONED

_CLAIM_KEY = "retention_claimed_at"


class PostgresRetention:
    def __init__(self, db: Database, audit: PostgresAudit, partitions: Partitions) -> None:
        self._db = db
        self._audit = audit
        self._partitions = partitions
        self._trimmed: set[str] = set()  # partitions with deleted rows, to vacuum
        self._lock = threading.Lock()

    # --- events, quarantine, idempotency keys ------------------------------------------

    def count_events(self, event_type: int, before_ts: int, max_epoch: int) -> int:
        return self._count("events", before_ts, event_type)

    def delete_events(
        self, event_type: int, before_ts: int, max_epoch: int, batch: int
    ) -> Iterator[int]:
        return self._expire("events", before_ts, batch, event_type)

    def delete_epochs(
        self, before_epoch: int, before_ts: int, batch: int
    ) -> Iterator[dict[int, int]]:
        # Events are partitioned by (type, day): whole expired epochs are whole partitions,
        # dropped type by type (storage order buys nothing here).
        for code in EVENT_TYPE_CODES.values():
            for n in self._expire("events", before_ts, batch, code):
                yield {code: n}

    def count_quarantine(self, before_ms: int) -> int:
        return self._count("quarantine", before_ms)

    def delete_quarantine(self, before_ms: int, batch: int) -> Iterator[int]:
        return self._expire("quarantine", before_ms, batch)

    def count_event_keys(self, before_ms: int) -> int:
        return self._count("event_keys", before_ms)

    def delete_event_keys(self, before_ms: int, batch: int) -> Iterator[int]:
        return self._expire("event_keys", before_ms, batch)

    def _count(self, table: str, before: int, event_type: int | None = None) -> int:
        spec = PARTITIONED[table]
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} < %s").format(
            sql.Identifier(parent_name(spec, event_type)), sql.Identifier(spec.column)
        )
        with self._db.read() as conn:
            if spec.by_type and not _exists(conn, parent_name(spec, event_type)):
                return 0  # no event of this type was ever stored
            row = conn.execute(query, (before,)).fetchone()
        return int(row[0]) if row else 0

    def _expire(
        self, table: str, before: int, batch: int, event_type: int | None = None
    ) -> Iterator[int]:
        with self._db.read() as conn:
            partitions = self._partitions.day_partitions(conn, table, event_type)
        for partition in partitions:
            if partition.lower >= before:
                break
            if partition.upper <= before or not partition.attached:
                yield self._drop(table, event_type, partition)
            else:
                yield from self._trim(table, partition, before, batch)

    def _drop(self, table: str, event_type: int | None, partition: DayPartition) -> int:
        """Detach a wholly expired partition without blocking anyone, then drop it."""
        name = sql.Identifier(partition.name)
        if partition.attached:
            parent = sql.Identifier(parent_name(PARTITIONED[table], event_type))
            with self._db.session() as conn:
                # Outside any transaction (CONCURRENTLY refuses one); needs no lock of
                # ours, so it also works through a transaction-pooling PgBouncer.
                pending = conn.execute(
                    "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(%s)",
                    (partition.name,),
                ).fetchone()
                mode = sql.SQL("FINALIZE" if pending and pending[0] else "CONCURRENTLY")
                # UndefinedTable: a racing sweep (or a writer) got there first.
                with contextlib.suppress(errors.UndefinedTable):
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(parent, name, mode)
                    )
        with self._db.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, LOCK_PARTITIONS))
            # Dropped only while detached: a writer may have replaced it by a new partition.
            row = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s))",
                (partition.name, partition.name),
            ).fetchone()
            count = 0
            if row and row[0]:
                counted = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
                count = int(counted[0]) if counted else 0
                conn.execute(sql.SQL("DROP TABLE {}").format(name))
        self._partitions.forget()
        with self._lock:
            self._trimmed.discard(partition.name)
        return count

    def _trim(self, table: str, partition: DayPartition, before: int, batch: int) -> Iterator[int]:
        """Delete the expired rows of the edge partition, ``batch`` rows a transaction."""
        name = sql.Identifier(partition.name)
        column = sql.Identifier(PARTITIONED[table].column)
        delete = sql.SQL(
            "DELETE FROM {name} WHERE ctid = ANY (ARRAY("
            "SELECT ctid FROM {name} WHERE {column} < %s LIMIT %s))"
        ).format(name=name, column=column)
        while True:
            with self._db.write() as conn:
                deleted = conn.execute(delete, (before, batch)).rowcount
            if deleted <= 0:
                return
            with self._lock:
                self._trimmed.add(partition.name)
            yield deleted
            if deleted < batch:
                return

    # --- salts --------------------------------------------------------------------------

    def live_salts_before(self, epoch: int) -> list[int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT epoch FROM salts WHERE epoch < %s AND destroyed_at IS NULL ORDER BY epoch",
                (epoch,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def destroy_salts(self, before_epoch: int, at: datetime, actor: str) -> list[int]:
        with self._db.write() as conn:
            # Row locks: a racing sweep waits, then finds destroyed_at set and skips.
            rows = conn.execute(
                "UPDATE salts SET nonce = NULL, ciphertext = NULL, destroyed_at = %s "
                "WHERE epoch < %s AND destroyed_at IS NULL RETURNING epoch",
                (to_ms(at), before_epoch),
            ).fetchall()
            doomed = sorted(int(r[0]) for r in rows)
            for epoch in doomed:
                self._audit.append_in(conn, "salt_destroyed", actor, {"epoch": epoch}, at)
        return doomed

    # --- scheduling and purge -------------------------------------------------------------

    def claim_run(self, at: datetime, min_gap: timedelta) -> bool:
        now_ms = to_ms(at)
        gap_ms = int(min_gap.total_seconds() * 1000)
        with self._db.write() as conn:
            # One statement: a racing node waits on the row lock, then sees the new claim.
            row = conn.execute(
                "INSERT INTO meta (key, value) VALUES (%(key)s, %(now)s::text) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                "WHERE NOT (%(now)s - meta.value::bigint >= 0 "
                "AND %(now)s - meta.value::bigint < %(gap)s) "
                "RETURNING 1",
                {"key": _CLAIM_KEY, "now": now_ms, "gap": gap_ms},
            ).fetchone()
        return row is not None

    def purge_deleted(self) -> bool:
        # Dropped partitions are gone with their files. Trimmed ones are vacuumed, so the
        # deleted rows leave their pages' live data and the indexes (docs/deploy.md says
        # what remains: free space until reused, and WAL and backups until they expire).
        with self._lock:
            trimmed = sorted(self._trimmed)
        ok = True
        with self._db.session() as conn:
            for name in trimmed:
                try:
                    if _exists(conn, name):
                        conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(name)))
                except Exception:
                    ok = False
                    continue
                with self._lock:
                    self._trimmed.discard(name)
        return ok


def _exists(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])
