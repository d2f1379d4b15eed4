"""The Store protocol: what the service needs from a database, backend-neutral.

A store is a handful of repositories (salts, tokens, events, audit, ...) sharing one
database. Each backend (SQLite, PostgreSQL) implements every repository; one contract
test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from privacy.keyring import SaltVault, SealedSalt

# Split out of this module, and re-exported here: the errors and the budget ledger.
from service.store.errors import Conflict as Conflict
from service.store.errors import EngineUnavailable as EngineUnavailable
from service.store.errors import NotFound as NotFound
from service.store.errors import StoreError as StoreError
from service.store.errors import StoreUnavailable as StoreUnavailable
from service.store.ledger import Charge as Charge
from service.store.ledger import DeltaShortfall as DeltaShortfall
from service.store.ledger import EpochShortfall as EpochShortfall
from service.store.ledger import LedgerRepository as LedgerRepository
from service.store.ledger import OverBudget as OverBudget
from service.store.ledger import OverDeltaBudget as OverDeltaBudget
from service.store.ledger import ReleaseRecord as ReleaseRecord
from service.store.ledger import UnitMismatch as UnitMismatch
from service.store.ledger import UnitSpend as UnitSpend


class Role(StrEnum):
    INGEST = "ingest"
    ANALYST = "analyst"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    role: Role
    source: str | None
    created_at: datetime
    revoked_at: datetime | None
    origins: tuple[str, ...] | None = None  # a publishable key's origins; None: secret

    @property
    def publishable(self) -> bool:
        return self.origins is not None


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a bearer token (or a publishable key)."""

    name: str
    role: Role
    source_id: int | None = None
    # A publishable key's origins (exact scheme://host[:port]); None for a secret token.
    origins: frozenset[str] | None = None

    @property
    def publishable(self) -> bool:
        return self.origins is not None


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
    "attempt",
    "thumbs",
    "rating",
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
        """Store a token's digest; ``origins`` (a publishable key's) is None for a secret."""

    def principal(self, digest: bytes) -> Principal | None: ...

    def publishable_origins(self) -> frozenset[str]:
        """Every origin listed by some active publishable key (for CORS preflights)."""

    def list(self) -> list[TokenInfo]: ...

    def revoke(self, name: str, now: datetime, actor: str) -> None: ...


class EventRepository(Protocol):
    def write(self, batches: Sequence[WriteBatch]) -> list[list[bool]]:
        """Write several batches in one durable transaction.

        Returns, per batch, one flag per row: True if stored, False if a duplicate.
        """
        ...

    def maintain(self) -> None:
        """Upkeep between writes, called by a writer after it has answered its requests
        (SQLite folds its recent idempotency keys into the index; PostgreSQL: nothing)."""
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


class RetentionRepository(Protocol):
    """The retention sweeper's SQL. Deletes run in short write transactions of at most
    ``batch`` rows each, so ingestion never waits long; the caller paces the batches."""

    def count_events(self, event_type: int, before_ts: int, max_epoch: int) -> int:
        """Events of type code ``event_type`` with ``ts`` < ``before_ts`` (Unix seconds).

        Only epochs <= ``max_epoch`` can hold such events (the caller guarantees it), so
        the search may stop there.
        """
        ...

    def delete_events(
        self, event_type: int, before_ts: int, max_epoch: int, batch: int
    ) -> Iterator[int]:
        """Delete the events ``count_events`` counts; yield each committed batch's count.

        No transaction is open while the generator is suspended.
        """
        ...

    def delete_epochs(
        self, before_epoch: int, before_ts: int, batch: int
    ) -> Iterator[dict[int, int]]:
        """Delete every event of every epoch < ``before_epoch``, of all types (the caller
        guarantees all are past retention; all have ``ts`` < ``before_ts``); yield each
        committed batch's count per event type code.

        The bulk of a large backlog: a backend can delete such rows in storage order
        rather than type by type. No transaction is open while the generator is suspended.
        """
        ...

    def count_quarantine(self, before_ms: int) -> int:
        """Quarantined rejects received before ``before_ms`` (Unix ms)."""
        ...

    def delete_quarantine(self, before_ms: int, batch: int) -> Iterator[int]: ...

    def count_event_keys(self, before_ms: int) -> int:
        """Idempotency keys whose client timestamp is before ``before_ms`` (Unix ms)."""
        ...

    def delete_event_keys(self, before_ms: int, batch: int) -> Iterator[int]: ...

    def live_salts_before(self, epoch: int) -> list[int]:
        """Epochs < ``epoch`` whose salt still exists (what a sweep would destroy)."""
        ...

    def destroy_salts(self, before_epoch: int, at: datetime, actor: str) -> list[int]:
        """Destroy every live salt of an epoch < ``before_epoch``, appending one
        ``salt_destroyed`` audit entry per epoch in the same transaction; return those
        epochs. Racing callers never destroy (or audit) the same epoch twice."""
        ...

    def claim_run(self, at: datetime, min_gap: timedelta) -> bool:
        """Claim a scheduled sweep at ``at``: False when any process claimed one less than
        ``min_gap`` before, else record this claim and return True (atomically)."""
        ...

    def purge_deleted(self) -> bool:
        """Make deleted rows unrecoverable from the database files (SQLite: checkpoint
        and truncate the WAL). True when that fully succeeded."""
        ...


