"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "tacit_events",
            "Events by outcome (accepted, duplicate, sampled_out, rejected) and rejection reason.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tacit_request_seconds",
            "Request latency by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.releases = Counter(
            "tacit_releases",
            "DP releases by metric and outcome.",
            ["metric", "outcome"],
            registry=self.registry,
        )
        self.store_unavailable = Counter(
            "tacit_store_unavailable",
            "Requests answered 503 store_unavailable (the database could not be reached), "
            "by route class.",
            ["route_class"],
            registry=self.registry,
        )
        # Set by the seal schedule (service/lake/sealer.py) after each of its turns.
        self.lake_seal_lag = Gauge(
            "tacit_lake_seal_lag_seconds",
            "How old the oldest event not sealed into the lake may be (0: none waits).",
            registry=self.registry,
        )
        self.lake_rows_hot = Gauge(
            "tacit_lake_rows_hot",
            "Events in the transactional store not sealed into the lake yet.",
            registry=self.registry,
        )

    def count_events(
        self, accepted: int, duplicates: int, sampled_out: int, rejected: dict[str, int]
    ) -> None:
        if accepted:
            self.events.labels("accepted", "").inc(accepted)
        if duplicates:
            self.events.labels("duplicate", "").inc(duplicates)
        if sampled_out:
            self.events.labels("sampled_out", "").inc(sampled_out)
        for reason, n in rejected.items():
            self.events.labels("rejected", reason).inc(n)


class LatencyMiddleware:
    """Pure ASGI middleware: times each request under its route template, not its path."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.telemetry.latency.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - start
            )
