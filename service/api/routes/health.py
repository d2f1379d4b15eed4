"""Health and Prometheus metrics (no auth: they reveal no data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and the active policy's digest")
async def healthz(state: StateDep) -> dict[str, str]:
    return {"status": "ok", "policy_sha256": state.policy.sha256}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: StateDep) -> PlainTextResponse:
    return PlainTextResponse(
        generate_latest(state.telemetry.registry), media_type=CONTENT_TYPE_LATEST
    )
