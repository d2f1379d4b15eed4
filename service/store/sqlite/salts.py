"""Sealed salts in SQLite. A destroyed salt leaves a tombstone so it is never remade."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from privacy.keyring import SealedSalt
from service.store.sqlite.db import Database, to_ms


class SQLiteSalts:
    def __init__(self, db: Database) -> None:
        self._db = db

    def sealed_salt(self, epoch: int) -> SealedSalt | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT nonce, ciphertext, key_id FROM salts "
                "WHERE epoch = ? AND destroyed_at IS NULL",
                (epoch,),
            ).fetchone()
        return None if row is None else SealedSalt(epoch, row[0], row[1], row[2])

    def add_sealed_salt(self, sealed: SealedSalt) -> SealedSalt:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO salts (epoch, nonce, ciphertext, key_id, created_at) "
                "VALUES (?, ?, ?, ?, strftime('%s','now') * 1000) ON CONFLICT (epoch) DO NOTHING",
                (sealed.epoch, sealed.nonce, sealed.ciphertext, sealed.key_id),
            )
            row = conn.execute(
                "SELECT nonce, ciphertext, key_id, destroyed_at FROM salts WHERE epoch = ?",
                (sealed.epoch,),
            ).fetchone()
        if row[3] is not None:
            from privacy.keyring import EpochExpired

            raise EpochExpired(sealed.epoch)
        return SealedSalt(sealed.epoch, row[0], row[1], row[2])

    def salt_destroyed(self, epoch: int) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT destroyed_at IS NOT NULL FROM salts WHERE epoch = ?", (epoch,)
            ).fetchone()
        return bool(row and row[0])

    def destroy_before(self, epoch: int, now: datetime) -> list[int]:
        with self._db.write() as conn:
            doomed = [
                r[0]
                for r in conn.execute(
                    "SELECT epoch FROM salts "
                    "WHERE epoch < ? AND destroyed_at IS NULL ORDER BY epoch",
                    (epoch,),
                )
            ]
            conn.execute(
                "UPDATE salts SET nonce = NULL, ciphertext = NULL, destroyed_at = ? "
                "WHERE epoch < ? AND destroyed_at IS NULL",
                (to_ms(now), epoch),
            )
        return doomed

    def status(self) -> list[tuple[int, bool]]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT epoch, destroyed_at IS NULL FROM salts ORDER BY epoch")
            return [(r[0], bool(r[1])) for r in rows]

    def all_sealed(self) -> list[SealedSalt]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT epoch, nonce, ciphertext, key_id FROM salts "
                "WHERE destroyed_at IS NULL ORDER BY epoch"
            )
            return [SealedSalt(*r) for r in rows]

    def reseal_all(self, resealed: Sequence[SealedSalt]) -> None:
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE salts SET nonce = ?, ciphertext = ?, key_id = ? "
                "WHERE epoch = ? AND destroyed_at IS NULL",
                [(s.nonce, s.ciphertext, s.key_id, s.epoch) for s in resealed],
            )
