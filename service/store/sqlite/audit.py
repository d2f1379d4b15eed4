"""The append-only, hash-chained audit log in SQLite."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from service.ops.audit import GENESIS, canonical, chain_hash
from service.store.base import AuditEntry
from service.store.rows import audit_entry
from service.store.sqlite.db import Database, from_ms, to_ms


class SQLiteAudit:
    def __init__(self, db: Database, policy_sha256: str = "") -> None:
        self._db = db
        self.policy_sha256 = policy_sha256

    def append(self, kind: str, actor: str, detail: dict[str, Any], at: datetime) -> AuditEntry:
        with self._db.write() as conn:
            return self.append_in(conn, kind, actor, detail, at)

    def append_in(
        self, conn: sqlite3.Connection, kind: str, actor: str, detail: dict[str, Any], at: datetime
    ) -> AuditEntry:
        """Append inside the caller's write transaction (BEGIN IMMEDIATE serialises appends)."""
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
        at_ms = to_ms(at)
        digest = chain_hash(prev, canonical(seq, at_ms, kind, actor, self.policy_sha256, detail))
        conn.execute(
            "INSERT INTO audit_log (seq, at, kind, actor, policy_sha256, detail, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                at_ms,
                kind,
                actor,
                self.policy_sha256,
                json.dumps(detail, sort_keys=True),
                prev,
                digest,
            ),
        )
        return AuditEntry(
            seq, from_ms(at_ms), kind, actor, self.policy_sha256, detail, prev, digest
        )

    def page(self, after: int, limit: int) -> list[AuditEntry]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT seq, at, kind, actor, policy_sha256, detail, prev_hash, hash "
                "FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [audit_entry(r) for r in rows]
