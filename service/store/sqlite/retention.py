"""The retention sweeper's SQL for SQLite: batched deletes, salt destruction, WAL purge.

Every delete runs in its own short ``BEGIN IMMEDIATE`` transaction of at most ``batch``
rows, so the ingestion writer (same process: the writer lock; other processes: SQLite's
lock) waits for one batch at most. Where finding the rows means scanning, the scan runs
in a read snapshot first (WAL readers never block the writer) and the write transaction
only deletes by primary key. Deleting a row twice is a no-op, so racing sweeps are
harmless: each row is counted by the sweep that actually removed it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from service.store.sqlite.audit import SQLiteAudit
from service.store.sqlite.db import Database, to_ms
from service.store.sqlite.idempotency import bump_generation

_CLAIM_KEY = "retention_claimed_at"
# Expired events of one (epoch, type) after a given id: an index range, rowids ascending.
_EXPIRED = "epoch = ? AND event_type = ? AND id > ? AND ts < ?"
# A truncating checkpoint holds the write lock while it waits for readers on an older
# snapshot (a long query): it may wait this long per attempt, so writers wait no longer.
PURGE_WAIT_MS = 50
PURGE_PAUSE_S = 0.45  # between attempts, holding nothing
PURGE_PATIENCE_S = 10.0  # then the next run tries again


def delete_ids(conn: sqlite3.Connection, table: str, ids: Sequence[int]) -> int:
    """Delete rows of ``table`` by id inside the caller's transaction; how many went."""
    before = conn.total_changes
    conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids])
    return conn.total_changes - before


