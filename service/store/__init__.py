"""Stores: the Store protocol and its backends, chosen by database URL."""

from __future__ import annotations

from pathlib import Path

from service.store.base import Store


class UnsupportedDatabase(ValueError):
    pass


def open_store(
    url: str,
    *,
    policy_sha256: str = "",
    sqlite_synchronous: str = "full",
    pool_size: int | None = None,
    pool_timeout_s: float | None = None,
) -> Store:
    """Open (and migrate) the store a database URL names: sqlite:///path or postgresql://...

    ``pool_size``: PostgreSQL's most connections at once; ``pool_timeout_s``: how long a
    call waits for one before it fails with StoreUnavailable (their defaults when None).
    SQLite opens its connections per thread and ignores both.
    """
    if url.startswith("sqlite:///"):
        from service.store.sqlite import SQLiteStore

        store: Store = SQLiteStore(
            Path(url.removeprefix("sqlite:///")), sqlite_synchronous, policy_sha256
        )
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            from service.store.postgres import (  # type: ignore[import-not-found,unused-ignore]
                DEFAULT_POOL_SIZE,
                DEFAULT_POOL_TIMEOUT_S,
                PostgresStore,
            )
        except ImportError as exc:
            raise UnsupportedDatabase(
                "PostgreSQL support needs the postgres extra: pip install 'tacit[postgres]'"
            ) from exc
        store = PostgresStore(
            url,
            policy_sha256,
            pool_size or DEFAULT_POOL_SIZE,
            pool_timeout_s or DEFAULT_POOL_TIMEOUT_S,
        )
    else:
        raise UnsupportedDatabase(
            f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:///PATH or postgresql://..."
        )
    store.migrate()
    return store
