"""Steps 2-6 of ingestion: clock, policy, pseudonymize, sample, coarsen.

Each step takes a :class:`Draft` and either returns None (keep going) or a
:class:`Drop` with a reason from the fixed :class:`Reason` list. The order is the
order of :data:`STEPS`; every drop is counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from privacy.events import EVENT_TYPE_CODES, OTHER, PAYLOAD_COLUMNS, Event
from privacy.keyring import EpochExpired, Keyring
from privacy.policy import IdentifierAction, Policy
from privacy.pseudonym import EpochKeys
from service.ingest.parse import FieldError


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


@dataclass
class Draft:
    """One valid event on its way to the store."""

    index: int
    event: Event
    stored_at: datetime = field(init=False)
    epoch: int = 0
    keys: EpochKeys | None = None
    idempotency_key: tuple[int, int] = (0, 0)
    pseudonyms: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
    sampling_unit: int = 0
    context: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
    inclusion_prob: float = 1.0
    ts: int = 0


class PolicyFacts:
    """What the steps read from a policy, worked out once rather than on every request."""

    def __init__(self, policy: Policy) -> None:
        ids = policy.identifiers
        self._identifiers = ids
        self.precision_s = int(policy.timestamp_precision.total_seconds())
        self.pseudonymized = (  # session, query, response (user_id is always pseudonymized)
            ids.action("session_id") is IdentifierAction.PSEUDONYMIZE,
            ids.action("query_id") is IdentifierAction.PSEUDONYMIZE,
            ids.action("response_id") is IdentifierAction.PSEUDONYMIZE,
        )
        self.event_types: frozenset[str] = frozenset(policy.event_types)
        self._current: tuple[int, datetime, datetime] | None = None

    def epoch_around(self, now: datetime) -> tuple[int, datetime, datetime]:
        """The salt epoch of ``now`` with its first instant and the next epoch's."""
        current = self._current
        if current is None or not current[1] <= now < current[2]:
            ids = self._identifiers
            epoch = ids.epoch_of(now)
            current = self._current = (epoch, ids.epoch_start(epoch), ids.epoch_start(epoch + 1))
        return current


@dataclass
class StepContext:
    """What the steps may consult: the policy, the keyring and the request's clock.

    One context serves a whole batch, so it also remembers the answers every event of
    the batch would otherwise recompute (epoch bounds, keys). ``facts`` may be shared by
    every request under the same policy.
    """

    policy: Policy
    keyring: Keyring
    now: datetime
    max_future: timedelta
    calibrating: bool
    facts: PolicyFacts | None = None
    latest: datetime = field(init=False)  # stored times after this are in the future
    _epoch: tuple[int, datetime, datetime] = field(init=False, repr=False)
    _alive: dict[int, bool] = field(default_factory=dict, init=False, repr=False)
    _keys: dict[int, EpochKeys] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.facts is None:
            self.facts = PolicyFacts(self.policy)
        self.latest = self.now + self.max_future
        self._epoch = self.facts.epoch_around(self.now)

    def epoch_of(self, t: datetime) -> int:
        """The keyring's epoch of ``t``; most events fall in the current one, known here."""
        epoch, start, end = self._epoch
        return epoch if start <= t < end else self.keyring.epoch_of(t)

    def is_alive(self, epoch: int) -> bool:
        alive = self._alive.get(epoch)
        if alive is None:
            alive = self._alive[epoch] = self.keyring.is_alive(epoch, self.now)
        return alive

    def keys(self, epoch: int) -> EpochKeys:
        """The keyring's keys of ``epoch`` (raises EpochExpired like the keyring)."""
        keys = self._keys.get(epoch)
        if keys is None:
            keys = self._keys[epoch] = self.keyring.keys(epoch, self.now)
        return keys


Step = Callable[[Draft, StepContext], Drop | None]


def clock(draft: Draft, ctx: StepContext) -> Drop | None:
    event = draft.event
    stored = event.timestamp
    if event.sent_at is not None:
        stored = stored + (ctx.now - event.sent_at)  # the client's clock error, removed
    if stored > ctx.latest:
        hours = ctx.max_future.total_seconds() / 3600
        return Drop(
            Reason.IN_FUTURE,
            (
                FieldError(
                    "timestamp", f"is more than {hours:g} h in the future after clock correction"
                ),
            ),
        )
    draft.stored_at = stored
    draft.epoch = ctx.epoch_of(stored)
    client_epoch = ctx.epoch_of(event.timestamp)
    if not (ctx.is_alive(draft.epoch) and ctx.is_alive(client_epoch)):
        return _too_old(ctx)
    return None


