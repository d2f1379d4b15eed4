"""What became of events sent to POST /v1/events: per-event and per-batch outcomes, the
client's running totals, and reading the server's answer (its report, its error envelope,
its Retry-After). Used by `service.client`, which re-exports the public names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

__all__ = [
    "BatchResult",
    "ClientStats",
    "Counts",
    "EventResult",
    "error_message",
    "read_report",
    "retry_after",
]

MAX_RETRY_AFTER = 300.0  # a Retry-After beyond five minutes is treated as five minutes


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
