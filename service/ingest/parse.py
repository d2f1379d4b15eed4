"""Step 1, validate: turn a request body into events and per-event rejections.

The fast path validates the whole body in one pydantic call. Only when that fails does
the slow path validate event by event, so that one bad event never sinks the others.
Error messages are pydantic's ``msg`` only: the rejected input is never echoed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from privacy.events import EVENT_ADAPTER, Event, EventType

_EVENT_TAGS = {t.value for t in EventType}


class BadBatch(Exception):
    """The request as a whole is unusable (400); the message says how to fix it."""


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    events: list[Event]


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class Parsed:
    """Valid events with their batch positions, and the raw items that failed."""

    size: int
    events: list[tuple[int, Event]]
    invalid: list[tuple[int, Any, list[FieldError]]]


def field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in _EVENT_TAGS:  # the discriminated union's tag is not a field
            loc = loc[1:]
        if err["type"].startswith("union_tag"):
            loc = [*loc, "event_type"]
        errors.append(FieldError(".".join(str(p) for p in loc) or "(event)", err["msg"]))
    return errors


def parse_batch(body: bytes, max_events: int) -> Parsed:
    try:
        batch = _Batch.model_validate_json(body)
    except ValidationError:
        return _parse_slowly(body, max_events)
    if not 1 <= len(batch.events) <= max_events:
        raise BadBatch(f"a batch holds 1 to {max_events} events; this one has {len(batch.events)}")
    return Parsed(len(batch.events), list(enumerate(batch.events)), [])


def _parse_slowly(body: bytes, max_events: int) -> Parsed:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadBatch('the body is not valid JSON: send {"events": [...]}') from exc
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise BadBatch('the body must be a JSON object {"events": [...]} with a list of events')
    extra = sorted(set(document) - {"events"})
    if extra:
        raise BadBatch(
            f"unknown top-level key(s) {', '.join(map(repr, extra))[:200]}: "
            'only "events" is allowed'
        )
    items = document["events"]
    if not 1 <= len(items) <= max_events:
        raise BadBatch(f"a batch holds 1 to {max_events} events; this one has {len(items)}")
    parsed = Parsed(len(items), [], [])
    for index, item in enumerate(items):
        try:
            # Re-encode so strict JSON-mode rules (RFC 3339 strings, no coercion) apply.
            parsed.events.append((index, EVENT_ADAPTER.validate_json(json.dumps(item))))
        except ValidationError as exc:
            parsed.invalid.append((index, item, field_errors(exc)))
    return parsed
