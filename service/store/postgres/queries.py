"""Read-only aggregation for the query engine, in PostgreSQL.

The engine's SQL (service/queries/sql.py) is the same text on both backends. One
function differs between them: SQLite's ROUND rounds halves away from zero, PostgreSQL's
round(double precision) to even. Migration 3 defines ``round(double precision)`` with
SQLite's exact arithmetic in Tacit's schema, and the aggregation transaction puts that
schema before pg_catalog on its search path (only there), so a value on a half rounds
the same on both backends and their aggregates are equal row for row.
"""

from __future__ import annotations

from service.store.postgres.db import Database


class PostgresQueries:
    dialect = "postgresql"

    def __init__(self, db: Database) -> None:
        self._db = db

    def aggregate(self, sql: str) -> list[tuple[int, ...]]:
        with self._db.read() as conn:
            conn.execute(
                "SELECT set_config('search_path', quote_ident(current_schema()) "
                "|| ', pg_catalog', true)"
            )
            rows = conn.execute(sql).fetchall()
        return [tuple(row) for row in rows]
