"""Who is calling: a bearer token (or, on ingestion, a publishable key) resolved to a
principal.

Secret tokens (``tct_...``) come only in the ``Authorization: Bearer`` header. A
publishable key (``tpk_...``, service/ops/tokens.py) may come there too, or as the ``key``
query parameter of ``POST /v1/events`` (a beacon can set no header); it is an ingest key
of one source and is refused everywhere else.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from service.api.errors import Forbidden, Unauthorized
from service.ops.tokens import PREFIXES, PUBLISHABLE_PREFIX, digest
from service.store.base import Principal, Role, TokenRepository

MAX_TOKEN_CHARS = 128
PUBLISHABLE_ONLY_INGESTS = (
    "a publishable key (tpk_...) can only post events (POST /v1/events); this endpoint "
    "needs a secret token in 'Authorization: Bearer tct_...'"
)


def authenticate(header: str | None, tokens: TokenRepository, roles: frozenset[Role]) -> Principal:
    """The caller behind an ``Authorization: Bearer`` header, if it holds one of ``roles``."""
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer tct_...'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIXES) or len(token) > 128:
        raise Unauthorized("malformed Authorization header: expected 'Bearer tct_...'")
    return _resolve(token, tokens, roles)


def _resolve(token: str, tokens: TokenRepository, roles: frozenset[Role]) -> Principal:
    principal = tokens.principal(digest(token))
    if principal is None:
        raise Unauthorized("unknown or revoked token")
    if principal.publishable and Role.INGEST not in roles:
        raise Forbidden(PUBLISHABLE_ONLY_INGESTS)
    if principal.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise Forbidden(
            f"this endpoint needs a token of role {allowed}; yours is {principal.role.value}"
        )
    return principal


def query_key(query_string: bytes) -> str | None:
    """The ``key`` query parameter, if the request has one (its last value)."""
    if b"key=" not in query_string:
        return None
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("key")
    return values[-1] if values else None


def authenticate_route(
    header: str | None, query_string: bytes, tokens: TokenRepository, roles: frozenset[Role]
) -> Principal:
    """`authenticate`, for every route but ingestion: there a ``key`` parameter is never a
    credential, and a request that carries one instead of a header is told so (403)."""
    if not header and query_key(query_string) is not None:
        raise Forbidden(PUBLISHABLE_ONLY_INGESTS)
    return authenticate(header, tokens, roles)


def authenticate_ingest(
    header: str | None, key: str | None, origin: str | None, tokens: TokenRepository
) -> Principal:
    """The source posting to ``POST /v1/events``: a secret ingest token in the header, or a
    publishable key (header or ``key`` parameter) presented from one of its origins."""
    if header and key is not None:
        raise Unauthorized(
            "send the key once: either 'Authorization: Bearer ...' or the key parameter"
        )
    if key is not None:
        if not key.startswith(PUBLISHABLE_PREFIX) or len(key) > MAX_TOKEN_CHARS:
            raise Unauthorized(
                "the key parameter takes a publishable key (tpk_..., made with `tacit token "
                "create --publishable`); a secret token goes in the Authorization header, "
                "never in a URL"
            )
        principal = _resolve(key, tokens, frozenset({Role.INGEST}))
    else:
        principal = authenticate(header, tokens, frozenset({Role.INGEST}))
    check_origin(principal, origin)
    return principal


def check_origin(principal: Principal, origin: str | None) -> None:
    """A publishable key only from its listed origins; a secret token never from a page."""
    if principal.origins is None:
        if origin is not None:
            raise Forbidden(
                "a secret token was sent from a web page (the request has an Origin header): "
                "secret tokens must never ship to a browser. Revoke this token if it did, and "
                "make a publishable key for the page: tacit token create --role ingest "
                "--publishable --origin <the page's scheme://host[:port]> --name ..."
            )
        return
    if origin is None:
        raise Forbidden(
            "a publishable key is accepted only from the web pages it lists, and this "
            "request has no Origin header; a server should use a secret ingest token"
        )
    if origin not in principal.origins:
        raise Forbidden(
            f"this publishable key is not accepted from origin {origin[:100]!r}; list it on a "
            "new key (tacit token create --publishable --origin ...) if the page is yours"
        )
