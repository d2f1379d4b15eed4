"""Group commit: one writer thread folds the batches of concurrent requests into one
durable transaction, then wakes each request. A request is answered only after the
commit that holds its events (or with an error if that commit failed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from typing import Protocol

from service.store.base import EventRepository, WriteBatch

log = logging.getLogger("tacit.writer")

_MAX_GROUP = 64  # requests folded into one transaction at most

Outcome = list[bool] | BaseException  # a flag per row (True stored, False duplicate)
_Item = tuple[WriteBatch, asyncio.AbstractEventLoop, "asyncio.Future[list[bool]]"]


class WriterClosed(RuntimeError):
    pass


class BatchWriter(Protocol):
    """Where a worker's prepared batches are written: a thread of its own, or the writer
    process (service/ingest/writer_process.py)."""

    async def write(self, batch: WriteBatch) -> list[bool]:
        """Write one batch durably; a flag per row (True stored, False duplicate)."""
        ...

    def close(self) -> None: ...


class GroupWriter:
    def __init__(self, events: EventRepository) -> None:
        self._events = events
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tacit-writer", daemon=True)
        self._closed = False
        self._thread.start()

    async def write(self, batch: WriteBatch) -> list[bool]:
        """Write one batch; returns a flag per row (True stored, False duplicate)."""
        if self._closed:
            raise WriterClosed("the service is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._queue.put((batch, loop, future))
        return await future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while len(group) < _MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Item]) -> None:
        outcomes: list[Outcome]
        try:
            outcomes = list(self._events.write([batch for batch, _, _ in group]))
        except Exception as exc:  # every waiting request learns its events were not stored
            outcomes = [exc] * len(group)
        # One wake-up per event loop for the whole group, not one per request: each
        # costs the loop a self-pipe write and read.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[bool]], Outcome]]]
        by_loop = {}
        for (_, loop, future), outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)
        maintain(self._events)


def maintain(events: EventRepository) -> None:
    """The store's upkeep, after the group is answered; a failure is logged, not raised:
    it is retried after the next group and no request depends on it."""
    try:
        events.maintain()
    except Exception as exc:
        log.error("store upkeep after a write failed: %s", type(exc).__name__)


def _settle(settled: list[tuple[asyncio.Future[list[bool]], Outcome]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled: the client went away before the commit
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
