"""Erasure of one data subject, given their raw ``user_id``.

The store holds no raw identifier, so the subject is found the only way possible: their
pseudonym is recomputed under the salt of every live epoch that has one, and the events
and quarantined rejects with that (epoch, pseudonym) are deleted. Epochs whose salt is
destroyed need nothing: nobody can link their rows to the subject any more. The raw id
is never stored, logged, audited or returned; the audit entry holds the counts only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from privacy.keyring import Keyring
from service.store.base import Store

if TYPE_CHECKING:
    from service.lake.upkeep import LakeUpkeep

log = logging.getLogger("tacit.erasure")


@dataclass(frozen=True)
class Erased:
    """How many rows one erasure deleted (and over how many live epochs it searched)."""

    events: int
    quarantined: int
    epochs: int

    @property
    def total(self) -> int:
        return self.events + self.quarantined

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "quarantined": self.quarantined, "epochs": self.epochs}


class Erasure:
    """Deletes one subject's rows from every epoch that can still be linked to them."""

    def __init__(self, store: Store, keyring: Keyring, lake: LakeUpkeep | None = None) -> None:
        self._store = store
        self._keyring = keyring
        self._lake = lake

    def erase(self, user_id: str, now: datetime, actor: str = "admin") -> Erased:
        if not user_id:
            raise ValueError("user_id is empty: give the raw user_id the events were sent with")
        ids = self._keyring.identifiers
        # An epoch past its salt retention whose salt the sweep has not destroyed yet
        # still links its rows to the subject: destroy such salts now, so the answer
        # "erased or unlinkable" holds for every epoch the moment this returns.
        destroyed = self._store.retention.destroy_salts(ids.oldest_live_epoch(now), now, actor)
        if destroyed:
            self._keyring.forget()
        subjects: list[tuple[int, int]] = []
        for epoch, alive in self._store.salts.status():
            keys = self._keyring.existing_keys(epoch, now) if alive else None
            if keys is not None:
                subjects.append((epoch, keys.pseudonym("user_id", user_id)))
        if self._lake is None:
            events, quarantined = self._store.erasure.erase(subjects, now, actor)
        else:
            events, quarantined = self._both_tiers(self._lake, subjects, now, actor)
        # Deleted rows must not survive in the WAL either.
        if not self._store.retention.purge_deleted():
            log.warning(
                "erasure: the WAL could not be truncated (a reader held an old snapshot); "
                "the deleted rows leave it at the next retention run"
            )
        return Erased(events, quarantined, len(subjects))

    def _both_tiers(
        self, lake: LakeUpkeep, subjects: list[tuple[int, int]], now: datetime, actor: str
    ) -> tuple[int, int]:
        # Under the lake lock: no seal batch read before the hot rows go can carry them
        # into the lake after the lake's rows went.
        with self._store.hot.lake_lock():
            events, quarantined = self._store.erasure.erase(subjects, now, actor)
            erased = lake.erase(subjects, now)
        if erased.searched:  # there is a lake table: its part is audited on its own
            detail = {
                "events": erased.events,
                "epochs_rewritten": erased.epochs_rewritten,
                "files_vacuumed": erased.files_vacuumed,
            }
            self._store.audit.append("lake_subject_erased", actor, detail, now)
        return events + erased.events, quarantined
