"""One PostgreSQL database shared by every node: a connection pool, transactions, migrations.

Every API process (on any machine) holds its own small pool. Nothing that must be atomic
relies on process memory: salts, duplicates, budgets and the audit chain are settled by
the database (unique keys, ``ON CONFLICT``, row locks and transaction-scoped advisory
locks), so any number of nodes may run side by side. Migrations run at start under an
advisory lock, so nodes starting at once apply each migration exactly once.

When the database goes away (a crash, a restart, a failover), every call fails with
:class:`StoreUnavailable` instead of the driver's error (:func:`is_outage` says which
errors mean that), and the pool reconnects by itself: nothing needs restarting.
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
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from service.store.base import StoreError, StoreUnavailable
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
DEFAULT_POOL_TIMEOUT_S = 5.0
# A reconnection attempt backs off (1, 2, 4 s ...) and gives up after this long; the next
# request that finds no connection starts a new one. So a database that comes back is
# seen within a few seconds however long it was away (psycopg_pool's default of 5 min
# lets the backoff grow to minutes).
RECONNECT_TIMEOUT_S = 10.0
# Transient conflicts between nodes: the whole transaction is retried.
RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)
MAX_ATTEMPTS = 5

# SQLSTATEs of a server going away or turning connections down: admin_shutdown,
# crash_shutdown, cannot_connect_now (starting, or in recovery), too_many_connections.
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_outage(exc: BaseException) -> bool:
    """Whether a driver error means the database is unavailable, not that the request
    or the code is wrong: no connection came free in time, the connection was lost or
    refused (no SQLSTATE: the client saw it; class 08: connection exceptions), or the
    server is shutting down, starting or full. A closed pool is this process shutting
    down, and serialization failures and deadlocks are retried (:data:`RETRYABLE`)."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError) or isinstance(exc, PoolClosed):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _OUTAGE_STATES


def describe(url: str) -> str:
    """host:port/dbname of a URL, for messages (never the password)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


class Database:
    def __init__(
        self, url: str, pool_size: int = 10, pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S
    ) -> None:
        self.url = url
        self.where = describe(url)
        self.pool_timeout_s = pool_timeout_s
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            # Transactions are always explicit (conn.transaction()): no idle-in-transaction.
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="tacit",
            timeout=pool_timeout_s,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
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
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {reason}; "
                "check TACIT_DATABASE_URL / --database-url and that the server is running"
            ) from exc

    @contextmanager
    def _pooled(self) -> Iterator[Conn]:
        """A connection from the pool; an outage, while getting it or while using it,
        is raised as :class:`StoreUnavailable` (the pool replaces a broken connection)."""
        self._open()
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            if not is_outage(exc):
                raise
            # The driver's message is not kept: it may quote what was being sent.
            why = (
                f"no connection within {self.pool_timeout_s:g} s"
                if isinstance(exc, PoolTimeout)
                else "the connection was lost or refused"
            )
            raise StoreUnavailable(f"PostgreSQL at {self.where} is unavailable: {why}") from exc

    @contextmanager
    def write(self) -> Iterator[Conn]:
        """A read-committed write transaction; commits on exit, rolls back on error."""
        with self._pooled() as conn:
            conn.read_only = False
            conn.isolation_level = IsolationLevel.READ_COMMITTED
            with conn.transaction():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Conn]:
        """A read-only transaction on one consistent snapshot."""
        with self._pooled() as conn:
            conn.read_only = True
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                yield conn

    @contextmanager
    def session(self) -> Iterator[Conn]:
        """A pooled connection outside any transaction: each statement commits on its own
        (for the statements that refuse a transaction block, such as VACUUM and
        ``DETACH PARTITION ... CONCURRENTLY``)."""
        with self._pooled() as conn:
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
