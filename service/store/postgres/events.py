"""Events in PostgreSQL: idempotent, durable batch writes (the ingestion hot path).

A group of batches is one transaction: the idempotency keys of all of them go in with
one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (so a retry that lands on another
node, even at the same moment, finds the first copy's key and is a duplicate), then
the new rows are streamed with ``COPY``. Keys are inserted in one global order, so two
nodes writing overlapping batches wait on each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import errors

from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, WriteBatch
from service.store.postgres.db import Conn, Database, from_ms, to_ms
from service.store.postgres.partitions import Partitions

_COPY_EVENTS = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
_COPY_QUARANTINE = f"COPY quarantine ({', '.join(QUARANTINE_COLUMNS)}) FROM STDIN"
_INSERT_KEYS = (
    "INSERT INTO event_keys (ts_ms, source_id, eid) "
    "SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::bigint[]) "
    "ORDER BY 1, 2, 3 "
    "ON CONFLICT DO NOTHING RETURNING ts_ms, source_id, eid"
)
_TS = EVENT_COLUMNS.index("ts")
_TYPE = EVENT_COLUMNS.index("event_type")
_RECEIVED_AT = QUARANTINE_COLUMNS.index("received_at")


class PostgresEvents:
    def __init__(self, db: Database, partitions: Partitions) -> None:
        self._db = db
        self._partitions = partitions
        self._first_event_at: datetime | None = None

    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        self._ensure_partitions(batches)
        try:
            return self._db.transact(lambda conn: _write(conn, batches))
        except errors.CheckViolation:
            # "no partition found for row": retention dropped a partition this process
            # still believed in. Make it again and retry once.
            self._partitions.forget()
            self._ensure_partitions(batches)
            return self._db.transact(lambda conn: _write(conn, batches))

    def _ensure_partitions(self, batches: Sequence[WriteBatch]) -> None:
        self._partitions.ensure_for("event_keys", (k[0] for b in batches for k in b.keys))
        self._partitions.ensure_for_events(
            (int(r[_TYPE]), int(r[_TS])) for b in batches for r in b.rows
        )
        self._partitions.ensure_for(
            "quarantine", (int(q[_RECEIVED_AT]) for b in batches for q in b.quarantine)
        )

    def maintain(self) -> None:
        """Nothing to do: keys go straight into their partitioned index."""

    def count(self) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    def quarantine_count(self) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT count(*) FROM quarantine").fetchone()
        return int(row[0]) if row else 0

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
                "INSERT INTO meta (key, value) VALUES ('first_event_at', %s) "
                "ON CONFLICT DO NOTHING",
                (str(to_ms(at)),),
            )
        self._first_event_at = None
        first = self.first_event_at()
        assert first is not None
        return first


def _write(conn: Conn, batches: Sequence[WriteBatch]) -> list[list[bool]]:
    ts_ms: list[int] = []
    sources: list[int] = []
    eids: list[int] = []
    for batch in batches:
        for key_ts, eid in batch.keys:
            ts_ms.append(key_ts)
            sources.append(batch.source_id)
            eids.append(eid)
    new: set[tuple[int, int, int]] = set()
    if ts_ms:
        rows = conn.execute(_INSERT_KEYS, (ts_ms, sources, eids)).fetchall()
        new = {(int(r[0]), int(r[1]), int(r[2])) for r in rows}
    results: list[list[bool]] = []
    fresh_rows: list[tuple[object, ...]] = []
    for batch in batches:
        flags: list[bool] = []
        for (key_ts, eid), row in zip(batch.keys, batch.rows, strict=True):
            key = (key_ts, batch.source_id, eid)
            if key in new:
                new.discard(key)  # a repeat later in the group is a duplicate
                flags.append(True)
                fresh_rows.append(row)
            else:
                flags.append(False)
        results.append(flags)
    with conn.cursor() as cur:
        if fresh_rows:
            with cur.copy(_COPY_EVENTS) as copy:
                for row in fresh_rows:
                    copy.write_row(row)
        quarantined = [q for batch in batches for q in batch.quarantine]
        if quarantined:
            with cur.copy(_COPY_QUARANTINE) as copy:
                for q in quarantined:
                    copy.write_row(q)
    return results
