"""Bearer tokens in SQLite: only SHA-256 digests are stored.

Every request resolves its token, so each process keeps the principals it resolved for
as long as the tokens' change counter (:mod:`service.store.sqlite.generation`) stays
put; a revocation moves it before it commits, so a revoked token stops working at once
in every process.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from service.store.base import Conflict, NotFound, Principal, Role, TokenInfo
from service.store.origins import decode_origins, encode_origins
from service.store.sqlite.audit import SQLiteAudit
from service.store.sqlite.db import Database, from_ms, to_ms
from service.store.sqlite.generation import Generation

MAX_KEPT = 4096  # principals kept per process; only tokens that resolved are kept


def source_id(conn: sqlite3.Connection, name: str) -> int:
    conn.execute("INSERT INTO sources (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
    row = conn.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
    return int(row[0])


class SQLiteTokens:
    def __init__(self, db: Database, audit: SQLiteAudit) -> None:
        self._db = db
        self._audit = audit
        self._generation = Generation(Path(f"{db.path}.tokens-generation"))
        self._seen = self._generation.read()
        self._kept: dict[bytes, tuple[int, Principal]] = {}

    def create(
        self,
        name: str,
        role: Role,
        digest: bytes,
        source: str | None,
        now: datetime,
        actor: str,
        *,
        origins: Sequence[str] | None = None,
    ) -> None:
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"a token named {name!r} already exists; pick another name")
            sid = source_id(conn, source) if source is not None else None
            conn.execute(
                "INSERT INTO tokens (name, role, source_id, digest, created_at, origins) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, role.value, sid, digest, to_ms(now), encode_origins(origins)),
            )
            detail: dict[str, Any] = {"name": name, "role": role.value, "source": source}
            if origins is not None:
                detail["origins"] = sorted(origins)
            self._audit.append_in(conn, "token_created", actor, detail, now)

    def principal(self, digest: bytes) -> Principal | None:
        generation = self._generation.read()
        if generation != self._seen:
            self._kept.clear()
            self._seen = generation
        kept = self._kept.get(digest)
        if kept is not None and kept[0] == generation:
            return kept[1]
        principal = self._resolve(digest)
        # Keep it only if no change began or ended while it was read.
        if principal is not None and generation % 2 == 0 and self._generation.read() == generation:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[digest] = (generation, principal)
        return principal

    def _resolve(self, digest: bytes) -> Principal | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT name, role, source_id, digest, origins FROM tokens "
                "WHERE digest = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        # The lookup is by digest (its timing says nothing of the token); compare anyway.
        if row is None or not hmac.compare_digest(row[3], digest):
            return None
        return Principal(row[0], Role(row[1]), row[2], decode_origins(row[4]))

    def list(self) -> list[TokenInfo]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT t.name, t.role, s.name, t.created_at, t.revoked_at, t.origins "
                "FROM tokens t LEFT JOIN sources s ON s.id = t.source_id "
                "ORDER BY t.created_at, t.name"
            ).fetchall()
        return [
            TokenInfo(
                r[0],
                Role(r[1]),
                r[2],
                from_ms(r[3]),
                None if r[4] is None else from_ms(r[4]),
                None if r[5] is None else tuple(sorted(decode_origins(r[5]) or ())),
            )
            for r in rows
        ]

    def publishable_origins(self) -> frozenset[str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT origins FROM tokens WHERE origins IS NOT NULL AND revoked_at IS NULL"
            ).fetchall()
        return frozenset(o for (raw,) in rows for o in decode_origins(raw) or ())

    def revoke(self, name: str, now: datetime, actor: str) -> None:
        with self._generation.change(), self._db.write() as conn:
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (to_ms(now), name),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no active token named {name!r}; see `tacit token list`")
            self._audit.append_in(conn, "token_revoked", actor, {"name": name}, now)

    def close(self) -> None:
        self._generation.close()
