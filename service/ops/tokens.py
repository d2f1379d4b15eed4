"""API tokens: random, shown once, stored as SHA-256 digests; created and revoked here.

Two kinds. A **secret token** (``tct_...``) belongs on a server: it is sent in the
``Authorization`` header and never in a URL. A **publishable key** (``tpk_...``) is made to
ship in a web page: it is an ingest token of one source that is accepted only from the
browser origins listed with it, may come as a ``key`` query parameter (a beacon can set no
header), and can do nothing but post events (docs/threat-model.md). The prefix tells the
two apart before any lookup, so the rate limiter can give publishable keys their own,
lower limits and a per-address limit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from service.store.base import Conflict, Role, Store

PREFIX = "tct_"
PUBLISHABLE_PREFIX = "tpk_"
PREFIXES = (PREFIX, PUBLISHABLE_PREFIX)
MAX_ORIGINS = 32
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"^({_LABEL}(\.{_LABEL})*|[0-9a-f:.]*:[0-9a-f:.]*)$")  # a name, or IPv6
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TokenRefused(ValueError):
    """A token that cannot be created as asked; the message says what to change."""


def new_token(publishable: bool = False) -> str:
    return (PUBLISHABLE_PREFIX if publishable else PREFIX) + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def is_publishable(token: str) -> bool:
    return token.startswith(PUBLISHABLE_PREFIX)


def normalise_origin(origin: str) -> str:
    """``origin`` as a browser sends it in its ``Origin`` header: lower-case
    scheme://host[:port], the default port left out. Raises TokenRefused otherwise."""
    what = (
        f"{origin!r} is not an origin: give scheme://host[:port] exactly as the page's "
        "address starts, e.g. https://app.example.com or http://localhost:3000 (no path, "
        "no trailing slash, no wildcard)"
    )
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError as exc:
        raise TokenRefused(what) from exc
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if (
        scheme not in _DEFAULT_PORTS
        or not _HOST.match(host)
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or origin.strip().endswith(("?", "#"))
    ):
        raise TokenRefused(what)
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    keep_port = port is not None and port != _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}:{port}" if keep_port else f"{scheme}://{host}"


def create_token(
    store: Store,
    name: str,
    role: Role,
    source: str | None,
    actor: str = "cli",
    *,
    at: datetime | None = None,
    origins: Sequence[str] | None = None,
) -> str:
    """Create a token and return it; only its digest is stored. With ``origins`` it is a
    publishable key (ingest only, accepted from those browser origins only)."""
    if not _NAME.match(name):
        raise TokenRefused("a token name is 1-64 characters of A-Z a-z 0-9 . _ -")
    if role is Role.INGEST:
        source = source or name
        if not _NAME.match(source):
            raise TokenRefused("a source is 1-64 characters of A-Z a-z 0-9 . _ -")
    elif source is not None:
        raise TokenRefused("--source only applies to ingest tokens")
    listed = _publishable_origins(role, origins)
    token = new_token(publishable=listed is not None)
    now = at or datetime.now(UTC)
    try:
        store.tokens.create(name, role, digest(token), source, now, actor, origins=listed)
    except Conflict as exc:
        raise TokenRefused(str(exc)) from exc
    return token


def _publishable_origins(role: Role, origins: Sequence[str] | None) -> list[str] | None:
    if origins is None:
        return None
    if role is not Role.INGEST:
        raise TokenRefused(
            "only ingest tokens can be publishable: a key in a web page is readable by "
            "anyone, so it may only post events"
        )
    if not origins:
        raise TokenRefused(
            "a publishable key needs at least one --origin (the page's scheme://host[:port])"
        )
    listed = sorted({normalise_origin(o) for o in origins})
    if len(listed) > MAX_ORIGINS:
        raise TokenRefused(f"at most {MAX_ORIGINS} origins per key; make another key")
    return listed
