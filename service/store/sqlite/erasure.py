"""Erasure of one data subject in SQLite: delete the rows of given (epoch, user pseudonym)s."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.store.sqlite.audit import SQLiteAudit
from service.store.sqlite.db import Database
from service.store.sqlite.retention import delete_ids


class SQLiteErasure:
    def __init__(self, db: Database, audit: SQLiteAudit) -> None:
        self._db = db
        self._audit = audit

    def erase(
        self, subjects: Sequence[tuple[int, int]], at: datetime, actor: str
    ) -> tuple[int, int]:
        # There is no index on user_ps (an index of random pseudonyms would slow every
        # insert), so finding the rows means reading each epoch: do that in a read
        # snapshot, which never blocks ingestion, and keep the write transaction short.
        with self._db.read() as conn:
            high = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            ids = [
                r[0]
                for epoch, user_ps in subjects
                for r in conn.execute(
                    "SELECT id FROM events WHERE epoch = ? AND user_ps = ?", (epoch, user_ps)
                )
            ]
        with self._db.write() as conn:
            # Rows stored since the snapshot: a rowid range, cheap to search.
            for epoch, user_ps in subjects:
                ids += [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM events WHERE id > ? AND epoch = ? AND user_ps = ?",
                        (high, epoch, user_ps),
                    )
                ]
            events = delete_ids(conn, "events", ids)
            quarantined = 0
            for epoch, user_ps in subjects:
                quarantined += conn.execute(
                    "DELETE FROM quarantine WHERE epoch = ? AND user_ps = ?", (epoch, user_ps)
                ).rowcount
            detail = {"events": events, "quarantined": quarantined, "epochs": len(subjects)}
            self._audit.append_in(conn, "subject_erased", actor, detail, at)
        return events, quarantined
