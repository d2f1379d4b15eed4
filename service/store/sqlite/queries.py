"""Read-only aggregation for the query engine, in SQLite."""

from __future__ import annotations

from service.store.sqlite.db import Database


class SQLiteQueries:
    dialect = "sqlite"

    def __init__(self, db: Database) -> None:
        self._db = db

    def aggregate(self, sql: str) -> list[tuple[int, ...]]:
        with self._db.read() as conn:
            return [tuple(row) for row in conn.execute(sql)]