def policy(draft: Draft, ctx: StepContext) -> Drop | None:
    event = draft.event
    assert ctx.facts is not None
    if event.event_type not in ctx.facts.event_types:
        allowed = ", ".join(t.value for t in ctx.policy.event_types)
        return Drop(
            Reason.EVENT_TYPE_NOT_ALLOWED,
            (FieldError("event_type", f"is not collected under this policy; allowed: {allowed}"),),
        )
    declared = ctx.policy.context
    c = event.context
    draft.context = (
        _label(c.surface, declared.get("surface")),
        _label(c.task_type, declared.get("task_type")),
        _label(c.cohort, declared.get("cohort")),
        _label(c.model, declared.get("model")),
    )
    return None


def _label(value: str | None, allowed: list[str] | None) -> str | None:
    if value is None:
        return None
    return value if allowed and value in allowed else OTHER


def pseudonymize(draft: Draft, ctx: StepContext) -> Drop | None:
    event = draft.event
    try:
        keys = ctx.keys(draft.epoch)
        client_epoch = ctx.epoch_of(event.timestamp)
        client_keys = keys if client_epoch == draft.epoch else ctx.keys(client_epoch)
    except EpochExpired:
        return _too_old(ctx)
    assert ctx.facts is not None
    keep_session, keep_query, keep_response = ctx.facts.pseudonymized
    user = keys.pseudonym("user_id", event.user_id)
    session = keys.pseudonym("session_id", event.session_id)
    draft.keys = keys
    draft.sampling_unit = session
    draft.pseudonyms = (
        user,
        session if keep_session else None,
        keys.pseudonym("query_id", event.query_id) if keep_query else None,
        keys.pseudonym("response_id", event.response_id) if keep_response else None,
    )
    ts_ms = int(event.timestamp.timestamp() * 1000)
    draft.idempotency_key = (ts_ms, client_keys.pseudonym("event_id", event.event_id))
    return None


_TWO_64 = float(1 << 64)


def sample(draft: Draft, ctx: StepContext) -> Drop | None:
    if ctx.calibrating:
        return None
    rate = ctx.policy.sampling.rate(draft.event.event_type)
    if rate >= 1.0:
        return None
    assert draft.keys is not None
    # A keyed hash of the session pseudonym: a session is kept or dropped whole, and the
    # same session is decided the same way on every retry and every worker.
    digest = draft.keys.digest("sampling", draft.sampling_unit.to_bytes(8, "big", signed=True))
    if int.from_bytes(digest[:8], "big") / _TWO_64 >= rate:
        return Drop(Reason.SAMPLED_OUT)
    draft.inclusion_prob = rate
    return None


def coarsen(draft: Draft, ctx: StepContext) -> Drop | None:
    seconds = int(draft.stored_at.timestamp())
    assert ctx.facts is not None
    draft.ts = seconds - seconds % ctx.facts.precision_s
    return None


def _too_old(ctx: StepContext) -> Drop:
    days = ctx.policy.identifiers.salt_retention.total_seconds() / 86400
    return Drop(
        Reason.TOO_OLD,
        (
            FieldError(
                "timestamp",
                f"is older than the salt retention ({days:g} days): "
                "its epoch's salt no longer exists",
            ),
        ),
    )


STEPS: tuple[tuple[str, Step], ...] = (
    ("clock", clock),
    ("policy", policy),
    ("pseudonymize", pseudonymize),
    ("sample", sample),
    ("coarsen", coarsen),
)


def row(draft: Draft, source_id: int) -> tuple[object, ...]:
    """The stored row of a draft that went through every step (column order: EVENT_COLUMNS)."""
    event = draft.event
    # A payload has a few of the payload columns; read its fields directly, because
    # getattr on a missing pydantic attribute raises (and costs) an exception.
    fields = event.payload.__dict__
    return (
        draft.epoch,
        draft.ts,
        EVENT_TYPE_CODES[event.event_type],
        source_id,
        *draft.pseudonyms,
        *draft.context,
        *[fields.get(column) for column in PAYLOAD_COLUMNS],
        draft.inclusion_prob,
    )
