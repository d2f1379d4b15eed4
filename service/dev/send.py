"""Sending a simulation's events to a running service, through the Python client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date

from service.client import BatchResult, Client, ClientClosed, ClientStats
from service.dev.simulate import Simulation


class Sender:
    """Sends a simulation's events through a client, blocking when its buffer is full (a
    simulation wants every event, not speed at any price). A refused token (401, 403)
    ends the run, as no later batch could succeed; so does :meth:`stop`, from any thread.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_result: Callable[[BatchResult], None] | None = None,
        batch_size: int = 500,
    ) -> None:
        self._refused = threading.Event()
        self._on_result = on_result
        self._client = Client(
            url, token, batch_size=batch_size, on_result=self._settled, max_attempts=None
        )

    def run(
        self, simulation: Simulation, on_day: Callable[[date, int], None] | None = None
    ) -> ClientStats:
        """Send every event of ``simulation``; the client's final stats."""
        client = self._client
        try:
            for day, events in simulation.by_day():
                for event in events:
                    if self._refused.is_set():
                        break
                    client.track(event, block=True)
                if self._refused.is_set():
                    break
                if on_day is not None:
                    on_day(day, len(events))
            client.flush()
        except ClientClosed:  # stop(): what was not sent is counted as abandoned
            pass
        finally:
            stats = client.close()
        return stats

    def stop(self) -> None:
        """End the run now, abandoning what is not sent yet (the server is going away)."""
        self._client.close(timeout=0)

    def _settled(self, result: BatchResult) -> None:
        if result.status_code in (401, 403):
            self._refused.set()
        if self._on_result is not None:
            self._on_result(result)


def run(
    simulation: Simulation,
    url: str,
    token: str,
    *,
    on_day: Callable[[date, int], None] | None = None,
    on_result: Callable[[BatchResult], None] | None = None,
    batch_size: int = 500,
) -> ClientStats:
    """Send a simulation's events through a new client (see :class:`Sender`)."""
    return Sender(url, token, on_result=on_result, batch_size=batch_size).run(simulation, on_day)
