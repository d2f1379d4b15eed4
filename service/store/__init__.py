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
) -> Store:
    """Open (and migrate) the store a database URL names: sqlite:///path or postgresql://...

    ``pool_size``: PostgreSQL's most connections at once (its default when None); SQLite
    opens its connections per thread and ignores it.
    """
    if url.startswith("sqlite:///"):
        from service.store.sqlite import SQLiteStore

        store: Store = SQLiteStore(
            Path(url.removeprefix("sqlite:///")), sqlite_synchronous, policy_sha256
        )
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            from service.store.postgres import DEFAULT_POOL_SIZE, PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise UnsupportedDatabase(
                "PostgreSQL support needs the postgres extra: pip install 'tacit[postgres]'"
            ) from exc
        store = PostgresStore(url, policy_sha256, pool_size or DEFAULT_POOL_SIZE)
    else:
        raise UnsupportedDatabase(
            f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:///PATH or postgresql://..."
        )
    store.migrate()
    return store
