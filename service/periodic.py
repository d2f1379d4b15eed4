"""A task run every few seconds in a background thread while the service serves.

The sealer and the retention sweep both run this way: a first run after a delay (not at
once, so a restart loop does not run the task on every start), then one every interval,
surviving a failed run (logged with its traceback; the next run retries), and stopping
promptly: the task is handed the stop event so a long run can end after its current batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    """Calls ``task(stop)`` every ``interval_s`` seconds in a daemon thread named ``name``."""

    def __init__(
        self,
        name: str,
        task: Callable[[threading.Event], None],
        interval_s: float,
        first_delay_s: float,
        what: str,
        log: logging.Logger,
    ) -> None:
        self.interval_s = interval_s
        self._task = task
        self._first_delay = first_delay_s
        self._what = what  # in the log line of a failed run: "sealing", "retention run"
        self._log = log
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.ticks = 0  # wake-ups that ran the task, failed or not

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop, ending a running task after its current batch (it sees ``stopping``)."""
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        delay = self._first_delay
        while not self.stopping.wait(delay):
            delay = self.interval_s
            try:
                self._task(self.stopping)
            except Exception:  # the schedule must outlive one failed run
                self._log.exception("%s failed; retrying in %g s", self._what, self.interval_s)
            self.ticks += 1
