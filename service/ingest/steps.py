"""Steps 2-6 of ingestion: clock, policy, pseudonymize, sample, coarsen.

Each step takes the drafts still in play and returns those it keeps; one it drops is
recorded on the batch's :class:`StepContext` with a reason from the fixed
:class:`Reason` list (every drop is counted). The order is the order of :data:`STEPS`.

A step runs over the whole batch in one loop rather than once per event: ingestion is
CPU-bound, and per event the five calls, their frames and the per-call lookups of policy
facts cost as much as the work itself (bench/ingest.py). Times are integer milliseconds
since the Unix epoch from the clock step on, so that no step does datetime arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from privacy.events import (
    EVENT_TYPE_CODES,
    OTHER,
    PAYLOAD_COLUMNS,
    PAYLOAD_FIELDS,
    Event,
    EventType,
)
from privacy.keyring import EpochExpired, Keyring
from privacy.policy import IdentifierAction, Policy
from privacy.policy.open import declared_values, open_dimensions
from privacy.pseudonym import EpochKeys
from service.ingest.parse import FieldError
from service.store.rows import to_ms

_MS = timedelta(milliseconds=1)


class Reason(StrEnum):
    INVALID = "invalid"
    IN_FUTURE = "in_future"
    TOO_OLD = "too_old"
    EVENT_TYPE_NOT_ALLOWED = "event_type_not_allowed"
    SAMPLED_OUT = "sampled_out"


@dataclass(frozen=True)
class Drop:
    reason: Reason
    errors: tuple[FieldError, ...] = ()


@dataclass(slots=True)
class Draft:
    """One valid event on its way to the store."""

    index: int
    event: Event
    client_ms: int = 0  # the client's timestamp (the idempotency key's time)
    stored_ms: int = 0  # after clock correction
    epoch: int = 0  # salt epoch of the stored time
    client_epoch: int = 0  # salt epoch of the client's timestamp (keys the event id)
    keys: EpochKeys | None = None
    idempotency_key: tuple[int, int] = (0, 0)
    pseudonyms: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
    sampling_unit: int = 0
    context: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
    inclusion_prob: float = 1.0
    ts: int = 0  # stored time in seconds, truncated to the policy's precision


class PolicyFacts:
    """What the steps read from a policy, worked out once rather than on every request."""

    def __init__(self, policy: Policy) -> None:
        ids = policy.identifiers
        self.rotation_ms = ids.salt_rotation // _MS
        self.precision_s = int(policy.timestamp_precision.total_seconds())
        self.pseudonymized = (  # session, query, response (user_id is always pseudonymized)
            ids.action("session_id") is IdentifierAction.PSEUDONYMIZE,
            ids.action("query_id") is IdentifierAction.PSEUDONYMIZE,
            ids.action("response_id") is IdentifierAction.PSEUDONYMIZE,
        )
        self.event_types: frozenset[str] = frozenset(policy.event_types)
        self.allowed_types = ", ".join(t.value for t in policy.event_types)
        self.rates: dict[EventType, float] = {t: policy.sampling.rate(t) for t in EventType}
        # Declared label -> itself; a value looked up here and not found becomes OTHER.
        # None for an open dimension: its labels are kept as sent (already checked
        # against the label pattern by validation), for partition selection to choose from.
        opened = open_dimensions(policy)
        self.labels: tuple[dict[str, str] | None, ...] = tuple(
            None if dim in opened else {v: v for v in declared_values(policy, dim)}
            for dim in ("surface", "task_type", "cohort", "model")
        )
        days = ids.salt_retention.total_seconds() / 86400
        self.too_old = Drop(
            Reason.TOO_OLD,
            (
                FieldError(
                    "timestamp",
                    f"is older than the salt retention ({days:g} days): "
                    "its epoch's salt no longer exists",
                ),
            ),
        )


class Hashers(NamedTuple):
    """One epoch's keys, and its pseudonym function per keyed field (EpochKeys.hasher)."""

    keys: EpochKeys
    user_id: Callable[[str], int]
    session_id: Callable[[str], int]
    query_id: Callable[[str], int]
    response_id: Callable[[str], int]
    event_id: Callable[[str], int]

    @classmethod
    def of(cls, keys: EpochKeys) -> Hashers:
        return cls(keys, *map(keys.hasher, cls._fields[1:]))


