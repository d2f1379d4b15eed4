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
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import authenticate_ingest, query_key
from service.api.body_limit import read_body
from service.api.deps import AppState, get_state
from service.api.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    StoreUnavailableError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    render_error,
)
from service.api.limits import RouteClass, charge_events
from service.api.openapi import raises
from service.ingest.errors import BadBatch, IngestError, NotStored
from service.store.base import StoreUnavailable

PATH = "/v1/events"
KEY_PARAMETER = (
    "a publishable key (tpk_...), for a browser's beacon, which can set no header; "
    "never a secret token. Sent from a page the key lists (its Origin header)."
)


router = APIRouter(tags=["ingestion"])


async def ingest(
    state: AppState, headers: Headers, chunks: AsyncIterator[bytes], scope: Scope
) -> dict[str, Any]:
    """Serve one POST /v1/events: the batch report, or an :class:`ApiError`."""
    try:
        # 401/403, then 415, then the body: nothing is read for a caller we will refuse.
        key = query_key(scope.get("query_string", b""))
        principal = authenticate_ingest(
            headers.get("authorization"), key, headers.get("origin"), state.store.tokens
        )
        check_media_type(headers.get("content-type", ""), principal.publishable)
        body = await read_body(
            headers, chunks, state.settings.max_body_bytes, "send smaller batches"
        )
        # The token's events/s is charged once the batch's size is known (service/api/limits.py).
        report = await state.ingestion.submit(body, principal, lambda n: charge_events(scope, n))
    except IngestError as exc:
        raise refusal(exc) from exc
    except StoreUnavailable as exc:  # at the token check, a salt, or the write
        raise StoreUnavailableError(
            "the database is unavailable and none of the batch was acknowledged: retry it "
            f"with the same event ids after {StoreUnavailableError.RETRY_AFTER_S} s"
        ) from exc
    return report.as_dict()


def check_media_type(content_type: str, publishable: bool) -> None:
    """JSON, always; on the publishable path the same JSON may come as text/plain, the
    only type a beacon (or a fetch without a CORS preflight) can send a string as."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or (publishable and media == "text/plain"):
        return
    if publishable:
        raise UnsupportedMediaType(
            "send the batch as Content-Type: application/json or text/plain (a JSON body)"
        )
    raise UnsupportedMediaType("send the batch as Content-Type: application/json")


def refusal(exc: IngestError) -> ApiError:
    """The HTTP answer to a batch refused as a whole: the one place ingest errors map."""
    if isinstance(exc, BadBatch):
        return BadRequest(str(exc))
    if isinstance(exc, NotStored):
        return Unavailable(str(exc), headers={"Retry-After": "1"})
    return ApiError(str(exc))  # a new kind of refusal without its mapping: a bug


@router.post(
    PATH,
    summary="Post a batch of 1-1000 events",
    description=(
        "With an ingest token (tct_...) in the Authorization header and the batch as "
        "application/json. From a web page, with a publishable key (tpk_...) instead: as "
        "Bearer or as the key query parameter, the same JSON as application/json or "
        "text/plain, from an Origin the key lists; a secret token sent with an Origin "
        "header is refused (403)."
    ),
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
async def post_events(
    request: Request,
    key: Annotated[str | None, Query(description=KEY_PARAMETER, max_length=128)] = None,
) -> JSONResponse:
    # ``key`` is documented here and read by ingest() from the query string itself.
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
            await render_error(exc)(scope, receive, send)
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


async def send_json(send: Send, status: int, content: Any) -> None:
    """A JSON response, encoded as FastAPI's JSONResponse encodes it, without its cost."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
