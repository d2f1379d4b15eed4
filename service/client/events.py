"""The Python client for apps: `track()` events, they are sent in batches in the background.

    from service.client import Client

    with Client("http://127.0.0.1:8000", token) as tacit:
        tacit.track({"event_type": "click_through", "user_id": ..., ...})

What it promises:

- ``track`` never blocks on the network: events go to a bounded buffer and one background
  thread posts them in batches (``batch_size`` events, or whatever waited
  ``flush_interval`` seconds).
- Every event gets a time-ordered ``event_id`` (48-bit milliseconds + 80 random bits, laid
  out as a UUIDv7) and a ``timestamp`` when it has none. A retry resends the same ids and
  timestamps, and the server stores an event id once per source, so retrying is safe: an
  event stored by an attempt whose answer was lost comes back as ``duplicate``.
- Network errors, 5xx and 429 are retried with exponential backoff and full jitter,
  honouring ``Retry-After``; other errors are not retried.
- Nothing is lost silently: a full buffer drops new events, counts them
  (``stats.dropped_overflow``) and logs a warning; batches given up are counted
  (``stats.failed``); every settled batch is reported to ``on_result`` with the events the
  server did not accept and why.
- Logs hold counts, status codes and error classes: never an identifier, an event or the token.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx

from service.client.delivery import (
    RETRY_STATUSES,
    BatchResult,
    ClientStats,
    Counts,
    error_message,
    full_jitter,
    new_event_id,
    read_report,
    retry_after,
    rfc3339,
)

__all__ = ["Client", "ClientClosed"]

log = logging.getLogger("tacit.client")


class ClientClosed(RuntimeError):
    """``track`` was called after ``close``: the event was not taken."""


class _Abort(Exception):
    """close() stopped waiting while a batch was between retries."""


class Client:
    """Buffers events and posts them to ``{url}/v1/events`` from a background thread."""

    def __init__(
        self,
        url: str,
        token: str,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        on_result: Callable[[BatchResult], None] | None = None,
        *,
        timeout: float = 10.0,
        max_attempts: int | None = 12,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stamp_sent_at: bool = True,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the server's batch limit)")
        if max_buffer < 1 or flush_interval <= 0:
            raise ValueError("max_buffer must be at least 1 and flush_interval above 0")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1, or None to retry until close()")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.on_result = on_result
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # With sent_at the server removes this machine's clock error from timestamps;
        # it is set on each attempt, so time spent waiting to retry is not counted as skew.
        self.stamp_sent_at = stamp_sent_at
        self._timeout = timeout
        self._http = httpx.Client(
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settled_cv = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._buffer: deque[tuple[dict[str, Any], bool]] = deque()
        self._oldest = 0.0  # monotonic time the oldest queued event arrived
        self._enqueued = 0
        self._settled = 0
        self._flush_upto = 0
        self._closed = False
        self._overflowing = False
        self._unreported_drops = 0
        self._episode_drops = 0
        self._counts = Counts()
        self._thread = threading.Thread(target=self._run, name="tacit-client", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def __repr__(self) -> str:  # never the token
        return f"Client({self.url!r}, batch_size={self.batch_size})"

    # --- the app's side -----------------------------------------------------------------

    @property
    def stats(self) -> ClientStats:
        with self._lock:
            return ClientStats(**asdict(self._counts))

    @property
    def pending(self) -> int:
        """Events queued or in flight, not yet settled."""
        with self._lock:
            return self._enqueued - self._settled

    def track(
        self, event: Mapping[str, Any], *, block: bool = False, timeout: float | None = None
    ) -> None:
        """Queue one event (a dict in the shape of POST /v1/events).

        ``event_id`` and ``timestamp`` are filled in when absent; datetimes are sent as
        RFC 3339. When the buffer is full the event is dropped and counted, unless
        ``block`` is true: then the call waits for room (at most ``timeout`` seconds), which
        suits backfills and simulations rather than request handlers; if another thread
        closes the client meanwhile, it raises :class:`ClientClosed`. The event is copied
        shallowly: do not change its nested ``payload`` or ``context`` after tracking it.
        """
        item = dict(event)
        if not item.get("event_id"):
            item["event_id"] = new_event_id()
        for key in ("timestamp", "sent_at"):
            value = item.get(key)
            if isinstance(value, datetime):
                item[key] = rfc3339(value)
        if not item.get("timestamp"):
            item["timestamp"] = rfc3339(datetime.now(UTC))
        stamp = self.stamp_sent_at and "sent_at" not in item
        with self._lock:
            if self._closed:
                raise ClientClosed("this client is closed: make a new one to send more events")
            if block and len(self._buffer) >= self.max_buffer:
                self._room.wait_for(
                    lambda: len(self._buffer) < self.max_buffer or self._stop.is_set(), timeout
                )
                if self._stop.is_set():  # closed while we waited: not a drop, a refusal
                    raise ClientClosed("the client was closed while this event waited for room")
            self._counts.tracked += 1
            if len(self._buffer) >= self.max_buffer:
                self._drop_one()
                return
            first = not self._buffer
            if first:
                self._oldest = time.monotonic()
            self._buffer.append((item, stamp))
            self._enqueued += 1
            # Wake the sender when its flush_interval clock starts, and when a batch is full.
            if first or len(self._buffer) >= min(self.batch_size, self.max_buffer):
                self._wake.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything tracked so far and wait until each batch is settled (answered,
        or given up). False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            self._flush_upto = max(self._flush_upto, target)
            self._wake.notify()
            while self._settled < target:
                if not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._settled_cv.wait(left if left is not None else 0.5)
        return True

    def close(self, timeout: float | None = None) -> ClientStats:
        """Flush, stop the background thread and return the final stats.

        Events still unsent after ``timeout`` seconds are counted as ``abandoned`` and a
        warning says how many. Safe to call twice.
        """
        with self._lock:
            already = self._closed
            self._closed = True
        if not already:
            self.flush(timeout)
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
            self._room.notify_all()
        # The thread ends after its current attempt; wait for it so that a batch answered
        # meanwhile is counted once, as answered, and not also as abandoned.
        self._thread.join(timeout=self._timeout + 5.0)
        atexit.unregister(self._at_exit)
        with self._lock:
            left = self._enqueued - self._settled
            if left and not already:
                self._counts.abandoned += left
                self._settled = self._enqueued
                self._buffer.clear()
                log.warning("tacit client closed with %d events not delivered", left)
            if self._overflowing:
                self._end_overflow_episode()
            stats = ClientStats(**asdict(self._counts))
        self._http.close()
        return stats

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _at_exit(self) -> None:
        self.close(timeout=5.0)

    # --- overflow accounting (under the lock) -------------------------------------------

    def _drop_one(self) -> None:
        self._counts.dropped_overflow += 1
        self._unreported_drops += 1
        self._episode_drops += 1
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "tacit client buffer is full (%d events): new events are dropped and counted "
                "until it drains; the server may be down or too slow for this rate",
                self.max_buffer,
            )

    def _end_overflow_episode(self) -> None:
        log.warning(
            "tacit client dropped %d events while its buffer was full (%d dropped in total)",
            self._episode_drops,
            self._counts.dropped_overflow,
        )
        self._overflowing = False
        self._episode_drops = 0

    # --- the background thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
                if batch is None:
                    return
            try:
                results = self._deliver([e for e, _ in batch], [s for _, s in batch])
            except _Abort:
                return  # close() counts what was left as abandoned
            except Exception as exc:  # never let the sender thread die silently
                log.error("tacit client: batch failed unexpectedly: %s", type(exc).__name__)
                results = [BatchResult(len(batch), error=f"client error: {type(exc).__name__}")]
            for result in results:
                self._settle(result)

    def _next_batch(self) -> list[tuple[dict[str, Any], bool]] | None:
        """Wait until a batch is due; None when the client is stopping (lock held)."""
        while True:
            if self._stop.is_set():
                return None
            if self._buffer:
                waited = time.monotonic() - self._oldest
                due = (
                    len(self._buffer) >= self.batch_size
                    or len(self._buffer) >= self.max_buffer
                    or self._flush_upto > self._settled
                    or waited >= self.flush_interval
                )
                if due:
                    n = min(self.batch_size, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(n)]
                    self._room.notify_all()
                    self._oldest = time.monotonic()
                    if self._overflowing and len(self._buffer) < self.max_buffer:
                        self._end_overflow_episode()
                    return batch
                self._wake.wait(self.flush_interval - waited)
            else:
                self._wake.wait()

    def _settle(self, result: BatchResult) -> None:
        with self._lock:
            c = self._counts
            c.accepted += result.accepted
            c.duplicates += result.duplicates
            c.sampled_out += result.sampled_out
            c.rejected += result.rejected
            c.failed += result.events if result.error is not None else 0
            c.retries += max(result.attempts - 1, 0)
            c.batches += 1
            result = replace(result, dropped_overflow=self._unreported_drops)
            self._unreported_drops = 0
            self._settled += result.events
            self._settled_cv.notify_all()
        if result.error is not None:
            log.warning(
                "tacit client gave up a batch of %d events: %s", result.events, result.error
            )
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception as exc:
                log.error("tacit client: on_result raised %s", type(exc).__name__)

    def _deliver(self, events: list[dict[str, Any]], stamps: list[bool]) -> list[BatchResult]:
        """Post one batch until it is answered or given up. A 413 (body too large) splits
        it in two halves, each settled on its own."""
        attempts = 0
        waits: list[float] = []
        while True:
            attempts += 1
            sent_at = rfc3339(datetime.now(UTC))
            body = [
                {**e, "sent_at": sent_at} if s else e for e, s in zip(events, stamps, strict=True)
            ]
            status: int | None = None
            server_wait: float | None = None
            try:
                response = self._http.post(
                    f"{self.url}/v1/events", content=json.dumps({"events": body}, default=str)
                )
                status = response.status_code
                if status == 200:
                    return [read_report(response, events, attempts, tuple(waits))]
                if status == 413 and len(events) > 1:
                    half = len(events) // 2
                    return self._deliver(events[:half], stamps[:half]) + self._deliver(
                        events[half:], stamps[half:]
                    )
                if status not in RETRY_STATUSES:
                    failed = BatchResult(
                        len(events),
                        attempts=attempts,
                        waits=tuple(waits),
                        error=f"HTTP {status}: {error_message(response)}",
                        status_code=status,
                    )
                    return [failed]
                server_wait = retry_after(response.headers.get("retry-after"))
                reason = f"HTTP {status}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            if self.max_attempts is not None and attempts >= self.max_attempts:
                exhausted = BatchResult(
                    len(events),
                    attempts=attempts,
                    waits=tuple(waits),
                    error=f"gave up after {attempts} attempts; last: {reason}",
                    status_code=status,
                )
                return [exhausted]
            delay = server_wait if server_wait is not None else self._backoff(attempts)
            waits.append(delay)
            log.info("tacit client: %s; retrying in %.2f s", reason, delay)
            if self._stop.wait(delay):
                raise _Abort

    def _backoff(self, attempt: int) -> float:
        return full_jitter(attempt, self.backoff_base, self.backoff_max)
