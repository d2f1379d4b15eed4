"""Backpressure: per-token rate limits and in-flight caps, as pure ASGI middleware.

Two kinds of refusal, both in the common error envelope and both with ``Retry-After``:

- **429 too_many_requests**: the caller's token has spent its rate (requests/s for every
  token, events/s for ingest tokens). Buckets are keyed by the SHA-256 digest of the
  presented token, never the token; requests without a usable token share one bucket.
- **503 unavailable**: no slot of the caller's route class came free within
  ``max_wait_s``, or the server already holds ``max_in_flight`` requests (running or
  waiting). Each class has its own pool of running slots, so a flood of ingestion never
  takes a slot an analyst, compliance or admin request needs; ``/healthz`` and
  ``/metrics`` are never limited. The pools are small on purpose: the work is CPU-bound
  on one event loop, and every batch running at once lengthens the loop's queue for
  everyone (bench/overload.py: health p99 ~0.2 s with 4 ingest batches running under
  5x overload, ~9 s with 16). A waiting request's body is not read yet.

Refusals happen before the body is read, so nothing was acknowledged and nothing can be
lost: the client retries after ``Retry-After`` seconds with the same event ids.

Events are charged after the batch is parsed (``charge_events``), when their number is
known. A batch is admitted while the token's event bucket is not in debt and may drive
it below zero; the next batches wait until the debt is paid back. The limits hold per
worker process: with N workers a token may reach N times the configured rate.

Publishable keys (``tpk_...``, service/ops/tokens.py), known by their prefix before any
lookup, have rates of their own (``publishable_*``), usually lower than a server's token,
and every request made with one is also charged to its **client address**
(``address_*``): a leaked key then floods at most its own rates, and one browser (or a
script posing as many) at most an address's. The key may come as the ``key`` query
parameter (a beacon sets no header): it is found there too. The client address is the
peer's, or the one a trusted proxy forwarded (uvicorn's ``FORWARDED_ALLOW_IPS``,
docs/deploy.md).

Everything here runs on the event loop thread, so plain counters need no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ApiError, TooManyRequests, Unavailable, render_error
from service.ops.tokens import PUBLISHABLE_PREFIX
from service.settings import Settings

_METER = "tacit.meter"  # key of the request's event bucket in the ASGI scope's state
_ANONYMOUS = b"anonymous"
_PUBLISHABLE = PUBLISHABLE_PREFIX.encode()
_MAX_BUCKETS = 10_000  # keys remembered; the least recently used is forgotten first


class RouteClass(StrEnum):
    HEALTH = "health"  # never limited
    INGEST = "ingest"
    QUERY = "query"
    OTHER = "other"  # compliance, admin, documentation, the web page


_QUERY_PATHS = ("/v1/queries", "/v1/metrics", "/v1/budget")
_HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")


def route_class(path: str) -> RouteClass:
    """The pool a request draws from, by path alone (decided before routing)."""
    if path in _HEALTH_PATHS:
        return RouteClass.HEALTH
    if path == "/v1/events":
        return RouteClass.INGEST
    if path.startswith(_QUERY_PATHS):
        return RouteClass.QUERY
    return RouteClass.OTHER


@dataclass(frozen=True)
class LimitConfig:
    """Rates are per token and per worker; 0 turns a rate off. Caps count requests."""

    requests_per_s: float = 1000.0
    events_per_s: float = 50_000.0
    burst_s: float = 2.0
    max_batch_events: int = 1000
    publishable_requests_per_s: float = 200.0
    publishable_events_per_s: float = 5000.0
    address_requests_per_s: float = 5.0
    address_events_per_s: float = 200.0
    in_flight: int = 512
    running_ingest: int = 8
    running_query: int = 8
    running_other: int = 16
    wait_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitConfig:
        return cls(
            requests_per_s=settings.rate_limit_requests_per_s,
            events_per_s=settings.rate_limit_events_per_s,
            burst_s=settings.rate_limit_burst_s,
            max_batch_events=settings.max_batch_events,
            publishable_requests_per_s=settings.rate_limit_publishable_requests_per_s,
            publishable_events_per_s=settings.rate_limit_publishable_events_per_s,
            address_requests_per_s=settings.rate_limit_address_requests_per_s,
            address_events_per_s=settings.rate_limit_address_events_per_s,
            in_flight=settings.max_in_flight,
            running_ingest=settings.max_running_ingest,
            running_query=settings.max_running_query,
            running_other=settings.max_running_other,
            wait_s=settings.max_wait_s,
        )

    def pool_caps(self) -> dict[RouteClass, int]:
        return {
            RouteClass.INGEST: self.running_ingest,
            RouteClass.QUERY: self.running_query,
            RouteClass.OTHER: self.running_other,
        }


class TokenBucket:
    """``rate`` units per second, at most ``burst`` saved up; the level may go into debt."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = now

    def refill(self, now: float) -> float:
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.level

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` if the level allows it: 0.0, else the seconds until it would."""
        level = self.refill(now)
        if level >= amount:
            self.level -= amount
            return 0.0
        return (amount - level) / self.rate

    def wait_until_solvent(self, now: float) -> float:
        """0.0 while the level is above zero, else the seconds until it is."""
        level = self.refill(now)
        return 0.0 if level > 0 else (-level + 1e-9) / self.rate

    def charge(self, amount: float) -> None:
        self.level -= amount


class _Buckets:
    """One bucket per key, the least recently used forgotten beyond ``_MAX_BUCKETS``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._by_key: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def get(self, key: bytes, now: float) -> TokenBucket:
        bucket = self._by_key.get(key)
        if bucket is None:
            bucket = self._by_key[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._by_key) > _MAX_BUCKETS:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return bucket


class _Rates:
    """The request and event buckets of one kind of key (tokens, publishable keys, addresses)."""

    def __init__(self, requests_per_s: float, events_per_s: float, config: LimitConfig) -> None:
        burst = config.burst_s
        self.requests = _Buckets(requests_per_s, max(1.0, requests_per_s * burst))
        events_burst = max(float(config.max_batch_events), events_per_s * burst)
        self.events = _Buckets(events_per_s, events_burst)

    def admit(self, key: bytes, cls: RouteClass, now: float) -> tuple[float, TokenBucket | None]:
        if self.requests.rate > 0:
            wait = self.requests.get(key, now).take(1.0, now)
            if wait:
                return wait, None
        if cls is not RouteClass.INGEST or self.events.rate <= 0:
            return 0.0, None
        events = self.events.get(key, now)
        return events.wait_until_solvent(now), events


class Limiter:
    """The admission decisions; the clock is injected (monotonic seconds)."""

    def __init__(self, config: LimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._tokens = _Rates(config.requests_per_s, config.events_per_s, config)
        self._publishable = _Rates(
            config.publishable_requests_per_s, config.publishable_events_per_s, config
        )
        self._addresses = _Rates(config.address_requests_per_s, config.address_events_per_s, config)
        self.pools = {cls: Pool(cap) for cls, cap in config.pool_caps().items()}
        self.held = 0  # requests running or waiting, every class

    def admit_rate(
        self, key: bytes, cls: RouteClass, address: bytes | None = None
    ) -> tuple[float, tuple[TokenBucket, ...]]:
        """(seconds to wait, 0.0 if admitted; the event buckets to charge, for ingestion).
        With ``address`` (a publishable key's request) the key's publishable rates apply,
        and the address's too."""
        now = self.clock()
        if address is None:
            wait, events = self._tokens.admit(key, cls, now)
            return wait, () if events is None else (events,)
        wait, by_key = self._publishable.admit(key, cls, now)
        if wait:
            return wait, ()
        wait, by_address = self._addresses.admit(address, cls, now)
        if wait:
            return wait, ()
        return 0.0, tuple(b for b in (by_key, by_address) if b is not None)

    async def acquire(self, cls: RouteClass) -> bool:
        """A running slot of ``cls``, waiting up to ``wait_s`` for one; False if none came
        (or the server already holds ``in_flight`` requests). Pair with `release`."""
        if self.held >= self.config.in_flight:
            return False
        self.held += 1
        try:
            got = await self.pools[cls].acquire(self.config.wait_s)
        except BaseException:
            self.held -= 1
            raise
        if not got:
            self.held -= 1
        return got

    def release(self, cls: RouteClass) -> None:
        self.held -= 1
        self.pools[cls].release()


class Pool:
    """``cap`` running slots; waiters are served first come, first served."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, wait_s: float) -> bool:
        if self.running < self.cap and not self._waiters:
            self.running += 1
            return True
        if wait_s <= 0:
            return False
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await asyncio.wait_for(turn, wait_s)
            return True  # a releaser handed its slot over: ``running`` is unchanged
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over just now, but we will not use it: pass it on
            else:
                self._remove(turn)
            raise
        if turn.done() and not turn.cancelled():
            return True  # handed over as the wait ran out
        self._remove(turn)
        return False

    def release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1

    def _remove(self, turn: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already handed a slot and popped
            self._waiters.remove(turn)


def token_key(scope: Scope) -> tuple[bytes, bool]:
    """The bucket key of a request: the digest of its bearer token (or of its ``key``
    parameter), or one shared key; and whether that is a publishable key."""
    token = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip() if scheme.lower() == b"bearer" else b""
            break
    else:
        query: bytes = scope.get("query_string", b"")
        if b"key=" in query:
            token = _query_key(query)
    if 0 < len(token) <= 128:
        return hashlib.sha256(token).digest(), token.startswith(_PUBLISHABLE)
    return _ANONYMOUS, False


def _query_key(query: bytes) -> bytes:
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("key")
    return values[-1].encode("latin-1", "replace") if values else b""


def client_address(scope: Scope) -> bytes:
    client = scope.get("client")
    return (client[0] if client else "unknown").encode()


def charge_events(scope: Scope, count: int) -> None:
    """Charge ``count`` parsed events to the calling token's event rates (ingestion)."""
    buckets: tuple[TokenBucket, ...] = scope.get("state", {}).get(_METER, ())
    for bucket in buckets:
        bucket.charge(count)


class LimitMiddleware:
    """Pure ASGI middleware: rate limits, then an in-flight slot, then the app."""

    def __init__(self, app: ASGIApp, limiter: Limiter, registry: CollectorRegistry) -> None:
        self.app = app
        self.limiter = limiter
        self.refused = Counter(
            "tacit_refused_requests",
            "Requests refused before they were read, by route class and reason.",
            ["route_class", "reason"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cls = route_class(scope["path"])
        if cls is RouteClass.HEALTH:
            await self.app(scope, receive, send)
            return
        key, publishable = token_key(scope)
        address = client_address(scope) if publishable else None
        wait, meter = self.limiter.admit_rate(key, cls, address)
        if wait:
            self.refused.labels(cls.value, "rate").inc()
            seconds = max(1, math.ceil(wait))
            who = "this key or this address is" if publishable else "this token is"
            await _refuse(
                TooManyRequests(
                    f"{who} over its rate limit: retry after {seconds} s "
                    "(send fewer, larger batches to ingest more events per request)",
                    headers={"Retry-After": str(seconds)},
                ),
                scope,
                receive,
                send,
            )
            return
        if not await self.limiter.acquire(cls):
            self.refused.labels(cls.value, "in_flight").inc()
            await _refuse(
                Unavailable(
                    "the server is at capacity for this kind of request: retry after 1 s",
                    headers={"Retry-After": "1"},
                ),
                scope,
                receive,
                send,
            )
            return
        if meter:
            scope.setdefault("state", {})[_METER] = meter
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(cls)


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    await render_error(error)(scope, receive, send)
