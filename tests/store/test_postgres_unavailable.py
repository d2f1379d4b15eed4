"""PostgreSQL only: which driver errors mean "the database is unavailable", in one place.

The store raises StoreUnavailable, never the driver's error, when no connection comes
free within the pool timeout or the server ends the connection; its message says where
the database is and why, never the statement. A connection the server ended is replaced
by the pool, so the next call succeeds. Serialization failures and deadlocks are not
outages (the store retries them), nor is a closed pool (this process shutting down) or
an error in the statement.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolClosed, PoolTimeout

from service.store.base import StoreUnavailable
from service.store.postgres import PostgresStore
from service.store.postgres.db import describe, is_outage


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (PoolTimeout("couldn't get a connection after 5.00 sec"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (errors.AdminShutdown("terminating connection due to administrator command"), True),
        (errors.CrashShutdown("terminating connection"), True),
        (errors.CannotConnectNow("the database system is starting up"), True),
        (errors.TooManyConnections("sorry, too many clients already"), True),
        (errors.ConnectionFailure("connection failure"), True),
        (errors.SerializationFailure("could not serialize access"), False),
        (errors.DeadlockDetected("deadlock detected"), False),
        (errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (PoolClosed("the pool 'tacit' is already closed"), False),
        (errors.UndefinedTable('relation "events" does not exist'), False),
        (errors.UniqueViolation("duplicate key"), False),
        (ValueError("not a driver error"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_only_a_lost_refused_or_missing_connection_is_an_outage(
    error: Exception, outage: bool
) -> None:
    assert is_outage(error) is outage


def test_no_free_connection_within_the_pool_timeout_is_store_unavailable(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, pool_size=1, pool_timeout_s=0.2)
    try:
        store.events.count()  # the pool's one connection exists
        with store.db.read(), pytest.raises(StoreUnavailable) as refused:  # ...held here
            store.events.count()
        message = str(refused.value)
        assert describe(postgres_url) in message and "no connection within 0.2 s" in message
        assert "SELECT" not in message and "events" not in message
        assert store.events.count() == 0  # free again
    finally:
        store.close()


def test_a_connection_the_server_ends_is_store_unavailable_and_the_pool_replaces_it(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        with store.db.read() as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable, match="the connection was lost or refused"):
            store.events.count()
        assert store.events.count() == 0  # on a new connection, without a restart
    finally:
        store.close()
