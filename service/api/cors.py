"""CORS for the ingestion endpoint, for pages that post with a publishable key.

Only ``/v1/events`` is ever shared with another origin, and only with an origin some
active publishable key lists (service/ops/tokens.py). A preflight (``OPTIONS`` with
``Origin`` and ``Access-Control-Request-Method``) from such an origin is approved: the
exact origin echoed, ``POST`` with the ``content-type`` and ``authorization`` headers,
cached by the browser for ``max_age_s``. Any other origin's preflight is refused (403, no
approval), so its page's fetch fails before it is sent. The answer to the POST itself
carries the same ``Access-Control-Allow-Origin`` (and exposes ``Retry-After``, so a page
can honour it) for listed origins, whatever its status, including a 429.

Which key the page will use is not known at preflight (a preflight carries no
credentials); the POST is then checked against that key's own origins
(service/api/auth.py). The set of listed origins is read from the store at most once per
``refresh_s``: a new or revoked key changes preflight answers within that time, while
the POST's own check is immediate.

Origin is a browser's promise, not a proof: any other client can send any Origin header.
CORS keeps other sites' pages from using a key; it does not keep a key secret
(docs/threat-model.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import Forbidden, StoreUnavailableError, render_error
from service.store.base import StoreUnavailable, TokenRepository

PATH = "/v1/events"
ALLOW_METHODS = "POST"
ALLOW_HEADERS = "content-type, authorization"
EXPOSE_HEADERS = "retry-after, x-request-id"


@dataclass(frozen=True)
class _Route:
    path: str


class ListedOrigins:
    """The origins of every active publishable key, re-read at most once per ``refresh_s``."""

    def __init__(
        self,
        tokens: TokenRepository,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.refresh_s = refresh_s
        self.clock = clock
        self._origins: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def __contains__(self, origin: object) -> bool:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.refresh_s:
            self._origins = self.tokens.publishable_origins()  # may raise StoreUnavailable
            self._read_at = now
        return origin in self._origins


class CorsMiddleware:
    """Pure ASGI: answers preflights of /v1/events and adds CORS headers to its answers."""

    def __init__(self, app: ASGIApp, origins: ListedOrigins, max_age_s: int) -> None:
        self.app = app
        self.origins = origins
        self.max_age = str(max_age_s).encode()
        self.route = _Route(PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        try:
            listed = origin in self.origins
        except StoreUnavailable:
            await render_error(StoreUnavailableError())(scope, receive, send)
            return
        if preflight:
            scope["route"] = self.route  # the log line names the endpoint
            await self._preflight(listed, headers, scope, receive, send)
            return
        extra = [(b"vary", b"Origin")]
        if listed:
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self, listed: bool, headers: Headers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = headers["access-control-request-method"].strip().upper()
        if not listed or method != "POST":
            refusal = Forbidden(
                "no publishable key lists this page's origin, so its requests are not "
                "allowed: create one with tacit token create --role ingest --publishable "
                "--origin <scheme://host[:port]>"
                if not listed
                else "only POST is allowed on /v1/events",
                headers={"Vary": "Origin"},
            )
            await render_error(refusal)(scope, receive, send)
            return
        raw = [
            (b"access-control-allow-origin", headers["origin"].encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", self.max_age),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": raw})
        await send({"type": "http.response.body", "body": b""})
