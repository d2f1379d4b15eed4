"""API tokens: random, shown once, stored as SHA-256 digests; created and revoked here."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from service.store.base import Conflict, Role, Store

PREFIX = "tct_"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TokenRefused(ValueError):
    """A token that cannot be created as asked; the message says what to change."""


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_token(
    store: Store,
    name: str,
    role: Role,
    source: str | None,
    actor: str = "cli",
    *,
    at: datetime | None = None,
) -> str:
    """Create a token and return it; only its digest is stored."""
    if not _NAME.match(name):
        raise TokenRefused("a token name is 1-64 characters of A-Z a-z 0-9 . _ -")
    if role is Role.INGEST:
        source = source or name
        if not _NAME.match(source):
            raise TokenRefused("a source is 1-64 characters of A-Z a-z 0-9 . _ -")
    elif source is not None:
        raise TokenRefused("--source only applies to ingest tokens")
    token = new_token()
    try:
        store.tokens.create(name, role, digest(token), source, at or datetime.now(UTC), actor)
    except Conflict as exc:
        raise TokenRefused(str(exc)) from exc
    return token
