"""The retention sweeper: enforces the policy's retention and salt-retention lines.

One sweep, at a given ``now``:

1. deletes events older than their type's retention, quarantined rejects older than the
   quarantine retention, and idempotency keys older than the longest event retention
   (after that no event they could deduplicate is kept anyway), in short batches;
2. destroys the salts of epochs past the salt retention (crypto-shredding: one audit
   entry per epoch, in the same transaction);
3. calls the epoch-expiry hooks (:func:`epoch_expiry_hooks`) for epochs whose events
   are all gone;
4. writes one ``retention_run`` audit entry with the counts, then purges the deleted
   bytes from the database files.

A dry run counts what would go and changes nothing. :class:`RetentionSchedule` runs the
sweeper in a thread while the service serves; the SQL lives in the store's
``retention`` repository. Time is always passed in, never read here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from privacy.events import EVENT_TYPE_CODES, EVENT_TYPES_BY_CODE, EventType
from privacy.keyring import Keyring
from privacy.policy import Policy
from service.periodic import Periodic
from service.store.base import Store

if TYPE_CHECKING:
    from service.lake.upkeep import LakeUpkeep

log = logging.getLogger("tacit.retention")
T = TypeVar("T")

BATCH_ROWS = 2000
# Between two batches the sweeper sleeps this long, so that a writer waiting for the
# lock (ingestion's group commit) gets it before the next batch does.
BATCH_PAUSE_S = 0.005
BATCH_REST_RATIO = 1.0
# Coarsening never moves a timestamp back by more than a day (the policy's precision
# divides a day), so an event with ts < cutoff lies in an epoch <= epoch_of(cutoff + 1 day),
# whatever precision the policy had when the event was stored.
_MAX_PRECISION = timedelta(days=1)

EpochHook = Callable[[int], Sequence[int]]
"""Forgets per-epoch state of every epoch < the given one; returns the epochs forgotten."""


def epoch_expiry_hooks(store: Store) -> dict[str, EpochHook]:
    """Per-epoch state that must leave with the epoch's events: the budget ledger.

    Each hook is called with the first epoch that may still hold events (every earlier
    epoch's events are past retention, so no query can reach it) and returns the epochs
    it forgot.
    """
    return {"budgets": store.ledger.forget_before}


@dataclass
class RetentionReport:
    """What one sweep deleted (or, in a dry run, would delete)."""

    at: datetime
    dry_run: bool
    events: dict[str, int] = field(default_factory=dict)  # per event type
    quarantine: int = 0
    event_keys: int = 0
    salts_destroyed: list[int] = field(default_factory=list)  # epoch ids
    epochs_forgotten: dict[str, int] = field(default_factory=dict)  # per hook
    first_kept_epoch: int = 0  # every earlier epoch holds no event any more
    interrupted: bool = False
    purged: bool | None = None  # deleted bytes gone from the files (None: dry run)
    lake: dict[str, int] | None = None  # events deleted from the lake, files vacuumed
    seconds: float = 0.0

    @property
    def events_total(self) -> int:
        return sum(self.events.values())

    def audit_detail(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "quarantine": self.quarantine,
            "event_keys": self.event_keys,
            "salts_destroyed": len(self.salts_destroyed),
            "epochs_forgotten": dict(self.epochs_forgotten),
            "interrupted": self.interrupted,
            **({} if self.lake is None else {"lake": dict(self.lake)}),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "dry_run": self.dry_run,
            **self.audit_detail(),
            "salts_destroyed": list(self.salts_destroyed),
            "first_kept_epoch": self.first_kept_epoch,
            "purged": self.purged,
            "seconds": round(self.seconds, 3),
        }


class Interrupted(Exception):
    """The service is stopping: the sweep ends after its current batch."""


class Sweeper:
    """Deletes what the policy no longer allows to keep. Library object; the CLI and the
    in-process schedule both call :meth:`run`."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        keyring: Keyring | None = None,
        batch_rows: int = BATCH_ROWS,
        batch_pause_s: float = BATCH_PAUSE_S,
        rest_ratio: float = BATCH_REST_RATIO,
        hooks: dict[str, EpochHook] | None = None,
        actor: str = "retention",
        lake: LakeUpkeep | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self._store = store
        self._policy = policy
        self._keyring = keyring
        self._batch = batch_rows
        self._pause = batch_pause_s
        self._rest_ratio = rest_ratio
        self._hooks = epoch_expiry_hooks(store) if hooks is None else hooks
        self._actor = actor
        self._lake = lake

    def cutoffs(self, now: datetime) -> dict[EventType, datetime]:
        """Per event type, the instant before which its events are past retention."""
        return {t: now - self._policy.retention.for_type(t) for t in EventType}

    def longest_retention(self) -> timedelta:
        retention = self._policy.retention
        return max([retention.default, *retention.event_types.values()])

    def run(
        self, now: datetime, dry_run: bool = False, *, stop: threading.Event | None = None
    ) -> RetentionReport:
        """One sweep at ``now``; with ``dry_run`` only count. ``stop`` ends it early."""
        started = time.perf_counter()
        ids = self._policy.identifiers
        report = RetentionReport(now, dry_run)
        report.first_kept_epoch = ids.epoch_of(now - self.longest_retention())
        try:
            self._events(now, report, stop)
            if self._lake is not None:
                self._lake_events(now, report)
            self._quarantine_and_keys(now, report, stop)
        except Interrupted:
            report.interrupted = True
        oldest_live = ids.oldest_live_epoch(now)
        if dry_run:
            report.salts_destroyed = self._store.retention.live_salts_before(oldest_live)
            report.seconds = time.perf_counter() - started
            return report
        report.salts_destroyed = self._store.retention.destroy_salts(oldest_live, now, self._actor)
        if report.salts_destroyed and self._keyring is not None:
            self._keyring.forget()  # no destroyed salt stays in this process's memory
        if not report.interrupted:
            for name, hook in self._hooks.items():
                report.epochs_forgotten[name] = len(hook(report.first_kept_epoch))
        self._store.audit.append("retention_run", self._actor, report.audit_detail(), now)
        report.purged = self._store.retention.purge_deleted()
        report.seconds = time.perf_counter() - started
        log.info(
            "retention run: %d events, %d quarantined, %d keys deleted; %d salts destroyed%s",
            report.events_total,
            report.quarantine,
            report.event_keys,
            len(report.salts_destroyed),
            " (interrupted)" if report.interrupted else "",
        )
        if not report.purged:
            log.warning(
                "retention run: the WAL could not be truncated (a reader held an old "
                "snapshot); deleted rows leave the WAL at the next run"
            )
        return report

    def _events(self, now: datetime, report: RetentionReport, stop: threading.Event | None) -> None:
        repo = self._store.retention
        ids = self._policy.identifiers
        if not report.dry_run:
            # Epochs past the longest retention go whole (the bulk of a backlog), then
            # what is left past each type's own retention.
            first_kept = report.first_kept_epoch
            before_ts = math.ceil(ids.epoch_start(first_kept).timestamp())
            for counts in self._paced(repo.delete_epochs(first_kept, before_ts, self._batch), stop):
                for code, n in counts.items():
                    name = EVENT_TYPES_BY_CODE[code].value
                    report.events[name] = report.events.get(name, 0) + n
        for event_type, cutoff in self.cutoffs(now).items():
            # ts is whole seconds: ts < ceil(cutoff) keeps exactly the rows at or after it.
            before_ts = math.ceil(cutoff.timestamp())
            max_epoch = ids.epoch_of(cutoff + _MAX_PRECISION)
            code = EVENT_TYPE_CODES[event_type]
            if report.dry_run:
                count = repo.count_events(code, before_ts, max_epoch)
            else:
                batches = repo.delete_events(code, before_ts, max_epoch, self._batch)
                count = sum(self._paced(batches, stop))
            report.events[event_type.value] = report.events.get(event_type.value, 0) + count

    def _lake_events(self, now: datetime, report: RetentionReport) -> None:
        """The same lines on the lake (service/lake/upkeep.py), after the hot tier's."""
        assert self._lake is not None
        ids = self._policy.identifiers
        cutoffs = {
            EVENT_TYPE_CODES[t]: (
                math.ceil(cutoff.timestamp()),
                ids.epoch_of(cutoff + _MAX_PRECISION),
            )
            for t, cutoff in self.cutoffs(now).items()
        }
        counts, vacuumed = self._lake.retain(
            report.first_kept_epoch, cutoffs, dry_run=report.dry_run, at=now
        )
        for code, n in counts.items():
            name = EVENT_TYPES_BY_CODE[code].value
            report.events[name] = report.events.get(name, 0) + n
        report.lake = {"events": sum(counts.values()), "files_vacuumed": vacuumed}

    def _quarantine_and_keys(
        self, now: datetime, report: RetentionReport, stop: threading.Event | None
    ) -> None:
        repo = self._store.retention
        quarantine_ms = _ms(now - self._policy.retention.quarantine)
        keys_ms = _ms(now - self.longest_retention())
        if report.dry_run:
            report.quarantine = repo.count_quarantine(quarantine_ms)
            report.event_keys = repo.count_event_keys(keys_ms)
            return
        report.quarantine = sum(
            self._paced(repo.delete_quarantine(quarantine_ms, self._batch), stop)
        )
        report.event_keys = sum(self._paced(repo.delete_event_keys(keys_ms, self._batch), stop))

    def _paced(self, batches: Iterator[T], stop: threading.Event | None) -> Iterator[T]:
        """The batches, with a rest after each; raises Interrupted once ``stop`` is set."""
        started = time.perf_counter()
        for batch in batches:
            yield batch
            if stop is not None and stop.is_set():
                raise Interrupted
            # Rest as long as the batch took (times the ratio): the sweep then uses at
            # most 1 / (1 + ratio) of the write lock and of a core, and the requests that
            # queued behind a batch are written before the next one starts.
            busy = time.perf_counter() - started
            time.sleep(max(self._pause, busy * self._rest_ratio))
            started = time.perf_counter()


def _ms(t: datetime) -> int:
    return math.ceil(t.timestamp() * 1000)


class RetentionSchedule:
    """Runs a :class:`Sweeper` every ``interval_s`` seconds in a thread while serving.

    With several worker processes each runs a schedule; a sweep starts only when no
    process claimed one in the last half interval (``claim_run``), and racing sweeps
    would be harmless anyway (each row is deleted, and each salt destroyed, once).
    """

    def __init__(
        self,
        sweeper: Sweeper,
        store: Store,
        clock: Callable[[], datetime],
        interval_s: float,
        *,
        first_delay_s: float | None = None,
    ) -> None:
        self._sweeper = sweeper
        self._store = store
        self._clock = clock
        # Not at once on start: a restart loop must not sweep on every start, and
        # short-lived test apps never sweep unless they ask for a short interval.
        first = min(interval_s, 60.0) if first_delay_s is None else first_delay_s
        self._periodic = Periodic("tacit-retention", self._tick, interval_s, first,
                                  "retention run", log)  # fmt: skip
        self.runs = 0  # sweeps this process ran
        self.last_report: RetentionReport | None = None

    @property
    def ticks(self) -> int:
        """Wake-ups, whether or not this process swept."""
        return self._periodic.ticks

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop, ending a running pass after its current batch."""
        self._periodic.stop(timeout)

    def _tick(self, stop: threading.Event) -> None:
        now = self._clock()
        half = timedelta(seconds=self._periodic.interval_s / 2)
        if not self._store.retention.claim_run(now, half):
            return
        self.last_report = self._sweeper.run(now, stop=stop)
        self.runs += 1
