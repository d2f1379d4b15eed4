"""Group commit: one writer thread folds the batches of concurrent requests into one
durable transaction, then wakes each request. A request is answered only after the
commit that holds its events (or with an error if that commit failed)."""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future

from service.store.base import EventRepository, WriteBatch

_MAX_GROUP = 64  # requests folded into one transaction at most


class WriterClosed(RuntimeError):
    pass


class GroupWriter:
    def __init__(self, events: EventRepository) -> None:
        self._events = events
        self._queue: queue.Queue[tuple[WriteBatch, Future[list[bool]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tacit-writer", daemon=True)
        self._closed = False
        self._thread.start()

    async def write(self, batch: WriteBatch) -> list[bool]:
        """Write one batch; returns a flag per row (True stored, False duplicate)."""
        return await asyncio.wrap_future(self.submit(batch))

    def submit(self, batch: WriteBatch) -> Future[list[bool]]:
        if self._closed:
            raise WriterClosed("the service is shutting down")
        future: Future[list[bool]] = Future()
        self._queue.put((batch, future))
        return future

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

    def _commit(self, group: list[tuple[WriteBatch, Future[list[bool]]]]) -> None:
        try:
            results = self._events.write([batch for batch, _ in group])
        except Exception as exc:  # every waiting request learns its events were not stored
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), flags in zip(group, results, strict=True):
            future.set_result(flags)
