"""Idempotency keys in SQLite: an append-only log of recent keys in front of the index.

The index ``event_keys (ts_ms, source_id, eid)`` is led by the client's timestamp, so a
retry, which carries the event's own timestamp, finds its first copy. But client clocks
jitter by seconds: the keys of one commit landed on hundreds of distinct pages of the
index's last seconds, and each of those pages was written to the WAL and checkpointed
again: ~12 KB written per ~70-byte event at 30k events/s (bench/ingest.py), and the disk,
not the CPU, became the limit.

So a new key is appended, in arrival order, to ``event_keys_log`` (a rowid table without
an index: a commit fills a few pages at its end), and the writer keeps the log's keys in
memory. A key is new when it is in neither that set nor the index. Once the log holds
``fold_rows`` keys, :meth:`RecentKeys.fold` moves them into the index in one sorted
INSERT, in which neighbouring keys share their pages, and empties the log.

Several writers stay exact. Under the write lock each first reads the log rows appended
since it last looked (under `tacit serve` one writer process makes every ingestion write,
so usually there are none), and whatever removes log rows (a fold, retention) bumps a
generation number in ``meta`` that makes every writer reload the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import compress

from service.store.sqlite import bulk
from service.store.sqlite.db import Database

Key = tuple[int, int, int]  # (ts_ms, source_id, eid)

FOLD_ROWS = 25_000  # log rows that make a fold due (~4 MB of keys in memory)
GENERATION = "event_keys_log_generation"  # meta key, bumped whenever log rows go away

_APPEND = {
    n: f"INSERT INTO event_keys_log (ts_ms, source_id, eid) VALUES {bulk.values(3, n)}"
    for n in bulk.CHUNKS
}
# The keys of a group that are in the index: one primary-key lookup per key (CROSS JOIN
# keeps the VALUES list as the outer loop; a row-value IN would scan the table).
_FIND = {
    n: "SELECT k.ts_ms, k.source_id, k.eid FROM (VALUES "
    + bulk.values(3, n)
    + ") AS v CROSS JOIN event_keys AS k "
    "ON k.ts_ms = v.column1 AND k.source_id = v.column2 AND k.eid = v.column3"
    for n in bulk.CHUNKS
}


def bump_generation(conn: sqlite3.Connection) -> None:
    """Tell every writer to reload the log (call in the transaction that removes rows)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (GENERATION,),
    )


class RecentKeys:
    """One writer's copy of the log's keys, and the decisions made with it."""

    def __init__(self, fold_rows: int = FOLD_ROWS) -> None:
        self.fold_rows = fold_rows
        self._keys: set[Key] = set()
        self._rowid = 0  # the last log row read into ``_keys``
        self._generation: str | None = None
        self._staged: tuple[set[Key], int] | None = None  # appended, not yet committed

    def insert_new(self, conn: sqlite3.Connection, keys: Sequence[Key]) -> list[bool] | None:
        """Append the keys that are new (inside the write transaction).

        None when every key was new, else a flag per key: the first copy of a key in
        ``keys`` counts as new, any other copy, or a key stored earlier, as a duplicate.
        Call :meth:`committed` once the transaction has committed.
        """
        self._catch_up(conn)
        recent = self._keys
        candidates = [key for key in keys if key not in recent]
        stored = set(bulk.select(conn, _FIND, candidates)) if candidates else set()
        distinct = set(candidates)
        flags: list[bool] | None = None
        if stored or len(distinct) < len(keys):  # not the usual case: every key new, once
            flags = []
            seen = stored
            for key in keys:
                fresh = key not in recent and key not in seen
                if fresh:
                    seen.add(key)
                flags.append(fresh)
        new = list(keys) if flags is None else list(compress(keys, flags))
        cursor = bulk.execute(conn, _APPEND, new)
        last = None if cursor is None else cursor.lastrowid  # the last appended row's
        self._staged = (distinct if flags is None else set(new), last or self._rowid)
        return flags

    def committed(self) -> None:
        """The transaction of the last :meth:`insert_new` committed: remember its keys."""
        if self._staged is not None:
            new, self._rowid = self._staged
            self._keys.update(new)
            self._staged = None

    def rolled_back(self) -> None:
        self._staged = None

    @property
    def fold_due(self) -> bool:
        return len(self._keys) >= self.fold_rows

    @property
    def fold_overdue(self) -> bool:
        """Twice the fold size: a writer that never calls maintain() (a bulk load, a
        test) folds inside write() instead, so the log and the memory stay bounded."""
        return len(self._keys) >= 2 * self.fold_rows

    def fold(self, db: Database) -> int:
        """Move the log's keys into the index and empty the log; how many moved."""
        with db.write() as conn:
            moved = conn.execute(
                "INSERT OR IGNORE INTO event_keys (ts_ms, source_id, eid) "
                "SELECT ts_ms, source_id, eid FROM event_keys_log ORDER BY 1, 2, 3"
            ).rowcount
            conn.execute("DELETE FROM event_keys_log")
            bump_generation(conn)
        self._generation = None  # reload (empty) on the next write
        self._keys.clear()
        return int(moved)

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (GENERATION,)).fetchone()
        generation = "0" if row is None else str(row[0])
        if generation != self._generation:  # rows went away (or first use): read it all
            self._keys = set()
            self._rowid = 0
            self._generation = generation
        for rowid, ts_ms, source_id, eid in conn.execute(
            "SELECT rowid, ts_ms, source_id, eid FROM event_keys_log WHERE rowid > ? "
            "ORDER BY rowid",
            (self._rowid,),
        ):
            self._keys.add((ts_ms, source_id, eid))
            self._rowid = rowid
