"""The served OpenAPI schema, completed where FastAPI cannot see what the app does.

- Invalid parameters are answered 400 in the error envelope (service/app.py), not with
  FastAPI's 422: every 422 becomes a documented 400.
- Every error response carries the envelope ``{"error": {"code", "message", ...}}``.
- Routes behind the limits (service/limits.py) may answer 429 or 503 with Retry-After.
- POST /v1/events reads its body raw (one pydantic call is faster than FastAPI's body
  parameter), so its request body, the event batch, is documented here. Its items are
  documented as "anything": each is validated on its own against the Event schema (in
  the components), and an invalid one is rejected in the 200 answer, not with a 400.

Schemathesis checks responses against this schema (tests/hardening), so it must be true.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from privacy.events import EVENT_ADAPTER
from service.limits import RouteClass, route_class

_COMPONENT = "#/components/schemas/{model}"
_ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_REFUSALS = {
    "429": "too_many_requests: this token is over its rate limit; retry after Retry-After s",
    "503": "unavailable: at capacity for this kind of request; retry after Retry-After s",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
}


def install(app: FastAPI, max_batch_events: int) -> None:
    """Replace ``app.openapi`` by a version that documents the behaviour above."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _complete(schema, max_batch_events)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any], max_batch_events: int) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorEnvelope"] = _ENVELOPE
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            invalid = responses.pop("422", None)
            if invalid is not None and "400" not in responses:
                responses["400"] = {"description": "Invalid parameters or body"}
            if route_class(path) is not RouteClass.HEALTH:
                for status, description in _REFUSALS.items():
                    responses.setdefault(status, {"description": description})
                    responses[status]["headers"] = _RETRY_AFTER
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response["content"] = envelope
            if (path, method) == ("/v1/events", "post"):
                operation["requestBody"] = _events_body(components, max_batch_events)


def _events_body(components: dict[str, Any], max_batch_events: int) -> dict[str, Any]:
    event = EVENT_ADAPTER.json_schema(ref_template=_COMPONENT)
    components.update(event.pop("$defs", {}))
    components["Event"] = event
    batch = {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch_events,
                # Any item is taken: each is judged on its own against the Event schema,
                # and an invalid one is rejected in the 200 answer, not the whole batch.
                "items": {"description": "an event (components/schemas/Event)"},
            }
        },
    }
    return {"required": True, "content": {"application/json": {"schema": batch}}}
