"""Health and Prometheus metrics (no auth: they reveal no data)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import AppState, StateDep
from service.api.errors import NotReady
from service.api.openapi import raises
from service.store.base import StoreUnavailable

log = logging.getLogger("tacit")

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and the active policy's digest")
async def healthz(state: StateDep) -> dict[str, str]:
    return {"status": "ok", "policy_sha256": state.policy.sha256}


def _readiness(state: AppState) -> dict[str, str]:
    """Each dependency a request needs, "ok" or what is wrong with it (no detail that could
    name a host's password or a row: the reasons are fixed words)."""
    checks = {"store": "ok"}
    try:
        state.store.ping()
    except StoreUnavailable as exc:
        log.warning("readiness: %s", exc)  # host and port, never the password
        checks["store"] = "unavailable"
    if state.lake is not None:
        try:
            state.lake.snapshot()
            checks["lake"] = "ok"
        except Exception:  # any unreadable table makes queries fail
            log.exception("readiness: the lake at %s cannot be read", state.lake.uri)
            checks["lake"] = "unreadable"
    return checks


@router.get(
    "/readyz",
    summary="Readiness: the database answers and the lake can be read",
    responses=raises(NotReady),
)
async def readyz(state: StateDep) -> dict[str, Any]:
    """200 when every dependency a request needs answers, else 503 (with Retry-After),
    naming the one that does not. Unlike /healthz (liveness: the process serves), a load
    balancer may take a node out of rotation on a 503 here; with one shared database every
    node fails it at once, so keep /healthz as the liveness check."""
    checks = await run_in_threadpool(_readiness, state)
    if any(v != "ok" for v in checks.values()):
        raise NotReady(checks)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> PlainTextResponse:
    return PlainTextResponse(
        generate_latest(state.telemetry.registry), media_type=CONTENT_TYPE_LATEST
    )
