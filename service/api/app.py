"""The application factory. Settings, store and keyring are built here, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from privacy.keyring import Keyring
from privacy.policy import load_policy
from service.api.body_limit import BodyLimit
from service.api.cors import CorsMiddleware, ListedOrigins
from service.api.deps import AppState, get_state, utc_now
from service.api.errors import (
    ApiError,
    BadRequest,
    HttpRefusal,
    NotFoundError,
    PayloadTooLarge,
    StoreUnavailableError,
    render_error,
)
from service.api.limits import LimitConfig, Limiter, LimitMiddleware, route_class
from service.api.openapi import install as document_behaviour
from service.api.routes import audit, demo, events, health, policy, queries, subjects, ui
from service.api.telemetry import LatencyMiddleware, Telemetry
from service.ingest.ingestion import Ingestion, writer_for
from service.ingest.pipeline import Ingestor
from service.lake.sealer import SealSchedule
from service.lake.setup import queries_for, sealer_for, upkeep_for
from service.logging import RequestLogMiddleware, current_request_id
from service.ops.accounting import check_ledger_unit
from service.ops.retention import RetentionSchedule, Sweeper
from service.queries.engine import QueryEngine
from service.queries.service import QueryService
from service.queries.timing import ReleaseDeadline
from service.settings import Settings
from service.store import open_store
from service.store.base import StoreUnavailable

log = logging.getLogger("tacit")

ROUTERS = [
    events.router,
    health.router,
    audit.router,
    subjects.router,
    policy.router,
    queries.router,
    ui.router,
    demo.router,
]


def build_state(settings: Settings, clock: Callable[[], datetime] = utc_now) -> AppState:
    """Everything the routes share: policy, store, keyring, pipeline."""
    loaded = load_policy(settings.policy)
    store = open_store(
        settings.resolved_database_url,
        policy_sha256=loaded.sha256,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
    )
    try:
        check_ledger_unit(store, loaded, clock())  # before the policy counts as loaded
    except BaseException:
        store.close()
        raise
    master = settings.load_master_key()
    keyring = Keyring(master, store.salts, loaded.policy.identifiers)
    ingestor = Ingestor(
        loaded.policy, keyring, store, clock, timedelta(hours=settings.max_future_hours)
    )
    store.audit.append(
        "policy_loaded",
        "service",
        {"source": str(loaded.source), "name": loaded.policy.name, "sha256": loaded.sha256},
        clock(),
    )
    telemetry = Telemetry()
    ingestion = Ingestion(ingestor, telemetry, settings.max_batch_events)
    state = AppState(settings, loaded, store, keyring, ingestion, telemetry, clock)
    try:
        lake_queries = queries_for(settings, store)
    except BaseException:
        store.close()
        raise
    state.lake = None if lake_queries is None else lake_queries.lake
    state.lake_upkeep = upkeep_for(settings, store)
    engine = QueryEngine(store, loaded.policy, lake_queries)
    state.queries = QueryService(
        store,
        loaded,
        engine,
        clock,
        state.telemetry,
        ReleaseDeadline(settings.release_quantum_s, settings.release_per_value_s),
    )
    return state


def _lake_gauges(telemetry: Telemetry, status: dict[str, Any]) -> None:
    telemetry.lake_seal_lag.set(status["seal_lag_seconds"])
    telemetry.lake_rows_hot.set(status["rows_hot"])


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now
) -> FastAPI:
    settings = settings or Settings()
    state = build_state(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = state.ingestion.writer = writer_for(settings, state.store.events)
        sweeper = Sweeper(
            state.store, state.policy.policy, keyring=state.keyring, lake=state.lake_upkeep
        )
        schedule = RetentionSchedule(
            sweeper, state.store, state.clock, settings.retention_interval_s
        )
        state.retention = schedule
        schedule.start()
        sealing = None
        if state.lake is not None:
            sealing = state.sealing = SealSchedule(
                sealer_for(settings, state.store, state.clock),
                settings.seal_interval_s,
                settings.lake_compact_interval_s,
                state.clock,
                on_status=lambda status: _lake_gauges(state.telemetry, status),
            )
            sealing.start()
        try:
            yield
        finally:
            if sealing is not None:
                sealing.stop()
            schedule.stop()
            writer.close()
            if state.queries is not None:
                state.queries.engine.close()  # a Spark session stops here
            state.store.close()

    app = FastAPI(
        title="Tacit",
        version="0.1.0",
        summary="Privacy-first aggregation of implicit feedback from LLM products.",
        lifespan=lifespan,
        # Tacit's telemetry is its own (/metrics, service/logging.py), and says nothing of
        # callers; FastAPI's OpenTelemetry spans would record addresses and user agents,
        # and checking whether they are configured cost every request ~6 µs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.tacit = state
    for router in ROUTERS:
        app.include_router(router)
    _install_error_handlers(app)
    document_behaviour(app, settings.max_batch_events)  # 400s, 429/503s, the events body
    app.add_middleware(events.IngestEndpoint, state=state)  # innermost: see routes/events.py
    # Other bodies are small; read them with a limit before FastAPI would buffer any size.
    exempt = frozenset({events.PATH})
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, exempt=exempt)
    app.add_middleware(LatencyMiddleware, telemetry=state.telemetry)
    limiter = state.limiter = Limiter(LimitConfig.from_settings(settings))
    app.add_middleware(LimitMiddleware, limiter=limiter, registry=state.telemetry.registry)
    # Outside the limits, so that a 429 reaches a listed page with its CORS headers.
    origins = ListedOrigins(state.store.tokens, settings.cors_refresh_s)
    app.add_middleware(CorsMiddleware, origins=origins, max_age_s=settings.cors_max_age_s)
    app.add_middleware(RequestLogMiddleware, access_log=settings.access_log)  # outermost
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from TACIT_* variables."""
    return create_app(Settings())


_HTTP_CODES = {
    400: BadRequest.code,
    404: NotFoundError.code,
    405: "method_not_allowed",
    413: PayloadTooLarge.code,
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if isinstance(exc, StoreUnavailableError):
            telemetry = get_state(request).telemetry
            telemetry.store_unavailable.labels(route_class(request.url.path).value).inc()
        return render_error(exc)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # The database went away under a route that had nothing more to say about it
        # (ingestion and charged queries raise StoreUnavailableError themselves).
        return await api_error(request, StoreUnavailableError())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals, in the codes our errors use (a body it cannot parse is
        # a 400 bad_request like any other malformed body, as the schema says).
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return render_error(HttpRefusal(exc.status_code, code, str(exc.detail), headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "(body)", "message": e["msg"]}
            for e in exc.errors()
        ]
        return render_error(BadRequest("the request is invalid", errors=errors))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__
        )
        bug = ApiError("internal error; this is probably a bug", request_id=current_request_id())
        return render_error(bug)
