"""Erasure of one data subject in PostgreSQL: delete the rows of given (epoch, user pseudonym)s.

One transaction: MVCC lets ingestion on every node go on beside the delete (only the
deleted rows are locked), and the audit entry commits with the deletion or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.store.postgres.audit import PostgresAudit
from service.store.postgres.db import Database


class PostgresErasure:
    def __init__(self, db: Database, audit: PostgresAudit) -> None:
        self._db = db
        self._audit = audit

    def erase(
        self, subjects: Sequence[tuple[int, int]], at: datetime, actor: str
    ) -> tuple[int, int]:
        epochs = [e for e, _ in subjects]
        users = [u for _, u in subjects]
        with self._db.write() as conn:
            # No index on user_ps (it would slow every insert); the epoch index narrows
            # each day partition to the subject's epoch first.
            events = conn.execute(
                "DELETE FROM events e USING unnest(%s::integer[], %s::bigint[]) AS s(epoch, u) "
                "WHERE e.epoch = s.epoch AND e.user_ps = s.u AND e.epoch = ANY(%s)",
                (epochs, users, sorted(set(epochs))),
            ).rowcount
            quarantined = conn.execute(
                "DELETE FROM quarantine q "
                "USING unnest(%s::integer[], %s::bigint[]) AS s(epoch, u) "
                "WHERE q.epoch = s.epoch AND q.user_ps = s.u",
                (epochs, users),
            ).rowcount
            detail = {"events": events, "quarantined": quarantined, "epochs": len(subjects)}
            self._audit.append_in(conn, "subject_erased", actor, detail, at)
        return events, quarantined