@dataclass
class StepContext:
    """What the steps may consult: the policy's facts, the keyring and the request's clock.

    One context serves a whole batch: it works out once what every event of the batch
    would otherwise recompute (the oldest live epoch, keys) and collects the drafts the
    steps drop. ``facts`` may be shared by every request under the same policy.
    """

    keyring: Keyring
    now: datetime
    max_future: timedelta
    calibrating: bool
    facts: PolicyFacts
    dropped: list[tuple[Draft, Drop]] = field(default_factory=list)
    now_ms: int = field(init=False)
    latest_ms: int = field(init=False)  # stored times after this are in the future
    oldest_live: int = field(init=False)  # epochs before this have no salt any more
    _hashers: dict[int, Hashers] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.now_ms = to_ms(self.now)
        self.latest_ms = to_ms(self.now + self.max_future)
        self.oldest_live = self.keyring.oldest_live_epoch(self.now)

    def hashers(self, epoch: int) -> Hashers:
        """``epoch``'s keys and pseudonym functions (raises EpochExpired like the keyring)."""
        hashers = self._hashers.get(epoch)
        if hashers is None:
            hashers = self._hashers[epoch] = Hashers.of(self.keyring.keys(epoch, self.now))
        return hashers

    def drop(self, draft: Draft, drop: Drop) -> None:
        self.dropped.append((draft, drop))


Step = Callable[[list[Draft], StepContext], list[Draft]]


def clock(drafts: list[Draft], ctx: StepContext) -> list[Draft]:
    rotation = ctx.facts.rotation_ms
    now_ms, latest, oldest = ctx.now_ms, ctx.latest_ms, ctx.oldest_live
    kept = []
    for draft in drafts:
        event = draft.event
        client = to_ms(event.timestamp)
        sent_at = event.sent_at
        # The client's clock error, removed.
        stored = client if sent_at is None else client + (now_ms - to_ms(sent_at))
        if stored > latest:
            ctx.drop(draft, _in_future(ctx))
            continue
        epoch, client_epoch = stored // rotation, client // rotation
        if epoch < oldest or client_epoch < oldest:
            ctx.drop(draft, ctx.facts.too_old)
            continue
        draft.client_ms, draft.stored_ms = client, stored
        draft.epoch, draft.client_epoch = epoch, client_epoch
        kept.append(draft)
    return kept


def _in_future(ctx: StepContext) -> Drop:
    hours = ctx.max_future.total_seconds() / 3600
    return Drop(
        Reason.IN_FUTURE,
        (
            FieldError(
                "timestamp", f"is more than {hours:g} h in the future after clock correction"
            ),
        ),
    )


def policy(drafts: list[Draft], ctx: StepContext) -> list[Draft]:
    allowed = ctx.facts.event_types
    surfaces, tasks, cohorts, models = ctx.facts.labels
    kept = []
    for draft in drafts:
        event = draft.event
        if event.event_type not in allowed:
            message = f"is not collected under this policy; allowed: {ctx.facts.allowed_types}"
            ctx.drop(
                draft,
                Drop(Reason.EVENT_TYPE_NOT_ALLOWED, (FieldError("event_type", message),)),
            )
            continue
        c = event.context
        draft.context = (
            _label(c.surface, surfaces),
            _label(c.task_type, tasks),
            _label(c.cohort, cohorts),
            _label(c.model, models),
        )
        kept.append(draft)
    return kept


