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

from privacy.events import EVENT_TYPE_CODES, OTHER, Event
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


@dataclass
class StepContext:
    """What the steps may consult: the policy, the keyring and the request's clock."""

    policy: Policy
    keyring: Keyring
    now: datetime
    max_future: timedelta
    calibrating: bool


Step = Callable[[Draft, StepContext], Drop | None]


def clock(draft: Draft, ctx: StepContext) -> Drop | None:
    event = draft.event
    stored = event.timestamp
    if event.sent_at is not None:
        stored = stored + (ctx.now - event.sent_at)  # the client's clock error, removed
    if stored > ctx.now + ctx.max_future:
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
    draft.epoch = ctx.keyring.epoch_of(stored)
    client_epoch = ctx.keyring.epoch_of(event.timestamp)
    if not (
        ctx.keyring.is_alive(draft.epoch, ctx.now) and ctx.keyring.is_alive(client_epoch, ctx.now)
    ):
        return _too_old(ctx)
    return None


def policy(draft: Draft, ctx: StepContext) -> Drop | None:
    event = draft.event
    if event.event_type not in ctx.policy.event_types:
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
        keys = ctx.keyring.keys(draft.epoch, ctx.now)
        client_keys = (
            keys
            if ctx.keyring.epoch_of(event.timestamp) == draft.epoch
            else ctx.keyring.keys(ctx.keyring.epoch_of(event.timestamp), ctx.now)
        )
    except EpochExpired:
        return _too_old(ctx)
    ids = ctx.policy.identifiers
    user = keys.pseudonym("user_id", event.user_id)
    session = keys.pseudonym("session_id", event.session_id)
    draft.keys = keys
    draft.sampling_unit = session
    draft.pseudonyms = (
        user,
        session if ids.action("session_id") is IdentifierAction.PSEUDONYMIZE else None,
        keys.pseudonym("query_id", event.query_id)
        if ids.action("query_id") is IdentifierAction.PSEUDONYMIZE
        else None,
        keys.pseudonym("response_id", event.response_id)
        if ids.action("response_id") is IdentifierAction.PSEUDONYMIZE
        else None,
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
    precision = int(ctx.policy.timestamp_precision.total_seconds())
    seconds = int(draft.stored_at.timestamp())
    draft.ts = seconds - seconds % precision
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
    p = event.payload
    u, s, q, r = draft.pseudonyms
    return (
        draft.epoch,
        draft.ts,
        EVENT_TYPE_CODES[event.event_type],
        source_id,
        u,
        s,
        q,
        r,
        *draft.context,
        getattr(p, "position", None),
        getattr(p, "candidates", None),
        getattr(p, "similarity", None),
        getattr(p, "span_start", None),
        getattr(p, "span_end", None),
        getattr(p, "span_length", None),
        getattr(p, "destination", None),
        getattr(p, "edit_ratio", None),
        getattr(p, "dwell_ms", None),
        getattr(p, "scroll_depth", None),
        getattr(p, "after_ms", None),
        getattr(p, "outcome", None),
        draft.inclusion_prob,
    )
