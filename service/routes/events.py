"""POST /v1/events: the ingestion endpoint.

It is the busiest route by far, and for a one-event request FastAPI's per-request
machinery (routing, the request object, dependency solving, the exit stack, the
response class) cost more CPU than the ingestion itself. So the app serves it with
:class:`IngestEndpoint`, a plain ASGI app placed inside the service's middlewares
(request id and log line, rate limits and in-flight pools, latency metrics) and in front
of FastAPI's router. The route declared on :data:`router` documents the endpoint in the
OpenAPI document and answers the same way (through the same :func:`ingest`) in an app
built without the endpoint in front.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import authenticate
from service.body_limit import read_body
from service.deps import AppState, get_state
from service.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    StoreUnavailableError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from service.ingest.parse import BadBatch, parse_batch
from service.limits import RouteClass, charge_events
from service.openapi import raises
from service.store.base import Role, StoreUnavailable

PATH = "/v1/events"
_INGEST = frozenset({Role.INGEST})


router = APIRouter(tags=["ingestion"])


async def ingest(
    state: AppState, headers: Headers, chunks: AsyncIterator[bytes], scope: Scope
) -> dict[str, Any]:
    """Serve one POST /v1/events: the batch report, or an :class:`ApiError`."""
    try:
        # 401/403, then 415, then the body: nothing is read for a caller we will refuse.
        principal = authenticate(headers.get("authorization"), state.store.tokens, _INGEST)
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("send the batch as Content-Type: application/json")
        body = await read_body(
            headers, chunks, state.settings.max_body_bytes, "send smaller batches"
        )
        try:
            parsed = parse_batch(body, state.settings.max_batch_events)
        except BadBatch as exc:
            raise BadRequest(str(exc)) from exc
        charge_events(scope, parsed.size)  # the token's events/s (service/limits.py)
        assert principal.source_id is not None  # ingest tokens always carry a source
        prepared = state.ingestor.prepare(parsed, principal.source_id)
        assert state.writer is not None
        flags: list[bool] = []
        if prepared.batch.keys or prepared.batch.quarantine:
            try:
                flags = await state.writer.write(prepared.batch)
            except StoreUnavailable:
                raise  # answered below, as an outage
            except Exception as exc:
                raise Unavailable(
                    "the batch could not be stored durably and none of it was acknowledged: "
                    "retry it with the same event ids",
                    headers={"Retry-After": "1"},
                ) from exc
    except StoreUnavailable as exc:  # at the token check, a salt, or the write
        raise StoreUnavailableError(
            "the database is unavailable and none of the batch was acknowledged: retry it "
            f"with the same event ids after {StoreUnavailableError.RETRY_AFTER_S} s"
        ) from exc
    report = state.ingestor.report(prepared, flags)
    state.telemetry.count_events(
        report.accepted, report.duplicates, report.sampled_out, report.rejected_by_reason
    )
    return report.as_dict()


@router.post(
    PATH,
    summary="Post a batch of 1-1000 events",
    responses={
        200: {"description": "Per-event outcome; sent only after the accepted events are durable."},
        # ingest() authenticates itself (it serves without FastAPI's dependencies).
        **raises(
            Unauthorized,
            Forbidden,
            UnsupportedMediaType,
            PayloadTooLarge,
            BadRequest,
            Unavailable,
            StoreUnavailableError,
        ),
    },
)
async def post_events(request: Request) -> JSONResponse:
    report = await ingest(get_state(request), request.headers, request.stream(), request.scope)
    return JSONResponse(report)


@dataclass(frozen=True)
class _Route:
    """What the log and latency middlewares read of a matched route: its template."""

    path: str


class IngestEndpoint:
    """Pure ASGI: serves POST /v1/events itself and passes every other request on."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.route = _Route(PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            report = await ingest(self.state, Headers(scope=scope), _chunks(receive), scope)
        except ApiError as exc:
            if isinstance(exc, StoreUnavailableError):
                self.state.telemetry.store_unavailable.labels(RouteClass.INGEST.value).inc()
            await send_json(send, exc.status, exc.body(), exc.headers)
        except ClientDisconnect:
            return  # nobody is left to answer; nothing of the batch was acknowledged
        else:
            await send_json(send, 200, report)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body: bytes = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def send_json(
    send: Send, status: int, content: Any, headers: dict[str, str] | None = None
) -> None:
    """A JSON response, encoded as FastAPI's JSONResponse encodes it."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    for name, value in (headers or {}).items():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
