"""The served OpenAPI schema, completed where FastAPI cannot see what the app does.

Every error a route can answer is documented from the :class:`~service.api.errors.ApiError`
classes that can produce it, never by hand: one response per status, in the error
envelope ``{"error": {"code", "message", ...}}``, its ``code`` narrowed to the codes that
status can carry there and its description taken from each class's docstring. They come
from four places:

- the route's own ``responses=raises(...)``: what its handler raises;
- its dependencies: one that may refuse a request says so in a ``raises`` attribute
  (service/api/deps.py: :class:`RoleCheck` raises 401 and 403, and 503 ``store_unavailable``
  since it reads the token from the database). An operation that can answer 401 is
  documented as needing a bearer token (``security``);
- invalid parameters are answered 400 ``bad_request`` (service/api/app.py), not with
  FastAPI's 422: every 422 becomes a documented 400;
- routes behind the limits (service/api/limits.py) may answer 429 or 503 with Retry-After.

POST /v1/events reads its body raw (one pydantic call is faster than FastAPI's body
parameter), so its request body, the event batch, is documented here. Its items are
documented as "anything": each is validated on its own against the Event schema (in
the components), and an invalid one is rejected in the 200 answer, not with a 400.

Schemathesis checks responses against this schema (tests/hardening), and
tests/api/test_openapi.py checks each operation documents what its route can answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from privacy.events import EVENT_ADAPTER
from service.api.errors import ApiError, BadRequest, PayloadTooLarge, TooManyRequests, Unavailable
from service.api.limits import RouteClass, route_class

Responses = dict[int | str, dict[str, Any]]

_COMPONENT = "#/components/schemas/{model}"
_ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string", "description": "what was wrong, what to do"},
                "errors": {
                    "type": "array",
                    "description": "bad_request only: each invalid field",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
    },
}
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "a Tacit token (tct_...) of a role the operation allows; on POST "
    "/v1/events also a publishable key (tpk_...) from one of its origins",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
}
_LIMITS = (TooManyRequests, Unavailable)


def raises(*errors: type[ApiError]) -> Responses:
    """The ``responses=`` of a route whose handler may raise ``errors``.

    Only what the handler itself raises: what its dependencies, parameter validation and
    the limits can answer is added by :func:`install`."""
    responses: Responses = {}
    for error in errors:
        _document(responses, error)
    return responses


def install(app: FastAPI, max_batch_events: int) -> None:
    """Replace ``app.openapi`` by a version that documents the behaviour above."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # A copy: FastAPI's schema shares objects with the routes' ``responses``
            # (and between the routes given the same ones), which _complete extends.
            schema = copy.deepcopy(build())
            _complete(schema, _dependency_errors(app), max_batch_events)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _dependency_errors(app: FastAPI) -> dict[tuple[str, str], list[type[ApiError]]]:
    """(path, method) -> the errors the route's dependencies declare they may raise."""
    found: dict[tuple[str, str], list[type[ApiError]]] = {}
    for route in iter_route_contexts(app.routes):  # the routes of included routers too
        path = route.path_format
        if not isinstance(route.original_route, APIRoute) or path is None:
            continue
        errors = [e for d in _dependencies(route.dependant) for e in getattr(d, "raises", ())]
        for method in route.methods or ():
            found[(path, method.lower())] = errors
    return found


def _dependencies(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependencies(dependency)


def _complete(
    schema: dict[str, Any],
    dependency_errors: dict[tuple[str, str], list[type[ApiError]]],
    max_batch_events: int,
) -> None:
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    models["ErrorEnvelope"] = _ENVELOPE
    models.pop("HTTPValidationError", None)
    models.pop("ValidationError", None)
    components.setdefault("securitySchemes", {})["bearer"] = _BEARER
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            errors: list[type[ApiError]] = list(dependency_errors.get((path, method), ()))
            if responses.pop("422", None) is not None:
                errors.append(BadRequest)
            if route_class(path) is not RouteClass.HEALTH:
                errors.extend(_LIMITS)
            if method == "post":  # every body is read with a limit (service/api/body_limit.py)
                errors.append(PayloadTooLarge)
            for error in errors:
                _document(responses, error)
            operation["responses"] = dict(sorted(responses.items()))
            if "401" in responses:
                operation["security"] = [{"bearer": []}]
            if (path, method) == ("/v1/events", "post"):
                operation["requestBody"] = _events_body(models, max_batch_events)


def _document(responses: MutableMapping[Any, dict[str, Any]], error: type[ApiError]) -> None:
    """Add ``error`` to the response of its status: its code, its docstring, its headers."""
    status = str(error.status)
    response = responses.get(status)
    codes = None if response is None else _codes(response)
    if response is None or codes is None:  # absent, or not written here: written anew
        codes = []
        response = responses[status] = {
            "description": "",
            "content": {"application/json": {"schema": _narrowed_envelope(codes)}},
        }
    if error.code in codes:
        return
    codes.append(error.code)
    meaning = " ".join((error.__doc__ or "").split())
    response["description"] = f"{response['description']}\n\n`{error.code}`: {meaning}".strip()
    if error.retry_after:
        response["headers"] = _RETRY_AFTER


def _narrowed_envelope(codes: list[str]) -> dict[str, Any]:
    return {
        "allOf": [
            {"$ref": _COMPONENT.format(model="ErrorEnvelope")},
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }


def _codes(response: dict[str, Any]) -> list[str] | None:
    """The codes list of a response :func:`_document` wrote, else None."""
    try:
        narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
        codes = narrowed["properties"]["error"]["properties"]["code"]["enum"]
    except (KeyError, IndexError, TypeError):
        return None
    return codes if isinstance(codes, list) else None


def error_codes(response: dict[str, Any]) -> list[str]:
    """The error codes an OpenAPI response documents (empty if it documents none)."""
    return list(_codes(response) or ())


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
    # A publishable key may send the same JSON as text/plain too; that is said in the
    # operation's description, not here: a secret token's text/plain is answered 415, and
    # a body type valid for one kind of credential only cannot be written as a schema.
    return {"required": True, "content": {"application/json": {"schema": batch}}}
