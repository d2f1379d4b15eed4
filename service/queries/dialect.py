"""The SQL flavours the aggregation runs on, and the statement it hands them.

The engines differ in one place: where the events are read from, and how integers
divide (SQLite and PostgreSQL truncate with `/`; DuckDB's `/` is float division and `//`
truncates; Spark SQL's is `DIV`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DUCKDB", "POSTGRES", "SPARK", "SQLITE", "Dialect", "Statement"]


@dataclass(frozen=True)
class Dialect:
    """What differs between backends in the aggregation SQL."""

    name: str
    events: str  # the FROM clause that reads the events table
    div: str = "/"  # the operator of truncating integer division

    def idiv(self, a: str, b: str | int) -> str:
        """a / b on integers, truncated toward zero (a, b >= 0 here)."""
        return f"{a} {self.div} {b}"


# SQLite has been seen to pick a worse index for this shape of query: name the one that
# serves "epoch range + event types" explicitly.
SQLITE = Dialect("sqlite", "events INDEXED BY events_epoch_type")
POSTGRES = Dialect("postgresql", "events")
# DuckDB over the lake (service/lake/engine.py): `events` is a view of the snapshot's
# Parquet files and the hot rows not sealed yet.
DUCKDB = Dialect("duckdb", "events", div="//")
# Spark SQL over the same files (service/lake/spark.py): `/` is float division there too.
SPARK = Dialect("spark", "events", div="DIV")


@dataclass(frozen=True)
class Statement:
    """One aggregation statement: rows of (cell, *columns), one per non-empty cell."""

    sql: str
    columns: tuple[str, ...]
