"""One SQLite database file: connections, transactions and migrations.

Writes go through a single connection per process behind a lock, each in
``BEGIN IMMEDIATE`` so that concurrent processes queue (on a file lock beside the
database, then on SQLite's lock) instead of failing on a lock upgrade; reads use one
connection per thread. WAL mode lets readers run beside the writer; ``synchronous=FULL``
(the default) makes a commit durable across power loss, ``NORMAL`` across process
crashes only.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.store.rows import from_ms as from_ms  # re-exported for the repositories
from service.store.rows import to_ms as to_ms
from service.store.sqlite.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
WRITER_CACHE_KIB = 64 * 1024
MMAP_BYTES = 1 << 40  # asked for; SQLite caps it at its build's limit (2 GiB here)


class Database:
    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Worker processes queue for the write lock here, where the kernel wakes the next
        # one as soon as it is free; SQLite's own busy handler would poll with sleeps of
        # up to 100 ms, letting one worker starve another. SQLite's locking still guards
        # correctness, also against processes that do not take this lock.
        self._process_lock = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._writer = self._connect()
        # A fold of the recent-keys log (sqlite/idempotency.py) writes 25k keys across the last
        # seconds of the idempotency index, a region that outgrows SQLite's default 2 MiB
        # cache at tens of thousands of events per second.
        self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        # WAL is a property of the file, set once. Switching a fresh file takes an exclusive
        # lock that SQLite's busy handler does not wait for, so processes opening a new
        # database at the same moment take turns here instead of failing with "locked".
        fcntl.flock(self._process_lock, fcntl.LOCK_EX)
        try:
            self._writer.execute("PRAGMA journal_mode = WAL")
        finally:
            fcntl.flock(self._process_lock, fcntl.LOCK_UN)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # Deleted rows are overwritten, not left in free pages (retention, erasure).
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA foreign_keys = OFF")
        # Read pages through a memory map: when another worker process commits, SQLite
        # drops this connection's page cache, and re-reading the B-tree pages it needs is
        # then a page-table lookup instead of a read() and copy per page (bench/ingest.py:
        # ~15 % less CPU per event with two workers). Writes still go through write().
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        return conn

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This process's turn among the writers (of every process), no transaction."""
        with self._write_lock:
            fcntl.flock(self._process_lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._process_lock, fcntl.LOCK_UN)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; commits on exit, rolls back on error."""
        with self.turn():
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot on this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def migrate(self, target: int | None = None) -> None:
        """Apply pending migrations (up to version ``target``, else all); safe when several
        processes start at once."""
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            pending = MIGRATIONS[version:target]
            for number, statements in enumerate(pending, start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (so deleted bytes leave the WAL)."""
        with self._write_lock:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
            os.close(self._process_lock)
