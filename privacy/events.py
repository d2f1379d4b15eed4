"""The event model: what an app may send, and nothing more.

Payloads are typed per ``event_type`` (a discriminated union), unknown fields are
rejected and every number is bounded, so no free text (no query or response content)
can reach the store. Validation runs in pydantic's strict mode: a JSON string is never
coerced into a number, nor a number into a timestamp.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema


class EventType(StrEnum):
    RESPONSE_SHOWN = "response_shown"
    CLICK_THROUGH = "click_through"
    REFORMULATION = "reformulation"
    COPY_PASTE = "copy_paste"
    EDIT = "edit"
    DWELL = "dwell"
    ABANDONMENT = "abandonment"
    TASK_COMPLETION = "task_completion"
    # The chat signals (appended: the numbering below is part of the storage format).
    REGENERATE = "regenerate"
    STOP_GENERATION = "stop_generation"
    FEEDBACK = "feedback"


IDENTIFIER_FIELDS: tuple[str, ...] = ("user_id", "session_id", "query_id", "response_id")
CONTEXT_DIMENSIONS: tuple[str, ...] = ("surface", "task_type", "cohort", "model")
OTHER = "other"  # the value a context label takes when the policy does not declare it

MAX_POSITION = 50
MAX_SPAN_CHARS = 10_000_000
MAX_DURATION_MS = 86_400_000  # one day
MAX_ATTEMPT = 20  # regenerations of one answer beyond this are not told apart

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


_RFC3339_HELP = "must be an RFC 3339 timestamp with offset, e.g. 2026-11-26T10:00:00Z"


def _timestamp_schema(_source: object, _handler: object) -> core_schema.CoreSchema:
    # pydantic's own datetime parser is laxer than the API (unix seconds, "HH:MM" without
    # seconds, "+HHMM"): a string must first match RFC 3339, then it is parsed. Both run
    # in pydantic-core, not in Python, because this is on the ingestion hot path.
    rfc3339 = core_schema.chain_schema(
        [
            core_schema.custom_error_schema(
                core_schema.str_schema(pattern=RFC3339.pattern),
                custom_error_type="rfc3339",
                custom_error_message=_RFC3339_HELP,
            ),
            core_schema.datetime_schema(strict=False, tz_constraint="aware"),
        ]
    )
    return core_schema.json_or_python_schema(
        json_schema=rfc3339,
        # In Python, a timestamp may also be an aware datetime already.
        python_schema=core_schema.union_schema(
            [core_schema.datetime_schema(strict=True, tz_constraint="aware"), rfc3339],
            custom_error_type="rfc3339",
            custom_error_message=_RFC3339_HELP,
        ),
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda t: t.isoformat(), when_used="json"
        ),
    )


Timestamp = Annotated[
    datetime,
    GetPydanticSchema(_timestamp_schema),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339.pattern}),
]
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=EVENT_ID.pattern)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Position = Annotated[int, Field(ge=1, le=MAX_POSITION)]
DurationMs = Annotated[int, Field(ge=0, le=MAX_DURATION_MS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Ranked(_Strict):
    """Where a response was shown among the candidates of one query (1 = top)."""

    position: Position
    candidates: Position

    @model_validator(mode="after")
    def _position_within_candidates(self) -> Self:
        if self.position > self.candidates:
            raise ValueError("position must be between 1 and candidates")
        return self


class ResponseShown(Ranked):
    pass


class ClickThrough(Ranked):
    pass


class Reformulation(_Strict):
    similarity: Fraction


class CopyPaste(_Strict):
    span_start: Annotated[int, Field(ge=0, le=MAX_SPAN_CHARS)]
    span_end: Annotated[int, Field(ge=1, le=MAX_SPAN_CHARS)]
    span_length: Annotated[int, Field(ge=1, le=MAX_SPAN_CHARS)]
    destination: Literal["internal", "external"]

    @model_validator(mode="after")
    def _length_matches_span(self) -> Self:
        if self.span_length != self.span_end - self.span_start:
            raise ValueError("span_length must equal span_end - span_start")
        return self


class Edit(_Strict):
    edit_ratio: Fraction


class Dwell(_Strict):
    dwell_ms: DurationMs
    scroll_depth: Fraction


class Abandonment(_Strict):
    after_ms: DurationMs


class TaskCompletion(_Strict):
    outcome: Literal["success", "failure"]


class Regenerate(_Strict):
    """The user asked for another answer; ``attempt`` counts the answers asked so far."""

    attempt: Annotated[int, Field(ge=1, le=MAX_ATTEMPT)]


class StopGeneration(_Strict):
    """The user stopped a streaming answer ``after_ms`` after it started."""

    after_ms: DurationMs


class Feedback(_Strict):
    """An explicit rating: thumbs up or down, optionally 1..5 stars. No free text."""

    thumbs: Literal["up", "down"]
    rating: Annotated[int, Field(ge=1, le=5)] | None = None


class Context(_Strict):
    """Low-cardinality labels; values the policy does not declare become ``other``."""

    surface: Label | None = None
    task_type: Label | None = None
    cohort: Label | None = None
    model: Label | None = None


class _EventBase(_Strict):
    event_id: EventId
    user_id: Identifier
    session_id: Identifier
    query_id: Identifier
    response_id: Identifier
    timestamp: Timestamp
    sent_at: Timestamp | None = None
    context: Context = Context()


class ResponseShownEvent(_EventBase):
    event_type: Literal[EventType.RESPONSE_SHOWN]
    payload: ResponseShown


class ClickThroughEvent(_EventBase):
    event_type: Literal[EventType.CLICK_THROUGH]
    payload: ClickThrough


class ReformulationEvent(_EventBase):
    event_type: Literal[EventType.REFORMULATION]
    payload: Reformulation


class CopyPasteEvent(_EventBase):
    event_type: Literal[EventType.COPY_PASTE]
    payload: CopyPaste


class EditEvent(_EventBase):
    event_type: Literal[EventType.EDIT]
    payload: Edit


class DwellEvent(_EventBase):
    event_type: Literal[EventType.DWELL]
    payload: Dwell


class AbandonmentEvent(_EventBase):
    event_type: Literal[EventType.ABANDONMENT]
    payload: Abandonment


class TaskCompletionEvent(_EventBase):
    event_type: Literal[EventType.TASK_COMPLETION]
    payload: TaskCompletion


class RegenerateEvent(_EventBase):
    event_type: Literal[EventType.REGENERATE]
    payload: Regenerate


class StopGenerationEvent(_EventBase):
    event_type: Literal[EventType.STOP_GENERATION]
    payload: StopGeneration


class FeedbackEvent(_EventBase):
    event_type: Literal[EventType.FEEDBACK]
    payload: Feedback


Event = Annotated[
    ResponseShownEvent
    | ClickThroughEvent
    | ReformulationEvent
    | CopyPasteEvent
    | EditEvent
    | DwellEvent
    | AbandonmentEvent
    | TaskCompletionEvent
    | RegenerateEvent
    | StopGenerationEvent
    | FeedbackEvent,
    Field(discriminator="event_type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_LIST_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])

# The payload columns a stored event may carry, in storage order.
PAYLOAD_COLUMNS: tuple[str, ...] = (
    "position",
    "candidates",
    "similarity",
    "span_start",
    "span_end",
    "span_length",
    "destination",
    "edit_ratio",
    "dwell_ms",
    "scroll_depth",
    "after_ms",
    "outcome",
    "attempt",
    "thumbs",
    "rating",
)


# Stored as small integers; the numbering is part of the storage format: never reorder.
EVENT_TYPE_CODES: dict[EventType, int] = {t: code for code, t in enumerate(EventType, start=1)}
EVENT_TYPES_BY_CODE: dict[int, EventType] = {code: t for t, code in EVENT_TYPE_CODES.items()}

_EVENT_CLASSES: tuple[type[_EventBase], ...] = (
    ResponseShownEvent,
    ClickThroughEvent,
    ReformulationEvent,
    CopyPasteEvent,
    EditEvent,
    DwellEvent,
    AbandonmentEvent,
    TaskCompletionEvent,
    RegenerateEvent,
    StopGenerationEvent,
    FeedbackEvent,
)


def _payload_fields(cls: type[_EventBase]) -> tuple[str, ...]:
    payload = cls.model_fields["payload"].annotation
    assert isinstance(payload, type) and issubclass(payload, BaseModel)
    return tuple(c for c in PAYLOAD_COLUMNS if c in payload.model_fields)


# The payload columns each event type fills (the others stay empty), in storage order.
PAYLOAD_FIELDS: dict[EventType, tuple[str, ...]] = {
    get_args(cls.model_fields["event_type"].annotation)[0]: _payload_fields(cls)
    for cls in _EVENT_CLASSES
}
