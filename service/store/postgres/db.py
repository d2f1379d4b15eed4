"""One PostgreSQL database shared by every node: a connection pool, transactions, migrations.

Every API process (on any machine) holds its own small pool. Nothing that must be atomic
relies on process memory: salts, duplicates, budgets and the audit chain are settled by
the database (unique keys, ``ON CONFLICT``, row locks and transaction-scoped advisory
locks), so any number of nodes may run side by side. Migrations run at start under an
advisory lock, so nodes starting at once apply each migration exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeAlias, TypeVar

import psycopg
from psycopg import IsolationLevel, errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from service.store.base import StoreError
from service.store.postgres.schema import MIGRATIONS
from service.store.rows import from_ms as from_ms  # re-exported for the repositories
from service.store.rows import to_ms as to_ms

T = TypeVar("T")
Conn: TypeAlias = psycopg.Connection[TupleRow]

# Advisory lock keys: (LOCK_SPACE, purpose). Advisory locks are per database, and the
# two-int form keeps ours apart from any single-bigint locks other software might take.
LOCK_SPACE = 0x7AC17
LOCK_MIGRATE = 1
LOCK_AUDIT = 2
LOCK_PARTITIONS = 3
LOCK_LEDGER = 4
LOCK_RETENTION = 5

CONNECT_TIMEOUT_S = 10
# Transient conflicts between nodes: the whole transaction is retried.
RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)
MAX_ATTEMPTS = 5


class DatabaseUnavailable(StoreError):
    """PostgreSQL cannot be reached or refuses the connection."""


def describe(url: str) -> str:
    """host:port/dbname of a URL, for messages (never the password)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


class Database:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.where = describe(url)
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            # Transactions are always explicit (conn.transaction()): no idle-in-transaction.
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="tacit",
        )
        self._opened = False
        self._open_lock = threading.Lock()

    def _open(self) -> None:
        # Opened on first use, not in __init__: a node that cannot reach the database
        # fails in migrate() with a clear message instead of leaving a pool retrying.
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self.pool.open(wait=False)
                    self._opened = True

    def connect(self) -> Conn:
        """A connection of its own (outside the pool), with a clear error if there is none."""
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {reason}; "
                "check TACIT_DATABASE_URL / --database-url and that the server is running"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[Conn]:
        """A read-committed write transaction; commits on exit, rolls back on error."""
        self._open()
        with self.pool.connection() as conn:
            conn.read_only = False
            conn.isolation_level = IsolationLevel.READ_COMMITTED
            with conn.transaction():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Conn]:
        """A read-only transaction on one consistent snapshot."""
        self._open()
        with self.pool.connection() as conn:
            conn.read_only = True
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                yield conn

    @contextmanager
    def session(self) -> Iterator[Conn]:
        """A pooled connection outside any transaction: each statement commits on its own
        (for the statements that refuse a transaction block, such as VACUUM and
        ``DETACH PARTITION ... CONCURRENTLY``)."""
        self._open()
        with self.pool.connection() as conn:
            conn.read_only = False
            yield conn

    def transact(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` in a write transaction, retrying it on deadlock or serialization failure."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.write() as conn:
                    return work(conn)
            except RETRYABLE:
                if attempt == MAX_ATTEMPTS:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def migrate(self, target: int | None = None) -> None:
        """Apply pending migrations (up to version ``target``, else all); safe when several
        nodes start at once."""
        with self.connect() as conn, conn.transaction():
            # Everything below, even the version table, is created under this lock.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, LOCK_MIGRATE))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tacit_schema ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM tacit_schema").fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"the database at {self.where} has schema version {version}, newer than "
                    f"this Tacit ({len(MIGRATIONS)}): upgrade Tacit on this node"
                )
            pending = MIGRATIONS[version:target]
            for number, statements in enumerate(pending, start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO tacit_schema (version) VALUES (%s)", (number,))

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self.pool.close()
                self._opened = False
