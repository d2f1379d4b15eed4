"""The privacy budget ledger in PostgreSQL: spend per analyst per epoch, and the releases.

Check-and-charge is one transaction that first takes a transaction-scoped advisory lock
shared by every node: two charges (on any nodes) never both see the same remaining
budget, so no cap is ever exceeded, and the charge, the release row and the audit entry
commit together or not at all. Charges are rare and short, so one lock costs nothing.
Each amount is kept with its unit, and a charge never lands on an epoch holding spend of
the other unit. The δ of a selection is checked against its own caps and added in the
same transaction.
"""

from __future__ import annotations

import json
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
from service.store.postgres.audit import PostgresAudit
from service.store.postgres.db import LOCK_LEDGER, LOCK_SPACE, Conn, Database, to_ms
from service.store.rows import RELEASE_COLUMNS, RELEASE_INSERT_COLUMNS, release_record, release_row


def _spent(
    conn: Conn, analyst: str, epochs: Sequence[int], column: SpendColumn = "nanos"
) -> dict[int, int]:
    found = {e: 0 for e in epochs}
    rows = conn.execute(
        f"SELECT epoch, {column} FROM budget_spend WHERE analyst = %s AND epoch = ANY(%s)",
        (analyst, list(epochs)),
    ).fetchall()
    found.update({int(e): int(n) for e, n in rows})
    return found


def _global_spent(
    conn: Conn, epochs: Sequence[int], column: SpendColumn = "nanos"
) -> dict[int, int]:
    found = {e: 0 for e in epochs}
    rows = conn.execute(
        f"SELECT epoch, sum({column}) FROM budget_spend WHERE epoch = ANY(%s) GROUP BY epoch",
        (list(epochs),),
    ).fetchall()
    found.update({int(e): int(n) for e, n in rows})
    return found


def _other_unit(conn: Conn, charge: Charge) -> UnitMismatch | None:
    """The refusal of a charge whose epochs hold spend of another unit, if they do."""
    rows = conn.execute(
        "SELECT unit, epoch FROM budget_spend WHERE unit <> %s AND epoch = ANY(%s)",
        (charge.unit, list(charge.epochs)),
    ).fetchall()
    if not rows:
        return None
    return UnitMismatch(str(rows[0][0]), charge.unit, sorted({int(e) for _, e in rows}))


def _find_repeat(
    conn: Conn, analyst: str, request_hash: str, since: datetime
) -> ReleaseRecord | None:
    row = conn.execute(
        f"SELECT {RELEASE_COLUMNS} FROM releases "
        "WHERE analyst = %s AND request_hash = %s AND at >= %s AND rows_json IS NOT NULL "
        "ORDER BY at DESC LIMIT 1",
        (analyst, request_hash, to_ms(since)),
    ).fetchone()
    return None if row is None else release_record(row)


class PostgresLedger:
    def __init__(self, db: Database, audit: PostgresAudit) -> None:
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
            # Held until commit; taken before reading, so the read below is the truth.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, LOCK_LEDGER))
            if repeat_since is not None:
                # Checked again under the lock: an identical request that finished while
                # this one was being computed is answered by it, not charged.
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
            conn.execute(
                "INSERT INTO budget_spend (analyst, epoch, nanos, unit, delta_units) "
                "SELECT %s, e, %s, %s, %s FROM unnest(%s::integer[]) AS e "
                "ON CONFLICT (analyst, epoch) DO UPDATE SET "
                "nanos = budget_spend.nanos + excluded.nanos, "
                "delta_units = budget_spend.delta_units + excluded.delta_units",
                (
                    charge.analyst,
                    charge.cost_nanos,
                    charge.unit,
                    charge.delta_units,
                    list(charge.epochs),
                ),
            )
            conn.execute(
                f"INSERT INTO releases ({RELEASE_INSERT_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                "UPDATE releases SET rows_json = %s, notes_json = %s WHERE release_id = %s",
                (json.dumps(list(rows)), json.dumps(list(notes)), release_id),
            )

    def release(self, release_id: str) -> ReleaseRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {RELEASE_COLUMNS} FROM releases WHERE release_id = %s", (release_id,)
            ).fetchone()
        return None if row is None else release_record(row)

    def forget_before(self, epoch: int) -> list[int]:
        with self._db.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, LOCK_LEDGER))
            gone = conn.execute(
                "DELETE FROM budget_spend WHERE epoch < %s RETURNING epoch", (epoch,)
            ).fetchall()
            conn.execute("DELETE FROM releases WHERE last_epoch < %s", (epoch,))
        return sorted({int(r[0]) for r in gone})
