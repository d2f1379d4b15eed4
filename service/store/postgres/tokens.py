"""Bearer tokens in PostgreSQL: only SHA-256 digests are stored."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import errors

from service.store.base import Conflict, NotFound, Principal, Role, TokenInfo
from service.store.origins import decode_origins, encode_origins
from service.store.postgres.audit import PostgresAudit
from service.store.postgres.db import Conn, Database, from_ms, to_ms


def source_id(conn: Conn, name: str) -> int:
    conn.execute("INSERT INTO sources (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
    row = conn.execute("SELECT id FROM sources WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


class PostgresTokens:
    def __init__(self, db: Database, audit: PostgresAudit) -> None:
        self._db = db
        self._audit = audit

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
        taken = Conflict(f"a token named {name!r} already exists; pick another name")
        try:
            with self._db.write() as conn:
                if conn.execute("SELECT 1 FROM tokens WHERE name = %s", (name,)).fetchone():
                    raise taken
                sid = source_id(conn, source) if source is not None else None
                conn.execute(
                    "INSERT INTO tokens (name, role, source_id, digest, created_at, origins) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (name, role.value, sid, digest, to_ms(now), encode_origins(origins)),
                )
                detail: dict[str, Any] = {"name": name, "role": role.value, "source": source}
                if origins is not None:
                    detail["origins"] = sorted(origins)
                self._audit.append_in(conn, "token_created", actor, detail, now)
        except errors.UniqueViolation as exc:  # another node created it meanwhile
            raise taken from exc

    def principal(self, digest: bytes) -> Principal | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT name, role, source_id, digest, origins FROM tokens "
                "WHERE digest = %s AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        # The lookup is by digest (its timing says nothing of the token); compare anyway.
        if row is None or not hmac.compare_digest(bytes(row[3]), digest):
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
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL",
                (to_ms(now), name),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no active token named {name!r}; see `tacit token list`")
            self._audit.append_in(conn, "token_revoked", actor, {"name": name}, now)
