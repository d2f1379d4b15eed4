"""Who is calling: the ``Authorization: Bearer`` header resolved to a principal."""

from __future__ import annotations

from service.api.errors import Forbidden, Unauthorized
from service.ops.tokens import PREFIX, digest
from service.store.base import Principal, Role, TokenRepository


def authenticate(header: str | None, tokens: TokenRepository, roles: frozenset[Role]) -> Principal:
    """The caller behind an ``Authorization: Bearer`` header, if it holds one of ``roles``."""
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer tct_...'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX) or len(token) > 128:
        raise Unauthorized("malformed Authorization header: expected 'Bearer tct_...'")
    principal = tokens.principal(digest(token))
    if principal is None:
        raise Unauthorized("unknown or revoked token")
    if principal.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise Forbidden(
            f"this endpoint needs a token of role {allowed}; yours is {principal.role.value}"
        )
    return principal
