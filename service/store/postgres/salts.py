"""Sealed salts in PostgreSQL. A destroyed salt leaves a tombstone so it is never remade.

Exactly one salt per epoch however many nodes race to make it: each inserts its own
candidate with ``ON CONFLICT DO NOTHING`` (which waits for a competing insert to commit or
abort) and then every one of them reads back the single row that won.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from privacy.keyring import EpochExpired, SealedSalt
from service.store.postgres.db import Database, to_ms


class PostgresSalts:
    def __init__(self, db: Database) -> None:
        self._db = db

    def sealed_salt(self, epoch: int) -> SealedSalt | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT nonce, ciphertext, key_id FROM salts "
                "WHERE epoch = %s AND destroyed_at IS NULL",
                (epoch,),
            ).fetchone()
        return None if row is None else SealedSalt(epoch, row[0], row[1], row[2])

    def add_sealed_salt(self, sealed: SealedSalt) -> SealedSalt:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO salts (epoch, nonce, ciphertext, key_id, created_at) "
                "VALUES (%s, %s, %s, %s, (extract(epoch FROM now()) * 1000)::bigint) "
                "ON CONFLICT (epoch) DO NOTHING",
                (sealed.epoch, sealed.nonce, sealed.ciphertext, sealed.key_id),
            )
            # Read committed: this statement sees the winner even if it was another node.
            row = conn.execute(
                "SELECT nonce, ciphertext, key_id, destroyed_at FROM salts WHERE epoch = %s",
                (sealed.epoch,),
            ).fetchone()
        assert row is not None
        if row[3] is not None:
            raise EpochExpired(sealed.epoch)
        return SealedSalt(sealed.epoch, row[0], row[1], row[2])

    def salt_destroyed(self, epoch: int) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT destroyed_at IS NOT NULL FROM salts WHERE epoch = %s", (epoch,)
            ).fetchone()
        return bool(row and row[0])

    def destroy_before(self, epoch: int, now: datetime) -> list[int]:
        with self._db.write() as conn:
            rows = conn.execute(
                "UPDATE salts SET nonce = NULL, ciphertext = NULL, destroyed_at = %s "
                "WHERE epoch < %s AND destroyed_at IS NULL RETURNING epoch",
                (to_ms(now), epoch),
            ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def status(self) -> list[tuple[int, bool]]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT epoch, destroyed_at IS NULL FROM salts ORDER BY epoch"
            ).fetchall()
        return [(int(r[0]), bool(r[1])) for r in rows]

    def all_sealed(self) -> list[SealedSalt]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT epoch, nonce, ciphertext, key_id FROM salts "
                "WHERE destroyed_at IS NULL ORDER BY epoch"
            ).fetchall()
        return [SealedSalt(*r) for r in rows]

    def reseal_all(self, resealed: Sequence[SealedSalt]) -> None:
        with self._db.write() as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE salts SET nonce = %s, ciphertext = %s, key_id = %s "
                "WHERE epoch = %s AND destroyed_at IS NULL",
                [(s.nonce, s.ciphertext, s.key_id, s.epoch) for s in resealed],
            )