class SQLiteRetention:
    def __init__(self, db: Database, audit: SQLiteAudit) -> None:
        self._db = db
        self._audit = audit

    # --- events ---------------------------------------------------------------------

    def _epochs(self, max_epoch: int) -> range:
        with self._db.read() as conn:
            low = conn.execute("SELECT min(epoch) FROM events").fetchone()[0]
        return range(0) if low is None else range(low, max_epoch + 1)

    def count_events(self, event_type: int, before_ts: int, max_epoch: int) -> int:
        total = 0
        for epoch in self._epochs(max_epoch):
            with self._db.read() as conn:
                # One (epoch, event_type) seek per epoch: a range on epoch alone would
                # walk the index entries of every other type too.
                total += conn.execute(
                    "SELECT count(*) FROM events INDEXED BY events_epoch_type "
                    "WHERE epoch = ? AND event_type = ? AND ts < ?",
                    (epoch, event_type, before_ts),
                ).fetchone()[0]
        return total

    def delete_events(
        self, event_type: int, before_ts: int, max_epoch: int, batch: int
    ) -> Iterator[int]:
        for epoch in self._epochs(max_epoch):
            after = -1
            while True:
                with self._db.read() as conn:
                    found = conn.execute(
                        "SELECT count(*), max(id) FROM (SELECT id FROM events "
                        f"INDEXED BY events_epoch_type WHERE {_EXPIRED} ORDER BY id LIMIT ?)",
                        (epoch, event_type, after, before_ts, batch),
                    ).fetchone()
                if not found[0]:
                    break
                with self._db.write() as conn:
                    # One statement, so the sqlite3 module drops the GIL once for the
                    # whole batch: a statement per row would take the GIL back after
                    # each row and queue behind the request threads, holding the
                    # write lock all the while.
                    deleted = conn.execute(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events "
                        f"INDEXED BY events_epoch_type WHERE {_EXPIRED} AND id <= ?)",
                        (epoch, event_type, after, before_ts, found[1]),
                    ).rowcount
                self._relieve_wal()
                yield deleted
                if found[0] < batch:
                    break
                after = found[1]

    def delete_epochs(
        self, before_epoch: int, before_ts: int, batch: int
    ) -> Iterator[dict[int, int]]:
        # Whole epochs go in rowid order: rows of one epoch were mostly stored together,
        # so a batch is a contiguous rowid range and each page is rewritten once, not
        # once per event type as deleting type by type would.
        for epoch in self._epochs(before_epoch - 1):
            with self._db.read() as conn:
                high = conn.execute(
                    "SELECT max(id) FROM events INDEXED BY events_epoch_type WHERE epoch = ?",
                    (epoch,),
                ).fetchone()[0]
            after = -1
            while high is not None:
                with self._db.read() as conn:
                    found = conn.execute(
                        "SELECT count(*), max(id) FROM (SELECT id FROM events NOT INDEXED "
                        "WHERE id > ? AND id <= ? AND epoch = ? ORDER BY id LIMIT ?)",
                        (after, high, epoch, batch),
                    ).fetchone()
                if not found[0]:
                    break
                span = (after, found[1], epoch)
                with self._db.write() as conn:
                    # Counted inside the deleting transaction, so racing sweeps never
                    # count a row twice.
                    counts = dict(
                        conn.execute(
                            "SELECT event_type, count(*) FROM events NOT INDEXED "
                            "WHERE id > ? AND id <= ? AND epoch = ? GROUP BY event_type",
                            span,
                        ).fetchall()
                    )
                    conn.execute("DELETE FROM events WHERE id > ? AND id <= ? AND epoch = ?", span)
                self._relieve_wal()
                yield counts
                if found[0] < batch:
                    break
                after = found[1]

    # --- quarantine and idempotency keys ------------------------------------------------

    def count_quarantine(self, before_ms: int) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT count(*) FROM quarantine WHERE received_at < ?", (before_ms,)
            ).fetchone()
        return int(row[0])

    def delete_quarantine(self, before_ms: int, batch: int) -> Iterator[int]:
        while True:
            # received_at is indexed: the batch is found by a short index range.
            with self._db.write() as conn:
                deleted = conn.execute(
                    "DELETE FROM quarantine WHERE id IN "
                    "(SELECT id FROM quarantine WHERE received_at < ? LIMIT ?)",
                    (before_ms, batch),
                ).rowcount
            if deleted <= 0:
                return
            self._relieve_wal()
            yield deleted

    def count_event_keys(self, before_ms: int) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM event_keys WHERE ts_ms < ?) "
                "+ (SELECT count(*) FROM event_keys_log WHERE ts_ms < ?)",
                (before_ms, before_ms),
            ).fetchone()
        return int(row[0])

    def delete_event_keys(self, before_ms: int, batch: int) -> Iterator[int]:
        # Recent keys not yet folded into the index (at most a fold's worth, and rarely
        # old): in one go, telling every writer to reload its copy of the log.
        with self._db.write() as conn:
            logged = conn.execute(
                "DELETE FROM event_keys_log WHERE ts_ms < ?", (before_ms,)
            ).rowcount
            if logged > 0:
                bump_generation(conn)
        if logged > 0:
            yield logged
        while True:
            with self._db.write() as conn:
                # The key table has no rowid; its primary key leads with ts_ms, so a batch
                # is "everything before the batch-th oldest timestamp" (ties included).
                edge = conn.execute(
                    "SELECT ts_ms FROM event_keys WHERE ts_ms < ? ORDER BY ts_ms LIMIT 1 OFFSET ?",
                    (before_ms, batch - 1),
                ).fetchone()
                bound = before_ms if edge is None else min(before_ms, edge[0] + 1)
                deleted = conn.execute("DELETE FROM event_keys WHERE ts_ms < ?", (bound,)).rowcount
            if deleted <= 0:
                return
            self._relieve_wal()
            yield deleted
            if edge is None:
                return

    # --- salts --------------------------------------------------------------------------

    def live_salts_before(self, epoch: int) -> list[int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT epoch FROM salts WHERE epoch < ? AND destroyed_at IS NULL ORDER BY epoch",
                (epoch,),
            ).fetchall()
        return [r[0] for r in rows]

    def destroy_salts(self, before_epoch: int, at: datetime, actor: str) -> list[int]:
        with self._db.write() as conn:
            doomed = [
                r[0]
                for r in conn.execute(
                    "SELECT epoch FROM salts WHERE epoch < ? AND destroyed_at IS NULL "
                    "ORDER BY epoch",
                    (before_epoch,),
                )
            ]
            # secure_delete overwrites the old cell, so the ciphertext leaves the page;
            # purge_deleted() then takes it out of the WAL.
            conn.execute(
                "UPDATE salts SET nonce = NULL, ciphertext = NULL, destroyed_at = ? "
                "WHERE epoch < ? AND destroyed_at IS NULL",
                (to_ms(at), before_epoch),
            )
            for epoch in doomed:
                self._audit.append_in(conn, "salt_destroyed", actor, {"epoch": epoch}, at)
        return doomed

    # --- scheduling and purge -------------------------------------------------------------

    def claim_run(self, at: datetime, min_gap: timedelta) -> bool:
        now_ms = to_ms(at)
        gap_ms = int(min_gap.total_seconds() * 1000)
        with self._db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_CLAIM_KEY,)).fetchone()
            if row is not None and 0 <= now_ms - int(row[0]) < gap_ms:
                return False
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_CLAIM_KEY, str(now_ms)),
            )
        return True

    def _relieve_wal(self) -> None:
        """Fold the WAL into the database between batches, outside the write lock.

        Otherwise the sweep's many frames make some commit (often an ingestion commit)
        cross the auto-checkpoint threshold and copy them while holding the lock. A
        passive checkpoint never waits for anyone.
        """
        conn = sqlite3.connect(self._db.path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def purge_deleted(self) -> bool:
        """Fold the WAL into the database and truncate it; False if readers outlasted us.

        secure_delete (set on every connection) already zeroed deleted rows in their
        pages; the WAL still holds page images from before the deletes until it is
        folded into the database and truncated. A truncating checkpoint needs the write
        lock and every reader on the latest snapshot, and holds the lock while it waits
        for them: with SQLite's 30 s busy timeout, one analyst query running across a
        sweep stopped every ingestion write for as long as the query ran. So the copying
        is done first by a passive checkpoint (no lock), and each truncating attempt
        takes a turn among the writers and waits at most PURGE_WAIT_MS for readers.
        """
        conn = sqlite3.connect(self._db.path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.execute(f"PRAGMA busy_timeout = {PURGE_WAIT_MS}")
            deadline = time.monotonic() + PURGE_PATIENCE_S
            while True:
                with self._db.turn():
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy == 0:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(PURGE_PAUSE_S)
        finally:
            conn.close()
