"""The ingestion pipeline: validate, clock, policy, pseudonymize, sample, coarsen, store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from privacy.keyring import Keyring
from privacy.policy import Policy
from privacy.policy.open import declared_values
from service.ingest import quarantine
from service.ingest.parse import FieldError, Parsed
from service.ingest.steps import STEPS, Draft, Drop, PolicyFacts, Reason, StepContext, row
from service.store.base import Store, WriteBatch


@dataclass(frozen=True)
class Result:
    """An event that was not accepted, as the batch response lists it.

    It names the event by its position in the batch only: the client's event id is never
    echoed (ids often embed a user id), and the client knows which event it sent there.
    """

    index: int
    status: str  # duplicate | sampled_out | rejected
    reason: str | None = None
    errors: tuple[FieldError, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "status": self.status,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors]
        return out


@dataclass
class Prepared:
    """A batch after steps 1-6: rows ready to write, and what was dropped."""

    batch: WriteBatch
    row_indexes: list[int]  # the batch index of each row
    dropped: list[Result] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    accepted: int
    duplicates: int
    sampled_out: int
    rejected: int
    results: list[Result]
    rejected_by_reason: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "sampled_out": self.sampled_out,
            "rejected": self.rejected,
            "results": [r.as_dict() for r in self.results],
        }


class Ingestor:
    """Runs batches through the steps. Pure CPU work; the write happens elsewhere."""

    def __init__(
        self,
        policy: Policy,
        keyring: Keyring,
        store: Store,
        clock: Callable[[], datetime],
        max_future: timedelta,
    ) -> None:
        self._policy = policy
        self._keyring = keyring
        self._store = store
        self._clock = clock
        self._max_future = max_future
        # Declared labels only: an open dimension's labels are placeholders in quarantine.
        self._labels = {v for d in policy.context for v in declared_values(policy, d)}
        self._precision_s = int(policy.timestamp_precision.total_seconds())
        self._facts = PolicyFacts(policy)

    def prepare(self, parsed: Parsed, source_id: int) -> Prepared:
        now = self._clock()
        ctx = StepContext(self._keyring, now, self._max_future, self._calibrating(now), self._facts)
        prepared = Prepared(WriteBatch(source_id), [])
        drafts = [Draft(index, event) for index, event in parsed.events]
        for _name, step in STEPS:
            drafts = step(drafts, ctx)
        batch = prepared.batch
        for draft in drafts:
            batch.keys.append(draft.idempotency_key)
            batch.rows.append(row(draft, source_id))
            prepared.row_indexes.append(draft.index)
        for draft, drop in ctx.dropped:
            if drop.reason is Reason.SAMPLED_OUT:
                prepared.dropped.append(Result(draft.index, "sampled_out"))
            else:
                self._quarantine(prepared, now, drop, draft.event.model_dump(mode="json"))
                prepared.dropped.append(
                    Result(draft.index, "rejected", drop.reason.value, drop.errors)
                )
        for index, raw, errors in parsed.invalid:
            self._quarantine(prepared, now, Drop(Reason.INVALID, tuple(errors)), raw)
            prepared.dropped.append(Result(index, "rejected", Reason.INVALID.value, tuple(errors)))
        return prepared

    def report(self, prepared: Prepared, flags: list[bool]) -> Report:
        if len(flags) != len(prepared.row_indexes):
            raise ValueError("the store answered for a different number of rows")
        results = list(prepared.dropped)
        duplicates = flags.count(False)
        if duplicates:  # most batches have none: no per-event loop for them
            for index, stored in zip(prepared.row_indexes, flags, strict=True):
                if not stored:
                    results.append(Result(index, "duplicate"))
        results.sort(key=lambda r: r.index)
        by_reason = Counter(r.reason for r in results if r.status == "rejected")
        sampled = sum(1 for r in results if r.status == "sampled_out")
        rejected = sum(by_reason.values())
        return Report(
            accepted=len(flags) - duplicates,
            duplicates=duplicates,
            sampled_out=sampled,
            rejected=rejected,
            results=results,
            rejected_by_reason={str(k): v for k, v in by_reason.items()},
        )

    def _calibrating(self, now: datetime) -> bool:
        first = self._store.events.first_event_at()
        if first is None:
            first = self._store.events.mark_first_event(now)
        return now < first + self._policy.sampling.calibration_period

    def _quarantine(self, prepared: Prepared, now: datetime, drop: Drop, raw: Any) -> None:
        epoch = self._keyring.epoch_of(now)
        keys = self._keyring.keys(epoch, now)
        document, user = quarantine.sanitize(raw, keys, self._labels, self._precision_s)
        errors = quarantine.encode_errors(drop.errors)
        prepared.batch.quarantine.append(
            (
                int(now.timestamp() * 1000),
                prepared.batch.source_id,
                epoch,
                user,
                drop.reason.value,
                errors,
                quarantine.encode(document),
            )
        )
