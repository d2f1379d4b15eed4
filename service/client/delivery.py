"""What became of events sent to POST /v1/events: per-event and per-batch outcomes, the
client's running totals, and reading the server's answer (its report, its error envelope,
its Retry-After). Used by `service.client.events`; `service.client` re-exports the public names."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

__all__ = [
    "RETRY_STATUSES",
    "BatchResult",
    "ClientStats",
    "Counts",
    "EventResult",
    "error_message",
    "full_jitter",
    "new_event_id",
    "read_report",
    "retry_after",
    "rfc3339",
]

MAX_RETRY_AFTER = 300.0  # a Retry-After beyond five minutes is treated as five minutes

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers worth retrying: the network, the server's overload and its outages."""


def new_event_id(now_ms: int | None = None) -> str:
    """A time-ordered event id: a UUIDv7 (48-bit Unix milliseconds, then random bits).

    Ids made later sort later (to the millisecond), which keeps the server's idempotency
    index append-mostly; the 74 random bits make collisions negligible.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)  # rand_b: 62 bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class EventResult:
    """One event the server did not store as new: ``duplicate``, ``sampled_out`` or
    ``rejected`` (with a ``reason`` and field ``errors``).

    The server names it by its index in the batch (it never echoes an event id); the
    ``event_id`` here is the one this client sent there."""

    event_id: str | None
    status: str
    reason: str | None = None
    errors: tuple[Mapping[str, str], ...] = ()
    # The event as sent, for the caller's own dead-letter handling. Kept out of repr so
    # that logging a result never writes identifiers.
    event: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class BatchResult:
    """What happened to one batch, passed to ``on_result`` once the batch is settled.

    ``results`` lists only the events not accepted as new. ``error`` is set when the
    whole batch failed (not retryable, or retries exhausted): then none of its ``events``
    is known to be stored. ``dropped_overflow`` counts events dropped because the buffer
    was full since the previous report.
    """

    events: int
    accepted: int = 0
    duplicates: int = 0
    sampled_out: int = 0
    rejected: int = 0
    results: tuple[EventResult, ...] = ()
    attempts: int = 0
    waits: tuple[float, ...] = ()  # the delays chosen before each retry, in seconds
    error: str | None = None
    status_code: int | None = None
    dropped_overflow: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ClientStats:
    """Running totals since the client was made (a snapshot)."""

    tracked: int = 0  # calls to track()
    accepted: int = 0  # stored as new
    duplicates: int = 0  # already stored (an earlier attempt or an earlier send)
    sampled_out: int = 0
    rejected: int = 0  # refused by the server, with a reason (see on_result)
    failed: int = 0  # in batches given up: not retryable, or retries exhausted
    dropped_overflow: int = 0  # never queued: the buffer was full
    abandoned: int = 0  # still queued or in flight when close() gave up waiting
    retries: int = 0
    batches: int = 0

    @property
    def acknowledged(self) -> int:
        """Events the server answered for (stored, duplicate, sampled out or rejected)."""
        return self.accepted + self.duplicates + self.sampled_out + self.rejected


@dataclass
class Counts:
    """The mutable totals behind ``ClientStats`` (changed under the client's lock)."""

    tracked: int = 0
    accepted: int = 0
    duplicates: int = 0
    sampled_out: int = 0
    rejected: int = 0
    failed: int = 0
    dropped_overflow: int = 0
    abandoned: int = 0
    retries: int = 0
    batches: int = 0


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_message(response: httpx.Response) -> str:
    """The API's error envelope message, or the status text."""
    try:
        error = response.json().get("error", {})
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return response.reason_phrase or "no details"


def read_report(
    response: httpx.Response, events: list[dict[str, Any]], attempts: int, waits: tuple[float, ...]
) -> BatchResult:
    body = response.json()
    results = []
    for r in body.get("results", []):
        index = r.get("index")
        sent = events[index] if isinstance(index, int) and 0 <= index < len(events) else None
        results.append(
            EventResult(
                event_id=None if sent is None else sent.get("event_id"),
                status=str(r.get("status")),
                reason=r.get("reason"),
                errors=tuple(r.get("errors", ())),
                event=sent,
            )
        )
    return BatchResult(
        len(events),
        accepted=int(body.get("accepted", 0)),
        duplicates=int(body.get("duplicates", 0)),
        sampled_out=int(body.get("sampled_out", 0)),
        rejected=int(body.get("rejected", 0)),
        results=tuple(results),
        attempts=attempts,
        waits=waits,
        status_code=200,
    )


def rfc3339(t: datetime | date) -> str:
    """The wire form of a timestamp (UTC, ``Z``) or a date; naive datetimes are refused."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (e.g. datetime.now(UTC))")
        return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return t.isoformat()


def full_jitter(attempt: int, base: float, ceiling: float) -> float:
    """A retry's wait: uniform in [0, min(ceiling, base * 2^(attempt-1))] (full jitter)."""
    top = min(ceiling, base * 2.0 ** min(attempt - 1, 60))
    return top * secrets.randbelow(1_000_001) / 1_000_000
