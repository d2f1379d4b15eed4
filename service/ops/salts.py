"""Salt lifecycle operations: the status of every epoch's salt and master-key rotation.

Rotation re-seals every live salt under a new master key. The salts themselves do not
change, so no pseudonym changes; the old key opens nothing afterwards (new nonces and
ciphertexts, and the old ciphertexts are purged from the database files). Run it with
the service stopped: a running process still holds the old key and would seal a new
epoch's salt under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from privacy.keyring import MasterKey, MasterKeyMismatch
from privacy.policy import Identifiers
from service.store.base import Store

_MAX_PASSES = 5


class KeyRotationError(Exception):
    """Rotation refused or incomplete; the message says what to do."""


@dataclass(frozen=True)
class EpochStatus:
    epoch: int
    starts: datetime
    state: str  # alive | expired (salt destroyed at the next retention run) | destroyed
    key_id: str | None  # fingerprint of the master key that seals the salt


def salt_status(store: Store, identifiers: Identifiers, now: datetime) -> list[EpochStatus]:
    """Every epoch that ever had a salt, oldest first: ids and states only."""
    sealed = {s.epoch: s.key_id for s in store.salts.all_sealed()}
    oldest_live = identifiers.oldest_live_epoch(now)
    out = []
    for epoch, alive in store.salts.status():
        if not alive:
            state = "destroyed"
        elif epoch < oldest_live:
            state = "expired"
        else:
            state = "alive"
        out.append(EpochStatus(epoch, identifiers.epoch_start(epoch), state, sealed.get(epoch)))
    return out


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    salts: int
    purged: bool


def rotate_master(
    store: Store, old: MasterKey, new: MasterKey, now: datetime, actor: str = "cli"
) -> Rotation:
    """Re-seal every live salt under ``new``; pseudonyms are unchanged."""
    if old.key_id == new.key_id:
        raise KeyRotationError("the new master key is the current one: generate a new key")
    resealed: set[int] = set()
    for _ in range(_MAX_PASSES):
        # Every salt still under another key; a salt made meanwhile is caught next pass.
        pending = [s for s in store.salts.all_sealed() if s.key_id != new.key_id]
        if not pending:
            break
        try:
            # Open them all before writing anything: a wrong old key changes nothing.
            batch = [new.seal(s.epoch, old.open(s)) for s in pending]
        except MasterKeyMismatch as exc:
            raise KeyRotationError(
                f"{exc}. Nothing was changed. Run with the key the salts are sealed under "
                "(TACIT_MASTER_KEY or TACIT_MASTER_KEY_FILE)"
            ) from exc
        store.salts.reseal_all(batch)  # one transaction
        resealed.update(s.epoch for s in batch)
    else:
        raise KeyRotationError(
            "salts kept being created under the old key: stop every `tacit serve` process, "
            "then rotate again with the same keys"
        )
    store.audit.append(
        "master_key_rotated",
        actor,
        {"old_key_id": old.key_id, "new_key_id": new.key_id, "salts": len(resealed)},
        now,
    )
    # The old ciphertexts (which the old key opens) must not survive in the WAL.
    purged = store.retention.purge_deleted()
    return Rotation(old.key_id, new.key_id, len(resealed), purged)
