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
from service.ingest.errors import BadBatch

_EVENT_TAGS = {t.value for t in EventType}
# Shape limits, checked on the slow path only: a body that passes the fast path is valid
# events, whose depth (4) and strings (256 chars at most) the model already bounds.
MAX_DEPTH = 16
MAX_STRING_CHARS = 4096
_TAG_LIST = ", ".join(t.value for t in EventType)


class _Batch(BaseModel):
    # Cache the JSON keys' strings (a few dozen names, in every event) but not the values:
    # identifiers are nearly all distinct, so caching them cost a lookup and kept nothing.
    model_config = ConfigDict(extra="forbid", strict=True, cache_strings="keys")
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
        message = err["msg"]
        if err["type"].startswith("union_tag"):
            loc = [*loc, "event_type"]
            # pydantic's message quotes the rejected tag: say what is allowed instead.
            missing = err["type"] == "union_tag_not_found"
            message = f"{'is missing; it ' if missing else ''}must be one of: {_TAG_LIST}"
        errors.append(FieldError(".".join(str(p) for p in loc) or "(event)", message))
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
    except RecursionError as exc:
        raise BadBatch(_TOO_DEEP) from exc
    except ValueError as exc:
        raise BadBatch('the body is not valid JSON: send {"events": [...]}') from exc
    _check_shape(document)
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


_TOO_DEEP = f"the body nests deeper than {MAX_DEPTH} levels: an event needs 4"


def _check_shape(document: Any) -> None:
    """Refuse absurd nesting and huge strings (keys too) before anything walks or echoes
    them; iterative, so no depth can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadBatch(_TOO_DEEP)
        if isinstance(node, dict):
            for key, value in node.items():
                if len(key) > MAX_STRING_CHARS:
                    raise BadBatch(f"a key is longer than {MAX_STRING_CHARS} characters")
                if isinstance(value, dict | list | str):
                    stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend(
                (value, depth + 1) for value in node if isinstance(value, dict | list | str)
            )
        elif isinstance(node, str) and len(node) > MAX_STRING_CHARS:
            raise BadBatch(
                f"a string is longer than {MAX_STRING_CHARS} characters: no field takes more "
                "than 256"
            )