def pseudonymize(drafts: list[Draft], ctx: StepContext) -> list[Draft]:
    keep_session, keep_query, keep_response = ctx.facts.pseudonymized
    # People and sessions recur within a batch (an SDK batches one app's traffic): each
    # distinct (epoch, value) is hashed once per batch.
    users: dict[tuple[int, str], int] = {}
    sessions: dict[tuple[int, str], int] = {}
    kept = []
    for draft in drafts:
        event = draft.event
        epoch = draft.epoch
        try:
            hash_ = ctx.hashers(epoch)
            # The event id is keyed by the client's epoch: a retry must find its first copy.
            hash_id = (
                hash_ if draft.client_epoch == epoch else ctx.hashers(draft.client_epoch)
            ).event_id
        except EpochExpired:
            ctx.drop(draft, ctx.facts.too_old)
            continue
        user = users.get((epoch, event.user_id))
        if user is None:
            user = users[epoch, event.user_id] = hash_.user_id(event.user_id)
        session = sessions.get((epoch, event.session_id))
        if session is None:
            session = sessions[epoch, event.session_id] = hash_.session_id(event.session_id)
        draft.keys = hash_.keys
        draft.sampling_unit = session
        draft.pseudonyms = (
            user,
            session if keep_session else None,
            hash_.query_id(event.query_id) if keep_query else None,
            hash_.response_id(event.response_id) if keep_response else None,
        )
        draft.idempotency_key = (draft.client_ms, hash_id(event.event_id))
        kept.append(draft)
    return kept


_TWO_64 = float(1 << 64)


def sample(drafts: list[Draft], ctx: StepContext) -> list[Draft]:
    rates = ctx.facts.rates
    if ctx.calibrating or all(rate >= 1.0 for rate in rates.values()):
        return drafts
    # A keyed hash of the session pseudonym: a session is kept or dropped whole, and the
    # same session is decided the same way on every retry and every worker.
    draws: dict[tuple[int, int], float] = {}
    kept = []
    for draft in drafts:
        rate = rates[draft.event.event_type]
        if rate >= 1.0:
            kept.append(draft)
            continue
        assert draft.keys is not None
        unit = (draft.epoch, draft.sampling_unit)
        draw = draws.get(unit)
        if draw is None:
            digest = draft.keys.digest(
                "sampling", draft.sampling_unit.to_bytes(8, "big", signed=True)
            )
            draw = draws[unit] = int.from_bytes(digest[:8], "big") / _TWO_64
        if draw >= rate:
            ctx.drop(draft, Drop(Reason.SAMPLED_OUT))
            continue
        draft.inclusion_prob = rate
        kept.append(draft)
    return kept


def coarsen(drafts: list[Draft], ctx: StepContext) -> list[Draft]:
    precision = ctx.facts.precision_s
    for draft in drafts:
        seconds = draft.stored_ms // 1000
        draft.ts = seconds - seconds % precision
    return drafts


STEPS: tuple[tuple[str, Step], ...] = (
    ("clock", clock),
    ("policy", policy),
    ("pseudonymize", pseudonymize),
    ("sample", sample),
    ("coarsen", coarsen),
)


# Per event type: the positions of its payload fields among the stored payload columns.
_PAYLOAD_SLOTS: dict[EventType, tuple[tuple[int, str], ...]] = {
    t: tuple((PAYLOAD_COLUMNS.index(c), c) for c in fields) for t, fields in PAYLOAD_FIELDS.items()
}
_NO_PAYLOAD: list[object] = [None] * len(PAYLOAD_COLUMNS)


def row(draft: Draft, source_id: int) -> tuple[object, ...]:
    """The stored row of a draft that went through every step (column order: EVENT_COLUMNS)."""
    event = draft.event
    fields = event.payload.__dict__
    payload = _NO_PAYLOAD.copy()  # the columns of other types' payloads stay empty
    for i, column in _PAYLOAD_SLOTS[event.event_type]:
        payload[i] = fields[column]
    return (
        draft.epoch,
        draft.ts,
        EVENT_TYPE_CODES[event.event_type],
        source_id,
        *draft.pseudonyms,
        *draft.context,
        *payload,
        draft.inclusion_prob,
    )


def _label(value: str | None, declared: dict[str, str] | None) -> str | None:
    """A declared label, OTHER for an undeclared one, the label itself on an open dimension."""
    if value is None or declared is None:
        return value
    return declared.get(value, OTHER)
