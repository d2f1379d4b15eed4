"""Day partitions of the partitioned tables: created on demand, race-free, across nodes.

``event_keys`` and ``quarantine`` have one partition per UTC day; ``events`` has one
sub-table per event type (``events_t3``), each with one partition per day
(``events_t3_d20261120``), so that per-type retention drops whole partitions.

A partition is made as a plain table and then attached (``ATTACH PARTITION`` takes only a
SHARE UPDATE EXCLUSIVE lock on the parent), never with ``CREATE TABLE ... PARTITION OF``,
which takes an ACCESS EXCLUSIVE lock on the parent and so would wait for every running
DP query and block all ingestion meanwhile. ``IF NOT EXISTS`` alone still races (two nodes
both see no table, one of them fails), so creators serialise on a transaction-scoped
advisory lock and look again once they hold it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from psycopg import errors, sql

from service.store.postgres.db import LOCK_PARTITIONS, LOCK_SPACE, Conn, Database
from service.store.postgres.schema import PARTITIONED, Partitioned

log = logging.getLogger("tacit.store")

_EPOCH_DAY = date(1970, 1, 1)
_DAY_SUFFIX = re.compile(r"_d(?P<ymd>\d{8})$")


def day_of(spec: Partitioned, value: int) -> int:
    """The day number (days since 1970-01-01 UTC) a column value falls in."""
    return value // spec.units_per_day


def parent_name(spec: Partitioned, event_type: int | None) -> str:
    """The table whose children are the day partitions (``events_t3``, ``quarantine``)."""
    return f"{spec.table}_t{event_type}" if spec.by_type else spec.table


def partition_name(spec: Partitioned, event_type: int | None, day: int) -> str:
    return f"{parent_name(spec, event_type)}_d{_EPOCH_DAY + timedelta(days=day):%Y%m%d}"


def day_of_name(name: str) -> int | None:
    match = _DAY_SUFFIX.search(name)
    if match is None:
        return None
    ymd = match["ymd"]
    return (date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])) - _EPOCH_DAY).days


@dataclass(frozen=True)
class DayPartition:
    name: str
    day: int
    lower: int  # partition column bounds: lower <= value < upper
    upper: int
    attached: bool  # False: detached by retention but not dropped yet (or never)


# (table, event type or None, day)
_Key = tuple[str, int | None, int]


class Partitions:
    """Knows which day partitions exist (cached per process) and makes missing ones."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._known: set[_Key] = set()
        self._lock = threading.Lock()

    def ensure_for(self, table: str, values: Iterable[int]) -> None:
        """Partitions for rows with these values of the partition column (day tables)."""
        spec = PARTITIONED[table]
        self._ensure(spec, {(table, None, day_of(spec, v)) for v in values})

    def ensure_for_events(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Partitions for event rows with these (event_type, ts) pairs."""
        spec = PARTITIONED["events"]
        self._ensure(spec, {("events", t, day_of(spec, ts)) for t, ts in pairs})

    def forget(self) -> None:
        """Forget what is known (after retention dropped partitions, or a routing error)."""
        with self._lock:
            self._known.clear()

    def day_partitions(
        self, conn: Conn, table: str, event_type: int | None = None
    ) -> list[DayPartition]:
        """The day partitions of ``table`` (of one event type for events), oldest first,
        with the ones retention detached but did not drop yet (an interrupted sweep)."""
        spec = PARTITIONED[table]
        parent = parent_name(spec, event_type)
        rows = conn.execute(
            "SELECT c.relname, i.inhrelid IS NOT NULL FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' "
            "AND c.relname ~ %s AND (i.inhrelid IS NULL OR i.inhparent = to_regclass(%s))",
            (f"^{parent}_d[0-9]{{8}}$", parent),
        ).fetchall()
        found = []
        for name, attached in rows:
            day = day_of_name(str(name))
            if day is not None:
                lower = day * spec.units_per_day
                found.append(
                    DayPartition(str(name), day, lower, lower + spec.units_per_day, bool(attached))
                )
        return sorted(found, key=lambda p: p.day)

    def _ensure(self, spec: Partitioned, wanted: set[_Key]) -> None:
        with self._lock:
            missing = sorted(k for k in wanted if k not in self._known)
        for key in missing:
            self._create(spec, key[1], key[2])
            with self._lock:
                self._known.add(key)

    def _create(self, spec: Partitioned, event_type: int | None, day: int) -> None:
        for attempt in range(2):
            try:
                with self._db.write() as conn:
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, LOCK_PARTITIONS)
                    )
                    parent = parent_name(spec, event_type)
                    if spec.by_type:
                        _attach(
                            conn,
                            parent,
                            spec.table,
                            sql.SQL("IN ({})").format(sql.Literal(event_type)),
                            sql.SQL("PARTITION BY RANGE ({})").format(sql.Identifier(spec.column)),
                        )
                    lower = day * spec.units_per_day
                    _attach(
                        conn,
                        partition_name(spec, event_type, day),
                        parent,
                        sql.SQL("FROM ({}) TO ({})").format(
                            sql.Literal(lower), sql.Literal(lower + spec.units_per_day)
                        ),
                    )
                return
            except (errors.DuplicateTable, errors.UniqueViolation):
                # Someone made it without our lock (an operator, an older node): look again.
                if attempt == 1:
                    raise


def _attach(
    conn: Conn,
    name: str,
    parent: str,
    bounds: sql.Composable,
    partition_by: sql.Composable | None = None,
) -> None:
    """Create ``name`` like ``parent`` and attach it, unless it is attached already.

    The caller holds the partition lock, so what this sees cannot change underneath it.
    """
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_inherits "
        "WHERE inhrelid = to_regclass(%s) AND inhparent = to_regclass(%s))",
        (name, name, parent),
    ).fetchone()
    assert row is not None
    exists, attached = bool(row[0]), bool(row[1])
    if attached:
        return
    if exists:
        # Only retention detaches our partitions, and only expired ones: this one was
        # detached by a sweep that has not dropped it yet (or was interrupted). Its rows
        # are past retention; drop it here rather than refuse this write. The sweep
        # drops a table only while it is detached, under this same lock.
        log.warning("dropping %s, detached by retention but not dropped yet", name)
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    create = sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    statement = create.format(sql.Identifier(name), sql.Identifier(parent))
    if partition_by is not None:
        statement = sql.SQL("{} {}").format(statement, partition_by)
    conn.execute(statement)
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES {}").format(
            sql.Identifier(parent), sql.Identifier(name), bounds
        )
    )
