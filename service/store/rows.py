"""Row shapes every backend shares: time as Unix milliseconds, release and audit rows.

The SQL differs per backend; what a row holds and how it becomes a record does not, so it
is written once here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from pydantic_core import TzInfo

from service.store.base import AuditEntry, Charge, ReleaseRecord

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# The Unix epoch written in a fixed-offset zone, per zone object. Ingestion converts two
# timestamps per event, and pydantic gives every timestamp of one offset the same zone
# object: subtracting two datetimes that share their tzinfo object, CPython skips both
# utcoffset() calls (half the cost here) and subtracts the wall clocks, which is exact
# only when the offset is fixed. Other zones (zoneinfo's, with DST) are never entered.
_FIXED_OFFSETS = (timezone, TzInfo)
_EPOCH_IN: dict[tzinfo | None, datetime] = {}
_MAX_ZONES = 4096  # RFC 3339 offsets are whole minutes within a day: 2,879 at most


def to_ms(t: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime, exactly (floor)."""
    try:
        epoch = _EPOCH_IN[t.tzinfo]
    except (KeyError, TypeError):  # a zone not seen yet, or one that cannot be a key
        epoch = _epoch_in(t.tzinfo)
    return (t - epoch) // _MS


def _epoch_in(zone: tzinfo | None) -> datetime:
    if type(zone) not in _FIXED_OFFSETS or len(_EPOCH_IN) >= _MAX_ZONES:
        return _UNIX_EPOCH  # still exact: datetimes of two zone objects compare in UTC
    epoch = _EPOCH_IN[zone] = _UNIX_EPOCH.astimezone(zone)
    return epoch


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
