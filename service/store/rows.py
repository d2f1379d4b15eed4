"""Row shapes every backend shares: time as Unix milliseconds, release and audit rows.

The SQL differs per backend; what a row holds and how it becomes a record does not, so it
is written once here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from service.store.base import AuditEntry, Charge, ReleaseRecord

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(t: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime, exactly (floor)."""
    return (t - _UNIX_EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


RELEASE_COLUMNS = (
    "release_id, analyst, at, request_json, metric, unit, cost_nanos, epochs_json, "
    "policy_sha256, rows_json, notes_json"
)

# Column order of release_row(); backends supply their own placeholders.
RELEASE_INSERT_COLUMNS = (
    "release_id, analyst, at, request_hash, request_json, "
    "metric, unit, cost_nanos, epochs_json, last_epoch, policy_sha256"
)


def release_row(charge: Charge) -> tuple[Any, ...]:
    """The values of a charge's release row, in RELEASE_INSERT_COLUMNS order."""
    return (
        charge.release_id,
        charge.analyst,
        to_ms(charge.at),
        charge.request_hash,
        charge.request_json,
        charge.metric,
        charge.unit,
        charge.cost_nanos,
        json.dumps(list(charge.epochs)),
        max(charge.epochs),
        charge.policy_sha256,
    )


def release_record(r: tuple[Any, ...]) -> ReleaseRecord:
    """A row selected as RELEASE_COLUMNS, as a record."""
    return ReleaseRecord(
        release_id=r[0],
        analyst=r[1],
        at=from_ms(r[2]),
        request_json=r[3],
        metric=r[4],
        unit=r[5],
        cost_nanos=int(r[6]),
        epochs=tuple(json.loads(r[7])),
        policy_sha256=r[8],
        rows=None if r[9] is None else json.loads(r[9]),
        notes=None if r[10] is None else json.loads(r[10]),
    )


def audit_entry(r: tuple[Any, ...]) -> AuditEntry:
    """A row selected as (seq, at, kind, actor, policy_sha256, detail, prev_hash, hash)."""
    return AuditEntry(int(r[0]), from_ms(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
