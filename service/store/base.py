"""The Store protocol: what the service needs from a database, backend-neutral.

A store is a handful of repositories (salts, tokens, events, audit, ...) sharing one
database. Each backend (SQLite, PostgreSQL) implements every repository; one contract
test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from privacy.keyring import SaltVault, SealedSalt


class Role(StrEnum):
    INGEST = "ingest"
    ANALYST = "analyst"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class StoreError(Exception):
    """Base of storage errors."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    role: Role
    source: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a bearer token."""

    name: str
    role: Role
    source_id: int | None = None


# Column order of a stored event row (a plain tuple on the hot path).
EVENT_COLUMNS: tuple[str, ...] = (
    "epoch",
    "ts",
    "event_type",
    "source_id",
    "user_ps",
    "session_ps",
    "query_ps",
    "response_ps",
    "surface",
    "task_type",
    "cohort",
    "model",
    "position",
    "candidates",
    "similarity",
    "span_start",
    "span_end",
    "span_length",
    "destination",
    "edit_ratio",
    "dwell_ms",
    "scroll_depth",
    "after_ms",
    "outcome",
    "inclusion_prob",
)

QUARANTINE_COLUMNS: tuple[str, ...] = (
    "received_at",
    "source_id",
    "epoch",
    "user_ps",
    "reason",
    "errors",
    "event",
)


@dataclass
class WriteBatch:
    """One request's worth of prepared rows.

    ``keys[i]`` is the idempotency key ``(client_ts_ms, eid)`` of ``rows[i]``; the
    store writes a row only when its key is new for ``source_id``.
    """

    source_id: int
    keys: list[tuple[int, int]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    quarantine: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    kind: str
    actor: str
    policy_sha256: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class SaltRepository(SaltVault, Protocol):
    def destroy_before(self, epoch: int, now: datetime) -> list[int]:
        """Destroy every sealed salt of an epoch < ``epoch``; return those epochs."""
        ...

    def status(self) -> list[tuple[int, bool]]:
        """(epoch, alive) for every epoch ever salted, oldest first."""
        ...

    def reseal_all(self, resealed: Sequence[SealedSalt]) -> None:
        """Replace live sealed salts (master-key rotation), atomically."""
        ...

    def all_sealed(self) -> list[SealedSalt]: ...


class TokenRepository(Protocol):
    def create(
        self, name: str, role: Role, digest: bytes, source: str | None, now: datetime, actor: str
    ) -> None: ...

    def principal(self, digest: bytes) -> Principal | None: ...

    def list(self) -> list[TokenInfo]: ...

    def revoke(self, name: str, now: datetime, actor: str) -> None: ...


class EventRepository(Protocol):
    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        """Write several batches in one durable transaction.

        Returns, per batch, one flag per row: True if stored, False if a duplicate.
        """
        ...

    def count(self) -> int: ...

    def first_event_at(self) -> datetime | None: ...

    def mark_first_event(self, at: datetime) -> datetime:
        """Record the first ingestion time once; return the recorded one."""
        ...


class AuditRepository(Protocol):
    policy_sha256: str

    def append(self, kind: str, actor: str, detail: dict[str, Any], at: datetime) -> AuditEntry: ...

    def page(self, after: int, limit: int) -> list[AuditEntry]: ...


class Store(Protocol):
    # Read-only properties, so each backend may narrow them to its own classes.
    @property
    def url(self) -> str: ...

    @property
    def salts(self) -> SaltRepository: ...

    @property
    def tokens(self) -> TokenRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    def migrate(self) -> None: ...

    def close(self) -> None: ...
