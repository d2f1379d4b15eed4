"""The sealer: moves hot events from the transactional store into the lake, in batches.

One batch, under the store's lake lock (one sealer among all processes and nodes):

1. recover: if rows are claimed for a batch the lake already holds (a crash came
   between the lake commit and the delete), delete them; if the lake lacks it, copy it;
2. claim up to ``batch_rows`` unclaimed hot rows for batch ``n`` = one more than any
   batch number the lake or the store has seen;
3. append them to the lake in ONE Delta commit whose application transaction
   (``tacit-sealer``) records ``n``: the lake's watermark;
4. delete batch ``n`` from the hot table.

So a crash anywhere neither loses an event (a row leaves the hot table only after a lake
commit holds it) nor counts one twice (a batch the lake holds is never copied again, and
queries read a hot row only while its batch is above the lake's watermark). Late events
into an epoch already sealed are sealed the same way: a batch appends to any epochs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.lake.status import lake_status
from service.lake.table import Lake
from service.periodic import Periodic
from service.store.base import Store

log = logging.getLogger("tacit.lake")

BATCH_ROWS = 100_000


@dataclass
class SealReport:
    """What one call of :meth:`Sealer.seal` moved."""

    batches: int = 0
    rows: int = 0
    recovered: int = 0  # rows of an interrupted batch, found again
    watermark: int = 0  # the lake's last seal batch afterwards
    skipped: bool = False  # another process held the lake lock
    seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "recovered": self.recovered,
            "watermark": self.watermark,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


class Sealer:
    """Seals hot events into ``lake``. Library object: the CLI and the schedule call it."""

    def __init__(
        self,
        store: Store,
        lake: Lake,
        batch_rows: int = BATCH_ROWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.store = store
        self.lake = lake
        self.batch_rows = batch_rows
        self.clock = clock

    def seal(
        self,
        *,
        wait: bool = True,
        max_batches: int | None = None,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> SealReport:
        """Seal batches until the hot table is empty (or ``max_batches``, or ``stop``)."""
        started = time.perf_counter()
        report = SealReport()
        with self.store.hot.lake_lock(wait) as held:
            if not held:
                report.skipped = True
                return report
            report.recovered = self._recover()
            while max_batches is None or report.batches < max_batches:
                if stop is not None and stop.is_set():
                    break
                moved = self._one_batch()
                if not moved:
                    break
                report.batches += 1
                report.rows += moved
                if progress is not None:
                    progress(moved)
            report.watermark = self.lake.sealed_batch()
            if report.rows or report.recovered:
                self.store.hot.note("seal", _ms(self.clock()))
        report.seconds = time.perf_counter() - started
        if report.rows or report.recovered:
            log.info(
                "sealed %d events in %d batches (watermark %d, %d recovered)",
                report.rows,
                report.batches,
                report.watermark,
                report.recovered,
            )
        return report

    def compact(self, *, wait: bool = True) -> bool:
        """Merge the lake's small files (then vacuum); False if another process held the lock."""
        with self.store.hot.lake_lock(wait) as held:
            if not held:
                return False
            self.lake.compact()
            at = _ms(self.clock())
            self.store.hot.note("compaction", at)
            self.store.hot.note("vacuum", at)
        return True

    def _recover(self) -> int:
        """Finish a batch a crash interrupted (claimed in the store, maybe in the lake)."""
        pending = self.store.hot.pending()
        if pending is None:
            return 0
        sealed = self.lake.sealed_batch()
        recovered = 0
        if pending > sealed:
            rows = self.store.hot.batch_rows(pending)
            if rows:
                self.lake.append(rows, pending)
            recovered = len(rows)
        # Claimed rows of batches the lake holds (an older crash) go too.
        self.store.hot.release(max(pending, sealed))
        return recovered

    def _one_batch(self) -> int:
        hot = self.store.hot
        batch = max(self.lake.sealed_batch(), hot.pending() or 0, hot.claimed()) + 1
        if not hot.claim(batch, self.batch_rows):
            return 0
        rows = hot.batch_rows(batch)
        self.lake.append(rows, batch)
        hot.release(batch)
        return len(rows)


class SealSchedule:
    """Runs the sealer (and compaction) in a thread while the service serves.

    Every process of a deployment runs one; the lake lock makes one seal at a time, and a
    process that finds it held skips its turn. Compaction runs every ``compact_interval_s``.
    """

    def __init__(
        self,
        sealer: Sealer,
        interval_s: float,
        compact_interval_s: float,
        clock: Callable[[], datetime],
        *,
        first_delay_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.sealer = sealer
        self._on_status = on_status
        self._compact_interval = compact_interval_s
        self._clock = clock
        self._last_compact = time.monotonic()
        self.runs = 0
        self.last_report: SealReport | None = None
        first = interval_s if first_delay_s is None else first_delay_s
        self._periodic = Periodic("tacit-sealer", self._tick, interval_s, first, "sealing", log)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop, ending a running pass after its current batch."""
        self._periodic.stop(timeout)

    def _tick(self, stop: threading.Event) -> None:
        self.last_report = self.sealer.seal(wait=False, stop=stop)
        self.runs += 1
        if time.monotonic() - self._last_compact >= self._compact_interval:
            self._last_compact = time.monotonic()
            self.sealer.compact(wait=False)
        if self._on_status is not None:
            self._on_status(lake_status(self.sealer.store, self.sealer.lake, self._clock()))


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
