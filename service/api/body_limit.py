"""Request bodies read with a size limit, before anything else reads them.

Ingestion reads its own body with ``read_body`` after authenticating (routes/events.py).
Every other route with a body (queries, erasure) takes a small JSON document that FastAPI
would read whole, before the route's dependencies check the caller: without a limit, an
unauthenticated caller could make the server buffer a body of any size. `BodyLimit`
reads such a body first, refusing it with 413 as soon as it passes the limit (by its
Content-Length, or while a chunked body streams in), and hands the app the bytes read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import PayloadTooLarge, render_error

__all__ = ["BodyLimit", "read_body"]


async def read_body(
    headers: Headers, chunks: AsyncIterator[bytes], limit: int, advice: str = "send less"
) -> bytes:
    """The body, refusing it as soon as it passes ``limit`` bytes (chunked bodies too)."""
    too_large = f"the body is larger than {limit} bytes: {advice}"
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large)
        parts.append(chunk)
    return b"".join(parts)


async def request_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks as the ASGI server delivers them."""
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class BodyLimit:
    """Pure ASGI middleware: bodies of requests outside ``exempt`` paths up to ``limit``."""

    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(Headers(scope=scope), request_chunks(receive), self.limit)
        except PayloadTooLarge as refusal:
            await render_error(refusal)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # after the body: what the server says next (a disconnect)
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