class ErasureRepository(Protocol):
    def erase(
        self, subjects: Sequence[tuple[int, int]], at: datetime, actor: str
    ) -> tuple[int, int]:
        """Delete the events and quarantined rejects whose ``(epoch, user_ps)`` is one of
        ``subjects`` and append a ``subject_erased`` audit entry with the counts (never a
        pseudonym), atomically; return (events, quarantined) deleted."""
        ...


class HotRepository(Protocol):
    """The hot tier: events not sealed into the lake yet (service/lake/sealer.py).

    A seal batch is claimed (its number written into the rows), copied into the lake
    (whose commit records the number), then released (deleted here). Only the holder of
    ``lake_lock`` claims and releases.
    """

    def pending(self) -> int | None:
        """The highest batch number claimed and not yet released, if any."""
        ...

    def claim(self, batch: int, limit: int) -> int:
        """Claim up to ``limit`` unclaimed rows for ``batch``; return how many."""
        ...

    def batch_rows(self, batch: int) -> list[tuple[Any, ...]]:
        """The rows of ``batch`` (EVENT_COLUMNS order)."""
        ...

    def release(self, through: int) -> int:
        """Delete every claimed row of a batch <= ``through`` (the lake holds them)."""
        ...

    def snapshot(self) -> tuple[list[tuple[Any, ...]], int]:
        """Every hot row (EVENT_COLUMNS, then seal_batch) and the highest batch number
        ever claimed, in one read snapshot."""
        ...

    def claimed(self) -> int:
        """The highest batch number ever claimed (0: none)."""
        ...

    def unsealed(self, watermark: int) -> int:
        """Hot rows the lake does not hold: unclaimed, or claimed above ``watermark``."""
        ...

    def note(self, key: str, at_ms: int) -> None:
        """Record the time (Unix ms) of the lake's last ``key`` (seal, compaction, vacuum)."""
        ...

    def notes(self) -> dict[str, int]: ...

    def lake_lock(self, wait: bool = True) -> AbstractContextManager[bool]:
        """Held by the one writer of the lake (sealer, retention, erasure) at a time;
        yields False when ``wait`` is False and someone else holds it."""
        ...


class QueryRepository(Protocol):
    """Read-only aggregation for the DP query engine (service/queries/engine.py).

    The engine writes the bounded aggregation SQL (service/queries/sql.py) in the flavour
    ``dialect`` names; the repository runs it in one read snapshot. Rows hold integers
    only: one small row per non-empty cell, never per event or per person.
    """

    @property
    def dialect(self) -> str:
        """The SQL flavour this backend runs: "sqlite" or "postgresql"."""
        ...

    def aggregate(self, sql: str) -> list[tuple[int, ...]]:
        """Run one aggregation statement built by the engine; return its rows (integers,
        and for a partition selection's counts the label they count, as text)."""
        ...


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

    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def retention(self) -> RetentionRepository: ...

    @property
    def erasure(self) -> ErasureRepository: ...

    @property
    def queries(self) -> QueryRepository: ...

    @property
    def hot(self) -> HotRepository: ...

    def migrate(self) -> None: ...

    def ping(self) -> None:
        """One round trip to the database; raises StoreUnavailable when it cannot be reached."""
        ...

    def close(self) -> None: ...
