"""POST /v1/events: the ingestion endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.deps import get_state, require
from service.errors import BadRequest, PayloadTooLarge, Unavailable, UnsupportedMediaType
from service.ingest.parse import BadBatch, parse_batch
from service.limits import charge_events
from service.store.base import Role

router = APIRouter(tags=["ingestion"])
# deps.IngestPrincipal's check, called in the route rather than declared as a dependency:
# on the busiest route FastAPI's dependency solving, and the thread-pool round trip it
# makes for a sync dependency, cost more CPU than the rest of a single-event request.
_require_ingest = require(Role.INGEST)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing it as soon as it passes ``limit`` bytes (chunked bodies too)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes: send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes: send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/v1/events",
    summary="Post a batch of 1-1000 events",
    responses={
        200: {"description": "Per-event outcome; sent only after the accepted events are durable."},
        400: {"description": "Malformed JSON or batch"},
        401: {"description": "Missing or unknown token"},
        403: {"description": "Not an ingest token"},
        413: {"description": "Body too large"},
        415: {"description": "Not JSON"},
    },
)
async def post_events(request: Request) -> JSONResponse:
    principal = _require_ingest(request)  # 401/403 before anything else is looked at
    state = get_state(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("send the batch as Content-Type: application/json")
    body = await read_body(request, state.settings.max_body_bytes)
    try:
        parsed = parse_batch(body, state.settings.max_batch_events)
    except BadBatch as exc:
        raise BadRequest(str(exc)) from exc
    charge_events(request, parsed.size)  # the token's events/s (service/limits.py)
    assert principal.source_id is not None  # ingest tokens always carry a source
    prepared = state.ingestor.prepare(parsed, principal.source_id)
    assert state.writer is not None
    flags: list[bool] = []
    if prepared.batch.keys or prepared.batch.quarantine:
        try:
            flags = await state.writer.write(prepared.batch)
        except Exception as exc:
            raise Unavailable(
                "the batch could not be stored durably and none of it was acknowledged: "
                "retry it with the same event ids",
                headers={"Retry-After": "1"},
            ) from exc
    report = state.ingestor.report(prepared, flags)
    state.telemetry.count_events(
        report.accepted, report.duplicates, report.sampled_out, report.rejected_by_reason
    )
    return JSONResponse(report.as_dict())
