"""The keyring: one random salt per epoch, sealed under the master key.

Salts are created on first use of their epoch, stored only encrypted (AES-GCM, epoch id as
associated data) through a :class:`SaltVault`, and decrypted into memory when needed. An
epoch is alive while it is younger than the policy's salt retention; once it is not, the
keyring refuses it even if a sealed salt still exists, and the retention sweep destroys
the sealed salt (crypto-shredding). Time is always passed in (``now``), never read here.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.events import IDENTIFIER_FIELDS
from privacy.policy import Identifiers
from privacy.pseudonym import SALT_BYTES, EpochKeys

# Keys are derived for the identifier fields and for the event id (idempotency key) and
# the sampling decision, which must also not be computable without the salt.
KEYED_FIELDS: tuple[str, ...] = (*IDENTIFIER_FIELDS, "event_id", "sampling")


class KeyringError(Exception):
    """Base of the keyring's errors."""


class EpochExpired(KeyringError):
    """The epoch is older than the salt retention: its salt is (or will be) destroyed."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"epoch {epoch} is past its salt retention; its salt no longer exists")
        self.epoch = epoch


class MasterKeyMismatch(KeyringError):
    """A sealed salt does not open with this master key."""


class MasterKey:
    """The 32-byte AES key that seals every salt. Held outside the database."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)
        # A public fingerprint for logs and the salts table; reveals nothing of the key.
        self.key_id = hashlib.sha256(b"tacit/key-id/" + key).hexdigest()[:16]

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        """Parse a base64 (standard or urlsafe) encoded 32-byte key."""
        cleaned = text.strip()
        try:
            raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_") + "==")
        except ValueError as exc:
            raise ValueError("the master key is not valid base64") from exc
        return cls(raw)

    @staticmethod
    def generate_base64() -> str:
        """A new random key, base64 encoded, for a key file."""
        return base64.b64encode(os.urandom(32)).decode()

    def seal(self, epoch: int, salt: bytes) -> SealedSalt:
        """Encrypt a salt, binding it to its epoch."""
        nonce = os.urandom(12)
        ciphertext = self._aead.encrypt(nonce, salt, _aad(epoch))
        return SealedSalt(epoch=epoch, nonce=nonce, ciphertext=ciphertext, key_id=self.key_id)

    def open(self, sealed: SealedSalt) -> bytes:
        """Decrypt a sealed salt; raises MasterKeyMismatch on a wrong key or tampering."""
        try:
            return self._aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(sealed.epoch))
        except InvalidTag as exc:
            raise MasterKeyMismatch(
                f"the salt of epoch {sealed.epoch} does not open with master key "
                f"{self.key_id} (sealed under {sealed.key_id}): check TACIT_MASTER_KEY"
            ) from exc

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id})"


def _aad(epoch: int) -> bytes:
    return b"tacit/salt/v1/" + str(epoch).encode()


@dataclass(frozen=True)
class SealedSalt:
    """A salt as stored: ciphertext only."""

    epoch: int
    nonce: bytes
    ciphertext: bytes
    key_id: str


class SaltVault(Protocol):
    """Where sealed salts live (the store implements it)."""

    def sealed_salt(self, epoch: int) -> SealedSalt | None:
        """The sealed salt of an epoch, or None when there is none (never made, or destroyed)."""
        ...

    def add_sealed_salt(self, sealed: SealedSalt) -> SealedSalt:
        """Store ``sealed`` unless the epoch already has a salt; return the one that is stored.

        Must be atomic across processes: when several race, exactly one salt wins.
        """
        ...

    def salt_destroyed(self, epoch: int) -> bool:
        """True when the epoch's salt was destroyed (it must never be made again)."""
        ...


class Keyring:
    """Gives the pseudonymization keys of live epochs, creating salts on first use."""

    def __init__(self, master: MasterKey, vault: SaltVault, identifiers: Identifiers) -> None:
        self._master = master
        self._vault = vault
        self._identifiers = identifiers
        self._cache: dict[int, EpochKeys] = {}
        self._lock = threading.Lock()

    @property
    def identifiers(self) -> Identifiers:
        return self._identifiers

    def epoch_of(self, t: datetime) -> int:
        return self._identifiers.epoch_of(t)

    def oldest_live_epoch(self, now: datetime) -> int:
        """The oldest epoch whose salt still exists at ``now``."""
        return self._identifiers.oldest_live_epoch(now)

    def is_alive(self, epoch: int, now: datetime) -> bool:
        """Whether ``epoch`` is within the salt retention at ``now``."""
        return epoch >= self.oldest_live_epoch(now)

    def keys(self, epoch: int, now: datetime) -> EpochKeys:
        """The keys of a live epoch; raises EpochExpired for an epoch past retention."""
        if not self.is_alive(epoch, now):
            self._cache.pop(epoch, None)
            raise EpochExpired(epoch)
        cached = self._cache.get(epoch)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(epoch)
            if cached is None:
                cached = EpochKeys(epoch, self._salt(epoch), KEYED_FIELDS)
                self._cache[epoch] = cached
                self._forget_expired(now)
            return cached

    def existing_keys(self, epoch: int, now: datetime) -> EpochKeys | None:
        """The keys of a live epoch that already has a salt; never creates one (erasure)."""
        if not self.is_alive(epoch, now):
            return None
        if epoch in self._cache:
            return self._cache[epoch]
        sealed = self._vault.sealed_salt(epoch)
        if sealed is None:
            return None
        return self.keys(epoch, now)

    def forget(self) -> None:
        """Drop every salt held in memory (after destruction or master-key rotation)."""
        with self._lock:
            self._cache.clear()

    def _salt(self, epoch: int) -> bytes:
        sealed = self._vault.sealed_salt(epoch)
        if sealed is None:
            if self._vault.salt_destroyed(epoch):
                raise EpochExpired(epoch)
            sealed = self._vault.add_sealed_salt(self._master.seal(epoch, os.urandom(SALT_BYTES)))
        return self._master.open(sealed)

    def _forget_expired(self, now: datetime) -> None:
        oldest = self._identifiers.oldest_live_epoch(now)
        for epoch in [e for e in self._cache if e < oldest]:
            del self._cache[epoch]
