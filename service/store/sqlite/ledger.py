"""The privacy budget ledger in SQLite: spend per analyst per epoch, and the releases.

Check-and-charge runs inside one ``BEGIN IMMEDIATE`` transaction (``Database.write``),
which SQLite serialises across threads and processes: two charges never both see the
same remaining budget, so a cap is never exceeded, and the charge, the release row and
the audit entry commit together or not at all. Each amount is kept with its unit, and a
charge never lands on an epoch holding spend of the other unit. The δ of a selection is
checked against its own caps and added in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.store.base import (
    Charge,
    OverBudget,
    OverDeltaBudget,
    ReleaseRecord,
    UnitMismatch,
    UnitSpend,
)
from service.store.ledger import SpendColumn
from service.store.rows import RELEASE_COLUMNS, RELEASE_INSERT_COLUMNS, release_record, release_row
from service.store.sqlite.audit import SQLiteAudit
from service.store.sqlite.db import Database, to_ms


def _spent(
    conn: sqlite3.Connection, analyst: str, epochs: Sequence[int], column: SpendColumn = "nanos"
) -> dict[int, int]:
    found = {e: 0 for e in epochs}
    for start in range(0, len(epochs), 500):
        chunk = list(epochs[start : start + 500])
        rows = conn.execute(
            f"SELECT epoch, {column} FROM budget_spend WHERE analyst = ? "
            f"AND epoch IN ({','.join('?' * len(chunk))})",
            [analyst, *chunk],
        )
        found.update({int(e): int(n) for e, n in rows})
    return found


def _global_spent(
    conn: sqlite3.Connection, epochs: Sequence[int], column: SpendColumn = "nanos"
) -> dict[int, int]:
    found = {e: 0 for e in epochs}
    for start in range(0, len(epochs), 500):
        chunk = list(epochs[start : start + 500])
        rows = conn.execute(
            f"SELECT epoch, sum({column}) FROM budget_spend "
            f"WHERE epoch IN ({','.join('?' * len(chunk))}) GROUP BY epoch",
            chunk,
        )
        found.update({int(e): int(n) for e, n in rows})
    return found


def _other_unit(conn: sqlite3.Connection, charge: Charge) -> UnitMismatch | None:
    """The refusal of a charge whose epochs hold spend of another unit, if they do."""
    recorded, epochs = None, set()
    for start in range(0, len(charge.epochs), 500):
        chunk = list(charge.epochs[start : start + 500])
        for unit, epoch in conn.execute(
            f"SELECT unit, epoch FROM budget_spend WHERE unit <> ? "
            f"AND epoch IN ({','.join('?' * len(chunk))})",
            [charge.unit, *chunk],
        ):
            recorded = str(unit)
            epochs.add(int(epoch))
    return None if recorded is None else UnitMismatch(recorded, charge.unit, sorted(epochs))


def _find_repeat(
    conn: sqlite3.Connection, analyst: str, request_hash: str, since: datetime
) -> ReleaseRecord | None:
    row = conn.execute(
        f"SELECT {RELEASE_COLUMNS} FROM releases "
        "WHERE analyst = ? AND request_hash = ? AND at >= ? AND rows_json IS NOT NULL "
        "ORDER BY at DESC LIMIT 1",
        (analyst, request_hash, to_ms(since)),
    ).fetchone()
    return None if row is None else release_record(row)


class SQLiteLedger:
    def __init__(self, db: Database, audit: SQLiteAudit) -> None:
        self._db = db
        self._audit = audit

    def spent(self, analyst: str, epochs: Sequence[int]) -> dict[int, int]:
        with self._db.read() as conn:
            return _spent(conn, analyst, epochs)

    def global_spent(self, epochs: Sequence[int]) -> dict[int, int]:
        with self._db.read() as conn:
            return _global_spent(conn, epochs)

    def delta_spent(self, analyst: str, epochs: Sequence[int]) -> dict[int, int]:
        with self._db.read() as conn:
            return _spent(conn, analyst, epochs, "delta_units")

    def global_delta_spent(self, epochs: Sequence[int]) -> dict[int, int]:
        with self._db.read() as conn:
            return _global_spent(conn, epochs, "delta_units")

    def charge(self, charge: Charge, repeat_since: datetime | None = None) -> ReleaseRecord | None:
        if charge.cost_nanos <= 0 or not charge.epochs:
            # A free or epoch-less release would escape the ledger: a bug upstream.
            raise ValueError("a charge needs a positive cost and at least one epoch")
        with self._db.write() as conn:
            if repeat_since is not None:
                # Checked again under the write lock: an identical request that finished
                # while this one was being computed is answered by it, not charged.
                earlier = _find_repeat(conn, charge.analyst, charge.request_hash, repeat_since)
                if earlier is not None:
                    return earlier
            # Spend of another unit makes the sums below meaningless: refused first.
            mismatch = _other_unit(conn, charge)
            if mismatch is not None:
                raise mismatch  # rolls the (empty) transaction back
            short = charge.shortfalls(
                _spent(conn, charge.analyst, charge.epochs), _global_spent(conn, charge.epochs)
            )
            if short:
                raise OverBudget(short)  # rolls the (empty) transaction back
            # A charge without δ cannot pass a δ cap: its spend is not read then.
            delta_short = (
                charge.delta_shortfalls(
                    _spent(conn, charge.analyst, charge.epochs, "delta_units"),
                    _global_spent(conn, charge.epochs, "delta_units"),
                )
                if charge.delta_units
                else []
            )
            if delta_short:
                raise OverDeltaBudget(delta_short)  # rolls the (empty) transaction back
            conn.executemany(
                "INSERT INTO budget_spend (analyst, epoch, nanos, unit, delta_units) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (analyst, epoch) DO UPDATE SET "
                "nanos = nanos + excluded.nanos, delta_units = delta_units + excluded.delta_units",
                [
                    (charge.analyst, e, charge.cost_nanos, charge.unit, charge.delta_units)
                    for e in charge.epochs
                ],
            )
            conn.execute(
                f"INSERT INTO releases ({RELEASE_INSERT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                release_row(charge),
            )
            self._audit.append_in(conn, "release", charge.analyst, charge.audit_detail, charge.at)
        return None

    def units(self) -> list[UnitSpend]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT unit, count(DISTINCT epoch), max(epoch) FROM budget_spend "
                "GROUP BY unit ORDER BY unit"
            ).fetchall()
        return [UnitSpend(str(u), int(n), int(last)) for u, n, last in rows]

    def find_repeat(self, analyst: str, request_hash: str, since: datetime) -> ReleaseRecord | None:
        with self._db.read() as conn:
            return _find_repeat(conn, analyst, request_hash, since)

    def store_values(
        self, release_id: str, rows: Sequence[dict[str, Any]], notes: Sequence[str]
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE releases SET rows_json = ?, notes_json = ? WHERE release_id = ?",
                (json.dumps(list(rows)), json.dumps(list(notes)), release_id),
            )

    def release(self, release_id: str) -> ReleaseRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {RELEASE_COLUMNS} FROM releases WHERE release_id = ?", (release_id,)
            ).fetchone()
        return None if row is None else release_record(row)

    def forget_before(self, epoch: int) -> list[int]:
        with self._db.write() as conn:
            gone = [
                int(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT epoch FROM budget_spend WHERE epoch < ? ORDER BY epoch",
                    (epoch,),
                )
            ]
            conn.execute("DELETE FROM budget_spend WHERE epoch < ?", (epoch,))
            conn.execute("DELETE FROM releases WHERE last_epoch < ?", (epoch,))
        return gone
