"""The baseline for bench/ingest.py: what the web stack alone does with an events batch.

The same FastAPI + uvicorn stack and the same validation as Tacit's ``POST /v1/events``
(service.ingest.parse.parse_batch, i.e. the same pydantic event model), and nothing
else: no token check, no pseudonyms, no store. It answers in the product's response
shape so that the load generator counts both alike. It lives in bench/ on purpose: the
product has no benchmark-only route.

Run: ``uvicorn bench.baseline_app:app --port 8001``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.ingest.parse import BadBatch, parse_batch

MAX_EVENTS = 1000

app = FastAPI(title="Tacit ingestion baseline (validate only)")


@app.post("/v1/events")
async def post_events(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        parsed = parse_batch(body, MAX_EVENTS)
    except BadBatch as exc:
        return JSONResponse({"error": {"code": "bad_request", "message": str(exc)}}, 400)
    invalid = len(parsed.invalid)
    return JSONResponse(
        {
            "accepted": len(parsed.events),
            "duplicates": 0,
            "sampled_out": 0,
            "rejected": invalid,
            "results": [{"index": i, "status": "rejected"} for i, _, _ in parsed.invalid],
        }
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
